//! Writes a snapshot stream to disk so that a file appears under its final name only when it is
//! complete and verified: `<file>.part` (0600, created exclusively) → checksum verified → fsync →
//! rename → fsync of the directory. Hashing, compression and writing run on a blocking thread fed
//! by a bounded channel, so memory stays bounded whatever the database size. If the stream fails,
//! the checksum is wrong, or the caller is cancelled, the `.part` file is removed.
//!
//! Bytes are only ever appended (zip entries use data descriptors instead of seeking back; a
//! zstd stream is written front to back), so a [`GrowthSender`] can let an uploader read the
//! file while it is written. Both formats compress on worker threads (one per core, at most
//! [`MAX_WORKERS`]): zstd's own, and [`super::parzip`] for deflate, so that compression keeps
//! up with etcd's stream even on data that compresses poorly.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::growing::GrowthSender;
use super::parzip::{Entry, ParallelZip};
use super::verify::TrailerHasher;
use crate::etcd::ChunkStream;
use crate::fsutil::{create_private_file, publish};
use crate::naming::{CompressFormat, PART_SUFFIX};
use crate::{Error, Result};

/// Chunks in flight between the network and the disk (etcd sends 32 KiB chunks: ~2 MiB).
const CHANNEL_DEPTH: usize = 64;
const WRITE_BUFFER: usize = 1 << 20;
/// Compression threads at most (deflate or zstd): etcd sends ~150 MB/s at best, which two
/// workers outrun on etcd's data; more only add memory (each holds a few MiB).
pub const MAX_WORKERS: usize = 4;
/// Bytes of input each zstd worker compresses at a time.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// What to write.
#[derive(Debug, Clone)]
pub struct WriteSpec {
    pub dir: PathBuf,
    /// `<prefix>-<node>-<unix>`; the file is this name, or this name + `.zip`/`.zst`.
    pub base_name: String,
    pub compress: bool,
    /// How a compressed snapshot is packed.
    pub format: CompressFormat,
    /// Level of the format (deflate 1 … 9, zstd 1 … 19), already checked.
    pub compression_level: i64,
    /// Modification time recorded in the zip entry.
    pub created: DateTime<Utc>,
    /// A stream silent for this long is abandoned.
    pub idle_timeout: Duration,
}

/// A snapshot file that was written and verified.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub file_name: String,
    /// Bytes on disk (the zip or zstd file when compressed).
    pub size: u64,
    /// Bytes of the raw etcd snapshot, trailer included.
    pub raw_size: u64,
}

enum Msg {
    Chunk(Vec<u8>),
    End,
}

/// The file, counting what reaches it for readers that follow the writer.
struct Counted {
    file: File,
    growth: Option<GrowthSender>,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(g) = &self.growth {
            g.wrote(n);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

type Buffered = BufWriter<Counted>;

type ZstdEncoder = zstd::stream::write::Encoder<'static, Buffered>;

enum Sink {
    Raw(Buffered),
    Zip(Box<ParallelZip<Buffered>>),
    /// A zstd file before its first bytes: the encoder starts with them (see [`zstd_start`]).
    ZstdPending(Option<Buffered>, i64),
    Zstd(Box<ZstdEncoder>),
}

impl Sink {
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Raw(w) => w.write_all(data),
            Sink::Zip(z) => z.write_all(data),
            Sink::ZstdPending(w, level) => {
                let w = w
                    .take()
                    .ok_or_else(|| std::io::Error::other("the zstd start failed before"))?;
                *self = Sink::Zstd(Box::new(zstd_start(w, *level, data)?));
                Ok(())
            }
            Sink::Zstd(z) => z.write_all(data),
        }
    }

    fn finish(self) -> std::io::Result<Counted> {
        let buffered = match self {
            Sink::Raw(w) => w,
            Sink::Zip(z) => z.finish()?,
            Sink::ZstdPending(w, level) => {
                let w = w.ok_or_else(|| std::io::Error::other("the zstd start failed before"))?;
                zstd_encoder(w, level)?.finish()?
            }
            Sink::Zstd(z) => z.finish()?,
        };
        let counted = buffered.into_inner().map_err(|e| e.into_error())?;
        counted.file.sync_all()?;
        Ok(counted)
    }
}

