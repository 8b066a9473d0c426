//! Corrupt files: a table of targeted damage to a real etcd 3.5 snapshot, each of which
//! `verify` must name, and random byte flips under which no call may panic.

use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::build::{sample, temp_file};
use super::fixture;
use crate::bbolt::page::Page;
use crate::bbolt::{Db, NO_FREELIST};

/// Pages of interest in a snapshot, found with the reader itself.
struct Layout {
    ps: usize,
    data_len: usize,
    hwm: u64,
    root: u64,
    freelist: u64,
    /// The root page of bucket `key`, a branch, and its first child, a leaf.
    key_branch: u64,
    key_leaf: u64,
    /// An element of `key_leaf` whose main revision differs from both neighbours'.
    lonely: usize,
}

fn page(db: &Db, id: u64) -> Page {
    db.read_page(id).unwrap()
}

fn layout(bytes: &[u8]) -> Layout {
    let f = temp_file(bytes);
    let db = Db::open(f.path()).unwrap();
    let key_branch = db.bucket(b"key").unwrap().unwrap().root_page().unwrap();
    let mut p = page(&db, key_branch);
    assert!(p.is_branch(), "bucket key's root is a branch page");
    while p.is_branch() {
        let child = p.branch(0).unwrap().1;
        p = page(&db, child);
    }
    let key_leaf = p.place.disk_id();
    let main = |i: usize| p.leaf(i).unwrap().key[..8].to_vec();
    let lonely = (1..p.count() - 1)
        .find(|&i| main(i) != main(i - 1) && main(i) != main(i + 1))
        .expect("a leaf element with a revision of its own");
    Layout {
        ps: db.page_size() as usize,
        data_len: db.data_len() as usize,
        hwm: db.meta.pgid,
        root: db.meta.root,
        freelist: db.meta.freelist,
        key_branch,
        key_leaf,
        lonely,
    }
}

