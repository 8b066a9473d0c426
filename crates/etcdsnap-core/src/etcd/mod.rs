//! etcd access: a small trait for what the engine needs (member status and the snapshot stream)
//! and its implementation over `etcd-client`, trying the given endpoints in order. The process
//! supervisor of the embedded etcd is in [`process`].

pub mod process;

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use futures::FutureExt;
use futures::future::BoxFuture;

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
