//! In-process fakes for fast tests of the engine and the API (never instead of the tests
//! against real etcd and real S3 servers): an etcd that streams a snapshot made of bytes, with
//! injectable failures and delays, and an in-memory remote store. Built for this crate's unit
//! tests and, with the `testing` feature, for the binary crate's tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::{RemoteCause, RemoteStage};
use crate::etcd::{
    ChunkStream, EtcdSource, Kv, Member, MemberStatus, Precondition, Range, WatchEvent, WatchKind,
    WatchStream,
};
use crate::naming::parse_snapshot_time;
use crate::snapfile::growing::GrowingFile;
use crate::snapfile::verify::with_trailer;
use crate::store::remote::{S3Identity, S3Target};
use crate::store::{
    ListDetail, RemoteStores, RetentionOrder, RetentionRule, SnapshotRecord, SnapshotStatus,
    SnapshotStore,
};
use crate::{Error, Result};

/// etcd's chunk size on the wire.
const CHUNK: usize = 32 * 1024;

/// A database of `pages` 4 KiB pages of varied bytes, with etcd's SHA-256 trailer.
pub fn snapshot_bytes(pages: usize) -> Vec<u8> {
    with_trailer((0..pages * 4096).map(|i| (i * 31 % 251) as u8).collect())
}

#[derive(Debug, Clone)]
struct FakeState {
    db: Vec<u8>,
    delay: Duration,
    fail_after: Option<usize>,
    down: bool,
    learner: bool,
    kv: BTreeMap<String, Kv>,
    revision: i64,
}

/// An etcd member made of bytes.
#[derive(Debug)]
pub struct FakeEtcd {
    state: Mutex<FakeState>,
    snapshots: AtomicUsize,
    changes: tokio::sync::broadcast::Sender<Vec<WatchEvent>>,
}

