//! Integrity of etcd snapshot files. etcd ends its snapshot stream with the SHA-256 of the
//! database bytes; a snapshot is intact when its last 32 bytes equal the SHA-256 of everything
//! before them and its size is 32 more than a multiple of 512 (whole bbolt pages). A compressed
//! snapshot (`.zip` of one entry, or `.zst`) is checked on its decompressed bytes, as they
//! stream: [`with_decompressed`] is the one place that opens either format.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::naming::{CompressFormat, PART_SUFFIX, strip_compressed_suffix};
use crate::progress;
use crate::{Error, Result};

const TRAILER: usize = 32;

/// Hashes a stream whose last 32 bytes are the expected digest, without knowing where it ends:
/// the most recent 32 bytes are held back from the hash until more data arrives.
#[derive(Default)]
pub struct TrailerHasher {
    hasher: Sha256,
    tail: Vec<u8>,
    total: u64,
}

impl TrailerHasher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies `from` (a snapshot being decompressed) to `to`, hashing as it goes; `what`
    /// names the source and `dest` the file `to` writes, for errors.
    pub fn copy(
        from: &mut (impl Read + ?Sized),
        to: &mut impl std::io::Write,
        what: &Path,
        dest: &Path,
    ) -> Result<TrailerHasher> {
        let mut hasher = TrailerHasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = from.read(&mut buf).map_err(|e| {
                Error::Integrity(format!(
                    "{}: cannot decompress the snapshot: {e}",
                    what.display()
                ))
            })?;
            if n == 0 {
                return Ok(hasher);
            }
            hasher.update(&buf[..n]);
            to.write_all(&buf[..n])
                .map_err(|e| Error::io("write", dest, e))?;
        }
    }

    /// Feeds the next bytes of the stream.
    pub fn update(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        if data.len() >= TRAILER {
            self.hasher.update(&self.tail);
            let (body, tail) = data.split_at(data.len() - TRAILER);
            self.hasher.update(body);
            self.tail.clear();
            self.tail.extend_from_slice(tail);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > TRAILER {
                let spill = self.tail.len() - TRAILER;
                self.hasher.update(&self.tail[..spill]);
                self.tail.drain(..spill);
            }
        }
    }

    /// Total bytes seen, trailer included.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// What was seen: the total size, the SHA-256 of everything but the last 32 bytes, and those
    /// bytes (fewer when the stream was shorter), for callers that report rather than refuse.
    pub fn into_parts(self) -> (u64, [u8; 32], Vec<u8>) {
        (self.total, self.hasher.finalize().into(), self.tail)
    }

    /// Checks size and digest. Returns the size of the whole snapshot (trailer included).
    pub fn finish(self) -> Result<u64> {
        if self.total < (TRAILER as u64) || self.total % 512 != TRAILER as u64 {
            return Err(Error::Integrity(format!(
                "sha256 checksum not found [bytes: {}]: the snapshot is truncated or not an etcd snapshot",
                self.total
            )));
        }
        let digest = self.hasher.finalize();
        if digest.as_slice() != self.tail.as_slice() {
            return Err(Error::Integrity(format!(
                "snapshot checksum mismatch: the data hashes to {} but its trailer says {}; the snapshot is corrupt",
                hex::encode(digest),
                hex::encode(&self.tail)
            )));
        }
        Ok(self.total)
    }
}

fn hash_reader(mut r: impl Read, what: &Path) -> Result<u64> {
    let mut h = TrailerHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(|e| Error::io("read", what, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finish().map_err(|e| match e {
        Error::Integrity(m) => Error::Integrity(format!("{}: {m}", what.display())),
        other => other,
    })
}

/// Checks a snapshot file on disk: a raw snapshot must carry a matching SHA-256 trailer; a
/// compressed one (judged by the name with any `.part` suffix removed) must decompress to one
/// that does. Returns the size of the raw snapshot.
pub fn verify_file(path: &Path) -> Result<u64> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name.strip_suffix(PART_SUFFIX).unwrap_or(name);
    let what = format!("verify {name}");
    if CompressFormat::of_name(name).is_none() {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let task = progress::task(&what, file.metadata().ok().map(|m| m.len()));
        let reader = progress::ReadProgress::new(BufReader::with_capacity(1 << 20, file), &task);
        return hash_reader(reader, path);
    }
    with_decompressed(path, |raw| {
        let task = progress::task(&what, raw.size);
        hash_reader(progress::ReadProgress::new(raw.reader, &task), path)
    })
}

/// A compressed snapshot opened for reading its raw bytes.
pub struct RawEntry<'a> {
    /// The raw snapshot's file name: the zip entry's name, or the `.zst` file's name without
    /// the suffix. Not checked: callers that write it must validate it.
    pub name: String,
    /// The raw size, when the archive records it (zip); a zstd stream written while etcd sends
    /// does not know its size in advance.
    pub size: Option<u64>,
    pub reader: &'a mut dyn Read,
}

