//! The datastore the server snapshots: the embedded etcd child it starts and watches, or an
//! external cluster it only connects to. [`start`] brings it up; `supervise` waits for it to
//! answer, tells the supervisor the first time it does, and then restarts a child that dies
//! until shutdown. It starts no task of its own.

use std::future::Future;
use std::time::Duration;

use super::local_etcd::{embedded, embedded_target};
use super::{ServerConfig, ServerState};
use crate::etcd::EtcdTarget;
use crate::etcd::process::{EmbeddedEtcd, EtcdChild};
use crate::{Error, Result};

/// The embedded etcd: how it was started, and the running process.
pub struct Child {
    pub etcd: EmbeddedEtcd,
    pub process: EtcdChild,
}

/// Starts the datastore: the embedded etcd (checking its ports first), or nothing for an
/// external cluster. Returns how to reach it and the child to watch.
/// A joining server (`join`) first adds its etcd to that cluster as a learner.
pub async fn start(
    cfg: &ServerConfig,
    hosts: &[String],
    join: Option<&super::join::Cluster>,
) -> Result<(EtcdTarget, Option<Child>)> {
    match &cfg.datastore {
        Some(ext) => Ok((
            EtcdTarget::new(
                ext.endpoints.clone(),
                ext.tls.clone(),
                Duration::from_secs(5),
            ),
            None,
        )),
        None => {
            let mut e = embedded(cfg, hosts).await?;
            e.check_ports_free()?;
            if let Some(cluster) = join {
                super::join::add_self(cluster, &mut e, &cfg.node_name).await?;
            }
            let process = EtcdChild::spawn(&e)?;
            Ok((embedded_target(&e), Some(Child { etcd: e, process })))
        }
    }
}

fn exit_text(status: std::io::Result<std::process::ExitStatus>) -> String {
    status
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string())
}

const REMOVED_CAUSE: &str = "this server's etcd member was removed from the cluster";

/// What etcd (3.4 and 3.5) logs when its peers do not know it as a member of their cluster:
/// they answer that they cannot find this member ("peer X failed to find local node Y"), or
/// refuse its messages as another cluster's ("request sent was ignored ... cluster ID
/// mismatch"; the refusing side logs "request cluster ID mismatch" instead, so a restored
/// server is not taken for the stale one). Both mean: this server started on its old data after
/// the cluster was reset or restored elsewhere.
fn peers_refuse_us(log: &str) -> bool {
    log.lines().any(|l| {
        l.contains("failed to find local node")
            || (l.contains("request sent was ignored") && l.contains("cluster ID mismatch"))
    })
}

const FOREIGN_CAUSE: &str = "this server's etcd data belongs to a cluster that was reset or restored on another server: its peers do not know it as a member";

/// Marks the server not ready for a foreign cluster and says how to rejoin.
fn report_foreign_cluster(state: &ServerState) {
    state.ready.set(false);
    state.ready.set_cause(FOREIGN_CAUSE);
    tracing::error!(
        "{FOREIGN_CAUSE}. To rejoin the reset cluster: stop this server, move <data-dir>/server/db/etcd aside (keep it until the cluster is healthy; the snapshots in server/db/snapshots may stay), and start it with --server https://<a server of the reset cluster>:9345 and the cluster's token; it then joins as a new member"
    );
}

/// Watches etcd's log, once it is ready, for peers that do not know this member (see
/// [`peers_refuse_us`]): etcd then runs on without them for ever. Completes never; reports
/// once.
async fn watch_for_foreign_cluster(state: &ServerState, log: crate::etcd::process::LogReader) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        if peers_refuse_us(&log.since_start()) {
            break;
        }
    }
    report_foreign_cluster(state);
    std::future::pending::<()>().await
}

/// Restarts allowed within [`RESTART_WINDOW`] before the server gives up and exits.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(600);

/// When the embedded etcd died: whether to restart it, and after how long.
#[derive(Debug, Default)]
pub struct RestartPolicy {
    recent: Vec<std::time::Instant>,
}

impl RestartPolicy {
    /// `Some(delay)` to restart (1 s, doubling per recent restart), `None` to give up.
    pub fn next(&mut self, now: std::time::Instant) -> Option<Duration> {
        self.recent
            .retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if self.recent.len() >= MAX_RESTARTS {
            return None;
        }
        let delay = Duration::from_secs(1 << self.recent.len());
        self.recent.push(now);
        Some(delay)
    }
}

