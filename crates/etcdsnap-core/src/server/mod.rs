//! `etcdsnap server`: supervises the embedded etcd (or attaches to an external cluster), serves
//! the supervisor API, and runs scheduled snapshots. [`run`] takes a bound listener and a
//! shutdown future from the caller (tests bind port 0), prepares the data dir and datastore,
//! and hands over to the supervisor, the one owner of background work and its shutdown order
//! (stop the scheduler, let an in-flight save finish (bounded), stop serving, then stop etcd
//! with SIGTERM).
//!
//! Files: `supervisor` starts and stops every task, [`datastore`] starts and watches etcd,
//! `local_etcd` configures the embedded etcd on disk, [`serve`] accepts TLS connections,
//! [`http`] answers them, [`scheduler`] takes the scheduled snapshots, [`drills`] the restore
//! drills, [`ui`] renders the status page.

pub mod auth;
pub(crate) mod cluster_api;
pub mod datastore;
pub(crate) mod drills;
pub(crate) mod extract;
pub(crate) mod http;
pub(crate) mod join;
pub mod kubeconfig;
mod local_etcd;
pub(crate) mod notify;
pub(crate) mod reply;
pub mod reset;
pub mod scheduler;
pub(crate) mod serve;
mod supervisor;
pub(crate) mod ui;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use crate::snapshot::plan::SnapshotSettings;

use crate::Result;
use crate::etcd::ClientTls;
use crate::snapshot::{Engine, EngineConfig};
use crate::store::remote::S3StoreCache;
use crate::tls::{default_hosts, ensure_supervisor_certs};
use crate::token::Token;

/// An etcd cluster run by someone else.
#[derive(Debug, Clone)]
pub struct ExternalDatastore {
    pub endpoints: Vec<String>,
    pub tls: ClientTls,
}

/// Something the embedder runs after each API request (the binary hands back freed memory).
#[derive(Clone)]
pub struct RequestHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for RequestHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestHook")
    }
}

/// How long shutdown waits for a snapshot save in progress: a scheduled one, then an
/// on-demand one (see `supervisor`).
pub const SHUTDOWN_SAVE_GRACE: Duration = Duration::from_secs(60);

/// Everything `etcdsnap server` needs, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub node_name: String,
    /// The token given by flag, env or token file; `None` reuses or creates `server/token`.
    /// A join token (`K10…::join:…`) only joins: the server keeps a server token of its own.
    pub token: Option<String>,
    /// `--join-token-file`: the join credential; `None` uses (or makes) `server/join-token`.
    pub join_token_file: Option<PathBuf>,
    /// `--viewer-token-file`: the viewer credential; `None` uses (or makes) `server/viewer-token`.
    pub viewer_token_file: Option<PathBuf>,
    pub bind_address: Option<String>,
    pub advertise_address: String,
    pub etcd_client_port: u16,
    pub etcd_peer_port: u16,
    pub etcd_binary: Option<PathBuf>,
    pub datastore: Option<ExternalDatastore>,
    pub snapshots: SnapshotSettings,
    pub after_request: Option<RequestHook>,
    /// `--cluster-reset`: run [`reset::run`] instead of serving.
    pub reset: Option<reset::ResetSettings>,
    /// Where to write the kubeconfig of the Kubernetes API subset.
    pub kubeconfig: Option<kubeconfig::KubeconfigOut>,
    /// `--server`: the supervisor URL of a server whose cluster this one joins.
    pub join: Option<String>,
    /// Least time a learner stays one before the leader promotes it (hidden flag; 0).
    pub learner_promotion_delay: Duration,
    /// `--etcd-snapshot-drill-schedule-cron`: scheduled restore drills, if any.
    pub drill: Option<DrillRequest>,
}

/// Restore drills as asked for; the tools are found when the server starts.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    pub schedule: crate::schedule::Schedule,
    pub etcdutl_binary: Option<PathBuf>,
    pub etcdctl_binary: Option<PathBuf>,
}

