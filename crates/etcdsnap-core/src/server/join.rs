//! Several servers: joining the cluster of a running server (`--server URL --token T`), the
//! learner phase, promotion, and a member that finds it was removed. K3s's scheme (reference
//! §8.4, §8.5):
//!
//! 1. [`preflight`], before anything on disk changes: the supervisor's CA is fetched and checked
//!    against the hash in a full `K10…` token (a bare secret is accepted with a warning); then,
//!    over TLS verified by that CA and authenticated by the token, the bootstrap data (the
//!    cluster's CAs and keys) and the member list. A wrong token, an unreachable server or a
//!    foreign CA fail here and leave the data dir as it was.
//! 2. [`write_cluster_tls`]: the cluster's CAs go to `server/tls` (a `tls` made from other CAs
//!    is moved to `tls-<unix>`, never deleted); this server issues its own etcd serving, peer
//!    and client certificates from them at start.
//! 3. [`add_self`]: with its own client certificate, the server adds its etcd as a learner
//!    through the voting members and starts it with `--initial-cluster-state=existing`.
//! 4. [`promote_learners`]: the leader promotes a learner once etcd says it is in sync; a
//!    learner takes no snapshots meanwhile.
//!
//! A member removed from the cluster (etcd exits saying so) writes `db/etcd/tombstone`; the
//! next start with `--server` moves `db/etcd` to `db/etcd-backup-<unix>` (the newest
//! [`KEEP_BACKUPS`] are kept) and joins again as a new learner.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ServerState;
use super::local_etcd::unique_beside;
use crate::api::members::{ClusterInfo, MemberInfo};
use crate::api::paths::{BOOTSTRAP_PATH, CACERTS_PATH, INFO_PATH};
use crate::bootstrap::Bootstrap;
use crate::etcd::process::EmbeddedEtcd;
use crate::etcd::{ClientTls, EtcdTarget};
use crate::token::{Token, ca_hash};
use crate::{Error, Result};

/// K3s's log line when etcd says this member was removed, with our program name.
pub const REMOVED_MESSAGE: &str =
    "This node has been removed from the cluster - please restart etcdsnap to rejoin the cluster";
/// What etcd logs when it learns that it was removed.
const ETCD_REMOVED: &str = "has been permanently removed from the cluster";
/// `db/etcd-backup-*` dirs kept; older ones are deleted, as K3s does.
pub const KEEP_BACKUPS: usize = 5;
/// How often the leader looks for learners to promote.
pub const PROMOTE_INTERVAL: Duration = Duration::from_secs(5);
/// Bound on every answer a joining server reads from the supervisor.
const ANSWER_LIMIT: usize = 4 << 20;

/// What a joining server learnt from the server it joins.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub url: String,
    pub bootstrap: Bootstrap,
    pub members: Vec<MemberInfo>,
    /// Set when this server joined with the join token: its own server token's secret, under
    /// which it keeps a copy of the bootstrap data in etcd (as every server does under its
    /// token), so its restarts and restores find one.
    pub bootstrap_secret: Option<String>,
}

fn tombstone(db: &Path) -> PathBuf {
    db.join("etcd").join("tombstone")
}

/// Whether this server must join (it holds no etcd member, or its member was removed).
pub fn needs_join(db: &Path) -> bool {
    tombstone(db).exists() || !db.join("etcd").join("member").is_dir()
}

/// Checks a data dir whose member was removed: starting it needs `--server` to rejoin.
pub fn check_tombstone(db: &Path, joining: bool) -> Result<()> {
    let t = tombstone(db);
    if t.exists() && !joining {
        return Err(Error::InvalidInput(format!(
            "this server's etcd member was removed from its cluster ({} exists): start it with --server <supervisor URL of a server of the cluster> and --token to rejoin, or move {} away to start a new cluster from nothing",
            t.display(),
            db.join("etcd").display()
        )));
    }
    Ok(())
}

