//! etcd's MVCC view of the database: bucket `key` maps revisions (8-byte big-endian main,
//! `'_'`, 8-byte big-endian sub, and a trailing `'t'` for a deletion) to `mvccpb.KeyValue`
//! protobufs. The key space at a revision is, for each user key, its newest entry at or below
//! that revision, unless that entry is a deletion.

use std::collections::BTreeMap;

use prost::Message;

use super::{BucketIter, Db, Value, show_key};
use crate::{Error, Result};

/// etcd's `mvccpb.KeyValue`, as stored in bucket `key`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// Revision of the key's creation (its first put after a deletion).
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    /// Revision of the entry's last change.
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    /// Number of changes since creation, 1 after the first put.
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    /// The lease the key is attached to, 0 for none.
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// A revision as encoded in the keys of bucket `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Revision {
    /// The transaction's revision, what etcd calls *the* revision.
    pub main: i64,
    /// The change's position within the transaction.
    pub sub: i64,
    /// A deletion (a tombstone): the user key stops existing at this revision.
    pub tombstone: bool,
}

impl Revision {
    /// The key of bucket `key` this revision is stored under.
    pub fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(18);
        k.extend_from_slice(&(self.main as u64).to_be_bytes());
        k.push(b'_');
        k.extend_from_slice(&(self.sub as u64).to_be_bytes());
        if self.tombstone {
            k.push(b't');
        }
        k
    }
}

/// Decodes a revision key; the error says what is wrong with it.
pub(crate) fn parse_revision(k: &[u8]) -> std::result::Result<Revision, String> {
    let tombstone = match k.len() {
        17 => false,
        18 if k[17] == b't' => true,
        18 => {
            return Err(format!(
                "its 18th byte is 0x{:02x}, where only 't' (a deletion) may stand",
                k[17]
            ));
        }
        n => return Err(format!("{n} bytes, where a revision has 17 or 18")),
    };
    if k[8] != b'_' {
        return Err(format!(
            "byte 8 is 0x{:02x}, where a revision has '_' between main and sub",
            k[8]
        ));
    }
    let half = |r: std::ops::Range<usize>| {
        let v = u64::from_be_bytes(k[r].try_into().unwrap_or_default());
        i64::try_from(v).map_err(|_| format!("revision part {v} overflows int64"))
    };
    Ok(Revision {
        main: half(0..8)?,
        sub: half(9..17)?,
        tombstone,
    })
}

/// The 17-byte revision encoding meta keeps compaction revisions in.
fn parse_compact_rev(name: &str, v: &[u8]) -> Result<i64> {
    match parse_revision(v) {
        Ok(r) if !r.tombstone => Ok(r.main),
        Ok(_) => Err(Error::Integrity(format!(
            "bucket meta: {name} has a deletion mark; it must be a 17-byte revision"
        ))),
        Err(why) => Err(Error::Integrity(format!(
            "bucket meta: {name} is not a 17-byte revision: {why}"
        ))),
    }
}

/// One entry of bucket `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MvccEntry {
    pub revision: Revision,
    /// For a deletion, only `key` is set.
    pub kv: KeyValue,
}

/// The entries of bucket `key` in revision order, read page by page.
pub struct MvccIter<'db> {
    inner: BucketIter<'db>,
}

impl Iterator for MvccIter<'_> {
    type Item = Result<MvccEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.next()?;
        Some(item.and_then(|(k, v)| {
            let revision = parse_revision(&k).map_err(|why| {
                Error::Integrity(format!(
                    "bucket key: key {} is not an etcd revision: {why}",
                    show_key(&k)
                ))
            })?;
            let Value::Bytes(v) = v else {
                return Err(Error::Integrity(format!(
                    "bucket key: revision {}_{} is a nested bucket, not a KeyValue",
                    revision.main, revision.sub
                )));
            };
            let kv = KeyValue::decode(v.as_slice()).map_err(|e| {
                Error::Integrity(format!(
                    "bucket key: the value of revision {}_{} is not an mvccpb.KeyValue: {e}",
                    revision.main, revision.sub
                ))
            })?;
            Ok(MvccEntry { revision, kv })
        }))
    }
}

