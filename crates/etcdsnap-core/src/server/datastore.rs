//! The datastore the server snapshots: the embedded etcd child it starts and watches, or an
//! external cluster it only connects to. [`start`] brings it up; [`supervise`] waits for it to
//! answer, starts the scheduler, and then waits for shutdown or for the child's death.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{ServerConfig, ServerState, scheduler};
use crate::etcd::process::{EmbeddedEtcd, EtcdChild, binary_version, find_binary};
use crate::etcd::{ClientTls, EtcdTarget};
use crate::fsutil::{create_private_dir, write_private};
use crate::tls::ensure_etcd_certs;
use crate::{Error, Result};

/// The member name kept in `db/etcd/name`, made `<node>-<8 hex>` the first time.
pub fn member_name(path: &std::path::Path, node: &str) -> Result<String> {
    if let Ok(name) = std::fs::read_to_string(path) {
        let name = name.trim().to_string();
        if !name.is_empty() {
            return Ok(name);
        }
    }
    let name = new_member_name(node)?;
    write_private(path, name.as_bytes())?;
    Ok(name)
}

/// `<node>-<8 random hex>`, as K3s names etcd members.
pub fn new_member_name(node: &str) -> Result<String> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| Error::Other(format!("random source failed: {e}")))?;
    Ok(format!("{node}-{}", hex::encode(b)))
}

/// How the embedded etcd of this server is configured (no process is started).
pub async fn embedded(cfg: &ServerConfig, hosts: &[String]) -> Result<EmbeddedEtcd> {
    let binary = find_binary(cfg.etcd_binary.as_deref())?;
    let version = binary_version(&binary).await?;
    tracing::info!("using etcd {version} at {}", binary.display());
    let server_dir = cfg.server_dir();
    let certs = ensure_etcd_certs(&server_dir.join("tls"), hosts)?;
    let data_dir = server_dir.join("db").join("etcd");
    create_private_dir(&data_dir)?;
    Ok(EmbeddedEtcd {
        binary,
        member_name: member_name(&data_dir.join("name"), &cfg.node_name)?,
        data_dir,
        advertise_ip: cfg.advertise_address.clone(),
        listen_ip: cfg.bind_address.clone(),
        client_port: cfg.etcd_client_port,
        peer_port: cfg.etcd_peer_port,
        log_file: server_dir.join("logs").join("etcd.log"),
        force_new_cluster: false,
        loopback_only: false,
        certs,
    })
}

/// The client-side view of the embedded etcd.
pub fn embedded_target(e: &EmbeddedEtcd) -> EtcdTarget {
    EtcdTarget {
        endpoints: vec![e.local_client_url()],
        tls: ClientTls {
            ca_file: Some(e.certs.server_ca.clone()),
            cert_file: Some(e.certs.client_cert.clone()),
            key_file: Some(e.certs.client_key.clone()),
        },
        connect_timeout: Duration::from_secs(5),
    }
}

/// Starts the datastore: the embedded etcd (checking its ports first), or nothing for an
/// external cluster. Returns how to reach it and the child to watch.
pub async fn start(
    cfg: &ServerConfig,
    hosts: &[String],
) -> Result<(EtcdTarget, Option<EtcdChild>)> {
    match &cfg.datastore {
        Some(ext) => Ok((
            EtcdTarget {
                endpoints: ext.endpoints.clone(),
                tls: ext.tls.clone(),
                connect_timeout: Duration::from_secs(5),
            },
            None,
        )),
        None => {
            let e = embedded(cfg, hosts).await?;
            e.check_ports_free()?;
            let child = EtcdChild::spawn(&e)?;
            Ok((embedded_target(&e), Some(child)))
        }
    }
}

fn died(c: &EtcdChild, status: std::io::Result<std::process::ExitStatus>) -> Error {
    let status = status
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string());
    Error::Etcd(format!(
        "etcd exited unexpectedly ({status}); last lines of its log:\n{}",
        c.log_tail(30)
    ))
}

/// Waits until etcd answers (or `shutdown`, or the child's death), polling every 250 ms.
pub async fn wait_ready(
    state: &ServerState,
    child: &mut Option<EtcdChild>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<bool> {
    let step = Duration::from_millis(250);
    let mut waited = Duration::ZERO;
    loop {
        if state.etcd_healthy().await {
            return Ok(true);
        }
        match child {
            Some(c) => {
                tokio::select! {
                    st = c.wait() => return Err(died(c, st)),
                    _ = &mut *shutdown => return Ok(false),
                    _ = tokio::time::sleep(step) => {}
                }
            }
            None => {
                tokio::select! {
                    _ = &mut *shutdown => return Ok(false),
                    _ = tokio::time::sleep(step) => {}
                }
            }
        }
        waited += step;
        if waited.as_millis().is_multiple_of(10_000) {
            tracing::info!("waiting for etcd to become ready ({}s)", waited.as_secs());
        }
    }
}

/// Once the server's own etcd answers: its CAs are kept in the datastore, and the first normal
/// start after a `--cluster-reset` removes `db/reset-flag`.
async fn after_start(state: &ServerState, server_dir: &std::path::Path) -> Result<()> {
    crate::bootstrap::reconcile(
        state.engine.etcd(),
        &state.token.password,
        &server_dir.join("tls"),
    )
    .await?;
    let flag = server_dir.join("db").join("reset-flag");
    if flag.exists() {
        std::fs::remove_file(&flag).map_err(|e| Error::io("remove", &flag, e))?;
        tracing::info!(
            "Cluster reset: removed {}; this server now runs the reset cluster normally",
            flag.display()
        );
    }
    Ok(())
}

/// Waits for etcd, starts the scheduler, and waits for shutdown or etcd's death.
pub async fn supervise(
    state: &Arc<ServerState>,
    child: &mut Option<EtcdChild>,
    stop_rx: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    tokio::pin!(shutdown);
    if !wait_ready(state, child, &mut shutdown).await? {
        return Ok(());
    }
    if let Some(dir) = &state.owned_server_dir {
        after_start(state, dir).await?;
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