fn unreachable(url: &str, e: &reqwest::Error) -> Error {
    Error::InvalidInput(format!(
        "cannot reach the server to join at {url}: {}: check --server (the supervisor URL of a running server, https://<host>:9345) and that its port is open",
        crate::error::error_chain(e)
    ))
}

/// Reads an answer of at most [`ANSWER_LIMIT`] bytes.
async fn read_capped(url: &str, mut resp: reqwest::Response) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(url, &e))? {
        if body.len() + chunk.len() > ANSWER_LIMIT {
            return Err(Error::InvalidInput(format!(
                "the server at {url} sent an answer larger than {} MiB; is --server the supervisor URL of an etcdsnap server?",
                ANSWER_LIMIT >> 20
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An authenticated GET to the server being joined.
async fn get(http: &reqwest::Client, url: &str, path: &str, token: &Token) -> Result<Vec<u8>> {
    let resp = http
        .get(format!("{url}{path}"))
        .basic_auth(&token.username, Some(&token.password))
        .send()
        .await
        .map_err(|e| unreachable(url, &e))?;
    let code = resp.status();
    let body = read_capped(url, resp).await?;
    match code.as_u16() {
        200 => Ok(body),
        401 => Err(Error::InvalidInput(format!(
            "the server at {url} rejected the token (401 Unauthorized): pass its join token (<data-dir>/server/join-token on that server, the full K10… form) or the cluster's server token (<data-dir>/server/token) with --token-file"
        ))),
        code => {
            let msg = serde_json::from_slice::<crate::api::Status>(&body)
                .map(|s| s.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_string());
            Err(Error::InvalidInput(format!(
                "the server at {url} refused to let this server join (HTTP {code} for {path}): {msg}"
            )))
        }
    }
}

/// Step 1: checks the server to join and fetches what joining needs, changing nothing.
pub async fn preflight(url: &str, token: &Token) -> Result<Cluster> {
    crate::tls::install_crypto_provider();
    let url = url.trim_end_matches('/').to_string();
    if !url.starts_with("https://") {
        return Err(Error::InvalidInput(format!(
            "--server must be the https:// supervisor URL of a server of the cluster (https://<host>:9345), got {url:?}"
        )));
    }
    // The CA is fetched unverified and then pinned by the token's hash, as K3s does.
    let probe = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Other(format!("cannot build the HTTP client: {e}")))?;
    let resp = probe
        .get(format!("{url}{CACERTS_PATH}"))
        .send()
        .await
        .map_err(|e| unreachable(&url, &e))?;
    if !resp.status().is_success() {
        return Err(Error::InvalidInput(format!(
            "the server at {url} answered HTTP {} for /cacerts: is --server the supervisor URL of an etcdsnap server?",
            resp.status()
        )));
    }
    let ca_pem = read_capped(&url, resp).await?;
    let got = ca_hash(&ca_pem);
    match &token.ca_hash {
        Some(want) if *want != got => {
            return Err(Error::InvalidInput(format!(
                "the server at {url} presented a CA whose hash {got} does not match the token's CA hash {want}: the token belongs to another cluster, or something between this host and the server intercepts the connection; check --server and --token"
            )));
        }
        Some(_) => {}
        None => tracing::warn!(
            "the token has no CA hash, so the server at {url} cannot be verified before it is sent the token: use the full K10… token from <data-dir>/server/token on a server of the cluster"
        ),
    }
    let cert = reqwest::Certificate::from_pem(&ca_pem).map_err(|e| {
        Error::InvalidInput(format!(
            "the server at {url} sent a CA that is not a PEM certificate ({e}): is --server the supervisor URL of an etcdsnap server?"
        ))
    })?;
    let http = reqwest::Client::builder()
        .tls_certs_only([cert])
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Other(format!("cannot build the HTTP client: {e}")))?;
    let raw = get(&http, &url, BOOTSTRAP_PATH, token).await?;
    let bootstrap: Bootstrap = serde_json::from_slice(&raw).map_err(|e| {
        Error::InvalidInput(format!(
            "the server at {url} sent bootstrap data that is not valid JSON: {e}"
        ))
    })?;
    if !bootstrap.is_complete() {
        return Err(Error::InvalidInput(format!(
            "the server at {url} sent incomplete bootstrap data (a CA certificate or key is missing): check the certificates in its <data-dir>/server/tls"
        )));
    }
    if bootstrap.0.get("ServerCA").map(|f| f.content.as_slice()) != Some(ca_pem.as_slice()) {
        return Err(Error::InvalidInput(format!(
            "the server at {url} sent bootstrap data whose supervisor CA is not the CA it serves with; refusing to join"
        )));
    }
    let raw = get(&http, &url, INFO_PATH, token).await?;
    let info: ClusterInfo = serde_json::from_slice(&raw).map_err(|e| {
        Error::InvalidInput(format!(
            "the server at {url} sent a member list that is not valid JSON: {e}"
        ))
    })?;
    if !info
        .members
        .iter()
        .any(|m| !m.is_learner && !m.client_urls.is_empty())
    {
        return Err(Error::InvalidInput(format!(
            "the server at {url} lists no voting etcd member with a client URL; wait until its etcd is up and retry"
        )));
    }
    tracing::info!(
        "joining the cluster of {url}: {} etcd members ({})",
        info.members.len(),
        info.members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Cluster {
        url,
        bootstrap,
        members: info.members,
        bootstrap_secret: None,
    })
}

/// Step 2: the cluster's CAs into `tls_dir`. A `tls` dir made from other CAs is moved to
/// `tls-<unix>` first, so its leaf certificates are issued again from the cluster's CAs.
pub fn write_cluster_tls(server_dir: &Path, data: &Bootstrap) -> Result<()> {
    let tls_dir = server_dir.join("tls");
    if tls_dir.exists() {
        let disk = Bootstrap::read(&tls_dir)?;
        if disk.same_files(data) {
            return Ok(());
        }
        let backup = unique_beside(server_dir, "tls");
        std::fs::rename(&tls_dir, &backup).map_err(|e| Error::io("move", &tls_dir, e))?;
        tracing::info!(
            "the certificates in {} came from other CAs; moved them to {}",
            tls_dir.display(),
            backup.display()
        );
    }
    let written = data.write(&tls_dir)?;
    tracing::info!(
        "wrote the cluster's {} CA files into {}",
        written.len(),
        tls_dir.display()
    );
    Ok(())
}

/// Moves the data of a removed member (`db/etcd` with a tombstone) to `db/etcd-backup-<unix>`
/// and deletes all but the newest [`KEEP_BACKUPS`] backups.
pub fn back_up_removed_member(db: &Path) -> Result<()> {
    if !tombstone(db).exists() {
        return Ok(());
    }
    let live = db.join("etcd");
    let backup = unique_beside(db, "etcd-backup");
    std::fs::rename(&live, &backup).map_err(|e| Error::io("move", &live, e))?;
    tracing::info!(
        "this server's etcd member was removed from the cluster; its data is in {} and it joins again as a new member",
        backup.display()
    );
    let mut backups: Vec<(i64, PathBuf)> = std::fs::read_dir(db)
        .map_err(|e| Error::io("read", db, e))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix("etcd-backup-")?;
            let unix = rest.split('-').next()?.parse::<i64>().ok()?;
            Some((unix, e.path()))
        })
        .collect();
    backups.sort();
    let excess = backups.len().saturating_sub(KEEP_BACKUPS);
    for (_, p) in backups.into_iter().take(excess) {
        match std::fs::remove_dir_all(&p) {
            Ok(()) => tracing::info!("removed the old member backup {}", p.display()),
            Err(e) => tracing::warn!("cannot remove the old member backup {}: {e}", p.display()),
        }
    }
    Ok(())
}

/// Whether the etcd log written since `offset` says the member was removed; if so the
/// tombstone is written and the error to stop the server with is returned.
pub fn removed_member(etcd: &EmbeddedEtcd, log_since_start: &str) -> Option<Error> {
    if !log_since_start.contains(ETCD_REMOVED) {
        return None;
    }
    let t = etcd.data_dir.join("tombstone");
    if let Err(e) = crate::fsutil::write_private(&t, b"") {
        tracing::warn!("cannot write {}: {e}", t.display());
    }
    tracing::error!("{REMOVED_MESSAGE}");
    Some(Error::Etcd(format!(
        "{REMOVED_MESSAGE} (with --server, a restart moves the old data to db/etcd-backup-<unix> and joins as a new member)"
    )))
}

/// `<node>-<8 hex>`: whether `member` is a member name of `node`.
pub(super) fn is_member_of_node(member: &str, node: &str) -> bool {
    member
        .strip_prefix(node)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Step 3: adds this server's etcd to the cluster as a learner and sets the initial cluster
/// it starts with. A member left at this server's peer URL (its data dir was deleted without
/// removing it) is removed first; another server's member with this node name is refused.
pub async fn add_self(cluster: &Cluster, etcd: &mut EmbeddedEtcd, node: &str) -> Result<()> {
    let endpoints: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| !m.is_learner)
        .flat_map(|m| m.client_urls.iter().cloned())
        .collect();
    let target = EtcdTarget::new(
        endpoints,
        ClientTls {
            ca_file: Some(etcd.certs.server_ca.clone()),
            cert_file: Some(etcd.certs.client_cert.clone()),
            key_file: Some(etcd.certs.client_key.clone()),
        },
        Duration::from_secs(5),
    );
    let peer = etcd.peer_url();
    let members = target.voting_members().await?;
    if let Some(secret) = &cluster.bootstrap_secret {
        crate::bootstrap::store(&target, secret, &cluster.bootstrap).await?;
        tracing::info!(
            "joined with the join token: stored a copy of the bootstrap data under this server's own token"
        );
    }
    for m in &members {
        if m.peer_urls.contains(&peer) {
            tracing::warn!(
                "etcd member {:?} ({}) has this server's peer URL but this server holds no data for it; removing it before joining",
                m.name,
                m.id
            );
            target.remove_member(m.id).await?;
        } else if is_member_of_node(&m.name, node) {
            return Err(Error::InvalidInput(format!(
                "the cluster already has etcd member {} of node {node:?} (peer URL {}): give this server another --node-name, or remove that member first with `etcdsnap member remove {}` on a server of the cluster",
                m.name,
                m.peer_urls.join(","),
                m.name
            )));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let (id, list) = loop {
        match target.add_learner(&peer).await {
            Ok(v) => break v,
            // etcd takes one learner at a time, and adds none until the leader has been
            // connected to every voting member for 5 s (a member promoted just now).
            Err(e)
                if ["too many learner", "unhealthy cluster"]
                    .iter()
                    .any(|w| e.to_string().contains(w))
                    && Instant::now() < deadline =>
            {
                tracing::info!("etcd cannot add a member yet ({e}); retrying in 2s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) if e.to_string().contains("too many learner") => {
                return Err(Error::Etcd(format!(
                    "{e}: another member has been a learner for 2 minutes; if `etcdsnap member ls` shows it `(not started)`, its server never started: remove it with `etcdsnap member remove <its hex id>` and join again"
                )));
            }
            Err(e) => return Err(e),
        }
    };
    let mut initial = Vec::new();
    for m in &list {
        if m.id == id {
            initial.push(format!("{}={peer}", etcd.member_name));
        } else if !m.name.is_empty() {
            initial.extend(m.peer_urls.iter().map(|u| format!("{}={u}", m.name)));
        }
    }
    tracing::info!(
        "added etcd member {} ({id:x}) as a learner; initial cluster {}",
        etcd.member_name,
        initial.join(",")
    );
    etcd.initial_cluster = Some(initial.join(","));
    Ok(())
}

/// Step 4, on every server with an embedded etcd: when this member leads, learners that etcd
/// reports in sync are promoted (after `min_learner_time`, 0 by default). Also logs this
/// member's own learner phase. Runs until `stop` flips.
pub async fn promote_learners(
    state: Arc<ServerState>,
    cluster: EtcdTarget,
    min_learner_time: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut seen: HashMap<u64, Instant> = HashMap::new();
    let mut was_learner = false;
    loop {
        if let Ok(st) = state.engine.etcd().status().await {
            if st.is_learner && !was_learner {
                tracing::info!(
                    "this server's etcd is a learner: it takes no snapshots until the leader promotes it"
                );
            } else if !st.is_learner && was_learner {
                tracing::info!("this server's etcd was promoted to a voting member");
                state.detect_kubernetes().await;
            }
            was_learner = st.is_learner;
            if st.leader != 0 && st.leader == st.member_id {
                promote_round(&cluster, &mut seen, min_learner_time).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PROMOTE_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn promote_round(
    cluster: &EtcdTarget,
    seen: &mut HashMap<u64, Instant>,
    min_learner_time: Duration,
) {
    let Ok(members) = cluster.voting_members().await else {
        return;
    };
    seen.retain(|id, _| members.iter().any(|m| m.id == *id && m.is_learner));
    for m in members
        .iter()
        .filter(|m| m.is_learner && !m.name.is_empty())
    {
        let since = *seen.entry(m.id).or_insert_with(Instant::now);
        if since.elapsed() < min_learner_time {
            continue;
        }
        match cluster.promote(m.id).await {
            Ok(()) => {
                tracing::info!("promoted etcd learner {} to a voting member", m.name);
                seen.remove(&m.id);
            }
            Err(e) => tracing::debug!("learner {} not promoted yet: {e}", m.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_of_a_node() {
        assert!(is_member_of_node("n2-0a1b2c3d", "n2"));
        assert!(!is_member_of_node("n22-0a1b2c3d", "n2"));
        assert!(!is_member_of_node("n2-0a1b2c3", "n2"));
        assert!(!is_member_of_node("n2-0a1b2c3x", "n2"));
        assert!(!is_member_of_node("n2", "n2"));
    }

    #[test]
    fn removed_member_backups_keep_the_newest_five() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path();
        for unix in [100, 200, 300, 400, 500, 600] {
            std::fs::create_dir_all(db.join(format!("etcd-backup-{unix}"))).unwrap();
        }
        std::fs::create_dir_all(db.join("etcd/member")).unwrap();
        std::fs::write(db.join("etcd/member/x"), "old").unwrap();
        assert!(!needs_join(db));
        std::fs::write(db.join("etcd/tombstone"), "").unwrap();
        assert!(needs_join(db));
        assert!(check_tombstone(db, false).is_err());
        check_tombstone(db, true).unwrap();
        back_up_removed_member(db).unwrap();
        assert!(!db.join("etcd").exists());
        let mut left: Vec<String> = std::fs::read_dir(db)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), KEEP_BACKUPS, "{left:?}");
        assert!(!left.contains(&"etcd-backup-100".to_string()), "{left:?}");
        assert!(!left.contains(&"etcd-backup-200".to_string()), "{left:?}");
        let newest = left.iter().find(|n| {
            n.parse::<i64>().is_err() && {
                let unix: i64 = n["etcd-backup-".len()..]
                    .split('-')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                unix > 600
            }
        });
        let newest = newest.expect("the moved member dir");
        assert_eq!(
            std::fs::read_to_string(db.join(newest).join("member/x")).unwrap(),
            "old"
        );
        // Nothing to back up without a tombstone.
        back_up_removed_member(db).unwrap();
    }
}
