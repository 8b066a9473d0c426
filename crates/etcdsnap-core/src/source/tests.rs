//! The snapshot source against the in-memory store and files in a temporary directory.

use std::io::Write;
use std::sync::Mutex;

use super::*;
use crate::testing::{MemStore, snapshot_bytes};

fn write_zip(path: &Path, entry: &str, data: &[u8], extra: bool) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    z.start_file(entry, zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(data).unwrap();
    if extra {
        z.start_file("second", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"x").unwrap();
    }
    z.finish().unwrap();
}

fn zip_bytes(entry: &str, data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("z.zip");
    write_zip(&p, entry, data, false);
    std::fs::read(p).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn restore(dir: &Path) -> Unpack {
    Unpack::new(
        Purpose::Restore {
            data_parent: dir.to_path_buf(),
        },
        dir,
    )
}

fn corrupt(mut data: Vec<u8>) -> Vec<u8> {
    data[5000] ^= 4;
    data
}

#[tokio::test]
async fn fetch_through_the_store_then_decompress_and_verify() {
    let store = MemStore::default();
    let data = snapshot_bytes(5);
    store.insert("s-n1-1", data.clone(), chrono::Utc::now());
    store.insert("z-n1-2.zip", zip_bytes("z-n1-2", &data), chrono::Utc::now());
    let dir = tempfile::tempdir().unwrap();

    let got = fetch(&store, "s-n1-1", dir.path()).await.unwrap();
    assert_eq!(got.path, dir.path().join("s-n1-1"));
    assert_eq!(got.location, "s3://memory/s-n1-1");
    assert_eq!(got.node, None);
    let raw = open_local(&got.path, &restore(dir.path())).unwrap();
    assert_eq!((raw.raw_size, raw.compressed), (data.len() as u64, false));
    assert_eq!(raw.checked, Checked::No, "a raw file is left to its reader");

    let got = fetch(&store, "z-n1-2.zip", dir.path()).await.unwrap();
    let raw = open_local(&got.path, &restore(dir.path())).unwrap();
    assert_eq!(raw.raw, dir.path().join("z-n1-2"));
    assert_eq!(std::fs::read(&raw.raw).unwrap(), data);
    assert!(raw.verified() && raw.compressed);
    drop(raw);
    assert_eq!(names(dir.path()), ["s-n1-1", "z-n1-2.zip"], "the copy goes");

    let err = fetch(&store, "nope", dir.path()).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

#[tokio::test]
async fn a_bad_trailer_is_refused_and_leaves_nothing() {
    let store = MemStore::default();
    let data = snapshot_bytes(5);
    store.insert("s-n1-1", corrupt(data.clone()), chrono::Utc::now());
    let bad_zip = zip_bytes("z-n1-2", &corrupt(data.clone()));
    store.insert("z-n1-2.zip", bad_zip.clone(), chrono::Utc::now());
    let dir = tempfile::tempdir().unwrap();
    for name in ["s-n1-1", "z-n1-2.zip"] {
        let err = fetch(&store, name, dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum mismatch"), "{name}: {err}");
    }
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));

    // A local zip: a restore refuses it; a reader gets the trailer as it is.
    let zip = dir.path().join("z-n1-2.zip");
    std::fs::write(&zip, &bad_zip).unwrap();
    let err = open_local(&zip, &restore(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_eq!(names(dir.path()), ["z-n1-2.zip"]);
    let raw = open_local(&zip, &Unpack::new(Purpose::Read, dir.path())).unwrap();
    let Checked::Hashed {
        total,
        computed,
        tail,
    } = &raw.checked
    else {
        panic!("{:?}", raw.checked)
    };
    assert_eq!(*total, data.len() as u64);
    assert_ne!(&computed[..], &tail[..]);
}

#[test]
fn no_space_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = snapshot_bytes(5);
    let raw = dir.path().join("s-n1-1");
    std::fs::write(&raw, &data).unwrap();
    let zip = dir.path().join("z-n1-2.zip");
    write_zip(&zip, "z-n1-2", &data, false);
    let full = |mut u: Unpack| {
        u.free_space = |_| Ok(0);
        u
    };
    let cases = [
        (
            &raw,
            full(restore(dir.path())),
            "restoring this snapshot needs",
        ),
        (
            &zip,
            full(restore(dir.path())),
            "decompressing and restoring this snapshot needs",
        ),
        (
            &zip,
            full(Unpack::new(Purpose::Read, dir.path())),
            "set TMPDIR to a directory with more space",
        ),
    ];
    for (path, u, want) in cases {
        let err = open_local(path, &u).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
        assert!(err.contains(" 0 MiB are free"), "{err}");
    }
    // A reader of a raw file makes no copy, so it needs no room.
    let u = full(Unpack::new(Purpose::Read, dir.path()));
    assert!(open_local(&raw, &u).is_ok());
    assert_eq!(names(dir.path()), ["s-n1-1", "z-n1-2.zip"]);
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>, Mutex<u64>);

impl progress::Sink for Recorder {
    fn begin(&self, what: &str, total: Option<u64>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("begin {what} {total:?}"));
    }
    fn advance(&self, n: u64) {
        *self.1.lock().unwrap() += n;
    }
    fn set_position(&self, n: u64) {
        *self.1.lock().unwrap() = n;
    }
    fn end(&self) {
        self.0.lock().unwrap().push("end".into());
    }
}

#[test]
fn progress_of_the_decompression_goes_to_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let data = snapshot_bytes(5);
    let zip = dir.path().join("z-n1-2.zip");
    write_zip(&zip, "z-n1-2", &data, false);
    for purpose in [
        Purpose::Read,
        Purpose::Restore {
            data_parent: dir.path().to_path_buf(),
        },
    ] {
        let rec = Arc::new(Recorder::default());
        let mut u = Unpack::new(purpose, dir.path());
        u.progress = Some(rec.clone());
        let raw = open_local(&zip, &u).unwrap();
        assert_eq!(raw.raw_size, data.len() as u64);
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                format!("begin decompress z-n1-2 Some({})", data.len()),
                "end".into()
            ]
        );
        assert_eq!(*rec.1.lock().unwrap(), data.len() as u64);
    }
}