impl DrillRequest {
    /// Finds etcd and the restore tool for its version; the error names the flag to set.
    pub async fn resolve(
        &self,
        etcd_binary: Option<&std::path::Path>,
    ) -> Result<drills::DrillSettings> {
        let binary = crate::etcd::process::find_binary(etcd_binary).map_err(|e| {
            crate::Error::InvalidInput(format!("restore drills start an etcd of their own: {e}"))
        })?;
        let version = crate::etcd::process::binary_version(&binary).await?;
        let tool = crate::restore::RestoreTool::for_etcd(
            &binary,
            &version,
            self.etcdutl_binary.as_deref(),
            self.etcdctl_binary.as_deref(),
        )?;
        Ok(drills::DrillSettings {
            schedule: self.schedule.clone(),
            etcd_binary: binary,
            tool,
        })
    }
}

impl ServerConfig {
    pub fn server_dir(&self) -> PathBuf {
        self.data_dir.join("server")
    }

    /// The SANs of this server's serving certificates.
    pub fn hosts(&self) -> Vec<String> {
        let mut extra: Vec<&str> = vec![self.advertise_address.as_str(), self.node_name.as_str()];
        if let Some(b) = &self.bind_address {
            extra.push(b);
        }
        default_hosts(&extra)
    }
}

/// State shared by the API handlers and the background tasks. Built with `ServerState::new`;
/// nothing outside the crate reads its fields.
pub struct ServerState {
    pub(crate) engine: Engine,
    pub(crate) token: Token,
    pub(crate) ca_pem: String,
    pub(crate) snapshots: SnapshotSettings,
    pub(crate) ready: http::Ready,
    pub(crate) auth_guard: auth::AuthGuard,
    /// The join and viewer credentials (the server token is `token`).
    pub(crate) credentials: auth::Credentials,
    pub(crate) after_request: Option<RequestHook>,
    /// The Kubernetes API subset (records, Secrets, ConfigMaps, events).
    pub(crate) kube: Arc<crate::kube::api::KubeApi>,
    /// `<data-dir>/server` of a server that owns its etcd (embedded): it keeps its bootstrap
    /// data in etcd and clears `db/reset-flag` once started normally.
    pub(crate) owned_server_dir: Option<PathBuf>,
    /// The embedded etcd, for membership (join, promotion, removal); `None` when external.
    pub(crate) cluster: Option<crate::etcd::EtcdTarget>,
    pub(crate) learner_promotion_delay: Duration,
    /// What the status page keeps between loads.
    pub(crate) ui: ui::UiCache,
}

impl ServerState {
    /// A state that is not ready yet, has seen no failed logins and has nothing cached for
    /// the status page; with no request hook and no etcd of its own (an external datastore)
    /// until [`Self::after_request`] and [`Self::owning_etcd`] say otherwise.
    pub(crate) fn new(
        engine: Engine,
        token: Token,
        ca_pem: String,
        snapshots: SnapshotSettings,
        credentials: auth::Credentials,
        kube: Arc<crate::kube::api::KubeApi>,
    ) -> Self {
        ServerState {
            engine,
            token,
            ca_pem,
            snapshots,
            ready: http::Ready::default(),
            auth_guard: auth::AuthGuard::default(),
            credentials,
            after_request: None,
            kube,
            owned_server_dir: None,
            cluster: None,
            learner_promotion_delay: Duration::ZERO,
            ui: ui::UiCache::default(),
        }
    }

    /// Runs `hook` after each API request.
    pub(crate) fn after_request(mut self, hook: Option<RequestHook>) -> Self {
        self.after_request = hook;
        self
    }

    /// The server runs its own etcd (embedded): `server_dir` is its `<data-dir>/server`,
    /// `cluster` reaches that etcd for membership, and a learner stays one at least
    /// `learner_promotion_delay` before this server, when leading, promotes it.
    pub(crate) fn owning_etcd(
        mut self,
        server_dir: PathBuf,
        cluster: crate::etcd::EtcdTarget,
        learner_promotion_delay: Duration,
    ) -> Self {
        self.owned_server_dir = Some(server_dir);
        self.cluster = Some(cluster);
        self.learner_promotion_delay = learner_promotion_delay;
        self
    }
}

impl ServerState {
    /// Whether this server's etcd answers as a learner (it cannot write or snapshot).
    pub async fn is_learner(&self) -> bool {
        self.engine
            .etcd()
            .status()
            .await
            .is_ok_and(|s| s.is_learner)
    }

