//! `etcdsnap server`: supervises the embedded etcd (or attaches to an external cluster), serves
//! the supervisor API, and runs scheduled snapshots. [`run`] takes a bound listener and a
//! shutdown future from the caller (tests bind port 0). Shutdown order: stop the scheduler, let
//! an in-flight save finish (bounded), stop serving, then stop etcd with SIGTERM.

pub mod http;
pub mod scheduler;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::etcd::process::{EmbeddedEtcd, EtcdChild, binary_version, find_binary};
use crate::etcd::{ClientTls, EtcdSource, EtcdTarget};
use crate::schedule::Schedule;
use crate::snapshot::{Engine, EngineConfig};
use crate::store::s3::S3Config;
use crate::tls::{default_hosts, ensure_etcd_certs, ensure_supervisor_certs};
use crate::token::Token;
use crate::{Error, Result};

/// An etcd cluster run by someone else.
#[derive(Debug, Clone)]
pub struct ExternalDatastore {
    pub endpoints: Vec<String>,
    pub tls: ClientTls,
}

/// Snapshot settings of the server (`--etcd-snapshot-*`, `--etcd-s3*`).
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    pub disabled: bool,
    /// Prefix of scheduled snapshots.
    pub name: String,
    pub schedule: Schedule,
    pub retention: i64,
    /// `None`: `<data-dir>/server/db/snapshots`.
    pub dir: Option<PathBuf>,
    pub compress: bool,
    pub s3: Option<S3Config>,
}

/// Everything `etcdsnap server` needs, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub node_name: String,
    /// The token given by flag, env or token file; `None` reuses or creates `server/token`.
    pub token: Option<String>,
    pub bind_address: Option<String>,
    pub advertise_address: String,
    pub etcd_client_port: u16,
    pub etcd_peer_port: u16,
    pub etcd_binary: Option<PathBuf>,
    pub datastore: Option<ExternalDatastore>,
    pub snapshots: SnapshotSettings,
    pub compression_level: i64,
}

impl ServerConfig {
    pub fn server_dir(&self) -> PathBuf {
        self.data_dir.join("server")
    }
}

/// State shared by the API handlers and the scheduler.
pub struct ServerState {
    pub engine: Engine<EtcdTarget>,
    pub token: Token,
    pub ca_pem: String,
    pub snapshots: SnapshotSettings,
    pub ready: http::Ready,
}

impl ServerState {
    /// Whether etcd answers a status request now.
    pub async fn etcd_healthy(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(3), self.engine.etcd().status())
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }
}

fn write_member_name(path: &std::path::Path, node: &str) -> Result<String> {
    if let Ok(name) = std::fs::read_to_string(path) {
        let name = name.trim().to_string();
        if !name.is_empty() {
            return Ok(name);
        }
    }
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| Error::Other(format!("random source failed: {e}")))?;
    let name = format!("{node}-{}", hex::encode(b));
    crate::token::write_private(path, name.as_bytes())?;
    Ok(name)
}

