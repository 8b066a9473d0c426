//! The reader against etcd's own tools, for etcd 3.4 and 3.5: `snapshot status` of a small
//! snapshot, a full one and a raw `member/snap/db`; the key space at the latest and older
//! revisions against what the live etcd answered; the compaction boundary.

use super::build::temp_file;
use super::fixture::{self, Fixture, Snap};
use crate::Error;
use crate::bbolt::{Db, Status};

fn oracle_status(s: &Snap) -> Status {
    let field = |name: &str| {
        s.status[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name} in {}", s.status))
    };
    Status {
        hash: u32::try_from(field("hash")).unwrap(),
        revision: i64::try_from(field("revision")).unwrap(),
        total_key: field("totalKey"),
        total_size: field("totalSize"),
    }
}

fn compare(fx: &Fixture) {
    let v = fx.version;
    for (name, s) in [("small", &fx.small), ("full", &fx.full), ("raw", &fx.raw)] {
        let f = temp_file(&s.bytes);
        let db = Db::open(f.path()).unwrap();
        db.verify()
            .unwrap_or_else(|e| panic!("etcd {v} {name}: verify: {e}"));
        assert_eq!(
            db.status().unwrap(),
            oracle_status(s),
            "etcd {v} {name}: status differs from etcd's"
        );
        assert_eq!(db.page_size(), 4096);
        eprintln!("etcd {v} {name}: {} bytes, {}", s.bytes.len(), s.status);
    }
    // A snapshot carries the trailer; the same bytes without it are the same database.
    let full = &fx.full.bytes;
    assert_eq!(
        full.len() % 512,
        32,
        "etcd {v}: a snapshot ends in the sha256"
    );
    let bare = temp_file(&full[..full.len() - 32]);
    assert_eq!(
        Db::open(bare.path()).unwrap().status().unwrap(),
        oracle_status(&fx.full)
    );
    // The raw file may be larger than its data: the size is the high-water mark's.
    assert!(fx.raw.bytes.len() as u64 >= oracle_status(&fx.raw).total_size);

    let small = Db::open(temp_file(&fx.small.bytes).path()).unwrap();
    assert_eq!(
        small.keyspace_at(None).unwrap(),
        fx.small_live,
        "etcd {v} small"
    );

    let f = temp_file(full);
    let db = Db::open(f.path()).unwrap();
    let latest = db.keyspace_at(None).unwrap();
    eprintln!(
        "etcd {v}: {} live keys, compacted at {}, key space compared at {:?}",
        latest.len(),
        fx.compacted,
        fx.live_at
            .iter()
            .map(|(r, k)| (*r, k.len()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        latest.len(),
        fx.live_latest.len(),
        "etcd {v}: live key count"
    );
    assert_eq!(latest, fx.live_latest, "etcd {v}: latest key space");
    assert_eq!(db.compacted_revision().unwrap(), Some(fx.compacted));
    for (rev, live) in &fx.live_at {
        assert_eq!(
            &db.keyspace_at(Some(*rev)).unwrap(),
            live,
            "etcd {v}: key space at revision {rev}"
        );
        // The same without values, each value read back by its revision.
        let heads = db.heads_at(Some(*rev), |_| true).unwrap();
        assert_eq!(heads.keys.len(), live.len(), "etcd {v}: heads at {rev}");
        for (k, h) in &heads.keys {
            assert_eq!(&db.kv_at(h.revision).unwrap(), &live[k], "etcd {v}: {k:?}");
        }
    }
    match db.keyspace_at(Some(fx.compacted - 1)) {
        Err(Error::InvalidInput(m)) => assert!(m.contains("compacted"), "{m}"),
        other => panic!(
            "etcd {v}: revision {} is compacted, got {:?}",
            fx.compacted - 1,
            other.map(|k| k.len())
        ),
    }

    // The fixture has what it claims: sub-revisions, deletions, a lease, overflow values.
    let entries: Vec<_> = db.mvcc().unwrap().map(|e| e.unwrap()).collect();
    assert!(entries.iter().any(|e| e.revision.sub >= 99), "etcd {v}");
    assert!(entries.iter().any(|e| e.revision.tombstone), "etcd {v}");
    assert!(
        entries.windows(2).all(|w| w[0].revision < w[1].revision),
        "etcd {v}: revisions ascend"
    );
    assert_eq!(
        entries.last().unwrap().revision.main,
        oracle_status(&fx.full).revision
    );
    let leased: Vec<_> = latest.values().filter(|kv| kv.lease != 0).collect();
    assert_eq!(leased.len(), 2, "etcd {v}");
    assert!(leased.iter().all(|kv| kv.lease == fx.lease_id));
    assert!(latest.values().any(|kv| kv.value.len() >= 200 * 1024));
    assert!(latest.contains_key(&b"/big/3"[..]) && !latest.contains_key(&b"/k/03/000"[..]));
}

#[test]
fn etcd35_status_and_keyspace_match_etcdutl_and_etcdctl() {
    compare(fixture::etcd35());
}

#[test]
fn etcd34_status_and_keyspace_match_etcdctl() {
    compare(fixture::etcd34());
}
