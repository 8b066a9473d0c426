//! This server's own etcd on disk: how the embedded etcd is configured (binary, certificates,
//! data dir, member name) and where things moved aside are kept. A leaf: it starts nothing,
//! and `datastore`, `join` and `reset` all build on it, never on each other for these.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ServerConfig;
use crate::etcd::process::{EmbeddedEtcd, binary_version, find_binary};
use crate::etcd::{ClientTls, EtcdTarget};
use crate::fsutil::{create_private_dir, write_private};
use crate::tls::ensure_etcd_certs;
use crate::{Error, Result};

/// The member name kept in `db/etcd/name`, made `<node>-<8 hex>` the first time.
pub(super) fn member_name(path: &Path, node: &str) -> Result<String> {
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
pub(super) fn new_member_name(node: &str) -> Result<String> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| Error::Other(format!("random source failed: {e}")))?;
    Ok(format!("{node}-{}", hex::encode(b)))
}

/// How the embedded etcd of this server is configured (no process is started).
pub(super) async fn embedded(cfg: &ServerConfig, hosts: &[String]) -> Result<EmbeddedEtcd> {
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
        initial_cluster: None,
        loopback_only: false,
        certs,
    })
}

/// The client-side view of the embedded etcd.
pub(super) fn embedded_target(e: &EmbeddedEtcd) -> EtcdTarget {
    EtcdTarget::new(
        vec![e.local_client_url()],
        ClientTls {
            ca_file: Some(e.certs.server_ca.clone()),
            cert_file: Some(e.certs.client_cert.clone()),
            key_file: Some(e.certs.client_key.clone()),
        },
        Duration::from_secs(5),
    )
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `<dir>/<stem>-<unix>`, or with `-2`, `-3`… when that exists already (two resets within one
/// second must not collide, and nothing kept is ever overwritten).
pub(super) fn unique_beside(dir: &Path, stem: &str) -> PathBuf {
    let base = format!("{stem}-{}", unix_now());
    let mut p = dir.join(&base);
    let mut n = 2;
    while p.exists() {
        p = dir.join(format!("{base}-{n}"));
        n += 1;
    }
    p
}
