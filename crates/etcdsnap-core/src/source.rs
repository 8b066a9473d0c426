//! One snapshot source: how every command gets a snapshot onto local disk, verified and raw.
//! `--cluster-reset`, `etcd-snapshot restore`, `status`, `verify`, `inspect`, `drill` and
//! `check` all go through it. It owns:
//!
//! * where a snapshot is: [`resolve`] turns what the user typed into a [`Source`] (a path that
//!   exists, a name in the snapshot dir, or an object of the S3, GCS or Azure Blob folder);
//! * the remote store: [`connect`] is the one place a command connects to one (and checks its
//!   bucket), and [`fetch`] gets an object through the [`SnapshotStore`] trait, which verifies
//!   it (trailer, zip entry rules) before it gets its final name, so a bad one leaves nothing;
//! * the file rules, [`check_file`]: the snapshot exists and is a regular file (a FIFO or a
//!   device would keep a reader waiting for ever);
//! * the one decompressor, [`open_local`]: a `.zip` (one entry with a plain name) or `.zst`
//!   becomes a raw copy through a `.part` file while its SHA-256 trailer is hashed, after the
//!   one free-space rule ([`Purpose`]: a restore needs room for the copy, the restored
//!   database and etcd's WAL; a reader for the copy) and with the one progress hook (a
//!   [`progress`] task `decompress <name>`).
//!
//! What the [`Purpose`] is decides the words of the messages (K3s's for a restore), whether a
//! bad trailer refuses the snapshot (a restore) or is reported (`status`, `verify`), and the
//! free-space rule. The callers keep what differs between them: where their scratch and
//! staging directories live, and what they log about downloads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::fsutil::{RemoveOnDrop, create_private_file, publish};
use crate::naming::{PART_SUFFIX, is_compressed, validate_plain_name};
use crate::progress;
use crate::snapfile::verify::{TrailerHasher, verify_file, with_decompressed};
use crate::store::SnapshotStore;
use crate::store::remote::{S3Identity, S3Store, S3Target};
use crate::{Error, Result};

/// Where a snapshot comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on this machine, raw or compressed.
    Path(PathBuf),
    /// An object of the remote folder (S3, GCS or Azure Blob), by file name.
    S3 { target: Box<S3Target>, name: String },
}

/// Resolves what the user gave: a path that exists is used as it is; otherwise a plain name is
/// an object of the remote folder when `s3` is set, else a file in `snapshot_dir`.
pub fn resolve(arg: &str, snapshot_dir: &Path, s3: Option<&S3Target>) -> Result<Source> {
    if arg.is_empty() {
        return Err(Error::InvalidInput(
            "give a snapshot: a file, or a snapshot name as `etcd-snapshot ls` prints it".into(),
        ));
    }
    let path = Path::new(arg);
    if path.exists() {
        return Ok(Source::Path(path.to_path_buf()));
    }
    if validate_plain_name(arg).is_err() {
        return Err(Error::InvalidInput(format!(
            "snapshot file {arg} does not exist"
        )));
    }
    if let Some(target) = s3 {
        return Ok(Source::S3 {
            target: Box::new(target.clone()),
            name: arg.to_string(),
        });
    }
    let in_dir = snapshot_dir.join(arg);
    if in_dir.is_file() {
        return Ok(Source::Path(in_dir));
    }
    Err(Error::InvalidInput(format!(
        "snapshot {arg} not found: it is not a file here, nor in the snapshot dir {}; give a path, --dir (or -d) for another snapshot dir, or --s3 for a snapshot in S3",
        snapshot_dir.display()
    )))
}

/// Connects to the remote store of `target` (S3, GCS or Azure Blob) and checks that its bucket
/// exists: the one place a command connects to one.
pub async fn connect(target: &S3Target, identity: S3Identity) -> Result<S3Store> {
    S3Store::connect(target, identity).await
}

/// A snapshot fetched from a store.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The local file, verified.
    pub path: PathBuf,
    /// Where it came from (`s3://bucket/key`, ...).
    pub location: String,
    /// The node that uploaded it, when the store knows.
    pub node: Option<String>,
}

/// Fetches `name` from `store` into `dest_dir` through the store trait: the store verifies it
/// before it gets its final name (and puts its extra metadata in `../.metadata/`).
pub async fn fetch(store: &dyn SnapshotStore, name: &str, dest_dir: &Path) -> Result<Fetched> {
    let path = store.get(name, dest_dir).await?;
    Ok(Fetched {
        path,
        location: store.location(name),
        node: store.uploaded_by(name),
    })
}

/// etcd preallocates its first WAL file to this size.
const WAL_SIZE: u64 = 64_000_000;

fn mib(b: u64) -> u64 {
    b.div_ceil(1 << 20)
}

/// Space a restore of a `raw_size` snapshot needs where the data dir goes: the db, the WAL, and
/// as much again for the decompressed copy or etcd's own copy.
pub fn space_needed(raw_size: u64) -> u64 {
    raw_size.saturating_mul(2) + WAL_SIZE
}

