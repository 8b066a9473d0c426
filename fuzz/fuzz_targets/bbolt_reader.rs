//! The bbolt reader on a hostile file: `Db::open`, `verify`, `status`, every bucket walked,
//! `keyspace_at(None)`. Nothing may panic or allocate without bound (run with
//! `-rss_limit_mb=512`). A file that `verify` accepts is one the rest can read: `status` is Ok
//! and agrees with a walk of the buckets, every walk ends without an error, and every key found
//! by walking is found again by a lookup, with the same value.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use etcdsnap_core::bbolt::{Bucket, Db, Value};
use libfuzzer_sys::fuzz_target;

/// Nesting followed by the walk (etcd has none below the top level).
const MAX_NESTING: usize = 8;
/// Entries looked up again per walk, to keep runs fast.
const MAX_LOOKUPS: usize = 512;

fn input_path() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = etcdsnap_fuzz::scratch_dir("bbolt");
        let path = dir.path().join("snapshot.db");
        (dir, path)
    })
    .1
}

fn same_value(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::Bucket(x), Value::Bucket(y)) => {
            x.is_inline() == y.is_inline() && x.root_page() == y.root_page()
        }
        _ => false,
    }
}

/// Walks `bucket` and its nested buckets; returns its own entry count, or the first error.
/// With `checked`, every walked key is looked up again.
fn walk(bucket: &Bucket<'_>, depth: usize, checked: bool) -> Result<u64, String> {
    let mut count = 0u64;
    let mut prev: Option<Vec<u8>> = None;
    for entry in bucket.iter() {
        let (key, value) = entry.map_err(|e| e.to_string())?;
        if let Some(p) = &prev {
            assert!(
                key > *p,
                "the walk returned {key:?} after {p:?}: keys out of order"
            );
        }
        if checked && count < MAX_LOOKUPS as u64 {
            let found = bucket
                .get(&key)
                .unwrap_or_else(|e| panic!("lookup of walked key {key:?} fails: {e}"))
                .unwrap_or_else(|| panic!("walked key {key:?} is not found by a lookup"));
            assert!(same_value(&found, &value), "lookup of {key:?} differs");
        }
        if let Value::Bucket(nested) = &value
            && depth < MAX_NESTING
        {
            walk(nested, depth + 1, checked)?;
        }
        prev = Some(key);
        count += 1;
    }
    Ok(count)
}

fn check(db: &Db) {
    assert!(db.size() <= db.data_len(), "the database is past the data");
    assert_eq!(db.size() % u64::from(db.page_size()), 0);
    let verified = db.verify();
    let status = db.status();
    if verified.is_ok() {
        let status = status
            .as_ref()
            .unwrap_or_else(|e| panic!("verify passed but status fails: {e}"));
        assert_eq!(status.total_size, db.size());
    }
    // Every top-level bucket, walked.
    let mut entries = 0u64;
    let mut walk_error = None;
    for top in db.root().iter() {
        let (name, value) = match top {
            Ok(x) => x,
            Err(e) => {
                walk_error = Some(e.to_string());
                break;
            }
        };
        match value {
            Value::Bucket(b) => {
                let looked_up = db.bucket(&name);
                if verified.is_ok() {
                    let found = looked_up
                        .unwrap_or_else(|e| panic!("bucket {name:?} not found again: {e}"))
                        .unwrap_or_else(|| panic!("bucket {name:?} not found again"));
                    assert_eq!(found.root_page(), b.root_page());
                }
                match walk(&b, 1, verified.is_ok()) {
                    Ok(n) => entries += n,
                    Err(e) => {
                        walk_error = Some(e);
                        break;
                    }
                }
            }
            Value::Bytes(_) => {
                assert!(
                    verified.is_err(),
                    "verify passed with a plain value at the top"
                );
                assert!(
                    status.is_err(),
                    "status passed with a plain value at the top"
                );
            }
        }
    }
    if let Err(e) = &verified {
        assert!(!e.to_string().is_empty());
    } else {
        assert_eq!(walk_error, None, "verify passed but a walk fails");
        let status = status.as_ref().unwrap();
        assert_eq!(status.total_key, entries, "status counts other entries");
    }
    if let Ok(status) = &status
        && walk_error.is_none()
    {
        assert_eq!(status.total_key, entries, "status counts other entries");
    }
    if let Ok(live) = db.keyspace_at(None) {
        for (key, kv) in &live {
            assert_eq!(key, &kv.key);
        }
        if let Ok(status) = &status {
            assert!(live.len() as u64 <= status.total_key);
        }
    }
    let _ = db.compacted_revision();
}

fuzz_target!(|data: &[u8]| {
    let path = input_path();
    std::fs::write(path, data).unwrap();
    if let Ok(db) = Db::open(path) {
        check(&db);
    }
});