impl Db {
    /// The entries of etcd's bucket `key`, oldest revision first. A file without that bucket
    /// is not an etcd database and is an error.
    pub fn mvcc(&self) -> Result<MvccIter<'_>> {
        let bucket = self.bucket(b"key")?.ok_or_else(|| {
            Error::Integrity("no bucket named key: this is not an etcd database".into())
        })?;
        Ok(MvccIter {
            inner: bucket.iter(),
        })
    }

    /// The revision below which history is gone: the greater of meta's `finishedCompactRev` and
    /// `scheduledCompactRev` (a server started from this file completes a scheduled
    /// compaction first). `None` when the database was never compacted.
    pub fn compacted_revision(&self) -> Result<Option<i64>> {
        let Some(meta) = self.bucket(b"meta")? else {
            return Ok(None);
        };
        let mut rev = None;
        for name in ["finishedCompactRev", "scheduledCompactRev"] {
            match meta.get(name.as_bytes())? {
                Some(Value::Bytes(v)) => {
                    let r = parse_compact_rev(name, &v)?;
                    rev = Some(rev.map_or(r, |x: i64| x.max(r)));
                }
                Some(Value::Bucket(_)) => {
                    return Err(Error::Integrity(format!(
                        "bucket meta: {name} is a nested bucket, not a revision"
                    )));
                }
                None => {}
            }
        }
        Ok(rev)
    }

    /// Checks a requested revision against the compacted one; returns the compacted revision.
    fn check_requested(&self, rev: Option<i64>) -> Result<Option<i64>> {
        let compacted = self.compacted_revision()?;
        if let Some(r) = rev {
            if r <= 0 {
                return Err(Error::InvalidInput(format!(
                    "revision {r}: revisions start at 1"
                )));
            }
            if let Some(c) = compacted
                && r < c
            {
                return Err(Error::InvalidInput(format!(
                    "revision {r} has been compacted: this database keeps history from revision {c} on"
                )));
            }
        }
        Ok(compacted)
    }

    /// The key space at revision `rev` (the latest when `None`): each user key's newest entry
    /// with main revision ≤ `rev`, unless that entry is a deletion. A revision below the
    /// compacted one, or above the newest, is an [`Error::InvalidInput`], as etcd answers.
    pub fn keyspace_at(&self, rev: Option<i64>) -> Result<BTreeMap<Vec<u8>, KeyValue>> {
        let compacted = self.check_requested(rev)?;
        let mut live = BTreeMap::new();
        let mut newest = compacted.unwrap_or(0);
        let mut stopped = false;
        for entry in self.mvcc()? {
            let MvccEntry { revision, kv } = entry?;
            if rev.is_some_and(|r| revision.main > r) {
                // Keys sort by revision: nothing later can be at or below `rev`.
                stopped = true;
                break;
            }
            newest = newest.max(revision.main);
            if revision.tombstone {
                live.remove(&kv.key);
            } else {
                live.insert(kv.key.clone(), kv);
            }
        }
        future_check(rev, stopped, newest)?;
        Ok(live)
    }

    /// Like [`Db::keyspace_at`], without the values: each live key's revisions, version, lease
    /// and the revision its entry is stored under (for [`Db::kv_at`]), for the keys `keep`
    /// accepts. Values are skipped while decoding, so memory grows with the keys only.
    pub fn heads_at(&self, rev: Option<i64>, mut keep: impl FnMut(&[u8]) -> bool) -> Result<Heads> {
        let compacted = self.check_requested(rev)?;
        let bucket = self.bucket(b"key")?.ok_or_else(|| {
            Error::Integrity("no bucket named key: this is not an etcd database".into())
        })?;
        let mut live = BTreeMap::new();
        let mut newest = compacted.unwrap_or(0);
        let mut latest = 0;
        let mut stopped = false;
        for item in bucket.iter() {
            let (k, v) = item?;
            let revision = parse_revision(&k).map_err(|why| {
                Error::Integrity(format!(
                    "bucket key: key {} is not an etcd revision: {why}",
                    show_key(&k)
                ))
            })?;
            if rev.is_some_and(|r| revision.main > r) {
                stopped = true;
                break;
            }
            newest = newest.max(revision.main);
            latest = revision.main;
            let Value::Bytes(v) = v else {
                return Err(Error::Integrity(format!(
                    "bucket key: revision {}_{} is a nested bucket, not a KeyValue",
                    revision.main, revision.sub
                )));
            };
            let head = KvHead::decode(v.as_slice()).map_err(|e| {
                Error::Integrity(format!(
                    "bucket key: the value of revision {}_{} is not an mvccpb.KeyValue: {e}",
                    revision.main, revision.sub
                ))
            })?;
            if !keep(&head.key) {
                continue;
            }
            if revision.tombstone {
                live.remove(&head.key);
            } else {
                live.insert(
                    head.key,
                    KeyHead {
                        create_revision: head.create_revision,
                        mod_revision: head.mod_revision,
                        version: head.version,
                        lease: head.lease,
                        revision,
                    },
                );
            }
        }
        future_check(rev, stopped, newest)?;
        Ok(Heads {
            revision: rev.unwrap_or(latest),
            compacted,
            keys: live,
        })
    }

    /// The entry stored under `revision` in bucket `key`.
    pub fn kv_at(&self, revision: Revision) -> Result<KeyValue> {
        let bucket = self.bucket(b"key")?.ok_or_else(|| {
            Error::Integrity("no bucket named key: this is not an etcd database".into())
        })?;
        let what = format!("revision {}_{}", revision.main, revision.sub);
        match bucket.get(&revision.key())? {
            Some(Value::Bytes(v)) => KeyValue::decode(v.as_slice()).map_err(|e| {
                Error::Integrity(format!(
                    "bucket key: the value of {what} is not an mvccpb.KeyValue: {e}"
                ))
            }),
            Some(Value::Bucket(_)) => Err(Error::Integrity(format!(
                "bucket key: {what} is a nested bucket, not a KeyValue"
            ))),
            None => Err(Error::Integrity(format!(
                "bucket key: {what} was listed but cannot be found again: the tree is inconsistent"
            ))),
        }
    }
}

