//! etcd access: a small trait for what the engine needs (member status and the snapshot stream)
//! and its implementation over `etcd-client`, trying the given endpoints in order. The process
//! supervisor of the embedded etcd is in [`process`].

pub(crate) mod kv;
pub(crate) mod members;
pub mod process;

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use futures::FutureExt;
use futures::future::BoxFuture;

pub use kv::{Kv, Precondition, Range, WatchEvent, WatchKind, WatchStream};

use crate::{Error, Result};

/// Client TLS material for etcd: the CA that signed the servers, and optionally a client
/// certificate (mTLS).
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Where etcd is: one or more client URLs, tried in order.
#[derive(Debug, Clone)]
pub struct EtcdTarget {
    pub endpoints: Vec<String>,
    pub tls: ClientTls,
    pub connect_timeout: Duration,
    /// The client of the last member that answered, reused by key-value requests (a new TLS
    /// connection per request would cost more than the request).
    cache: ClientCache,
}

#[derive(Clone, Default)]
struct ClientCache(std::sync::Arc<std::sync::Mutex<Option<(Client, String)>>>);

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientCache")
    }
}

/// What a member says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub endpoint: String,
    pub member_id: u64,
    pub cluster_id: u64,
    pub version: String,
    pub db_size: i64,
    pub is_learner: bool,
    pub raft_index: u64,
    /// The member id of the leader this member knows (0: none).
    pub leader: u64,
}

/// One member of the cluster, as the member list gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// Keys and values, in key order.
pub type KeyValues = Vec<(String, Vec<u8>)>;

/// A stream of snapshot chunks; the last 32 bytes overall are etcd's SHA-256 trailer.
pub type ChunkStream = Pin<Box<dyn futures::Stream<Item = Result<Vec<u8>>> + Send>>;

/// The operations the snapshot engine and the server need from etcd. A trait object, so the
/// engine and the API run against a fake in tests ([`crate::testing::FakeEtcd`]).
pub trait EtcdSource: Send + Sync {
    /// Status of the first member that answers.
    fn status(&self) -> BoxFuture<'_, Result<MemberStatus>>;
    /// Opens a snapshot stream on exactly one member: the first that answers its status
    /// (learners are refused, as etcd refuses them).
    fn snapshot(&self) -> BoxFuture<'_, Result<(MemberStatus, ChunkStream)>>;
    /// The value of one key, if present.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>>;
    /// Every key starting with `prefix`, with its value, in key order.
    fn get_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<KeyValues>>;
    /// Writes one key.
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, Result<()>>;
    /// The cluster's members.
    fn members(&self) -> BoxFuture<'_, Result<Vec<Member>>>;
    /// At most `limit` keys starting with `prefix` (after `start_after`, when given), in key
    /// order, with the store's revision.
    fn range<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Range>>;
    /// One key with its revisions.
    fn get_kv<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Kv>>>;
    /// Writes `key` if `cond` holds; `Some(new revision)`, or `None` if it did not hold.
    fn put_if<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        cond: Precondition,
        lease: Option<i64>,
    ) -> BoxFuture<'a, Result<Option<i64>>>;
    /// Deletes `key` if it exists and `cond` holds; `Some(revision)` or `None`.
    fn delete_if<'a>(
        &'a self,
        key: &'a str,
        cond: Precondition,
    ) -> BoxFuture<'a, Result<Option<i64>>>;
    /// A lease of `ttl` seconds; keys written with it vanish when it expires.
    fn grant_lease(&self, ttl: i64) -> BoxFuture<'_, Result<i64>>;
    /// Changes under `prefix` from `from_revision` on.
    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: i64,
    ) -> BoxFuture<'a, Result<WatchStream>>;
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::InvalidInput(format!(
            "cannot read the etcd {what} {}: {e}",
            path.display()
        ))
    })
}

impl EtcdTarget {
    pub fn new(endpoints: Vec<String>, tls: ClientTls, connect_timeout: Duration) -> EtcdTarget {
        EtcdTarget {
            endpoints,
            tls,
            connect_timeout,
            cache: ClientCache::default(),
        }
    }