    /// Whether etcd answers a status request now; when it does not, the reason is kept for
    /// the 503 answers.
    pub async fn etcd_healthy(&self) -> bool {
        match tokio::time::timeout(Duration::from_secs(3), self.engine.etcd().status()).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                self.ready.set_cause(e.to_string());
                false
            }
            Err(_) => {
                self.ready
                    .set_cause("etcd did not answer a status request within 3s");
                false
            }
        }
    }

    /// When the etcd holds a Kubernetes cluster (its kube-system namespace exists), its Secrets
    /// and ConfigMaps belong to that cluster: the API subset reads them and refuses writes.
    pub(crate) async fn detect_kubernetes(&self) {
        if let Ok(Some(_)) = self.engine.etcd().get(crate::kube::KUBE_SYSTEM_KEY).await {
            self.kube
                .kubernetes_datastore
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                "this etcd holds a Kubernetes cluster: its Secrets and ConfigMaps are read, never written, by the supervisor API"
            );
        }
    }
}

/// Takes the data dir for this process: a second server on the same data dir fails at once
/// instead of fighting the first over etcd's files. Held until the returned file is dropped.
pub fn lock_data_dir(cfg: &ServerConfig) -> Result<std::fs::File> {
    let dir = cfg.server_dir();
    crate::fsutil::create_private_dir(&dir)?;
    let path = dir.join(".lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| crate::Error::io("open", &path, e))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(crate::Error::InvalidInput(format!(
                "the data dir {} is in use by another etcdsnap server (pid {}); stop it first, or give this one another --data-dir",
                cfg.data_dir.display(),
                holder.trim()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(crate::Error::io("lock", &path, e)),
    }
    use std::io::{Seek, Write};
    let _ = f.set_len(0);
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = write!(f, "{}", std::process::id());
    Ok(f)
}

/// Runs the server until `shutdown` resolves or etcd dies (an error carrying etcd's log tail).
/// Prepares the data dir, credentials and datastore here; `supervisor::run` owns the tasks.
pub async fn run(
    cfg: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let server_dir = cfg.server_dir();
    let db = server_dir.join("db");
    let given = cfg.token.as_deref().map(Token::parse).transpose()?;
    // A join token lets this server join; its own server token is its own.
    let with_join_token = given
        .as_ref()
        .is_some_and(|t| t.username == auth::Role::Join.user());
    // Joining is checked against the server named before anything here changes.
    let mut joining = join_target(&cfg, &db).await?;
    join::check_tombstone(&db, joining.is_some())?;
    let drill = match &cfg.drill {
        Some(d) => Some(d.resolve(cfg.etcd_binary.as_deref()).await?),
        None => None,
    };
    let _lock = lock_data_dir(&cfg)?;
    reset::recover(&server_dir)?;
    // No drill runs yet: any drill directory in `db/` is a killed server's.
    crate::drill::remove_stale_work(&db, true);
    if let Some(cluster) = &joining {
        join::back_up_removed_member(&db)?;
        join::write_cluster_tls(&server_dir, &cluster.bootstrap)?;
    }
    let hosts = cfg.hosts();
    let sup = ensure_supervisor_certs(&server_dir.join("tls"), &hosts)?;
    let token = server_token(&cfg, &sup.ca_pem, with_join_token)?;
    if let Some(c) = joining.as_mut()
        && with_join_token
    {
        c.bootstrap_secret = Some(token.password.clone());
    }
    let credentials = credentials(&cfg, &sup.ca_pem)?;
    let (target, child) = datastore::start(&cfg, &hosts, joining.as_ref()).await?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let owns_etcd = child.is_some();
    let state = server_state(
        &cfg,
        target,
        owns_etcd,
        token,
        &sup.ca_pem,
        credentials,
        port,
    )?;
    let serving = supervisor::Serving {
        listener,
        cert: serve::ServingCert::load(&sup.cert, &sup.key)?,
        tls_dir: server_dir.join("tls"),
        hosts,
    };
    supervisor::run(Arc::new(state), serving, drill, child, shutdown).await
}

