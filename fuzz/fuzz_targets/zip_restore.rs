//! Restore's first step on a hostile file: the snapshot source's `open_local` for a restore
//! (then `verify`) on the input as `x.zip`, as `x.zst` and as a raw file `x`. It succeeds only when the (decompressed) bytes end with the SHA-256 of the rest
//! and are whole 512-byte pages plus that trailer; a success leaves exactly the raw snapshot in
//! the work dir, removed when dropped, and a failure leaves nothing (no `.part` file).

#![no_main]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use etcdsnap_core::source::{Purpose, Raw, Unpack, open_local};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

struct Dirs {
    _root: tempfile::TempDir,
    /// Where the input is written.
    src: PathBuf,
    /// Where a zip is decompressed.
    work: PathBuf,
    /// Where the restored data dir would go (for the space check).
    parent: PathBuf,
}

fn dirs() -> &'static Dirs {
    static DIRS: OnceLock<Dirs> = OnceLock::new();
    DIRS.get_or_init(|| {
        let root = etcdsnap_fuzz::scratch_dir("restore");
        let src = root.path().join("src");
        let work = root.path().join("work");
        std::fs::create_dir(&src).unwrap();
        std::fs::create_dir(&work).unwrap();
        Dirs {
            src,
            work,
            parent: root.path().to_path_buf(),
            _root: root,
        }
    })
}

/// What a restore does first: the snapshot raw, its trailer verified.
fn prepare(source: &Path, work: &Path, parent: &Path) -> etcdsnap_core::Result<Raw> {
    let unpack = Unpack::new(
        Purpose::Restore {
            data_parent: parent.to_path_buf(),
        },
        work,
    );
    let mut raw = open_local(source, &unpack)?;
    raw.verify()?;
    Ok(raw)
}

/// Whether `bytes` is an intact etcd snapshot: pages plus the SHA-256 of them.
fn intact(bytes: &[u8]) -> bool {
    let Some(body_len) = bytes.len().checked_sub(32) else {
        return false;
    };
    body_len % 512 == 0 && Sha256::digest(&bytes[..body_len]).as_slice() == &bytes[body_len..]
}

fn work_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// The single entry of the zip in `data`, read independently of the code under test.
fn only_entry(data: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(data)).ok()?;
    if archive.len() != 1 {
        return None;
    }
    let mut entry = archive.by_index(0).ok()?;
    let name = entry.name().ok()?.to_string();
    let mut out = Vec::new();
    entry.read_to_end(&mut out).ok()?;
    Some((name, out))
}

fn check_zip(d: &Dirs, data: &[u8]) {
    for p in work_entries(&d.work) {
        std::fs::remove_file(p).unwrap();
    }
    let source = d.src.join("x.zip");
    std::fs::write(&source, data).unwrap();
    match prepare(&source, &d.work, &d.parent) {
        Ok(prepared) => {
            assert!(prepared.verified());
            assert_eq!(
                work_entries(&d.work),
                std::slice::from_ref(&prepared.raw),
                "the work dir holds only the raw snapshot"
            );
            assert!(
                !prepared.raw.to_string_lossy().ends_with(".part"),
                "{:?}",
                prepared.raw
            );
            let raw = std::fs::read(&prepared.raw).unwrap();
            assert_eq!(raw.len() as u64, prepared.raw_size);
            assert!(
                intact(&raw),
                "a decompressed snapshot without a good trailer"
            );
            let (name, bytes) = only_entry(data).expect("an accepted zip has one readable entry");
            assert_eq!(prepared.raw, d.work.join(&name));
            assert_eq!(bytes, raw, "decompressed bytes differ from the entry");
            drop(prepared);
            assert!(
                work_entries(&d.work).is_empty(),
                "the decompressed copy outlives the Raw"
            );
        }
        Err(e) => {
            let left = work_entries(&d.work);
            assert!(left.is_empty(), "{e}: left behind {left:?}");
            // A zip whose one entry is an intact snapshot with a plain name is accepted.
            if let Some((name, bytes)) = only_entry(data) {
                let plain = etcdsnap_core::naming::validate_plain_name(&name).is_ok();
                assert!(
                    !(plain && intact(&bytes)),
                    "an intact snapshot {name:?} in a zip is refused: {e}"
                );
            }
        }
    }
}

/// `data` decompressed as zstd, read independently of the code under test (capped, so that a
/// tiny input claiming a huge frame cannot exhaust memory here).
fn zstd_bytes(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(data)
        .ok()?
        .take(64 << 20)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

fn check_zst(d: &Dirs, data: &[u8]) {
    let source = d.src.join("x.zst");
    std::fs::write(&source, data).unwrap();
    let result = prepare(&source, &d.work, &d.parent);
    let want = zstd_bytes(data).filter(|b| intact(b));
    match result {
        Ok(prepared) => {
            assert_eq!(prepared.raw, d.work.join("x"));
            let raw = std::fs::read(&prepared.raw).unwrap();
            assert_eq!(Some(&raw), want.as_ref(), "accepted zstd bytes differ");
            drop(prepared);
            assert!(
                work_entries(&d.work).is_empty(),
                "the copy outlives the Raw"
            );
        }
        Err(e) => {
            let left = work_entries(&d.work);
            assert!(left.is_empty(), "{e}: left behind {left:?}");
            assert!(want.is_none(), "an intact snapshot in zstd is refused: {e}");
        }
    }
}

fn check_raw(d: &Dirs, data: &[u8]) {
    let source = d.src.join("x");
    std::fs::write(&source, data).unwrap();
    let result = prepare(&source, &d.work, &d.parent);
    assert_eq!(
        result.is_ok(),
        intact(data),
        "raw {} bytes: {result:?}",
        data.len()
    );
    if let Ok(p) = result {
        assert_eq!(p.raw, source);
        assert_eq!(p.raw_size, data.len() as u64);
        assert!(p.verified());
    }
    assert!(work_entries(&d.work).is_empty(), "a raw file is not copied");
}

fuzz_target!(|data: &[u8]| {
    let d = dirs();
    check_zip(d, data);
    check_zst(d, data);
    check_raw(d, data);
});