    /// A client for key-value requests: the cached one, or the first member that answers.
    async fn kv_client(&self) -> Result<(Client, String)> {
        if let Some(c) = self
            .cache
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(c);
        }
        let (client, status) = self.first_answering().await?;
        let c = (client, status.endpoint);
        *self.cache.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Runs one key-value request on the cached client; a transport failure drops the cache
    /// so the next request looks for a member again.
    /// Runs a conditional transaction: `Some(new revision)` when its condition held.
    async fn txn_revision(&self, txn: etcd_client::Txn) -> Result<Option<i64>> {
        let resp = self
            .kv("transaction", |mut c| async move { c.txn(txn).await })
            .await?;
        Ok(resp
            .succeeded()
            .then(|| resp.header().map(|h| h.revision()).unwrap_or_default()))
    }

    async fn kv<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let (client, ep) = self.kv_client().await?;
        match tokio::time::timeout(self.op_timeout(), f(client)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if matches!(
                    e,
                    etcd_client::Error::TransportError(_) | etcd_client::Error::GRpcStatus(_)
                ) {
                    *self.cache.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                Err(Error::Etcd(format!("{what} on {ep}: {e}")))
            }
            Err(_) => {
                *self.cache.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Err(Error::Timeout(format!("{what} on {ep} timed out")))
            }
        }
    }

    fn options(&self) -> Result<ConnectOptions> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        let t = &self.tls;
        if t.ca_file.is_some() || t.cert_file.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &t.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca, "CA file")?));
            }
            match (&t.cert_file, &t.key_file) {
                (Some(c), Some(k)) => {
                    tls = tls.identity(Identity::from_pem(
                        read(c, "client certificate")?,
                        read(k, "client key")?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(Error::InvalidInput(
                        "an etcd client certificate needs both --datastore-certfile and --datastore-keyfile".into(),
                    ));
                }
            }
            opts = opts.with_tls(tls);
        }
        Ok(opts)
    }

    /// Bound of one request.
    fn op_timeout(&self) -> Duration {
        self.connect_timeout * 2
    }

    /// A client bound to one endpoint.
    pub async fn connect_one(&self, endpoint: &str) -> Result<Client> {
        let opts = self.options()?;
        tokio::time::timeout(
            self.connect_timeout + Duration::from_secs(1),
            Client::connect([endpoint], Some(opts)),
        )
        .await
        .map_err(|_| Error::Etcd(format!("connecting to {endpoint} timed out")))?
        .map_err(|e| Error::Etcd(format!("cannot connect to {endpoint}: {e}")))
    }

    async fn status_of(&self, endpoint: &str) -> Result<(Client, MemberStatus)> {
        let mut client = self.connect_one(endpoint).await?;
        let st = tokio::time::timeout(self.connect_timeout * 2, client.status())
            .await
            .map_err(|_| Error::Etcd(format!("status of {endpoint} timed out")))?
            .map_err(|e| Error::Etcd(format!("status of {endpoint}: {e}")))?;
        let status = MemberStatus {
            endpoint: endpoint.to_string(),
            member_id: st.header().map(|h| h.member_id()).unwrap_or_default(),
            cluster_id: st.header().map(|h| h.cluster_id()).unwrap_or_default(),
            version: st.version().to_string(),
            db_size: st.db_size(),
            is_learner: st.is_learner(),
            raft_index: st.raft_index(),
            leader: st.leader(),
        };
        Ok((client, status))
    }

    async fn first_answering(&self) -> Result<(Client, MemberStatus)> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            match self.status_of(ep).await {
                Ok(ok) => return Ok(ok),
                Err(e) => {
                    tracing::debug!("etcd endpoint {ep} is not usable: {e}");
                    errors.push(e.to_string());
                }
            }
        }
        Err(Error::Etcd(format!(
            "no etcd endpoint answered: {}",
            errors.join("; ")
        )))
    }
}