impl FakeEtcd {
    /// A member whose snapshot is [`snapshot_bytes`]`(pages)`.
    pub fn new(pages: usize) -> FakeEtcd {
        FakeEtcd {
            state: Mutex::new(FakeState {
                db: snapshot_bytes(pages),
                delay: Duration::ZERO,
                fail_after: None,
                down: false,
                learner: false,
                kv: BTreeMap::new(),
                revision: 1,
            }),
            snapshots: AtomicUsize::new(0),
            changes: tokio::sync::broadcast::channel(1024).0,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The bytes the next snapshot streams (trailer included, or not: it is up to the test).
    pub fn set_snapshot(&self, db: Vec<u8>) {
        self.with(|s| s.db = db);
    }

    /// A pause before each chunk.
    pub fn set_delay(&self, d: Duration) {
        self.with(|s| s.delay = d);
    }

    /// The stream breaks after `chunks` chunks.
    pub fn fail_after(&self, chunks: Option<usize>) {
        self.with(|s| s.fail_after = chunks);
    }

    /// Every call fails as if the member were unreachable.
    pub fn set_down(&self, down: bool) {
        self.with(|s| s.down = down);
    }

    pub fn set_learner(&self, learner: bool) {
        self.with(|s| s.learner = learner);
    }

    pub fn put(&self, key: &str, value: &[u8]) {
        let ev = self.with(|s| s.write(key, value.to_vec()));
        let _ = self.changes.send(vec![ev]);
    }

    /// Every key and value now.
    pub fn dump(&self) -> BTreeMap<String, Vec<u8>> {
        self.with(|s| {
            s.kv.iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect()
        })
    }

    /// Snapshot streams opened so far.
    pub fn snapshots_taken(&self) -> usize {
        self.snapshots.load(Ordering::SeqCst)
    }

    fn precondition_holds(s: &FakeState, key: &str, cond: Precondition) -> bool {
        let cur = s.kv.get(key);
        match cond {
            Precondition::Any => true,
            Precondition::Absent => cur.is_none(),
            Precondition::Exists => cur.is_some(),
            Precondition::ModRevision(r) => cur.is_some_and(|kv| kv.mod_revision == r),
        }
    }

    fn member(&self, s: &FakeState) -> Result<MemberStatus> {
        if s.down {
            return Err(Error::Etcd(
                "no etcd endpoint answered: fake://member: connection refused".into(),
            ));
        }
        Ok(MemberStatus {
            endpoint: "fake://member".into(),
            member_id: 0xfeed,
            cluster_id: 0xc1a5,
            version: "3.5.99".into(),
            db_size: s.db.len() as i64,
            is_learner: s.learner,
            raft_index: 1,
            leader: 0xfeed,
        })
    }
}

impl FakeState {
    fn write(&mut self, key: &str, value: Vec<u8>) -> WatchEvent {
        self.revision += 1;
        let prev = self.kv.get(key).cloned();
        let kv = Kv {
            key: key.to_string(),
            value,
            mod_revision: self.revision,
            create_revision: prev.as_ref().map_or(self.revision, |p| p.create_revision),
        };
        self.kv.insert(key.to_string(), kv.clone());
        WatchEvent {
            kind: WatchKind::Put,
            kv,
            prev,
        }
    }
}

impl EtcdSource for FakeEtcd {
    fn status(&self) -> BoxFuture<'_, Result<MemberStatus>> {
        let r = self.with(|s| self.member(s));
        async move { r }.boxed()
    }

    fn snapshot(&self) -> BoxFuture<'_, Result<(MemberStatus, ChunkStream)>> {
        let st = self.with(|s| s.clone());
        async move {
            let member = self.member(&st)?;
            if member.is_learner {
                return Err(Error::Etcd(
                    "Unable to take snapshot: not supported for learner".into(),
                ));
            }
            self.snapshots.fetch_add(1, Ordering::SeqCst);
            let chunks: Vec<Vec<u8>> = st.db.chunks(CHUNK).map(<[u8]>::to_vec).collect();
            let (delay, fail_after) = (st.delay, st.fail_after);
            let stream = futures::stream::unfold(0usize, move |i| {
                let next = chunks.get(i).cloned();
                async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if fail_after == Some(i) {
                        return Some((
                            Err(Error::Etcd(
                                "snapshot stream from fake://member broke".into(),
                            )),
                            usize::MAX,
                        ));
                    }
                    next.map(|c| (Ok(c), i + 1))
                }
            });
            Ok((member, Box::pin(stream) as ChunkStream))
        }
        .boxed()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        let r = self.with(|s| {
            self.member(s)?;
            Ok(s.kv.get(key).map(|kv| kv.value.clone()))
        });
        async move { r }.boxed()
    }

    fn get_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<crate::etcd::KeyValues>> {
        let r = self.with(|s| {
            self.member(s)?;
            Ok(s.kv
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect())
        });
        async move { r }.boxed()
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        let r = self.with(|s| {
            self.member(s)?;
            Ok(s.write(key, value))
        });
        let r = r.map(|ev| {
            let _ = self.changes.send(vec![ev]);
        });
        async move { r }.boxed()
    }

    fn members(&self) -> BoxFuture<'_, Result<Vec<Member>>> {
        let r = self.with(|s| {
            let m = self.member(s)?;
            Ok(vec![Member {
                id: m.member_id,
                name: "n1-fake".into(),
                peer_urls: vec!["https://127.0.0.1:2380".into()],
                client_urls: vec![m.endpoint],
                is_learner: m.is_learner,
            }])
        });
        async move { r }.boxed()
    }

    fn range<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Range>> {
        let r = self.with(|s| {
            self.member(s)?;
            let mut kvs: Vec<Kv> =
                s.kv.range(prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .filter(|(k, _)| start_after.is_none_or(|a| k.as_str() > a))
                    .map(|(_, v)| v.clone())
                    .collect();
            let more = limit > 0 && kvs.len() as i64 > limit;
            if limit > 0 {
                kvs.truncate(limit as usize);
            }
            Ok(Range {
                kvs,
                more,
                revision: s.revision,
            })
        });
        async move { r }.boxed()
    }

    fn get_kv<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Kv>>> {
        let r = self.with(|s| {
            self.member(s)?;
            Ok(s.kv.get(key).cloned())
        });
        async move { r }.boxed()
    }

    fn put_if<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        cond: Precondition,
        _lease: Option<i64>,
    ) -> BoxFuture<'a, Result<Option<i64>>> {
        let r = self.with(|s| {
            self.member(s)?;
            if !Self::precondition_holds(s, key, cond) {
                return Ok(None);
            }
            Ok(Some(s.write(key, value)))
        });
        let r = r.map(|ev| {
            ev.map(|ev| {
                let rev = ev.kv.mod_revision;
                let _ = self.changes.send(vec![ev]);
                rev
            })
        });
        async move { r }.boxed()
    }

    fn delete_if<'a>(
        &'a self,
        key: &'a str,
        cond: Precondition,
    ) -> BoxFuture<'a, Result<Option<i64>>> {
        let r = self.with(|s| {
            self.member(s)?;
            let cond = if matches!(cond, Precondition::Any | Precondition::Absent) {
                Precondition::Exists
            } else {
                cond
            };
            if !Self::precondition_holds(s, key, cond) {
                return Ok(None);
            }
            s.revision += 1;
            let prev = s.kv.remove(key);
            Ok(Some((
                s.revision,
                WatchEvent {
                    kind: WatchKind::Delete,
                    kv: Kv {
                        key: key.to_string(),
                        value: Vec::new(),
                        mod_revision: s.revision,
                        create_revision: 0,
                    },
                    prev,
                },
            )))
        });
        let r = r.map(|x| {
            x.map(|(rev, ev)| {
                let _ = self.changes.send(vec![ev]);
                rev
            })
        });
        async move { r }.boxed()
    }

    fn grant_lease(&self, _ttl: i64) -> BoxFuture<'_, Result<i64>> {
        async move { Ok(7) }.boxed()
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        _from_revision: i64,
    ) -> BoxFuture<'a, Result<WatchStream>> {
        let rx = self.changes.subscribe();
        let prefix = prefix.to_string();
        async move {
            let stream = futures::stream::unfold(rx, move |mut rx| {
                let prefix = prefix.clone();
                async move {
                    loop {
                        match rx.recv().await {
                            Ok(batch) => {
                                let mine: Vec<WatchEvent> = batch
                                    .into_iter()
                                    .filter(|e| e.kv.key.starts_with(&prefix))
                                    .collect();
                                if !mine.is_empty() {
                                    return Some((Ok(mine), rx));
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(_) => return None,
                        }
                    }
                }
            });
            Ok(Box::pin(stream) as WatchStream)
        }
        .boxed()
    }
}