/// What the raw snapshot is for. It decides the words of the messages, the free-space rule, and
/// whether a bad trailer found while decompressing refuses the snapshot.
#[derive(Debug, Clone)]
pub enum Purpose {
    /// A restore into a data dir in `data_parent`: K3s's messages; about twice the raw size
    /// and etcd's WAL must be free there, checked before anything is written (for a raw file
    /// too); a bad trailer refuses the snapshot.
    Restore { data_parent: PathBuf },
    /// Reading it (`status`, `verify`, `inspect`, `drill`): the decompressed copy must fit where
    /// it goes; the trailer is reported, not refused (`verify` names the problem).
    Read,
}

/// How [`open_local`] makes a raw snapshot: for what, where a decompressed copy goes, and the
/// two seams tests replace (the free-space probe and the progress sink).
#[derive(Clone)]
pub struct Unpack {
    pub purpose: Purpose,
    /// The directory a decompressed copy goes in.
    pub into: PathBuf,
    /// Progress of the decompression goes here; `None`: to the process's sink.
    pub progress: Option<Arc<dyn progress::Sink>>,
    /// Bytes free on the file system of a directory.
    pub free_space: fn(&Path) -> Result<u64>,
}

impl std::fmt::Debug for Unpack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unpack")
            .field("purpose", &self.purpose)
            .field("into", &self.into)
            .finish_non_exhaustive()
    }
}

impl Unpack {
    pub fn new(purpose: Purpose, into: impl Into<PathBuf>) -> Unpack {
        Unpack {
            purpose,
            into: into.into(),
            progress: None,
            free_space: crate::fsutil::free_space,
        }
    }

    /// The one free-space rule, before anything is written: a restore needs
    /// [`space_needed`] where its data dir goes (`copy`: a decompressed copy is made first); a
    /// reader needs room for the decompressed copy where it goes.
    fn check_room(&self, src: &Path, raw_size: u64, copy: bool) -> Result<()> {
        match &self.purpose {
            Purpose::Restore { data_parent } => {
                let what = if copy {
                    "decompressing and restoring this snapshot"
                } else {
                    "restoring this snapshot"
                };
                let need = space_needed(raw_size);
                let free = (self.free_space)(data_parent)?;
                if free < need {
                    return Err(Error::InvalidInput(format!(
                        "not enough disk space in {}: {what} needs about {} MiB, only {} MiB are free; free some space (nothing was changed)",
                        data_parent.display(),
                        mib(need),
                        mib(free)
                    )));
                }
            }
            Purpose::Read if copy => {
                let free = (self.free_space)(&self.into)?;
                if free < raw_size {
                    return Err(Error::InvalidInput(format!(
                        "not enough space in {} to decompress {}: it needs {} MiB, {} MiB are free; set TMPDIR to a directory with more space",
                        self.into.display(),
                        src.display(),
                        mib(raw_size),
                        free >> 20
                    )));
                }
            }
            Purpose::Read => {}
        }
        Ok(())
    }

    fn progress_task(&self, what: &str, total: Option<u64>) -> progress::Task {
        match &self.progress {
            Some(sink) => progress::task_to(sink.clone(), what, total),
            None => progress::task(what, total),
        }
    }
}

/// What is known of the SHA-256 trailer of a [`Raw`] snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Not checked yet: a raw file is checked by whoever reads it (the restore tool,
    /// `status`, `verify`, the drill).
    No,
    /// It matches.
    Verified,
    /// Hashed while decompressed, for a reader that reports rather than refuses: the total
    /// size, the SHA-256 of all but the last 32 bytes, and those bytes.
    Hashed {
        total: u64,
        computed: [u8; 32],
        tail: Vec<u8>,
    },
}

/// A raw snapshot on local disk: the file itself, or a decompressed copy removed when this is
/// dropped.
#[derive(Debug)]
pub struct Raw {
    pub raw: PathBuf,
    /// Bytes of the raw snapshot, trailer included.
    pub raw_size: u64,
    /// Bytes of the file as it was given (the compressed one, for a copy).
    pub file_size: u64,
    pub compressed: bool,
    pub checked: Checked,
    _temp: Option<RemoveOnDrop>,
}

impl Raw {
    /// Whether the trailer is known to match.
    pub fn verified(&self) -> bool {
        self.checked == Checked::Verified
    }

    /// Checks the trailer of the raw file (once).
    pub fn verify(&mut self) -> Result<()> {
        if self.verified() {
            return Ok(());
        }
        let started = Instant::now();
        self.raw_size = verify_file(&self.raw)?;
        self.checked = Checked::Verified;
        tracing::info!(
            "Restore: checksum of {} verified ({} MiB in {:.1?})",
            self.raw.display(),
            mib(self.raw_size),
            started.elapsed()
        );
        Ok(())
    }
}