impl EtcdSource for EtcdTarget {
    fn status(&self) -> BoxFuture<'_, Result<MemberStatus>> {
        async move { Ok(self.first_answering().await?.1) }.boxed()
    }

    fn snapshot(&self) -> BoxFuture<'_, Result<(MemberStatus, ChunkStream)>> {
        self.open_snapshot().boxed()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        self.get_value(key).boxed()
    }

    fn get_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<KeyValues>> {
        async move {
            let (mut client, status) = self.first_answering().await?;
            let opts = etcd_client::GetOptions::new().with_prefix();
            let resp = tokio::time::timeout(self.op_timeout(), client.get(prefix, Some(opts)))
                .await
                .map_err(|_| {
                    Error::Timeout(format!("get {prefix}* from {} timed out", status.endpoint))
                })?
                .map_err(|e| Error::Etcd(format!("get {prefix}* from {}: {e}", status.endpoint)))?;
            Ok(resp
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(kv.key()).into_owned(),
                        kv.value().to_vec(),
                    )
                })
                .collect())
        }
        .boxed()
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        async move {
            let (mut client, status) = self.first_answering().await?;
            tokio::time::timeout(self.op_timeout(), client.put(key, value, None))
                .await
                .map_err(|_| Error::Timeout(format!("put {key} to {} timed out", status.endpoint)))?
                .map_err(|e| Error::Etcd(format!("put {key} to {}: {e}", status.endpoint)))?;
            Ok(())
        }
        .boxed()
    }

    fn members(&self) -> BoxFuture<'_, Result<Vec<Member>>> {
        async move {
            let (mut client, status) = self.first_answering().await?;
            let resp = tokio::time::timeout(self.op_timeout(), client.member_list())
                .await
                .map_err(|_| {
                    Error::Timeout(format!("member list from {} timed out", status.endpoint))
                })?
                .map_err(|e| Error::Etcd(format!("member list from {}: {e}", status.endpoint)))?;
            Ok(resp
                .members()
                .iter()
                .map(|m| Member {
                    id: m.id(),
                    name: m.name().to_string(),
                    peer_urls: m.peer_urls().to_vec(),
                    client_urls: m.client_urls().to_vec(),
                    is_learner: m.is_learner(),
                })
                .collect())
        }
        .boxed()
    }

    fn range<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
        limit: i64,
    ) -> BoxFuture<'a, Result<Range>> {
        async move {
            let start = match start_after {
                Some(k) => {
                    let mut v = k.as_bytes().to_vec();
                    v.push(0);
                    v
                }
                None => prefix.as_bytes().to_vec(),
            };
            let opts = etcd_client::GetOptions::new()
                .with_range(kv::prefix_end(prefix))
                .with_limit(limit);
            let resp = self
                .kv(
                    "range",
                    |mut c| async move { c.get(start, Some(opts)).await },
                )
                .await?;
            Ok(Range {
                kvs: resp.kvs().iter().map(to_kv).collect(),
                more: resp.more(),
                revision: resp.header().map(|h| h.revision()).unwrap_or_default(),
            })
        }
        .boxed()
    }

    fn get_kv<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Kv>>> {
        async move {
            let resp = self
                .kv("get", |mut c| async move { c.get(key, None).await })
                .await?;
            Ok(resp.kvs().first().map(to_kv))
        }
        .boxed()
    }

    fn put_if<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        cond: Precondition,
        lease: Option<i64>,
    ) -> BoxFuture<'a, Result<Option<i64>>> {
        async move {
            use etcd_client::{PutOptions, Txn, TxnOp};
            let mut opts = PutOptions::new();
            if let Some(l) = lease {
                opts = opts.with_lease(l);
            }
            let txn =
                Txn::new()
                    .when(compares(key, cond))
                    .and_then([TxnOp::put(key, value, Some(opts))]);
            self.txn_revision(txn).await
        }
        .boxed()
    }

    fn delete_if<'a>(
        &'a self,
        key: &'a str,
        cond: Precondition,
    ) -> BoxFuture<'a, Result<Option<i64>>> {
        async move {
            use etcd_client::{Txn, TxnOp};
            let cond = match cond {
                Precondition::Any | Precondition::Absent => Precondition::Exists,
                c => c,
            };
            let txn = Txn::new()
                .when(compares(key, cond))
                .and_then([TxnOp::delete(key, None)]);
            self.txn_revision(txn).await
        }
        .boxed()
    }

    fn grant_lease(&self, ttl: i64) -> BoxFuture<'_, Result<i64>> {
        async move {
            let resp = self
                .kv("lease grant", |mut c| async move {
                    c.lease_grant(ttl, None).await
                })
                .await?;
            Ok(resp.id())
        }
        .boxed()
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: i64,
    ) -> BoxFuture<'a, Result<WatchStream>> {
        async move {
            let opts = etcd_client::WatchOptions::new()
                .with_prefix()
                .with_prev_key()
                .with_start_revision(from_revision);
            let stream = self
                .kv(
                    "watch",
                    |mut c| async move { c.watch(prefix, Some(opts)).await },
                )
                .await?;
            let events = futures::stream::unfold(Some(stream), |st| async move {
                let mut stream = st?;
                loop {
                    match stream.message().await {
                        Ok(Some(resp)) => {
                            if resp.canceled() {
                                return Some((
                                    Err(Error::Etcd(format!(
                                        "watch canceled: {} (compacted revision {})",
                                        resp.cancel_reason(),
                                        resp.compact_revision()
                                    ))),
                                    None,
                                ));
                            }
                            let batch: Vec<WatchEvent> = resp
                                .events()
                                .iter()
                                .filter_map(|ev| {
                                    let kv = ev.kv().map(to_kv)?;
                                    let kind = match ev.event_type() {
                                        etcd_client::EventType::Put => WatchKind::Put,
                                        etcd_client::EventType::Delete => WatchKind::Delete,
                                    };
                                    Some(WatchEvent {
                                        kind,
                                        kv,
                                        prev: ev.prev_kv().map(to_kv),
                                    })
                                })
                                .collect();
                            if !batch.is_empty() {
                                return Some((Ok(batch), Some(stream)));
                            }
                        }
                        Ok(None) => return None,
                        Err(e) => {
                            return Some((Err(Error::Etcd(format!("watch broke: {e}"))), None));
                        }
                    }
                }
            });
            Ok(Box::pin(events) as WatchStream)
        }
        .boxed()
    }
}