/// Objects by name: contents and when they were written.
type Objects = BTreeMap<String, (Vec<u8>, chrono::DateTime<Utc>)>;

/// Makes the error a failed connection returns, from the bucket name.
pub type ConnectError = fn(String) -> Error;

/// A remote store in memory, with failures to inject.
#[derive(Debug, Default)]
pub struct MemStore {
    objects: Mutex<Objects>,
    /// Uploads fail (after reading the whole file) while set.
    pub fail_put: AtomicBool,
    /// Listing fails while set.
    pub fail_list: AtomicBool,
}

impl MemStore {
    pub fn names(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    pub fn object(&self, name: &str) -> Option<Vec<u8>> {
        self.objects
            .lock()
            .unwrap()
            .get(name)
            .map(|(b, _)| b.clone())
    }

    /// Stores an object as if uploaded at `modified`.
    pub fn insert(&self, name: &str, data: Vec<u8>, modified: chrono::DateTime<Utc>) {
        self.objects
            .lock()
            .unwrap()
            .insert(name.to_string(), (data, modified));
    }

    fn record(&self, name: &str, size: u64, modified: chrono::DateTime<Utc>) -> SnapshotRecord {
        SnapshotRecord {
            name: name.to_string(),
            key: name.to_string(),
            location: SnapshotStore::location(self, name),
            node_name: "s3".into(),
            node_source: None,
            created_at: parse_snapshot_time(name).unwrap_or(modified),
            modified,
            size,
            status: SnapshotStatus::Successful,
            message: None,
            compressed: crate::naming::is_compressed(name),
            metadata: None,
            token_hash: None,
            s3: None,
        }
    }

    async fn read_all(mut source: GrowingFile) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let (avail, fin) = source.wait(out.len() as u64, 1).await?;
            let have = out.len() as u64;
            if avail > have {
                out.extend(source.read_at(have, (avail - have) as usize).await?);
            }
            if fin == Some(out.len() as u64) {
                return Ok(out);
            }
        }
    }
}