enum Wait {
    Ready,
    Shutdown,
    Died(std::io::Result<std::process::ExitStatus>),
}

/// Waits until etcd answers, the child dies, or `shutdown`, polling every 250 ms.
async fn wait_ready(
    state: &ServerState,
    child: &mut Option<Child>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Wait {
    let step = Duration::from_millis(250);
    let mut waited = Duration::ZERO;
    let mut foreign = false;
    let mut looked = std::time::Instant::now();
    loop {
        if state.etcd_healthy().await {
            return Wait::Ready;
        }
        if foreign {
            state.ready.set_cause(FOREIGN_CAUSE);
        } else if looked.elapsed() >= Duration::from_secs(5)
            && let Some(c) = child.as_ref()
            && peers_refuse_us(&c.process.log_since_start())
        {
            foreign = true;
            report_foreign_cluster(state);
        }
        if looked.elapsed() >= Duration::from_secs(5) {
            looked = std::time::Instant::now();
        }
        match child {
            Some(c) => {
                tokio::select! {
                    st = c.process.wait() => return Wait::Died(st),
                    _ = &mut *shutdown => return Wait::Shutdown,
                    _ = tokio::time::sleep(step) => {}
                }
            }
            None => {
                tokio::select! {
                    _ = &mut *shutdown => return Wait::Shutdown,
                    _ = tokio::time::sleep(step) => {}
                }
            }
        }
        waited += step;
        if waited.as_millis().is_multiple_of(10_000) {
            tracing::warn!(
                "waiting for etcd to become ready ({}s): {}",
                waited.as_secs(),
                state.ready.cause()
            );
        }
    }
}

/// After the child exited: waits for the restart delay and starts it again, or gives up with
/// an error that carries etcd's log tail.
async fn restart(
    state: &ServerState,
    child: &mut Option<Child>,
    policy: &mut RestartPolicy,
    status: std::io::Result<std::process::ExitStatus>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<bool> {
    let Some(c) = child else {
        return Ok(false);
    };
    let status = exit_text(status);
    let tail = c.process.log_tail(30);
    state.ready.set(false);
    if let Some(e) = super::join::removed_member(&c.etcd, &c.process.log_since_start()) {
        state.ready.set_cause(REMOVED_CAUSE);
        return Err(e);
    }
    // A full disk does not heal by restarting: say so at once.
    if let e @ Error::DiskFull { .. } =
        crate::etcd::process::exit_error("while the server ran", &status, &tail)
    {
        state.ready.set_cause(e.to_string());
        return Err(e);
    }
    let Some(delay) = policy.next(std::time::Instant::now()) else {
        state.ready.set_cause(format!(
            "etcd exited ({status}) and was restarted too often"
        ));
        return Err(Error::Etcd(format!(
            "etcd exited unexpectedly ({status}) for the {}th time within {} minutes; giving up. Last lines of its log:\n{tail}",
            MAX_RESTARTS + 1,
            RESTART_WINDOW.as_secs() / 60
        )));
    };
    state.ready.set_cause(format!(
        "etcd exited ({status}); restarting it in {}s",
        delay.as_secs()
    ));
    tracing::error!(
        "etcd exited unexpectedly ({status}); restarting it in {}s. Last lines of its log:\n{tail}",
        delay.as_secs()
    );
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = &mut *shutdown => return Ok(false),
    }
    c.process = EtcdChild::spawn(&c.etcd)?;
    Ok(true)
}

/// Once the server's own etcd answers: its CAs are kept in the datastore, and the first normal
/// start after a `--cluster-reset` removes `db/reset-flag`.
async fn after_start(state: &ServerState, server_dir: &std::path::Path) -> Result<()> {
    // A learner cannot write; the data came from the cluster it joined, which keeps it.
    if state.is_learner().await {
        return Ok(());
    }
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

/// The first time etcd answers: the server's own etcd keeps its CAs ([`after_start`]),
/// unfinished snapshot files are removed, and a Kubernetes datastore is recognised.
async fn first_ready(state: &ServerState) -> Result<()> {
    if let Some(dir) = &state.owned_server_dir {
        after_start(state, dir).await?;
    }
    if let Err(e) = state
        .engine
        .remove_stale_parts(state.snapshots.dir.as_deref())
    {
        tracing::warn!("cannot clean up unfinished snapshot files: {e}");
    }
    state.detect_kubernetes().await;
    Ok(())
}

/// While etcd runs: waits for the child's death (its exit status) or `shutdown` (`None`),
/// watching its log for peers that do not know it. An external etcd only waits for shutdown.
async fn until_died_or_shutdown(
    state: &ServerState,
    child: &mut Option<Child>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Option<std::io::Result<std::process::ExitStatus>> {
    let Some(c) = child else {
        shutdown.await;
        return None;
    };
    let foreign = watch_for_foreign_cluster(state, c.process.log_reader());
    tokio::pin!(foreign);
    loop {
        tokio::select! {
            st = c.process.wait() => return Some(st),
            _ = &mut *shutdown => return None,
            _ = &mut foreign => {}
        }
    }
}

/// Waits for etcd, runs `on_first_ready` (the supervisor starts the tasks that need etcd) the
/// first time it answers, then watches etcd until shutdown: an embedded etcd that dies is
/// restarted with backoff (the API keeps answering, with 503 while etcd is down), and after
/// repeated deaths within ten minutes the server gives up with etcd's log. The server is
/// marked not ready when this returns.
pub(super) async fn supervise(
    state: &ServerState,
    child: &mut Option<Child>,
    shutdown: impl Future<Output = ()> + Send,
    on_first_ready: impl FnOnce() + Send,
) -> Result<()> {
    tokio::pin!(shutdown);
    let mut policy = RestartPolicy::default();
    let mut on_first_ready = Some(on_first_ready);
    let result = loop {
        match wait_ready(state, child, &mut shutdown).await {
            Wait::Shutdown => break Ok(()),
            Wait::Died(st) => match restart(state, child, &mut policy, st, &mut shutdown).await {
                Ok(true) => continue,
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            },
            Wait::Ready => {}
        }
        if let Some(start_tasks) = on_first_ready.take() {
            if let Err(e) = first_ready(state).await {
                break Err(e);
            }
            start_tasks();
        }
        state.ready.set(true);
        tracing::info!("etcd is ready");
        super::notify::notify("READY=1\nSTATUS=etcd is ready; serving the supervisor API");
        let Some(st) = until_died_or_shutdown(state, child, &mut shutdown).await else {
            break Ok(());
        };
        match restart(state, child, &mut policy, st, &mut shutdown).await {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    state.ready.set(false);
    result
}

/// How long shutdown waits for a snapshot save in progress (kept at this path for callers
/// outside the crate; the supervisor applies it).
pub use super::SHUTDOWN_SAVE_GRACE;

#[cfg(test)]
mod tests {
    #[test]
    fn peers_that_do_not_know_us_are_told_from_the_restored_side() {
        use super::peers_refuse_us;
        // etcd 3.5, a member the restored cluster does not know.
        assert!(peers_refuse_us(
            r#"{"level":"warn","msg":"peer became inactive (message send to peer failed)","peer-id":"75de954e6b2e541f","error":"failed to dial 75de954e6b2e541f on stream MsgApp v2 (peer 75de954e6b2e541f failed to find local node afe6255caea025fa)"}"#
        ));
        // etcd 3.4, the sending side of a cluster ID mismatch.
        assert!(peers_refuse_us(
            "2026-12-07 22:00:00.000000 E | rafthttp: request sent was ignored (cluster ID mismatch: peer[75de954e6b2e541f]=1c45a069f3a1d796, local=cdf818194e3a8c32)"
        ));
        // The refusing (restored) side, and an ordinary unreachable peer: not us.
        assert!(!peers_refuse_us(
            "2026-12-07 22:00:00.000000 E | rafthttp: request cluster ID mismatch (got 1c45a069f3a1d796 want cdf818194e3a8c32)"
        ));
        assert!(!peers_refuse_us(
            r#"{"level":"warn","msg":"prober detected unhealthy status","error":"dial tcp 127.0.0.1:31143: connect: connection refused"}"#
        ));
    }

    use super::*;

    #[test]
    fn restarts_back_off_then_give_up_within_the_window() {
        let mut p = RestartPolicy::default();
        let t0 = std::time::Instant::now();
        let delays: Vec<_> = (0..5)
            .map(|i| p.next(t0 + Duration::from_secs(i)).unwrap())
            .collect();
        assert_eq!(
            delays.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16]
        );
        assert_eq!(
            p.next(t0 + Duration::from_secs(10)),
            None,
            "sixth death within the window"
        );
        // Ten minutes later the slate is clean.
        assert_eq!(
            p.next(t0 + Duration::from_secs(700)),
            Some(Duration::from_secs(1))
        );
    }
}