#[test]
fn bad_files_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let data = snapshot_bytes(5);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "trunc",
            data[..data.len() - 700].to_vec(),
            "sha256 checksum not found",
        ),
        ("flip", corrupt(data.clone()), "checksum mismatch"),
        (
            "bare",
            data[..data.len() - 32].to_vec(),
            "sha256 checksum not found",
        ),
    ];
    for (name, bytes, want) in &cases {
        let p = work.join(name);
        std::fs::write(&p, bytes).unwrap();
        let mut raw = open_local(&p, &restore(work)).unwrap();
        let err = raw.verify().unwrap_err().to_string();
        assert!(err.contains(want), "{name}: {err}");
        let z = work.join(format!("{name}.zip"));
        write_zip(&z, name, bytes, false);
        std::fs::remove_file(&p).unwrap();
        let err = open_local(&z, &restore(work)).unwrap_err().to_string();
        assert!(err.contains(want), "{name}.zip: {err}");
    }
    let refused = |name: &str, entry: &str, extra: bool, want: &str| {
        let p = work.join(name);
        write_zip(&p, entry, &data, extra);
        for u in [restore(work), Unpack::new(Purpose::Read, work)] {
            let err = open_local(&p, &u).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
    };
    refused("two.zip", "two", true, "exactly one entry");
    refused("slip.zip", "../evil", false, "not a plain file name");
    let garbage = work.join("garbage.zip");
    std::fs::write(&garbage, b"PK\x03\x04 not really").unwrap();
    let err = open_local(&garbage, &restore(work))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a readable zip"), "{err}");
    let mut left = names(work);
    left.retain(|n| !n.ends_with(".zip"));
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn file_rules_in_k3s_words_for_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let u = restore(dir.path());
    assert_eq!(
        open_local(&missing, &u).unwrap_err().to_string(),
        format!("etcd: snapshot path does not exist: {}", missing.display())
    );
    assert_eq!(
        open_local(dir.path(), &u).unwrap_err().to_string(),
        format!(
            "etcd: snapshot path must be a file, not a directory: {}",
            dir.path().display()
        )
    );
    let read = Unpack::new(Purpose::Read, dir.path());
    let err = open_local(dir.path(), &read).unwrap_err().to_string();
    assert!(
        err.ends_with("is a directory; give a snapshot file"),
        "{err}"
    );
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for u in [&u, &read] {
        let err = open_local(&fifo, u).unwrap_err().to_string();
        assert!(
            err.contains("is a FIFO (named pipe), not a regular file"),
            "{err}"
        );
    }
}

#[test]
fn resolve_prefers_existing_paths_then_the_snapshot_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("snap-n1-1"), b"x").unwrap();
    let p = dir.path().join("snap-n1-1");
    assert!(
        matches!(resolve(p.to_str().unwrap(), Path::new("/nowhere"), None).unwrap(), Source::Path(x) if x == p)
    );
    assert!(matches!(resolve("snap-n1-1", dir.path(), None).unwrap(), Source::Path(x) if x == p));
    let err = resolve("nope", dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("not found") && err.contains("--dir"), "{err}");
    let err = resolve("/no/such/file", dir.path(), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
}
