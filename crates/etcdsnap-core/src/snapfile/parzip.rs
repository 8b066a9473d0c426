//! A zip archive of one deflated entry, deflated by several threads at once.
//!
//! Why our own writer: the `zip` crate deflates on the writing thread only. On data that
//! compresses poorly deflate runs at ~70 MB/s per core, slower than etcd sends its snapshot
//! (~125 MB/s here), so a zip save took about twice as long as a raw one while a core sat idle
//! (BENCHMARKS.md). The crate has no way to write an entry from deflate data made elsewhere, so
//! the few records of the archive are written here.
//!
//! How: the entry is cut into [`BLOCK`]-byte blocks; worker threads deflate each block on its
//! own and end it with a sync flush (a byte-aligned, non-final end), so the blocks concatenate
//! into one valid deflate stream; an empty final block closes it. Blocks are written in order
//! as they come back, at most two per worker in flight, so memory stays a few MiB. Each block
//! starts without the previous block's 32 KiB window, which costs well under 1% of the size on
//! 1 MiB blocks.
//!
//! The layout is the one the `zip` crate wrote for us before, so every reader keeps working
//! (unzip, Go's archive/zip and so K3s, the `zip` crate): a local header with the data
//! descriptor flag and zip64 sizes, the deflate data, a zip64 data descriptor, the central
//! directory with zip64 sizes, and the zip64 end records. Bytes are only appended.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress};

/// Uncompressed bytes per block.
pub const BLOCK: usize = 1 << 20;
/// Worker threads at most.
pub const MAX_WORKERS: usize = 4;
/// Niceness added to compression threads: etcd's stream goes first (see
/// [`crate::fsutil::lower_thread_priority`]).
pub const COMPRESSION_NICE: i32 = 10;

const ZIP64_VERSION: u16 = 45;
/// Made by Unix (high byte 3), so the external attributes carry Unix permissions.
const MADE_BY_UNIX: u16 = (3 << 8) | ZIP64_VERSION;
const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
const METHOD_DEFLATE: u16 = 8;
/// A final, empty block with fixed Huffman codes, byte-aligned after a sync flush.
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];

type Job = (u64, Vec<u8>);
type Done = (u64, io::Result<Vec<u8>>);

/// What the entry is called and stamped with.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    /// Unix permission bits of the entry.
    pub mode: u32,
    /// MS-DOS time and date.
    pub dos_time: u16,
    pub dos_date: u16,
    /// Deflate level, 1 to 9.
    pub level: u32,
}

/// Writes a one-entry zip to `W`; see the module docs. Call [`ParallelZip::finish`] to complete
/// the archive: an archive dropped unfinished is incomplete.
pub struct ParallelZip<W: Write> {
    out: W,
    entry: Entry,
    crc: crc32fast::Hasher,
    raw: u64,
    deflated: u64,
    /// Bytes of the local header, where the deflate data starts.
    header: u64,
    pending: Vec<u8>,
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<Done>,
    waiting: BTreeMap<u64, Vec<u8>>,
    next_in: u64,
    next_out: u64,
    in_flight_max: u64,
    workers: Vec<JoinHandle<()>>,
}

/// Bytes of a block's start deflated first to judge whether the block compresses at all.
const PROBE: usize = 64 * 1024;
/// A probe that deflates to more than this share (in %) of its size stores its block instead.
const STORE_ABOVE_PERCENT: usize = 97;
/// Bytes of one stored deflate block at most.
const STORED_MAX: usize = 65535;

