//! Restore drills: proof that a snapshot restores, short of the night it has to.
//!
//! A drill opens a snapshot (a local file, a name in the snapshot dir, or an S3 object;
//! compressed ones are decompressed and checked), restores it with etcdutl/etcdctl into a
//! temporary data dir, starts a throwaway etcd on it (plain HTTP on loopback, ports of its own,
//! a cluster of its own), and reads every key back at the snapshot's revision. It passes when
//! the restored etcd serves exactly the snapshot's keys and values: same count, same revision,
//! same SHA-256 over keys, values and modification revisions, read from the snapshot file by
//! our own bbolt reader on one side and through etcd's API on the other. Everything it made is
//! removed afterwards, and the etcd it started is stopped, whatever the outcome; what a killed
//! drill leaves (its directories carry its pid) is removed by the next drill or server start.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, SortOrder, SortTarget};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::inspect::{self, InspectOptions};
use crate::restore::{DirRestore, Membership, RestoreTool};
use crate::source::Source;
use crate::{Error, Result};

/// The newest successful, non-empty snapshot of a local store: what a drill takes by default.
pub async fn newest_snapshot(
    local: &crate::store::local::LocalStore,
) -> Result<Option<crate::store::SnapshotRecord>> {
    use crate::store::{ListDetail, SnapshotStatus, SnapshotStore};
    Ok(local
        .list(ListDetail::Basic)
        .await?
        .into_iter()
        .filter(|r| r.status == SnapshotStatus::Successful && r.size > 0)
        .max_by_key(|r| r.created_at))
}

/// The name of every directory a drill makes starts with this, then the drill's pid:
/// `.etcdsnap-drill-<pid>-<kind>-<random>`, so that one left by a killed drill is known as
/// ours and as dead.
const WORK_PREFIX: &str = ".etcdsnap-drill-";

/// A new temporary directory of this process's drill in `parent`, removed when dropped.
pub fn work_dir(parent: &Path, kind: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{WORK_PREFIX}{}-{kind}-", std::process::id()))
        .tempdir_in(parent)
        .map_err(|e| Error::io("create a temporary directory in", parent, e))
}

/// Removes the directories in `parent` left by drills that were killed (their process is
/// gone, so nothing of theirs cleaned up): the next drill, or the server's start, finds them.
/// With `all`, every drill directory goes, whatever its pid says: for a server holding its
/// data-dir lock, whose drills are the only ones there (a pid may have been reused).
pub fn remove_stale_work(parent: &Path, all: bool) {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(WORK_PREFIX) else {
            continue;
        };
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let stale = match owner {
            Some(pid) => all || !process_alive(pid),
            // No pid in the name: an older version's, known dead to a server holding the
            // lock, or once it is a day old (no drill runs that long).
            None => {
                all || e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(24 * 3600))
            }
        };
        if !stale {
            continue;
        }
        let p = e.path();
        match std::fs::remove_dir_all(&p) {
            Ok(()) => tracing::info!(
                "Removed {}, left by a restore drill that was killed",
                p.display()
            ),
            Err(err) => tracing::warn!(
                "cannot remove {}, left by a killed restore drill: {err}",
                p.display()
            ),
        }
    }
}

fn process_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

/// Keys read from the restored etcd per request.
const PAGE: i64 = 1000;
/// How long the restored etcd has to answer.
const START_LIMIT: Duration = Duration::from_secs(60);

/// What a drill needs.
#[derive(Debug, Clone)]
pub struct Drill {
    pub source: Source,
    /// The etcd binary that serves the restored data dir.
    pub etcd_binary: PathBuf,
    pub tool: RestoreTool,
    /// Where the temporary data dir and a decompressed copy of a local file go (about twice
    /// the snapshot's raw size, briefly).
    pub work_parent: PathBuf,
}

/// What a drill found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    pub name: String,
    pub location: String,
    /// The snapshot's revision, at which the restored etcd was read.
    pub revision: i64,
    /// Keys at that revision, in the snapshot and in the restored etcd (equal on success).
    pub keys: u64,
    /// SHA-256 over each key, value and modification revision, in key order.
    pub sha256: String,
    /// The etcd version that served the restored data.
    pub etcd_version: String,
    pub restore_seconds: f64,
    pub seconds: f64,
}

/// A running digest of key-value entries, the same on both sides.
#[derive(Default)]
struct EntryDigest {
    h: Sha256,
    n: u64,
}

