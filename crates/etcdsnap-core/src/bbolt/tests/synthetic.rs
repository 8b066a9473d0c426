//! Hand-built files: every page size, the trailer rule, meta choice and probing, overflow,
//! inline buckets and the MVCC view, each asserted against what the builder wrote.

use super::build::{self, sample, temp_file};
use crate::Error;
use crate::bbolt::{Db, Status, Value};

fn entries(db: &Db, bucket: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    db.bucket(bucket)
        .unwrap()
        .unwrap_or_else(|| panic!("no bucket {bucket:?}"))
        .iter()
        .map(|e| match e.unwrap() {
            (k, Value::Bytes(v)) => (k, v),
            (k, Value::Bucket(_)) => panic!("unexpected nested bucket {k:?}"),
        })
        .collect()
}

#[test]
fn reads_every_page_size_with_and_without_trailer() {
    for ps in [512usize, 1024, 4096, 16384, 65536] {
        let s = sample(ps);
        let mut with_trailer = s.bytes.clone();
        with_trailer.extend_from_slice(&[0xAB; 32]);
        for bytes in [&s.bytes, &with_trailer] {
            let f = temp_file(bytes);
            let db = Db::open(f.path()).unwrap();
            assert_eq!(db.page_size() as usize, ps);
            assert_eq!(db.data_len(), 11 * ps as u64, "page size {ps}");
            assert_eq!(db.txid(), 8, "meta 0 has the higher txid");
            db.verify().unwrap();
            assert_eq!(
                db.status().unwrap(),
                Status {
                    hash: s.hash,
                    revision: 4,
                    total_key: s.total_key,
                    total_size: s.pages * ps as u64,
                }
            );
            let names: Vec<Vec<u8>> = db.root().iter().map(|e| e.unwrap().0).collect();
            assert_eq!(names, [&b"alpha"[..], b"key", b"meta", b"zeta"]);
            let alpha = db.bucket(b"alpha").unwrap().unwrap();
            assert!(alpha.is_inline());
            assert_eq!(
                entries(&db, b"alpha"),
                [
                    (b"k1".to_vec(), b"v1".to_vec()),
                    (b"k2".to_vec(), b"v2".to_vec())
                ]
            );
            assert_eq!(
                db.bucket(b"key").unwrap().unwrap().root_page(),
                Some(s.key_branch)
            );
            assert_eq!(
                entries(&db, b"zeta"),
                [(b"big".to_vec(), s.big_value.clone())]
            );
            assert!(db.bucket(b"nope").unwrap().is_none());
            assert!(db.bucket(b"aaa").unwrap().is_none());
            assert!(db.bucket(b"zzz").unwrap().is_none());
        }
    }
}

#[test]
fn explicit_length_ignores_what_follows() {
    let s = sample(4096);
    let mut bytes = s.bytes.clone();
    bytes.extend_from_slice(&[0xFF; 1000]);
    let f = temp_file(&bytes);
    let db = Db::open_len(f.path(), s.bytes.len() as u64).unwrap();
    assert_eq!(db.data_len(), s.bytes.len() as u64);
    db.verify().unwrap();
    let err = Db::open_len(f.path(), bytes.len() as u64 + 1).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn newest_valid_meta_wins_and_meta0_damage_is_found_by_probing() {
    for ps in [1024usize, 4096, 16384, 65536] {
        let s = sample(ps);
        // Meta 1 newer than meta 0: it is the one used.
        let mut newer1 = s.bytes.clone();
        newer1[ps..2 * ps].copy_from_slice(&build::meta(1, ps, 3, 2, 11, 9));
        let db = Db::open(temp_file(&newer1).path()).unwrap();
        assert_eq!(db.txid(), 9);

        // Meta 0's magic destroyed: the page size comes from meta 1, found by probing.
        let mut bad0 = s.bytes.clone();
        bad0[16] ^= 0xFF;
        let f = temp_file(&bad0);
        let db = Db::open(f.path()).unwrap();
        assert_eq!(db.page_size() as usize, ps);
        assert_eq!(db.txid(), 7);
        assert_eq!(db.status().unwrap().hash, s.hash);
        let err = db.verify().unwrap_err().to_string();
        assert!(
            err.contains("meta page 0") && err.contains("magic"),
            "{err}"
        );

        // Both metas damaged: nothing to open.
        let mut bad01 = bad0.clone();
        bad01[ps + 16 + 40] ^= 0x01; // meta 1's pgid: the checksum no longer matches
        let err = Db::open(temp_file(&bad01).path()).unwrap_err().to_string();
        assert!(
            err.contains("no valid meta page: meta page 0: bad magic"),
            "{err}"
        );
    }
}

#[test]
fn mvcc_view_and_keyspace_at_revisions() {
    let s = sample(4096);
    let f = temp_file(&s.bytes);
    let db = Db::open(f.path()).unwrap();
    let revs: Vec<(i64, i64, bool)> = db
        .mvcc()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.revision.main, e.revision.sub, e.revision.tombstone)
        })
        .collect();
    assert_eq!(
        revs,
        [(2, 0, false), (2, 1, false), (3, 0, false), (4, 0, true)]
    );
    assert_eq!(db.compacted_revision().unwrap(), Some(2));
    let at = |r| {
        db.keyspace_at(r)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k).unwrap(),
                    String::from_utf8(v.value).unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(at(Some(2)), [pair("a", "1"), pair("b", "2")]);
    assert_eq!(at(Some(3)), [pair("a", "3"), pair("b", "2")]);
    assert_eq!(at(Some(4)), [pair("a", "3")]);
    assert_eq!(at(None), [pair("a", "3")]);
    let latest = db.keyspace_at(None).unwrap();
    let a = &latest[&b"a".to_vec()];
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 3, 2));
    match db.keyspace_at(Some(1)) {
        Err(Error::InvalidInput(m)) => assert!(m.contains("compacted"), "{m}"),
        other => panic!("revision 1 is compacted, got {other:?}"),
    }
    match db.keyspace_at(Some(5)) {
        Err(Error::InvalidInput(m)) => assert!(m.contains("future"), "{m}"),
        other => panic!("revision 5 is in the future, got {other:?}"),
    }
}