/// Opens and verifies `bytes`; the error message, or `None` when both succeed. Status and
/// the key space are computed too, only to show they return.
fn problem(bytes: &[u8]) -> Option<String> {
    let f = temp_file(bytes);
    let db = match Db::open(f.path()) {
        Ok(db) => db,
        Err(e) => return Some(e.to_string()),
    };
    let _ = db.status();
    let _ = db.keyspace_at(None);
    db.verify().err().map(|e| e.to_string())
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn damage_to_a_real_snapshot_is_named() {
    let fx = fixture::etcd35();
    let orig = &fx.full.bytes;
    let l = layout(orig);
    let ps = l.ps;
    let at = move |id: u64| id as usize * ps;
    let branch = at(l.key_branch);
    let leaf = at(l.key_leaf);
    let branch_elem = move |i: usize| branch + 16 + 16 * i;
    let leaf_elem = move |i: usize| leaf + 16 + 16 * i;
    let child0 = u64::from_le_bytes(
        orig[branch_elem(0) + 8..branch_elem(0) + 16]
            .try_into()
            .unwrap(),
    );
    let b = l.key_branch;
    let kl = l.key_leaf;
    let hwm = l.hwm;
    // etcd 3.4 and 3.5 open bbolt with NoFreelistSync: no freelist page, every unreachable
    // page is free. The freelist checks are exercised on hand-built files instead.
    assert_eq!(l.freelist, NO_FREELIST, "etcd persists no freelist");

    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit, Vec<String>)> = vec![
        (
            "truncated inside meta 0",
            Box::new(|v| v.truncate(50)),
            vec!["truncated".into()],
        ),
        (
            "truncated after meta 0",
            Box::new(|v| v.truncate(100)),
            vec!["truncated".into()],
        ),
        (
            "truncated inside meta 1",
            Box::new(move |v| v.truncate(l.ps + 100)),
            vec!["truncated".into()],
        ),
        (
            "truncated in the data",
            Box::new(move |v| v.truncate(3 * l.ps + 100)),
            vec!["truncated".into()],
        ),
        (
            "truncated halfway",
            Box::new(move |v| v.truncate((l.data_len / 2 / l.ps) * l.ps + 100)),
            vec!["truncated".into()],
        ),
        (
            "last page cut short",
            Box::new(move |v| v.truncate(l.data_len - l.ps + 100)),
            vec!["truncated".into()],
        ),
        (
            "meta 0 root flipped",
            Box::new(|v| v[16 + 16] ^= 0x04),
            vec!["meta page 0".into(), "checksum".into()],
        ),
        (
            "meta 1 txid flipped",
            Box::new(move |v| v[l.ps + 16 + 48] ^= 0x80),
            vec!["meta page 1".into(), "checksum".into()],
        ),
        (
            "meta 0 page header type",
            Box::new(|v| v[8] = 0x02),
            vec!["meta page 0".into(), "page header".into()],
        ),
        (
            "both metas flipped",
            Box::new(move |v| {
                v[16 + 40] ^= 0x01;
                v[l.ps + 16 + 40] ^= 0x01;
            }),
            vec!["no valid meta page".into()],
        ),
        (
            "branch page type",
            Box::new(move |v| v[branch + 8] = 0x20),
            vec![format!("page {b} "), "type".into(), "branch or leaf".into()],
        ),
        (
            "branch page header id",
            Box::new(move |v| v[branch] ^= 0x01),
            vec![format!("page {b}: its header says it is page {}", b ^ 1)],
        ),
        (
            "branch points past the high-water mark",
            Box::new(move |v| put_u64(v, branch_elem(1) + 8, hwm + 1000)),
            vec![
                format!("page {b} element 1 points to page {}", hwm + 1000),
                "high-water mark".into(),
                "dangling".into(),
            ],
        ),
        (
            "branch points to itself",
            Box::new(move |v| put_u64(v, branch_elem(1) + 8, b)),
            vec![
                format!("page {b} element 1 points to page {b}"),
                "cycle".into(),
            ],
        ),
        (
            "branch points to a page twice",
            Box::new(move |v| put_u64(v, branch_elem(1) + 8, child0)),
            vec![
                format!("page {b} element 1 points to page {child0}"),
                "referenced only once".into(),
            ],
        ),
        (
            "branch points to a meta page",
            Box::new(move |v| put_u64(v, branch_elem(2) + 8, 1)),
            vec![format!("page {b} element 2 points to page 1, a meta page")],
        ),
        (
            "branch keys out of order",
            Box::new(move |v| {
                let pos =
                    u32::from_le_bytes(v[branch_elem(1)..branch_elem(1) + 4].try_into().unwrap());
                let k = branch_elem(1) + pos as usize;
                v[k..k + 8].fill(0);
            }),
            vec![format!("page {b} element 1"), "out of order".into()],
        ),
        (
            "leaf key not a revision",
            Box::new(move |v| {
                let e = leaf_elem(l.lonely);
                let pos = u32::from_le_bytes(v[e + 4..e + 8].try_into().unwrap());
                v[e + pos as usize + 8] = b'x';
            }),
            vec![
                format!("page {kl} element {}", l.lonely),
                "not an etcd revision".into(),
            ],
        ),
        (
            "leaf element count",
            Box::new(move |v| v[leaf + 10..leaf + 12].copy_from_slice(&[0xFF, 0xFF])),
            // Elements past the real ones are decoded from key and value bytes until one
            // points outside the page.
            vec![format!("page {kl}"), "past the end of the page".into()],
        ),
        (
            "leaf key size",
            Box::new(move |v| put_u32(v, leaf_elem(0) + 8, 0xFFFF_FF00)),
            vec![
                format!("page {kl}: the key of element 0"),
                "past the end".into(),
            ],
        ),
        (
            "leaf page type",
            Box::new(move |v| v[leaf + 8] = 0x10),
            vec![format!("page {kl} "), "type freelist".into()],
        ),
        (
            "leaf first key below its branch key",
            Box::new(move |v| {
                let pos =
                    u32::from_le_bytes(v[leaf_elem(0) + 4..leaf_elem(0) + 8].try_into().unwrap());
                let k = leaf_elem(0) + pos as usize;
                v[k..k + 8].fill(0);
            }),
            vec![format!("page {kl} element 0"), "lower bound".into()],
        ),
        (
            "root bucket points to a meta page",
            Box::new(move |v| {
                // The root leaf's entries are the buckets: aim "key"'s root at page 1.
                let r = at(l.root);
                let count = u16::from_le_bytes(v[r + 10..r + 12].try_into().unwrap()) as usize;
                for i in 0..count {
                    let e = r + 16 + 16 * i;
                    let pos = u32::from_le_bytes(v[e + 4..e + 8].try_into().unwrap()) as usize;
                    let ks = u32::from_le_bytes(v[e + 8..e + 12].try_into().unwrap()) as usize;
                    if &v[e + pos..e + pos + ks] == b"key" {
                        put_u64(v, e + pos + ks, 1);
                    }
                }
            }),
            vec![
                format!("page {} element", l.root),
                "points to page 1, a meta page".into(),
            ],
        ),
    ];
    for (name, edit, want) in cases {
        let mut v = orig.clone();
        edit(&mut v);
        let got = problem(&v).unwrap_or_else(|| panic!("{name}: the damage went unnoticed"));
        for w in &want {
            assert!(
                got.contains(w.as_str()),
                "{name}: {got:?} should mention {w:?}"
            );
        }
    }
    // Dropping the trailer leaves a valid database.
    assert_eq!(problem(&orig[..orig.len() - 32]), None);
    assert_eq!(problem(orig), None);
}