/// The file rules: `path` exists and is a regular file. Returns its size.
pub fn check_file(path: &Path, purpose: &Purpose) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| match purpose {
        Purpose::Restore { .. } => Error::InvalidInput(format!(
            "etcd: snapshot path does not exist: {}",
            path.display()
        )),
        Purpose::Read => Error::io("stat", path, e),
    })?;
    if meta.is_dir() {
        return Err(Error::InvalidInput(match purpose {
            Purpose::Restore { .. } => format!(
                "etcd: snapshot path must be a file, not a directory: {}",
                path.display()
            ),
            Purpose::Read => format!("{} is a directory; give a snapshot file", path.display()),
        }));
    }
    if !meta.is_file() {
        // Opening a FIFO waits for a writer, and a device may never end: refuse before.
        return Err(Error::InvalidInput(format!(
            "{} is a {}, not a regular file; give a snapshot file (copy the snapshot to a file first)",
            path.display(),
            special_kind(&meta.file_type())
        )));
    }
    Ok(meta.len())
}

/// What a file that is neither a regular file nor a directory is, for messages.
fn special_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "FIFO (named pipe)"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// A local snapshot file as a raw snapshot for `u.purpose`: [`check_file`], then
/// [`open_checked`].
pub fn open_local(path: &Path, u: &Unpack) -> Result<Raw> {
    let size = check_file(path, &u.purpose)?;
    open_checked(path, size, u)
}

/// [`open_local`] of a file that [`check_file`] found to hold `file_size` bytes. A raw file is
/// used where it is (its trailer is left to its reader); a compressed one is decompressed into
/// `u.into`.
pub fn open_checked(path: &Path, file_size: u64, u: &Unpack) -> Result<Raw> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if is_compressed(name) {
        return decompress(path, file_size, u);
    }
    u.check_room(path, file_size, false)?;
    Ok(Raw {
        raw: path.to_path_buf(),
        raw_size: file_size,
        file_size,
        compressed: false,
        checked: Checked::No,
        _temp: None,
    })
}

/// The decompressed size of a compressed snapshot, read without writing anything: verified for
/// a restore, which refuses a bad one before the space check.
fn measure(path: &Path, purpose: &Purpose) -> Result<u64> {
    match purpose {
        Purpose::Restore { .. } => verify_file(path),
        Purpose::Read => with_decompressed(path, |raw| {
            std::io::copy(raw.reader, &mut std::io::sink()).map_err(|e| {
                Error::Integrity(format!("{}: cannot decompress: {e}", path.display()))
            })
        }),
    }
}

/// The one decompressor: `src` (`.zip` of one entry with a plain name, or `.zst`) into
/// `u.into` under the entry's name, through a `.part` file, while its trailer is hashed. A
/// `.zst` records no raw size, so a first pass measures it for the space check.
fn decompress(src: &Path, file_size: u64, u: &Unpack) -> Result<Raw> {
    let restoring = matches!(u.purpose, Purpose::Restore { .. });
    let bad = |m: String| Error::Integrity(format!("{}: {m}", src.display()));
    let started = Instant::now();
    // `with_decompressed` has checked that the entry's name is a plain file name.
    let (dest, part, raw_size, checked) = with_decompressed(src, |raw| {
        let size = match raw.size {
            Some(size) => size,
            None => measure(src, &u.purpose)?,
        };
        u.check_room(src, size, true)?;
        let dest = u.into.join(&raw.name);
        let part = u.into.join(format!("{}{PART_SUFFIX}", raw.name));
        let _ = std::fs::remove_file(&part);
        let part_guard = RemoveOnDrop::new(part.clone());
        if restoring {
            tracing::info!(
                "Restore: decompressing {} into {}",
                src.display(),
                dest.display()
            );
        }
        let mut out = std::io::BufWriter::with_capacity(1 << 20, create_private_file(&part)?);
        let task = u.progress_task(&format!("decompress {}", raw.name), raw.size);
        let mut reader = progress::ReadProgress::new(raw.reader, &task);
        let hasher = TrailerHasher::copy(&mut reader, &mut out, src, &part)?;
        drop(task);
        let (raw_size, checked) = if restoring {
            let size = hasher.finish().map_err(|e| bad(e.to_string()))?;
            (size, Checked::Verified)
        } else {
            let (total, computed, tail) = hasher.into_parts();
            (
                total,
                Checked::Hashed {
                    total,
                    computed,
                    tail,
                },
            )
        };
        let out = out
            .into_inner()
            .map_err(|e| Error::io("write", &part, e.into_error()))?;
        out.sync_all().map_err(|e| Error::io("fsync", &part, e))?;
        part_guard.disarm();
        Ok((dest, part, raw_size, checked))
    })?;
    let part_guard = RemoveOnDrop::new(part.clone());
    if restoring {
        tracing::info!(
            "Restore: decompressed and verified {} MiB in {:.1?}",
            mib(raw_size),
            started.elapsed()
        );
    }
    let mut raw = Raw {
        raw: part.clone(),
        raw_size,
        file_size,
        compressed: true,
        checked,
        _temp: None,
    };
    if dest.exists() {
        // A raw copy of the same name already there is left alone; ours stays a temporary file.
        raw._temp = Some(part_guard);
        return Ok(raw);
    }
    publish(&part, &dest)?;
    part_guard.disarm();
    raw.raw = dest.clone();
    raw._temp = Some(RemoveOnDrop::new(dest));
    Ok(raw)
}

#[cfg(test)]
mod tests;