/// The cluster this server joins with `--server`, checked with the server named; `None` when it
/// runs alone, attaches to an external etcd, or is already a member.
async fn join_target(cfg: &ServerConfig, db: &std::path::Path) -> Result<Option<join::Cluster>> {
    match &cfg.join {
        Some(url) if cfg.datastore.is_none() && join::needs_join(db) => {
            let token = cfg.token.as_deref().ok_or_else(|| {
                crate::Error::InvalidInput(
                    "joining a cluster with --server needs its token: pass --token or --token-file (the token is in <data-dir>/server/token on a server of the cluster)".into(),
                )
            })?;
            Ok(Some(join::preflight(url, &Token::parse(token)?).await?))
        }
        Some(url) if cfg.datastore.is_none() => {
            tracing::info!(
                "this server's etcd is already a member of its cluster ({} holds its data); --server {url} is not used",
                db.join("etcd").display()
            );
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// The server token: the one given (unless it is a join token), else `server/token`.
fn server_token(cfg: &ServerConfig, ca_pem: &str, with_join_token: bool) -> Result<Token> {
    let server_dir = cfg.server_dir();
    let token = crate::token::load_or_create(
        cfg.token.as_deref().filter(|_| !with_join_token),
        &server_dir.join("token"),
        ca_pem.as_bytes(),
    )?;
    if token.password.chars().count() < crate::token::MIN_SECRET_LEN {
        tracing::warn!(
            "the server token in {} is shorter than {} characters; it is the cluster's secret and stays as it is: hand out the join and viewer tokens, never this one",
            server_dir.join("token").display(),
            crate::token::MIN_SECRET_LEN
        );
    }
    Ok(token)
}

/// The join and viewer credentials, from their flags or their files in `server/`.
fn credentials(cfg: &ServerConfig, ca_pem: &str) -> Result<auth::Credentials> {
    let server_dir = cfg.server_dir();
    Ok(auth::Credentials {
        join: Some(auth::CredentialFile::open(
            auth::Role::Join,
            cfg.join_token_file.as_deref(),
            "--join-token-file",
            &server_dir.join("join-token"),
            ca_pem.as_bytes(),
        )?),
        viewer: Some(auth::CredentialFile::open(
            auth::Role::Viewer,
            cfg.viewer_token_file.as_deref(),
            "--viewer-token-file",
            &server_dir.join("viewer-token"),
            ca_pem.as_bytes(),
        )?),
    })
}

/// The state over the started datastore: the Kubernetes API subset and its kubeconfig (for
/// the API on `port`), the records and the snapshot engine.
fn server_state(
    cfg: &ServerConfig,
    target: crate::etcd::EtcdTarget,
    owns_etcd: bool,
    token: Token,
    ca_pem: &str,
    credentials: auth::Credentials,
    port: u16,
) -> Result<ServerState> {
    let server_dir = cfg.server_dir();
    let cluster = owns_etcd.then(|| target.clone());
    let etcd: Arc<dyn crate::etcd::EtcdSource> = Arc::new(target);
    let objects = crate::kube::api::store::ObjectStore::new(etcd.clone());
    let records = Arc::new(crate::records::manager::Records::new(
        objects.clone(),
        cfg.node_name.clone(),
    ));
    let mut kube = crate::kube::api::KubeApi::new(objects, kubeconfig::admin_token(&server_dir)?);
    let hook_records = records.clone();
    kube.on_snapshot_deleted = Some(Arc::new(move |obj| {
        let r = hook_records.clone();
        Box::pin(async move { r.removed(&obj).await })
    }));
    if let Some(out) = &cfg.kubeconfig {
        kubeconfig::write(
            out,
            &format!("https://127.0.0.1:{port}"),
            ca_pem,
            &kubeconfig::admin_token(&server_dir)?,
        )?;
    }
    let engine = Engine::new(
        etcd,
        Arc::new(S3StoreCache::new()),
        EngineConfig {
            node_name: cfg.node_name.clone(),
            data_dir: cfg.data_dir.clone(),
            token_hash: token.hash12(),
            idle_timeout: cfg.snapshots.idle_timeout,
            owns_etcd,
        },
    )
    .with_records(records)
    .with_record_dirs(cfg.snapshots.request_dirs.values());
    let state = ServerState::new(
        engine,
        token,
        ca_pem.to_string(),
        cfg.snapshots.clone(),
        credentials,
        Arc::new(kube),
    )
    .after_request(cfg.after_request.clone());
    Ok(match cluster {
        Some(cluster) => state.owning_etcd(server_dir, cluster, cfg.learner_promotion_delay),
        None => state,
    })
}