fn zip_time(t: DateTime<Utc>) -> zip::DateTime {
    zip::DateTime::from_date_and_time(
        t.year().clamp(1980, 2107) as u16,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    )
    .unwrap_or_default()
}

fn open_sink(part: &Path, spec: &WriteSpec, growth: Option<GrowthSender>) -> Result<Sink> {
    // Readable too: an uploader reads the bytes back through a duplicate of this handle.
    let file = create_private_file(part)?;
    if let Some(g) = &growth {
        g.opened(&file)
            .map_err(|e| Error::io("duplicate handle of", part, e))?;
    }
    let w = BufWriter::with_capacity(WRITE_BUFFER, Counted { file, growth });
    if !spec.compress {
        return Ok(Sink::Raw(w));
    }
    if spec.format == CompressFormat::Zstd {
        // The level was checked; a first encoder here reports a bad one before etcd sends.
        zstd::stream::raw::Encoder::new(spec.compression_level as i32).map_err(|e| {
            Error::Other(format!(
                "failed to start zstd compression at level {}: {e}",
                spec.compression_level
            ))
        })?;
        return Ok(Sink::ZstdPending(Some(w), spec.compression_level));
    }
    let t = zip_time(spec.created);
    let entry = Entry {
        name: spec.base_name.clone(),
        mode: 0o600,
        dos_time: t.timepart(),
        dos_date: t.datepart(),
        level: spec.compression_level.clamp(1, 9) as u32,
    };
    let z = ParallelZip::new(w, entry, workers())
        .map_err(|e| Error::Other(format!("failed to start the zip entry: {e}")))?;
    Ok(Sink::Zip(Box::new(z)))
}

/// Compression threads: one per core, at most [`MAX_WORKERS`].
fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS)
}

/// Starts the zstd stream with its first bytes. libzstd creates its worker threads when the
/// stream starts, and they take the priority of the thread that starts it: that is done on a
/// short-lived thread at niceness +10, so the workers yield to etcd's stream as the deflate
/// workers do, while the writing thread keeps its priority (lowering that one made a 1 GiB
/// save 1.5x slower: the stream backed up behind it).
fn zstd_start(w: Buffered, level: i64, first: &[u8]) -> std::io::Result<ZstdEncoder> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("zstd-start".into())
            .spawn_scoped(s, || {
                crate::fsutil::lower_thread_priority(10);
                let mut z = zstd_encoder(w, level)?;
                z.write_all(first)?;
                Ok(z)
            })?
            .join()
            .map_err(|_| std::io::Error::other("the zstd start thread panicked"))?
    })
}

fn zstd_encoder(w: Buffered, level: i64) -> std::io::Result<ZstdEncoder> {
    let mut z = zstd::stream::write::Encoder::new(w, level as i32)?;
    z.multithread(workers() as u32)?;
    // zstd's own job size (4 windows, 8 MiB at level 3) held 45-60 MiB across two workers on a
    // 1 GiB save; 2 MiB jobs keep that under 20 MiB, for files ~1.5% larger (1 GiB of JSON:
    // 251.4 MB against 247.9 MB compressed on one thread).
    z.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    // zstd's own checksum of the frame: a damaged file fails at decompression, before the
    // snapshot's trailer is reached.
    z.include_checksum(true)?;
    Ok(z)
}

