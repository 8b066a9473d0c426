//! The one owner of the server's background work. [`run`] starts every task and stops them all
//! with one [`StopSignal`] and one join; no other module spawns a long-lived task.
//!
//! Start, in this order: the HTTP server and its certificate renewal, restore drills (when
//! scheduled), then the etcd watcher ([`datastore::supervise`], run in place: its outcome is the
//! server's). The first time etcd answers, and only then: learner promotion (own etcd),
//! scheduled snapshots and reconcile (unless snapshots are disabled). A task to come (the
//! continuous-backup recorder) gets a slot in [`Tasks`], a line in a start step and one in
//! [`Supervisor::stop`].
//!
//! Stop, once the watcher returns (shutdown asked, or etcd given up): the signal flips, and
//! every task ends by it or is cancelled. Reconcile and promotion are cancelled; a scheduled
//! save in progress (upload and retention included) gets [`SHUTDOWN_SAVE_GRACE`]; systemd
//! hears `STOPPING=1`; a drill is cancelled (it cleans up when dropped: its etcd dies and its
//! files go); an on-demand save in flight gets [`SHUTDOWN_SAVE_GRACE`]; the HTTP server and
//! the renewal are cancelled; last, etcd gets SIGTERM (15 s before SIGKILL).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::datastore::{self, Child};
use super::drills::{self, DrillSettings};
use super::{SHUTDOWN_SAVE_GRACE, ServerState, http, join, notify, scheduler, serve};
use crate::Result;

/// The one shutdown signal every task listens to: each takes a [`watch::Receiver`] whose
/// `changed()` resolves when the server stops.
pub(crate) struct StopSignal(watch::Sender<bool>);

impl StopSignal {
    fn new() -> Self {
        StopSignal(watch::channel(false).0)
    }

    /// What one task listens to.
    fn receiver(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }

    /// Tells every task to stop (also those that have not looked yet).
    fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// What the HTTP server needs: the bound listener and the certificate it serves, renewed in
/// `tls_dir` for `hosts`.
pub(super) struct Serving {
    pub(super) listener: TcpListener,
    pub(super) cert: Arc<serve::ServingCert>,
    pub(super) tls_dir: PathBuf,
    pub(super) hosts: Vec<String>,
}

/// Every background task of a running server; `None` when not started (yet).
#[derive(Default)]
struct Tasks {
    http: Option<JoinHandle<()>>,
    cert_renewal: Option<JoinHandle<()>>,
    drills: Option<JoinHandle<()>>,
    promotion: Option<JoinHandle<()>>,
    scheduler: Option<JoinHandle<()>>,
    reconcile: Option<JoinHandle<()>>,
}

struct Supervisor {
    state: Arc<ServerState>,
    stop: StopSignal,
    tasks: Tasks,
}

/// Runs the server's tasks until `shutdown` resolves or etcd is given up (an error carrying
/// etcd's log tail), then stops them all and `child`, the embedded etcd.
pub(super) async fn run(
    state: Arc<ServerState>,
    serving: Serving,
    drill: Option<DrillSettings>,
    mut child: Option<Child>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let mut sup = Supervisor {
        state: state.clone(),
        stop: StopSignal::new(),
        tasks: Tasks::default(),
    };
    sup.start_http(serving)?;
    sup.start_drills(drill);
    let outcome =
        datastore::supervise(&state, &mut child, shutdown, || sup.start_after_ready()).await;
    sup.stop(child).await;
    outcome
}

impl Supervisor {
    /// The supervisor API and the renewal of its certificate.
    fn start_http(&mut self, serving: Serving) -> Result<()> {
        let acceptor = serve::tls_acceptor(serving.cert.clone())?;
        tracing::info!(
            "supervisor API listening on https://{}",
            serving
                .listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        self.tasks.http = Some(tokio::spawn(serve::serve(
            serving.listener,
            acceptor,
            http::router(self.state.clone()),
            // After etcd started: the descriptors open now are part of the reserve.
            serve::Limits::for_this_process(),
            self.stop.receiver(),
        )));
        self.tasks.cert_renewal = Some(tokio::spawn(serve::keep_serving_cert_fresh(
            serving.cert,
            serving.tls_dir,
            serving.hosts,
            self.stop.receiver(),
        )));
        Ok(())
    }

    fn start_drills(&mut self, drill: Option<DrillSettings>) {
        self.tasks.drills =
            drill.map(|d| tokio::spawn(drills::run(self.state.clone(), d, self.stop.receiver())));
    }

    /// The tasks that need etcd: started once, the first time it answers.
    fn start_after_ready(&mut self) {
        let state = &self.state;
        if let Some(cluster) = &state.cluster {
            self.tasks.promotion = Some(tokio::spawn(join::promote_learners(
                state.clone(),
                cluster.clone(),
                state.learner_promotion_delay,
                self.stop.receiver(),
            )));
        }
        if state.snapshots.disabled {
            tracing::info!("ETCD snapshots are disabled");
        } else {
            self.tasks.scheduler = Some(tokio::spawn(scheduler::run(
                state.clone(),
                self.stop.receiver(),
            )));
            self.tasks.reconcile = Some(tokio::spawn(scheduler::reconcile_loop(
                state.clone(),
                self.stop.receiver(),
            )));
        }
    }

    /// Stops every task and then etcd, in the order of the module doc.
    async fn stop(self, child: Option<Child>) {
        let Tasks {
            http,
            cert_renewal,
            drills,
            promotion,
            scheduler,
            reconcile,
        } = self.tasks;
        self.stop.trigger();
        cancel(reconcile).await;
        cancel(promotion).await;
        // The scheduler stops at its next wait; a scheduled save it is running finishes first.
        if let Some(mut task) = scheduler
            && tokio::time::timeout(SHUTDOWN_SAVE_GRACE, &mut task)
                .await
                .is_err()
        {
            tracing::warn!(
                "a scheduled snapshot was still running {}s after shutdown began; abandoning it",
                SHUTDOWN_SAVE_GRACE.as_secs()
            );
            cancel(Some(task)).await;
        }
        notify::notify("STOPPING=1");
        cancel(drills).await;
        // Let an on-demand save in flight finish, but not forever.
        if tokio::time::timeout(SHUTDOWN_SAVE_GRACE, self.state.engine.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("a snapshot was still running at shutdown; abandoning it");
        }
        cancel(http).await;
        cancel(cert_renewal).await;
        if let Some(mut c) = child {
            tracing::info!("stopping etcd");
            c.process.stop(Duration::from_secs(15)).await;
        }
    }
}

/// Cancels `task` and waits until it is gone (at its next await).
async fn cancel(task: Option<JoinHandle<()>>) {
    if let Some(task) = task {
        task.abort();
        let _ = task.await;
    }
}