/// Flips bytes at random (a fixed-seed xorshift), half of them in page headers and elements,
/// and runs every entry point: they must all return. Returns how many runs found a problem.
fn flip_fuzz(bytes: &[u8], ps: usize, iterations: usize, seed: u64) -> usize {
    let f = temp_file(bytes);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(f.path())
        .unwrap();
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut found = 0;
    for n in 0..iterations {
        let flips: Vec<(usize, u8)> = (0..1 + next() % 3)
            .map(|_| {
                let off = if next() % 2 == 0 {
                    (next() % bytes.len() as u64) as usize
                } else {
                    let pages = bytes.len() / ps;
                    ((next() % pages as u64) as usize) * ps + (next() % 256) as usize
                };
                (off.min(bytes.len() - 1), 1u8 << (next() % 8))
            })
            .collect();
        for &(off, bit) in &flips {
            file.write_all_at(&[bytes[off] ^ bit], off as u64).unwrap();
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let Ok(db) = Db::open(f.path()) else {
                return true;
            };
            let mut bad = db.verify().is_err();
            bad |= db.status().is_err();
            bad |= db.keyspace_at(None).is_err();
            let _ = db.compacted_revision();
            if let Ok(root) = db.bucket(b"meta")
                && let Some(b) = root
            {
                bad |= b.iter().any(|e| e.is_err());
            }
            bad
        }));
        match outcome {
            Ok(bad) => found += usize::from(bad),
            Err(_) => panic!("iteration {n} (seed {seed}) panicked with flips {flips:?}"),
        }
        // Restore in reverse, so a byte flipped twice gets its original value back.
        for &(off, _) in flips.iter().rev() {
            file.write_all_at(&bytes[off..off + 1], off as u64).unwrap();
        }
    }
    found
}

#[test]
fn random_byte_flips_never_panic() {
    let fx = fixture::etcd35();
    let small = &fx.small.bytes;
    let found = flip_fuzz(small, 4096, 3000, 0x9E37_79B9_7F4A_7C15);
    eprintln!("small etcd snapshot: {found} of 3000 damaged files noticed");
    // Many flips land in page padding or values and change nothing a check can see, but a
    // good share must be caught.
    assert!(
        found > 3000 / 8,
        "only {found} of 3000 damaged files were noticed"
    );

    let s = sample(1024);
    let found = flip_fuzz(&s.bytes, 1024, 2000, 0x2545_F491_4F6C_DD1D);
    eprintln!("hand-built file: {found} of 2000 damaged files noticed");
    assert!(
        found > 2000 / 8,
        "only {found} of 2000 damaged files were noticed"
    );

    let found = flip_fuzz(&fx.full.bytes, 4096, 150, 0xD1B5_4A32_D192_ED03);
    eprintln!("full etcd snapshot: {found} of 150 damaged files noticed");
}