impl SnapshotStore for MemStore {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn location(&self, key: &str) -> String {
        format!("s3://memory/{key}")
    }

    fn describe(&self) -> String {
        "snapshots stored in s3://memory".into()
    }

    fn put<'a>(
        &'a self,
        name: &'a str,
        source: GrowingFile,
        _sidecar: Option<&'a Path>,
    ) -> BoxFuture<'a, Result<SnapshotRecord>> {
        async move {
            let data = Self::read_all(source).await?;
            if self.fail_put.load(Ordering::SeqCst) {
                return Err(Error::remote(
                    RemoteStage::Operation,
                    format!("upload of s3://memory/{name}: 503 Service Unavailable"),
                ));
            }
            let now = Utc::now();
            let size = data.len() as u64;
            self.insert(name, data, now);
            Ok(self.record(name, size, now))
        }
        .boxed()
    }

    fn get<'a>(&'a self, name: &'a str, dest_dir: &'a Path) -> BoxFuture<'a, Result<PathBuf>> {
        async move {
            let data = self.object(name).ok_or_else(|| Error::Remote {
                stage: RemoteStage::Operation,
                cause: RemoteCause::NotFound,
                message: format!("snapshot {name} not found in bucket memory"),
            })?;
            // As the real stores: verified under a `.part` name before it gets its own.
            let dest = dest_dir.join(name);
            let part = dest_dir.join(format!("{name}{}", crate::naming::PART_SUFFIX));
            let guard = crate::fsutil::RemoveOnDrop::new(part.clone());
            std::fs::write(&part, &data).map_err(|e| Error::io("write", &part, e))?;
            crate::snapfile::verify::verify_file(&part)?;
            crate::fsutil::publish(&part, &dest)?;
            guard.disarm();
            Ok(dest)
        }
        .boxed()
    }

    fn list(&self, _detail: ListDetail) -> BoxFuture<'_, Result<Vec<SnapshotRecord>>> {
        let r = if self.fail_list.load(Ordering::SeqCst) {
            Err(Error::remote(
                RemoteStage::Operation,
                "listing of s3://memory: 500 Internal Error",
            ))
        } else {
            Ok(self
                .objects
                .lock()
                .unwrap()
                .iter()
                .map(|(k, (b, t))| self.record(k, b.len() as u64, *t))
                .collect())
        };
        async move { r }.boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        let r = Ok(self.objects.lock().unwrap().remove(key).is_some());
        async move { r }.boxed()
    }

    fn retention_rule(&self) -> RetentionRule {
        RetentionRule {
            order: RetentionOrder::Modified,
            nested: false,
        }
    }
}

/// Remote stores in memory: one [`MemStore`] per bucket name, created on first use.
#[derive(Debug, Default)]
pub struct MemRemotes {
    buckets: Mutex<BTreeMap<String, Arc<MemStore>>>,
    /// Connecting fails with this error while set.
    pub fail_connect: Mutex<Option<ConnectError>>,
    /// Connections made so far.
    pub connects: AtomicUsize,
}

impl MemRemotes {
    /// The store of `bucket` (created if needed).
    pub fn bucket(&self, bucket: &str) -> Arc<MemStore> {
        self.buckets
            .lock()
            .unwrap()
            .entry(bucket.to_string())
            .or_default()
            .clone()
    }
}

impl RemoteStores for MemRemotes {
    fn connect<'a>(
        &'a self,
        target: &'a S3Target,
        _identity: S3Identity,
    ) -> BoxFuture<'a, Result<Arc<dyn SnapshotStore>>> {
        let bucket = target.config().bucket.clone();
        let fail = *self.fail_connect.lock().unwrap();
        async move {
            self.connects.fetch_add(1, Ordering::SeqCst);
            if let Some(f) = fail {
                return Err(f(bucket));
            }
            let store: Arc<dyn SnapshotStore> = self.bucket(&bucket);
            Ok(store)
        }
        .boxed()
    }
}