/// A revision above the newest one stored is an error, as etcd answers it.
fn future_check(rev: Option<i64>, stopped: bool, newest: i64) -> Result<()> {
    if let Some(r) = rev
        && !stopped
        && r > newest
    {
        return Err(Error::InvalidInput(format!(
            "revision {r} is a future revision: the newest in this database is {newest}"
        )));
    }
    Ok(())
}

/// `mvccpb.KeyValue` without its value (field 5 is skipped while decoding, not copied).
#[derive(Clone, PartialEq, Eq, prost::Message)]
struct KvHead {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(int64, tag = "2")]
    create_revision: i64,
    #[prost(int64, tag = "3")]
    mod_revision: i64,
    #[prost(int64, tag = "4")]
    version: i64,
    #[prost(int64, tag = "6")]
    lease: i64,
}

/// A live key without its value, as [`Db::heads_at`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyHead {
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    /// Where the entry is stored: [`Db::kv_at`] reads its value.
    pub revision: Revision,
}

/// The key space at one revision, without values.
#[derive(Clone, Debug, Default)]
pub struct Heads {
    /// The revision asked for, or the newest stored one.
    pub revision: i64,
    /// The revision below which history is gone, if the database was compacted.
    pub compacted: Option<i64>,
    pub keys: BTreeMap<Vec<u8>, KeyHead>,
}