impl EntryDigest {
    fn add(&mut self, key: &[u8], value: &[u8], mod_revision: i64) {
        self.h.update((key.len() as u64).to_be_bytes());
        self.h.update(key);
        self.h.update((value.len() as u64).to_be_bytes());
        self.h.update(value);
        self.h.update(mod_revision.to_be_bytes());
        self.n += 1;
    }
    fn finish(self) -> (u64, String) {
        (self.n, hex::encode(self.h.finalize()))
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Other(format!("cannot find a free loopback port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| Error::Other(e.to_string()))?
        .port())
}

/// Client and peer ports for the restored etcd: free when picked, but another process may bind
/// one before etcd does; then etcd exits at once and is started again on new ones.
fn free_ports() -> Result<(u16, u16)> {
    Ok((free_port()?, free_port()?))
}

/// How often the restored etcd is started on new ports when one of its ports was taken.
const BIND_ATTEMPTS: u32 = 5;

/// Whether the etcd that wrote `log` failed to bind a port.
fn bind_failed(log: &Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|l| l.contains("address already in use"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Other(format!("drill task failed: {e}")))?
}

/// Our side: every key at the snapshot's latest revision, read from the file by our own bbolt
/// reader; returns the revision, the count and the digest.
fn read_snapshot(raw: &Path) -> Result<(i64, u64, String)> {
    let db = crate::bbolt::Db::open(raw)?;
    let list = inspect::listing(&db, &InspectOptions::default())?;
    let mut d = EntryDigest::default();
    list.for_each(|e| {
        d.add(
            &e.key,
            e.value.as_deref().unwrap_or(&[]),
            e.head.mod_revision,
        );
        Ok(())
    })?;
    let (n, sha) = d.finish();
    Ok((list.revision(), n, sha))
}

impl Drill {
    pub async fn run(&self) -> Result<DrillReport> {
        let started = Instant::now();
        remove_stale_work(&self.work_parent, false);
        let opened = self.open().await?;
        let info = opened.info.clone();
        tracing::info!("Drill: reading {} for its keys", info.location);
        let raw = opened.raw.clone();
        let (revision, want_n, want) = blocking(move || read_snapshot(&raw)).await?;

        let work = work_dir(&self.work_parent, "etcd")?;
        let (restore_seconds, outcome) = self
            .restore_and_read(&opened, work.path(), revision)
            .await?;
        drop(opened);
        let (etcd_version, got_n, got) = outcome?;
        if (got_n, &got) != (want_n, &want) {
            return Err(Error::Integrity(format!(
                "drill of {}: the restored etcd serves {got_n} keys (sha256 {got}) at revision {revision}, the snapshot holds {want_n} (sha256 {want}); this snapshot does not restore faithfully: take a new one and keep this one for investigation",
                info.name
            )));
        }
        Ok(DrillReport {
            name: info.name,
            location: info.location,
            revision,
            keys: want_n,
            sha256: want,
            etcd_version,
            restore_seconds,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The snapshot as a raw file through the snapshot source, its trailer verified.
    async fn open(&self) -> Result<inspect::Opened> {
        let opened = match &self.source {
            // A local file is decompressed next to the drill's data dir, not in $TMPDIR
            // (often a RAM disk).
            Source::Path(p) => {
                let scratch = work_dir(&self.work_parent, "raw")?;
                let p = p.clone();
                blocking(move || inspect::open_path_in(&p, scratch)).await?
            }
            Source::S3 { .. } => inspect::open(&self.source).await?,
        };
        if opened.info.trailer.is_none() {
            // A raw file: its SHA-256 trailer first (a compressed one was hashed as it was
            // decompressed, and is checked again by the restore).
            let raw = opened.raw.clone();
            blocking(move || crate::snapfile::verify::verify_file(&raw)).await?;
        }
        Ok(opened)
    }

    /// Restores the snapshot into `work` once, then starts etcd on it and reads it back. The
    /// ports are picked free but may be taken before etcd binds them: then etcd exits at once
    /// and is started again on new ones (a single member's restored data dir does not care
    /// which ports it is served on). Returns the restore's time and the outcome of the read.
    async fn restore_and_read(
        &self,
        opened: &inspect::Opened,
        work: &Path,
        revision: i64,
    ) -> Result<(f64, Result<(String, u64, String)>)> {
        let data_dir = work.join("etcd");
        let (mut client_port, mut peer_port) = free_ports()?;
        let restore_started = Instant::now();
        DirRestore {
            snapshot: opened.raw.display().to_string(),
            s3: None,
            output_dir: data_dir.clone(),
            membership: Membership {
                name: "drill".into(),
                initial_cluster: None,
                peer_urls: format!("http://127.0.0.1:{peer_port}"),
                cluster_token: Some("etcdsnap-drill".into()),
            },
            tool: self.tool.clone(),
        }
        .run()
        .await?;
        let restore_seconds = restore_started.elapsed().as_secs_f64();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client_url = format!("http://127.0.0.1:{client_port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let log = work.join(format!("etcd-{attempt}.log"));
            let mut etcd = self.start_etcd(&data_dir, &client_url, &peer, &log)?;
            let outcome = read_back(&client_url, revision, &mut etcd, &log).await;
            let _ = etcd.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), etcd.wait()).await;
            if outcome.is_err() && attempt < BIND_ATTEMPTS && bind_failed(&log) {
                tracing::warn!("Drill: a port of the restored etcd was taken; trying others");
                (client_port, peer_port) = free_ports()?;
                continue;
            }
            return Ok((restore_seconds, outcome));
        }
    }

    fn start_etcd(
        &self,
        data_dir: &Path,
        client_url: &str,
        peer: &str,
        log: &Path,
    ) -> Result<tokio::process::Child> {
        let out = std::fs::File::create(log).map_err(|e| Error::io("create", log, e))?;
        let err = out.try_clone().map_err(|e| Error::io("open", log, e))?;
        let mut cmd = tokio::process::Command::new(&self.etcd_binary);
        cmd.args([
            "--name=drill".to_string(),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=drill={peer}"),
            "--heartbeat-interval=10".into(),
            "--election-timeout=100".into(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(k);
            }
        }
        // A drill's etcd must not tell systemd the service is ready (it speaks sd_notify).
        cmd.env_remove("NOTIFY_SOCKET");
        crate::etcd::process::die_with_parent(cmd.as_std_mut(), libc::SIGKILL);
        tracing::info!(
            "Drill: starting {} on {data_dir:?}",
            self.etcd_binary.display()
        );
        cmd.spawn()
            .map_err(|e| Error::io("start etcd", &self.etcd_binary, e))
    }
}

/// Waits for the restored etcd, then reads every key at `revision` in pages; returns its
/// version, the count and the digest.
async fn read_back(
    url: &str,
    revision: i64,
    etcd: &mut tokio::process::Child,
    log: &Path,
) -> Result<(String, u64, String)> {
    let deadline = Instant::now() + START_LIMIT;
    let opts = || ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
    let (mut client, version) = loop {
        if let Ok(Some(st)) = etcd.try_wait() {
            return Err(Error::Etcd(format!(
                "the restored etcd exited ({st}) before it answered: {}",
                crate::etcd::process::log_tail(log, 15)
            )));
        }
        if let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_secs(3), Client::connect([url], Some(opts()))).await
            && let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(3), c.status()).await
            && st.leader() != 0
        {
            break (c, st.version().to_string());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!(
                "the restored etcd did not answer within {START_LIMIT:?}: {}",
                crate::etcd::process::log_tail(log, 15)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut d = EntryDigest::default();
    let mut from = vec![0u8];
    loop {
        let o = GetOptions::new()
            .with_from_key()
            .with_revision(revision)
            .with_limit(PAGE)
            .with_sort(SortTarget::Key, SortOrder::Ascend);
        let resp = tokio::time::timeout(Duration::from_secs(30), client.get(from.clone(), Some(o)))
            .await
            .map_err(|_| Error::Timeout("reading the restored etcd timed out".into()))?
            .map_err(|e| {
                Error::Etcd(format!(
                    "reading the restored etcd at revision {revision}: {e}"
                ))
            })?;
        for kv in resp.kvs() {
            d.add(kv.key(), kv.value(), kv.mod_revision());
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    let (n, sha) = d.finish();
    Ok((version, n, sha))
}

#[cfg(test)]
mod tests {
    use super::EntryDigest;

    fn digest(entries: &[(&[u8], &[u8], i64)]) -> (u64, String) {
        let mut d = EntryDigest::default();
        for (k, v, r) in entries {
            d.add(k, v, *r);
        }
        d.finish()
    }

    #[test]
    fn the_digest_tells_keys_values_revisions_and_boundaries_apart() {
        let base = digest(&[(b"/a", b"1", 5), (b"/b", b"2", 6)]);
        assert_eq!(base.0, 2);
        for other in [
            digest(&[(b"/a", b"1", 5), (b"/b", b"3", 6)]),
            digest(&[(b"/a", b"1", 5), (b"/b", b"2", 7)]),
            digest(&[(b"/a", b"1", 5), (b"/c", b"2", 6)]),
            // The same bytes split differently between key and value.
            digest(&[(b"/a1", b"", 5), (b"/b", b"2", 6)]),
            digest(&[(b"/a", b"1", 5)]),
        ] {
            assert_ne!(base.1, other.1);
        }
        assert_eq!(base, digest(&[(b"/a", b"1", 5), (b"/b", b"2", 6)]));
    }
}