/// The disk side: consumes chunks until `End`, then verifies and publishes the file. Any early
/// end (sender dropped) or failure removes the `.part` file.
fn disk_side(
    mut rx: mpsc::Receiver<Msg>,
    spec: WriteSpec,
    part: PathBuf,
    fin: PathBuf,
    mut growth: Option<GrowthSender>,
) -> Result<Written> {
    let result = (|| {
        let mut sink = open_sink(&part, &spec, growth.take())?;
        let mut hasher = TrailerHasher::new();
        let mut complete = false;
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                Msg::Chunk(c) => {
                    hasher.update(&c);
                    sink.write_all(&c)
                        .map_err(|e| Error::io("write", &part, e))?;
                }
                Msg::End => {
                    complete = true;
                    break;
                }
            }
        }
        if !complete {
            return Err(Error::Other("snapshot stream ended early".into()));
        }
        let raw_size = hasher.finish()?;
        let counted = sink.finish().map_err(|e| Error::io("finish", &part, e))?;
        let size = counted
            .file
            .metadata()
            .map_err(|e| Error::io("stat", &part, e))?
            .len();
        publish(&part, &fin)?;
        if let Some(g) = &counted.growth {
            g.finished(size);
        }
        Ok(Written {
            file_name: fin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: fin.clone(),
            size,
            raw_size,
        })
    })();
    if let Err(e) = &result {
        let _ = std::fs::remove_file(&part);
        if let Some(g) = &growth {
            g.failed(&e.to_string());
        }
    }
    result
}

/// The final path a spec produces.
pub fn final_path(spec: &WriteSpec) -> PathBuf {
    let mut name = spec.base_name.clone();
    if spec.compress {
        name.push_str(spec.format.suffix());
    }
    spec.dir.join(name)
}