/// Opens the compressed snapshot at `path` (`.zip` or `.zst`, by its name without `.part`)
/// and hands its raw bytes to `f`. Decompression errors surface as read errors of the reader.
pub fn with_decompressed<T>(path: &Path, f: impl FnOnce(RawEntry<'_>) -> Result<T>) -> Result<T> {
    let bad = |m: String| Error::Integrity(format!("{}: {m}", path.display()));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let file_name = file_name.strip_suffix(PART_SUFFIX).unwrap_or(file_name);
    match CompressFormat::of_name(file_name) {
        Some(CompressFormat::Zip) => {
            let mut archive = open_zip(path)?;
            let mut entry = archive
                .by_index(0)
                .map_err(|e| bad(format!("cannot read the zip entry: {e}")))?;
            let name = entry
                .name()
                .map_err(|e| bad(format!("unreadable zip entry name: {e}")))?
                .to_string();
            check_entry_name(&name).map_err(bad)?;
            let size = Some(entry.size());
            f(RawEntry {
                name,
                size,
                reader: &mut entry,
            })
        }
        Some(CompressFormat::Zstd) => {
            let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
            let mut decoder = zstd::stream::read::Decoder::new(file)
                .map_err(|e| bad(format!("cannot start zstd decompression: {e}")))?;
            f(RawEntry {
                name: strip_compressed_suffix(file_name).to_string(),
                size: None,
                reader: &mut decoder,
            })
        }
        None => Err(Error::InvalidInput(format!(
            "{} is not a compressed snapshot (.zip or .zst)",
            path.display()
        ))),
    }
}

/// The one check of a zip entry's name, for every reader (status, verify, inspect, drill,
/// restore): a plain file name, never a path that could lead a tool that unpacks the archive
/// out of its directory (`../x`, `/etc/x`, `a/b`).
fn check_entry_name(name: &str) -> std::result::Result<(), String> {
    crate::naming::validate_plain_name(name).map_err(|_| {
        format!(
            "the compressed entry {} is not a plain file name (a directory part, `..` or an absolute path): a snapshot .zip holds one entry named like the snapshot; this archive was not written by etcdsnap or K3s and is refused",
            crate::naming::shown(name)
        )
    })
}

/// Opens a compressed snapshot, which must hold exactly one entry (`by_index(0)`).
pub fn open_zip(path: &Path) -> Result<zip::ZipArchive<BufReader<File>>> {
    let bad = |m: String| Error::Integrity(format!("{}: {m}", path.display()));
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    if archive.len() != 1 {
        return Err(bad(format!(
            "a compressed snapshot holds exactly one entry, this one holds {}",
            archive.len()
        )));
    }
    Ok(archive)
}

/// Appends the etcd trailer to `db`: test data and tools that build snapshots use this.
pub fn with_trailer(mut db: Vec<u8>) -> Vec<u8> {
    let digest = Sha256::digest(&db);
    db.extend_from_slice(&digest);
    db
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(pages: usize) -> Vec<u8> {
        let db: Vec<u8> = (0..pages * 4096).map(|i| (i * 7 % 251) as u8).collect();
        with_trailer(db)
    }

    #[test]
    fn accepts_intact_stream_in_any_chunking() {
        let data = snapshot(3);
        for chunk in [1, 5, 31, 32, 33, 4096, 32 * 1024, data.len()] {
            let mut h = TrailerHasher::new();
            for c in data.chunks(chunk) {
                h.update(c);
            }
            assert_eq!(h.finish().unwrap(), data.len() as u64, "chunk {chunk}");
        }
    }

    #[test]
    fn rejects_corruption_truncation_and_missing_trailer() {
        let mut data = snapshot(2);
        data[100] ^= 1;
        let mut h = TrailerHasher::new();
        h.update(&data);
        assert!(
            h.finish()
                .unwrap_err()
                .to_string()
                .contains("checksum mismatch")
        );

        let data = snapshot(2);
        let mut h = TrailerHasher::new();
        h.update(&data[..data.len() - 512]);
        assert!(h.finish().is_err());

        let mut h = TrailerHasher::new();
        h.update(&vec![0u8; 8192]);
        assert!(
            h.finish()
                .unwrap_err()
                .to_string()
                .contains("sha256 checksum not found")
        );
    }

    #[test]
    fn verifies_files_raw_and_zip() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let data = snapshot(4);
        let raw = dir.path().join("s-1");
        std::fs::write(&raw, &data).unwrap();
        assert_eq!(verify_file(&raw).unwrap(), data.len() as u64);

        let zpath = dir.path().join("s-1.zip");
        let mut z = zip::ZipWriter::new(File::create(&zpath).unwrap());
        z.start_file("s-1", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(&data).unwrap();
        z.finish().unwrap();
        assert_eq!(verify_file(&zpath).unwrap(), data.len() as u64);

        let mut bad = data.clone();
        bad[10] ^= 0xff;
        std::fs::write(&raw, &bad).unwrap();
        assert!(verify_file(&raw).is_err());
    }

    #[test]
    fn verifies_zstd_files_and_refuses_damaged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let data = snapshot(6);
        let zst = dir.path().join("s-1.zst");
        std::fs::write(&zst, zstd::encode_all(&data[..], 3).unwrap()).unwrap();
        assert_eq!(verify_file(&zst).unwrap(), data.len() as u64);
        // Named as it is while being written.
        let part = dir.path().join("s-1.zst.part");
        std::fs::copy(&zst, &part).unwrap();
        assert_eq!(verify_file(&part).unwrap(), data.len() as u64);
        let name = with_decompressed(&zst, |raw| Ok((raw.name, raw.size))).unwrap();
        assert_eq!(name, ("s-1".to_string(), None));

        // A valid zstd stream of a corrupt snapshot: the trailer catches it.
        let mut bad = data.clone();
        bad[77] ^= 1;
        std::fs::write(&zst, zstd::encode_all(&bad[..], 3).unwrap()).unwrap();
        let e = verify_file(&zst).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        // A truncated zstd stream, and bytes that are not zstd at all.
        let whole = zstd::encode_all(&data[..], 3).unwrap();
        std::fs::write(&zst, &whole[..whole.len() / 2]).unwrap();
        assert!(verify_file(&zst).is_err());
        std::fs::write(&zst, b"not zstd at all").unwrap();
        let e = verify_file(&zst).unwrap_err().to_string();
        assert!(e.contains("s-1.zst"), "{e}");
    }
}