/// `input` as stored (uncompressed) deflate blocks, none of them final. Each starts on a byte
/// boundary (after the previous block's sync flush) with the 3 header bits in one byte.
fn stored_blocks(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / STORED_MAX * 5 + 5);
    for piece in input.chunks(STORED_MAX) {
        let len = piece.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// Deflates one block, ending on a byte boundary; a block whose start does not compress (random
/// or encrypted values) is stored instead, as `zip` does, which costs neither size nor time.
fn deflate_block(c: &mut Compress, input: &[u8]) -> io::Result<Vec<u8>> {
    if input.len() >= 2 * PROBE {
        let probe = deflate_sync(c, &input[..PROBE])?;
        if probe.len() * 100 > PROBE * STORE_ABOVE_PERCENT {
            return Ok(stored_blocks(input));
        }
    }
    let out = deflate_sync(c, input)?;
    if out.len() > input.len() + input.len() / STORED_MAX * 5 + 5 {
        return Ok(stored_blocks(input));
    }
    Ok(out)
}

fn deflate_sync(c: &mut Compress, input: &[u8]) -> io::Result<Vec<u8>> {
    c.reset();
    let mut out = Vec::with_capacity(input.len() + input.len() / 16 + 1024);
    let mut used = 0usize;
    loop {
        if out.len() == out.capacity() {
            out.reserve(64 * 1024);
        }
        let before = c.total_in();
        c.compress_vec(&input[used..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        used += (c.total_in() - before) as usize;
        // The flush is complete once all input is taken and deflate left room unused.
        if used == input.len() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

fn worker(level: u32, jobs: Arc<Mutex<mpsc::Receiver<Job>>>, done: mpsc::Sender<Done>) {
    crate::fsutil::lower_thread_priority(COMPRESSION_NICE);
    let mut c = Compress::new(Compression::new(level), false);
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((index, block)) = job else { return };
        if done.send((index, deflate_block(&mut c, &block))).is_err() {
            return;
        }
    }
}

fn le16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn le32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn le64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

impl<W: Write> ParallelZip<W> {
    /// Writes the local header and starts `workers` threads (1 to [`MAX_WORKERS`]).
    pub fn new(mut out: W, entry: Entry, workers: usize) -> io::Result<ParallelZip<W>> {
        let name = entry.name.as_bytes();
        let name_len = u16::try_from(name.len())
            .map_err(|_| io::Error::other("zip entry name longer than 65535 bytes"))?;
        let mut h = Vec::with_capacity(30 + name.len() + 20);
        le32(&mut h, 0x0403_4b50);
        le16(&mut h, ZIP64_VERSION);
        le16(&mut h, FLAG_DATA_DESCRIPTOR);
        le16(&mut h, METHOD_DEFLATE);
        le16(&mut h, entry.dos_time);
        le16(&mut h, entry.dos_date);
        le32(&mut h, 0); // CRC-32: in the data descriptor
        le32(&mut h, u32::MAX); // sizes: in the zip64 data descriptor
        le32(&mut h, u32::MAX);
        le16(&mut h, name_len);
        le16(&mut h, 20);
        h.extend_from_slice(name);
        le16(&mut h, 0x0001); // zip64 extended information
        le16(&mut h, 16);
        le64(&mut h, 0);
        le64(&mut h, 0);
        out.write_all(&h)?;

        let n = workers.clamp(1, MAX_WORKERS);
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(n);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let (jobs, done, level) = (jobs_rx.clone(), done_tx.clone(), entry.level);
            let h = std::thread::Builder::new()
                .name(format!("deflate-{i}"))
                .spawn(move || worker(level, jobs, done))?;
            handles.push(h);
        }
        Ok(ParallelZip {
            out,
            entry,
            crc: crc32fast::Hasher::new(),
            raw: 0,
            deflated: 0,
            header: h.len() as u64,
            pending: Vec::with_capacity(BLOCK),
            jobs: Some(jobs_tx),
            done: done_rx,
            waiting: BTreeMap::new(),
            next_in: 0,
            next_out: 0,
            in_flight_max: 2 * n as u64,
            workers: handles,
        })
    }

    /// Writes the blocks that are back, in order; with `wait`, first waits for one.
    fn drain(&mut self, wait: bool) -> io::Result<()> {
        if wait {
            let (i, r) = self
                .done
                .recv()
                .map_err(|_| io::Error::other("deflate workers stopped"))?;
            self.waiting.insert(i, r?);
        }
        while let Ok((i, r)) = self.done.try_recv() {
            self.waiting.insert(i, r?);
        }
        while let Some(block) = self.waiting.remove(&self.next_out) {
            self.out.write_all(&block)?;
            self.deflated += block.len() as u64;
            self.next_out += 1;
        }
        Ok(())
    }

    fn submit(&mut self, block: Vec<u8>) -> io::Result<()> {
        while self.next_in - self.next_out >= self.in_flight_max {
            self.drain(true)?;
        }
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("zip already finished"))?;
        jobs.send((self.next_in, block))
            .map_err(|_| io::Error::other("deflate workers stopped"))?;
        self.next_in += 1;
        self.drain(false)
    }

    /// Ends the deflate stream, writes the data descriptor and the central directory, and
    /// returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            self.submit(last)?;
        }
        while self.next_out < self.next_in {
            self.drain(true)?;
        }
        self.jobs = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        self.out.write_all(&FINAL_EMPTY_BLOCK)?;
        self.deflated += FINAL_EMPTY_BLOCK.len() as u64;
        let crc = self.crc.clone().finalize();

        let mut t = Vec::new();
        le32(&mut t, 0x0807_4b50); // data descriptor, zip64 sizes
        le32(&mut t, crc);
        le64(&mut t, self.deflated);
        le64(&mut t, self.raw);
        let cd_offset = self.header + self.deflated + t.len() as u64;

        let name = self.entry.name.as_bytes();
        let mut cd = Vec::new();
        le32(&mut cd, 0x0201_4b50);
        le16(&mut cd, MADE_BY_UNIX);
        le16(&mut cd, ZIP64_VERSION);
        le16(&mut cd, FLAG_DATA_DESCRIPTOR);
        le16(&mut cd, METHOD_DEFLATE);
        le16(&mut cd, self.entry.dos_time);
        le16(&mut cd, self.entry.dos_date);
        le32(&mut cd, crc);
        le32(&mut cd, u32::MAX); // sizes in the zip64 extra field
        le32(&mut cd, u32::MAX);
        le16(&mut cd, name.len() as u16);
        le16(&mut cd, 20);
        le16(&mut cd, 0); // comment
        le16(&mut cd, 0); // disk
        le16(&mut cd, 0); // internal attributes
        le32(&mut cd, (0o100000 | (self.entry.mode & 0o7777)) << 16);
        le32(&mut cd, 0); // local header at offset 0
        cd.extend_from_slice(name);
        le16(&mut cd, 0x0001);
        le16(&mut cd, 16);
        le64(&mut cd, self.raw);
        le64(&mut cd, self.deflated);
        let cd_size = cd.len() as u64;
        let zip64_end = cd_offset + cd_size;
        t.extend_from_slice(&cd);

        le32(&mut t, 0x0606_4b50); // zip64 end of central directory record
        le64(&mut t, 44);
        le16(&mut t, MADE_BY_UNIX);
        le16(&mut t, ZIP64_VERSION);
        le32(&mut t, 0);
        le32(&mut t, 0);
        le64(&mut t, 1);
        le64(&mut t, 1);
        le64(&mut t, cd_size);
        le64(&mut t, cd_offset);
        le32(&mut t, 0x0706_4b50); // its locator
        le32(&mut t, 0);
        le64(&mut t, zip64_end);
        le32(&mut t, 1);
        le32(&mut t, 0x0605_4b50); // end of central directory
        le16(&mut t, 0);
        le16(&mut t, 0);
        le16(&mut t, 1);
        le16(&mut t, 1);
        le32(&mut t, u32::try_from(cd_size).unwrap_or(u32::MAX));
        le32(&mut t, u32::try_from(cd_offset).unwrap_or(u32::MAX));
        le16(&mut t, 0);
        self.out.write_all(&t)?;
        self.out.flush()?;
        let ParallelZip { out, .. } = self;
        Ok(out)
    }
}