/// Streams `chunks` into the file described by `spec`; see the module docs for the guarantees.
/// `growth`, if given, follows the bytes as they reach the file and learns the outcome.
pub async fn write_stream(
    mut chunks: ChunkStream,
    spec: WriteSpec,
    growth: Option<GrowthSender>,
) -> Result<Written> {
    let fin = final_path(&spec);
    if fin.exists() {
        return Err(Error::InvalidInput(format!(
            "{} already exists; snapshot names carry the second they were taken, wait a second and retry",
            fin.display()
        )));
    }
    let part = PathBuf::from(format!("{}{PART_SUFFIX}", fin.display()));
    let (tx, rx) = mpsc::channel::<Msg>(CHANNEL_DEPTH);
    let idle = spec.idle_timeout;
    let disk = tokio::task::spawn_blocking({
        let (part, fin) = (part.clone(), fin.clone());
        move || disk_side(rx, spec, part, fin, growth)
    });
    let net: Result<()> = async {
        loop {
            let next = tokio::time::timeout(idle, chunks.next())
                .await
                .map_err(|_| {
                    Error::Etcd(format!(
                        "etcd sent no snapshot data for {idle:?} (--etcd-snapshot-idle-timeout), so the save was abandoned: check that etcd is running and not stalled or overloaded"
                    ))
                })?;
            match next {
                Some(Ok(chunk)) => {
                    if tx.send(Msg::Chunk(chunk)).await.is_err() {
                        // The disk side stopped; its error is the one to report.
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(e),
                None => {
                    let _ = tx.send(Msg::End).await;
                    return Ok(());
                }
            }
        }
    }
    .await;
    drop(tx);
    let disk = disk
        .await
        .map_err(|e| Error::Other(format!("snapshot writer thread failed: {e}")))?;
    match (net, disk) {
        (Err(e), _) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
        (Ok(()), r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapfile::verify::{verify_file, with_trailer};

    fn spec(dir: &Path, compress: bool) -> WriteSpec {
        WriteSpec {
            dir: dir.to_path_buf(),
            base_name: "on-demand-n1-1700000000".into(),
            compress,
            format: CompressFormat::Zip,
            compression_level: 3,
            created: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            idle_timeout: Duration::from_secs(5),
        }
    }

    fn chunks(data: Vec<u8>, fail_at: Option<usize>) -> ChunkStream {
        let parts: Vec<Result<Vec<u8>>> = data
            .chunks(32 * 1024)
            .enumerate()
            .map(|(i, c)| {
                if Some(i) == fail_at {
                    Err(Error::Etcd("boom".into()))
                } else {
                    Ok(c.to_vec())
                }
            })
            .collect();
        Box::pin(futures::stream::iter(parts))
    }

    fn db(pages: usize) -> Vec<u8> {
        with_trailer((0..pages * 4096).map(|i| (i % 13) as u8).collect())
    }

    #[tokio::test]
    async fn writes_raw_and_zip() {
        let dir = tempfile::tempdir().unwrap();
        let data = db(40);
        let w = write_stream(chunks(data.clone(), None), spec(dir.path(), false), None)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&w.path).unwrap(), data);
        assert_eq!(crate::fsutil::mode_of(&w.path), Some(0o600));
        let z = write_stream(chunks(data.clone(), None), spec(dir.path(), true), None)
            .await
            .unwrap();
        assert!(z.file_name.ends_with(".zip"));
        assert_eq!(verify_file(&z.path).unwrap(), data.len() as u64);
        assert!(z.size < data.len() as u64);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    /// Niceness of this process's threads named `name` (Linux: from /proc).
    #[cfg(target_os = "linux")]
    fn nice_of_threads(name: &str) -> Vec<i64> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| {
                let t = t.ok()?.path();
                let comm = std::fs::read_to_string(t.join("comm")).ok()?;
                (comm.trim() == name).then_some(())?;
                let stat = std::fs::read_to_string(t.join("stat")).ok()?;
                // Fields after the `(comm)`: state is field 3, nice field 19.
                let rest = stat.rsplit_once(')')?.1;
                rest.split_whitespace().nth(16)?.parse().ok()
            })
            .collect()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn zstd_workers_run_at_a_lower_priority_than_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let file = create_private_file(&dir.path().join("x.zst")).unwrap();
        let w = BufWriter::with_capacity(WRITE_BUFFER, Counted { file, growth: None });
        let me = nice_of_threads(&std::fs::read_to_string("/proc/thread-self/comm").unwrap());
        let sink = zstd_start(w, 3, &db(64)).unwrap();
        // libzstd's workers take the name and niceness of the thread that started them.
        let workers = nice_of_threads("zstd-start");
        assert_eq!(workers.len(), workers_count(), "{workers:?}");
        let base = me.first().copied().unwrap_or(0);
        assert!(
            workers.iter().all(|n| *n == (base + 10).min(19)),
            "{workers:?} vs {base}"
        );
        drop(sink);
    }

    #[cfg(target_os = "linux")]
    fn workers_count() -> usize {
        workers()
    }

    #[tokio::test]
    async fn writes_zstd_that_decompresses_to_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        // Several MiB, so that zstd's workers each get jobs.
        let data = db(2048);
        let mut s = spec(dir.path(), true);
        s.format = CompressFormat::Zstd;
        let z = write_stream(chunks(data.clone(), None), s, None)
            .await
            .unwrap();
        assert_eq!(z.file_name, "on-demand-n1-1700000000.zst");
        assert_eq!(z.raw_size, data.len() as u64);
        assert!(z.size < data.len() as u64 / 10, "{} bytes", z.size);
        assert_eq!(crate::fsutil::mode_of(&z.path), Some(0o600));
        let back = zstd::decode_all(std::fs::File::open(&z.path).unwrap()).unwrap();
        assert!(back == data, "decompressed bytes differ");
        assert_eq!(verify_file(&z.path).unwrap(), data.len() as u64);
    }

    #[tokio::test]
    async fn failures_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut bad = db(10);
        bad[5] ^= 1;
        for (data, fail_at) in [(bad, None), (db(10), Some(1)), (vec![1u8; 1000], None)] {
            for (compress, format) in [
                (false, CompressFormat::Zip),
                (true, CompressFormat::Zip),
                (true, CompressFormat::Zstd),
            ] {
                let mut s = spec(dir.path(), compress);
                s.format = format;
                let r = write_stream(chunks(data.clone(), fail_at), s, None).await;
                assert!(r.is_err());
                assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
            }
        }
    }
}