/// Serves the supervisor API on `listener` with TLS until `stop` flips.
async fn serve(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!("accept failed: {e}"); continue; }
            },
            _ = stop.changed() => return,
        };
        let tls = tls.clone();
        let svc = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {peer} failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<_, _>>())
        .map_err(|e| Error::Other(format!("cannot read {}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Other(format!("cannot read {}: {e}", key.display())))?;
    let provider = crate::tls::crypto_provider();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Other(format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Other(format!("TLS setup failed: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Runs the server until `shutdown` resolves or etcd dies (an error carrying etcd's log tail).
pub async fn run(
    cfg: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let server_dir = cfg.server_dir();
    let tls_dir = server_dir.join("tls");
    let mut extra: Vec<&str> = vec![cfg.advertise_address.as_str(), cfg.node_name.as_str()];
    if let Some(b) = &cfg.bind_address {
        extra.push(b);
    }
    let hosts = default_hosts(&extra);
    let sup = ensure_supervisor_certs(&tls_dir, &hosts)?;
    let token = crate::token::load_or_create(
        cfg.token.as_deref(),
        &server_dir.join("token"),
        sup.ca_pem.as_bytes(),
    )?;

    // The datastore: a child etcd, or an external cluster.
    let mut child: Option<EtcdChild> = None;
    let target = match &cfg.datastore {
        Some(ext) => EtcdTarget {
            endpoints: ext.endpoints.clone(),
            tls: ext.tls.clone(),
            connect_timeout: Duration::from_secs(5),
        },
        None => {
            let binary = find_binary(cfg.etcd_binary.as_deref())?;
            let version = binary_version(&binary).await?;
            tracing::info!("using etcd {version} at {}", binary.display());
            let certs = ensure_etcd_certs(&tls_dir, &hosts)?;
            let db = server_dir.join("db");
            let data_dir = db.join("etcd");
            {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&data_dir)
                    .map_err(|e| Error::io("create", &data_dir, e))?;
            }
            let member_name = write_member_name(&data_dir.join("name"), &cfg.node_name)?;
            let embedded = EmbeddedEtcd {
                binary,
                data_dir,
                member_name,
                advertise_ip: cfg.advertise_address.clone(),
                listen_ip: cfg.bind_address.clone(),
                client_port: cfg.etcd_client_port,
                peer_port: cfg.etcd_peer_port,
                log_file: server_dir.join("logs").join("etcd.log"),
                force_new_cluster: false,
                certs: certs.clone(),
            };
            embedded.check_ports_free()?;
            child = Some(EtcdChild::spawn(&embedded)?);
            EtcdTarget {
                endpoints: vec![embedded.local_client_url()],
                tls: ClientTls {
                    ca_file: Some(certs.server_ca.clone()),
                    cert_file: Some(certs.client_cert.clone()),
                    key_file: Some(certs.client_key.clone()),
                },
                connect_timeout: Duration::from_secs(5),
            }
        }
    };

    let engine = Engine::new(
        target,
        EngineConfig {
            node_name: cfg.node_name.clone(),
            data_dir: cfg.data_dir.clone(),
            compression_level: cfg.compression_level,
            token_hash: token.hash12(),
            idle_timeout: Duration::from_secs(120),
        },
    );
    let state = Arc::new(ServerState {
        engine,
        token,
        ca_pem: sup.ca_pem.clone(),
        snapshots: cfg.snapshots.clone(),
        ready: http::Ready::default(),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let acceptor = tls_acceptor(&sup.cert, &sup.key)?;
    tracing::info!(
        "supervisor API listening on https://{}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let server_task = tokio::spawn(serve(
        listener,
        acceptor,
        http::router(state.clone()),
        stop_rx.clone(),
    ));

    let outcome = supervise(&state, &mut child, stop_rx.clone(), shutdown).await;

    let _ = stop_tx.send(true);
    // Let a save in flight finish, but not forever.
    if tokio::time::timeout(Duration::from_secs(60), state.engine.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!("a snapshot was still running at shutdown; abandoning it");
    }
    server_task.abort();
    if let Some(mut c) = child
        && outcome.is_ok()
    {
        tracing::info!("stopping etcd");
        c.stop(Duration::from_secs(15)).await;
    }
    outcome
}

/// Waits for etcd, starts the scheduler, and waits for shutdown or etcd's death.
async fn supervise(
    state: &Arc<ServerState>,
    child: &mut Option<EtcdChild>,
    stop_rx: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    tokio::pin!(shutdown);
    let died = |c: &EtcdChild, status: std::io::Result<std::process::ExitStatus>| {
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        Error::Etcd(format!(
            "etcd exited unexpectedly ({status}); last lines of its log:\n{}",
            c.log_tail(30)
        ))
    };
    // Readiness.
    let mut waited = Duration::ZERO;
    loop {
        if state.etcd_healthy().await {
            break;
        }
        let step = Duration::from_millis(250);
        match child {
            Some(c) => {
                tokio::select! {
                    st = c.wait() => return Err(died(c, st)),
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(step) => {}
                }
            }
            None => {
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(step) => {}
                }
            }
        }
        waited += step;
        if waited.as_secs() > 0 && waited.as_millis().is_multiple_of(10_000) {
            tracing::info!("waiting for etcd to become ready ({}s)", waited.as_secs());
        }
    }
    state.ready.set(true);
    tracing::info!("etcd is ready");

    let sched = if state.snapshots.disabled {
        tracing::info!("ETCD snapshots are disabled");
        None
    } else {
        Some(tokio::spawn(scheduler::run(state.clone(), stop_rx)))
    };
    let result = match child {
        Some(c) => {
            tokio::select! {
                st = c.wait() => Err(died(c, st)),
                _ = &mut shutdown => Ok(()),
            }
        }
        None => {
            shutdown.await;
            Ok(())
        }
    };
    state.ready.set(false);
    if let Some(s) = sched {
        s.abort();
    }
    result
}