impl<W: Write> Write for ParallelZip<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        self.crc.update(data);
        self.raw += n as u64;
        while !data.is_empty() {
            let take = (BLOCK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == BLOCK {
                let block = std::mem::replace(&mut self.pending, Vec::with_capacity(BLOCK));
                self.submit(block)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entry() -> Entry {
        Entry {
            name: "on-demand-n1-1700000000".into(),
            mode: 0o600,
            dos_time: 0x6000,
            dos_date: 0x5761,
            level: 1,
        }
    }

    fn zip_of(data: &[u8], workers: usize, chunk: usize) -> Vec<u8> {
        let mut z = ParallelZip::new(Vec::new(), entry(), workers).unwrap();
        for c in data.chunks(chunk.max(1)) {
            z.write_all(c).unwrap();
        }
        z.finish().unwrap()
    }

    fn read_back(zip: &[u8]) -> (String, Vec<u8>, Option<u32>) {
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        assert_eq!(a.len(), 1);
        let mut e = a.by_index(0).unwrap();
        let name = e.name().unwrap().to_string();
        let mode = e.unix_mode();
        let mut out = Vec::new();
        e.read_to_end(&mut out).unwrap();
        (name, out, mode)
    }

    fn mixed(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if (i / 5000) % 2 == 0 {
                    (x >> 24) as u8
                } else {
                    (i % 7) as u8
                }
            })
            .collect()
    }

    #[test]
    fn round_trips_through_the_zip_crate_at_every_size() {
        for len in [0, 1, 100, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345] {
            let data = mixed(len);
            for workers in [1, 3] {
                let z = zip_of(&data, workers, 32 * 1024 + 7);
                let (name, back, mode) = read_back(&z);
                assert_eq!(name, "on-demand-n1-1700000000");
                assert_eq!(mode, Some(0o100600));
                assert!(back == data, "len {len}, {workers} workers: bytes differ");
            }
        }
    }

    #[test]
    fn incompressible_blocks_are_stored_not_expanded() {
        // Random bytes, then compressible bytes, then random again: every block reads back.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut data: Vec<u8> = (0..2 * BLOCK + 100)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        data.extend((0..BLOCK).map(|i| (i % 13) as u8));
        data.extend_from_within(..BLOCK / 2);
        let z = zip_of(&data, 2, 40_000);
        let (_, back, _) = read_back(&z);
        assert!(back == data, "bytes differ");
        let random = 2 * BLOCK + 100 + BLOCK / 2;
        // Stored: 5 bytes per 64 KiB of the random part; the patterned MiB deflates to ~12 KiB
        // (deflate-1 uses fixed codes); the archive's records are ~200 bytes.
        assert!(
            z.len() < random + random / 1000 + 16 * 1024,
            "{} bytes",
            z.len()
        );
        assert_eq!(stored_blocks(&[]).len(), 0);
        let one = stored_blocks(&[7u8; 10]);
        assert_eq!(&one[..5], &[0, 10, 0, 0xf5, 0xff]);
    }

    #[test]
    fn the_deflate_stream_is_one_stream_and_compresses() {
        let data: Vec<u8> = (0..5 * BLOCK).map(|i| (i % 251) as u8).collect();
        let z = zip_of(&data, 2, BLOCK / 3);
        assert!(z.len() < data.len() / 20, "{} bytes", z.len());
        // The entry's raw deflate data inflates on its own to the input.
        let header = 30 + entry().name.len() + 20;
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(&z)).unwrap();
        let size = a.by_index_raw(0).unwrap().compressed_size() as usize;
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&z[header..header + size])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == data);
    }
}