fn to_kv(kv: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
        create_revision: kv.create_revision(),
    }
}

fn compares(key: &str, cond: Precondition) -> Vec<etcd_client::Compare> {
    use etcd_client::{Compare, CompareOp};
    match cond {
        Precondition::Absent => vec![Compare::create_revision(key, CompareOp::Equal, 0)],
        Precondition::ModRevision(r) => vec![Compare::mod_revision(key, CompareOp::Equal, r)],
        Precondition::Exists => vec![Compare::create_revision(key, CompareOp::Greater, 0)],
        Precondition::Any => vec![],
    }
}

impl EtcdTarget {
    async fn open_snapshot(&self) -> Result<(MemberStatus, ChunkStream)> {
        let (mut client, status) = self.first_answering().await?;
        if status.is_learner {
            return Err(Error::Etcd(
                "Unable to take snapshot: not supported for learner".into(),
            ));
        }
        let ep = status.endpoint.clone();
        let stream = client
            .snapshot()
            .await
            .map_err(|e| Error::Etcd(format!("snapshot request to {ep} failed: {e}")))?;
        // The client travels with the stream so its channel lives as long as the stream.
        let owned = futures::stream::unfold(Some((client, stream, ep)), |st| async move {
            let (client, mut stream, ep) = st?;
            match stream.message().await {
                Ok(Some(msg)) => Some((Ok(msg.blob().to_vec()), Some((client, stream, ep)))),
                Ok(None) => None,
                Err(e) => Some((
                    Err(Error::Etcd(format!("snapshot stream from {ep} broke: {e}"))),
                    None,
                )),
            }
        });
        Ok((status, Box::pin(owned)))
    }

    async fn get_value(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let (mut client, status) = self.first_answering().await?;
        let resp = tokio::time::timeout(self.connect_timeout * 2, client.get(key, None))
            .await
            .map_err(|_| Error::Etcd(format!("get {key} from {} timed out", status.endpoint)))?
            .map_err(|e| Error::Etcd(format!("get {key} from {}: {e}", status.endpoint)))?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }
}