#[test]
fn synthetic_corruption_is_named() {
    let ps = 4096;
    let s = sample(ps);
    let check = |bytes: &[u8], want: &[&str]| {
        let f = temp_file(bytes);
        let err = Db::open(f.path())
            .and_then(|db| db.verify())
            .expect_err("corruption must be found")
            .to_string();
        for w in want {
            assert!(err.contains(w), "{err:?} should mention {w:?}");
        }
    };
    let at = |page: u64| page as usize * ps;
    // A free page that is also reachable.
    let mut b = s.bytes.clone();
    b[at(2)..at(3)].copy_from_slice(&build::freelist(2, &[10, s.key_leaves[1]], ps));
    check(&b, &["page 6", "freelist"]);
    // A page neither reachable nor free.
    let mut b = s.bytes.clone();
    b[at(2)..at(3)].copy_from_slice(&build::freelist(2, &[], ps));
    check(&b, &["page 10", "unreachable"]);
    // A freelist entry twice.
    let mut b = s.bytes.clone();
    b[at(2)..at(3)].copy_from_slice(&build::freelist(2, &[10, 10], ps));
    check(&b, &["page 10 twice"]);
    // A malformed revision in bucket key ('_' replaced).
    let mut b = s.bytes.clone();
    let leaf = build::leaf(
        5,
        &[build::kv(&build::rev(2, 0, false), b"x"), {
            let mut k = build::rev(2, 1, false);
            k[8] = b'x';
            build::kv(&k, b"y")
        }],
        ps,
    );
    b[at(5)..at(6)].copy_from_slice(&leaf);
    check(&b, &["page 5 element 1", "not an etcd revision", "'_'"]);
    // A branch key not matching its child's range.
    let mut b = s.bytes.clone();
    let r20 = build::rev(2, 0, false);
    let r21 = build::rev(2, 1, false);
    b[at(4)..at(5)].copy_from_slice(&build::branch(4, &[(&r20, 5), (&r21, 6)], ps));
    check(&b, &["page 5 element 1", "out of order"]);
    // The big value's overflow stretched past the high-water mark.
    let mut b = s.bytes.clone();
    b[at(7) + 12..at(7) + 16].copy_from_slice(&9u32.to_le_bytes());
    check(&b, &["page 7", "overflow", "high-water mark"]);
}

#[test]
fn heads_list_the_key_space_without_values() {
    let s = sample(4096);
    let f = temp_file(&s.bytes);
    let db = Db::open(f.path()).unwrap();
    for rev in [None, Some(2), Some(3), Some(4)] {
        let full = db.keyspace_at(rev).unwrap();
        let heads = db.heads_at(rev, |_| true).unwrap();
        assert_eq!(heads.revision, rev.unwrap_or(4));
        assert_eq!(heads.compacted, Some(2));
        assert_eq!(
            heads.keys.keys().collect::<Vec<_>>(),
            full.keys().collect::<Vec<_>>(),
            "rev {rev:?}"
        );
        for (k, h) in &heads.keys {
            let kv = &full[k];
            assert_eq!(
                (h.create_revision, h.mod_revision, h.version, h.lease),
                (kv.create_revision, kv.mod_revision, kv.version, kv.lease)
            );
            assert_eq!(&db.kv_at(h.revision).unwrap(), kv);
        }
    }
    let only_b = db.heads_at(Some(2), |k| k == b"b").unwrap();
    assert_eq!(only_b.keys.len(), 1);
    assert!(
        matches!(db.heads_at(Some(1), |_| true), Err(Error::InvalidInput(m)) if m.contains("compacted"))
    );
    assert!(
        matches!(db.heads_at(Some(9), |_| true), Err(Error::InvalidInput(m)) if m.contains("future"))
    );
}
