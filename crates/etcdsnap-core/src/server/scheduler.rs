//! Scheduled snapshots: at each cron tick, wait a random 0–5 s, save with the server's settings,
//! then apply local (and S3) retention. Ticks that pass while a save runs are skipped and logged.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::ServerState;
use crate::snapshot::plan::{Remote, RemotePlan, SavePlan};
use crate::store::remote::S3Target;

/// How long a scheduled snapshot waits for an on-demand save that is running.
pub const SAVE_WAIT: Duration = Duration::from_secs(15 * 60);

/// Most random delay before a scheduled save, so that servers sharing a schedule spread out.
pub const JITTER_MAX: Duration = Duration::from_secs(5);

fn jitter() -> Duration {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    let ms = u32::from_le_bytes(b) as u64 % (JITTER_MAX.as_millis() as u64 + 1);
    Duration::from_millis(ms)
}

/// The remote part of a save that goes on without S3 when the store cannot be connected: a
/// recorded failure, or, for scheduled saves (`scheduled`), no S3 at all when the config
/// Secret cannot be read (as K3s skips it).
pub(super) async fn remote_plan(
    engine: &crate::snapshot::Engine,
    target: &S3Target,
    scheduled: bool,
) -> RemotePlan {
    match engine.connect(target).await {
        Ok(store) => RemotePlan::Ready(Remote {
            store,
            retention: target.config().retention,
            spec: target.config().record_spec(),
        }),
        Err(e @ crate::Error::ConfigSecret(_)) if scheduled => {
            tracing::warn!("snapshot without S3: {e}");
            RemotePlan::None
        }
        Err(e) => RemotePlan::Failed {
            message: e.to_string(),
            spec: target.config().record_spec(),
        },
    }
}

/// The server's own settings as a save; an S3 store that cannot be connected does not stop the
/// local snapshot (K3s records the failure and carries on).
async fn scheduled_plan(state: &ServerState) -> SavePlan {
    let s = &state.snapshots;
    let remote = match &s.s3 {
        None => RemotePlan::None,
        Some(target) => remote_plan(&state.engine, target, true).await,
    };
    SavePlan {
        prefix: s.name.clone(),
        dir: s.dir.clone(),
        compress: s.compress,
        compression: s.compression,
        retention: s.retention,
        remote,
    }
}

/// The longest time between two of the schedule's next 25 runs: what an alert on the age of
/// the last snapshot must allow (a cron with uneven runs has uneven gaps).
pub fn longest_gap(schedule: &crate::schedule::Schedule, from: chrono::DateTime<Utc>) -> Duration {
    let mut longest = Duration::ZERO;
    let Some(mut prev) = schedule.next_after(from) else {
        return longest;
    };
    for _ in 0..24 {
        let Some(next) = schedule.next_after(prev) else {
            break;
        };
        longest = longest.max((next - prev).to_std().unwrap_or_default());
        prev = next;
    }
    longest
}

/// Runs until `stop` flips.
/// Waits for the first tick of `schedule` after `after`, plus `extra`; `None` when the
/// schedule has no future tick (`what` names it in the warning) or `stop` changed first.
pub(super) async fn next_tick(
    schedule: &crate::schedule::Schedule,
    after: chrono::DateTime<Utc>,
    extra: Duration,
    what: &str,
    stop: &mut watch::Receiver<bool>,
) -> Option<chrono::DateTime<Utc>> {
    let Some(next) = schedule.next_after(after) else {
        tracing::warn!("the {what} schedule {schedule} has no future runs");
        return None;
    };
    let wait = (next - Utc::now()).to_std().unwrap_or_default();
    tokio::select! {
        _ = tokio::time::sleep(wait + extra) => Some(next),
        _ = stop.changed() => None,
    }
}

/// One tick's work: the save with the server's settings, retention, and the reconcile.
async fn tick(state: Arc<ServerState>) {
    let s = &state.snapshots;
    #[cfg(debug_assertions)]
    test_hooks::maybe_panic();
    let plan = scheduled_plan(&state).await;
    let deleted = match state.engine.save_after_running(&plan, SAVE_WAIT).await {
        Ok(r) => {
            for w in &r.warnings {
                tracing::warn!("scheduled snapshot: {w}");
            }
            r.deleted
        }
        Err(e) => {
            tracing::error!("Failed to take scheduled snapshot: {e}");
            Vec::new()
        }
    };
    let store = match &plan.remote {
        RemotePlan::Ready(r) => Some(r.store.clone()),
        _ => None,
    };
    if let Err(e) = state
        .engine
        .reconcile(s.dir.as_deref(), store.as_ref(), &deleted)
        .await
    {
        tracing::warn!("{e}");
    }
}

/// Runs one tick's work in a task of its own, so that a panic in it (a library that panics on
/// input it cannot handle) is a failed snapshot, recorded as one, and not the end of the
/// schedule.
async fn tick_guarded(state: &Arc<ServerState>) {
    let (started, at) = (std::time::Instant::now(), Utc::now());
    if let Err(why) = catch_panic(tick(state.clone())).await {
        let message = format!("the scheduled snapshot failed: a bug stopped it ({why})");
        tracing::error!("Failed to take scheduled snapshot: {message}; the schedule goes on");
        state
            .engine
            .record_crashed_save(at, started.elapsed(), &message);
    }
}

/// Runs `work` as a task of its own and answers what it returned, or the message of the panic
/// that ended it. Dropping the returned future (the loop being stopped) stops the task.
pub(super) async fn catch_panic<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> std::result::Result<T, String> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(work));
    match (&mut task.0).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => Err(panic_text(e.into_panic().as_ref())),
        Err(e) => Err(e.to_string()),
    }
}

/// The message a panic carried, when it is text.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Debug builds only: `ETCDSNAP_TEST_PANIC_TICKS=N` makes the first N ticks panic, so that a
/// test can prove a panic does not stop the schedule.
#[cfg(debug_assertions)]
mod test_hooks {
    use std::sync::atomic::{AtomicU64, Ordering};

    static PANICKED: AtomicU64 = AtomicU64::new(0);

    pub(super) fn maybe_panic() {
        let Some(n) = std::env::var("ETCDSNAP_TEST_PANIC_TICKS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return;
        };
        if PANICKED.fetch_add(1, Ordering::SeqCst) < n {
            panic!("ETCDSNAP_TEST_PANIC_TICKS: a test asked this tick to panic");
        }
    }
}

/// Before the first tick: the multipart uploads of this server's snapshots that an earlier
/// process of it left unfinished (killed mid-upload) are aborted, so their parts stop being
/// stored. Uploads begun since this process started, and other servers' uploads, are left
/// alone. A failure is a warning: the bucket's lifecycle rule is the backstop (README).
async fn abort_stale_uploads(state: &ServerState, target: &S3Target) {
    let started = chrono::DateTime::from_timestamp(state.engine.metrics.started.get() as i64, 0)
        .unwrap_or_else(Utc::now);
    let node = state.engine.node_name();
    let result = match state.engine.connect(target).await {
        Ok(store) => store.abort_stale_uploads(node, started).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(0) => {}
        Ok(n) => tracing::info!("aborted {n} incomplete upload(s) left by an earlier process"),
        Err(e) => {
            tracing::warn!("cannot look for incomplete uploads left by an earlier process: {e}")
        }
    }
}

pub async fn run(state: Arc<ServerState>, mut stop: watch::Receiver<bool>) {
    let s = &state.snapshots;
    tracing::info!(
        "scheduled snapshots: {} (next at {}), retention {}",
        s.schedule,
        s.schedule
            .next_after(Utc::now())
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "never".into()),
        s.retention
    );
    state
        .engine
        .metrics
        .schedule_interval
        .set(longest_gap(&s.schedule, Utc::now()).as_secs_f64());
    if let Some(target) = &s.s3 {
        abort_stale_uploads(&state, target).await;
    }
    let mut after = Utc::now();
    loop {
        let Some(next) = next_tick(&s.schedule, after, jitter(), "snapshot", &mut stop).await
        else {
            return;
        };
        if state.is_learner().await {
            // K3s's words; a learner has no snapshot to give and records nothing.
            tracing::warn!("Unable to take snapshot: not supported for learner");
            after = next;
            continue;
        }
        tick_guarded(&state).await;
        // Ticks that fell inside the save are skipped, not queued.
        let now = Utc::now();
        let mut skipped = 0;
        let mut t = next;
        while let Some(n) = s.schedule.next_after(t) {
            if n > now {
                break;
            }
            skipped += 1;
            t = n;
            if skipped > 1000 {
                break;
            }
        }
        if skipped > 0 {
            tracing::warn!(
                "skipped {skipped} scheduled snapshot tick(s): the previous snapshot was still running"
            );
        }
        after = t.max(next);
    }
}

/// One reconcile with the server's own settings; whether it worked.
async fn reconcile_once(state: Arc<ServerState>) -> bool {
    let s = &state.snapshots;
    let store = match &s.s3 {
        Some(target) => match state.engine.connect(target).await {
            Ok(store) => Some(store),
            Err(e) => {
                tracing::warn!("reconcile of snapshot records without S3: {e}");
                None
            }
        },
        None => None,
    };
    match state
        .engine
        .reconcile(s.dir.as_deref(), store.as_ref(), &[])
        .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("{e}");
            false
        }
    }
}

/// Reconciles the records at start (retried every second until it works) and then every
/// `--etcd-snapshot-reconcile-interval` (±5%), with the server's own settings.
pub async fn reconcile_loop(state: Arc<ServerState>, mut stop: watch::Receiver<bool>) {
    let s = &state.snapshots;
    let mut first = true;
    loop {
        if state.is_learner().await {
            // A learner cannot write records; its own files are reconciled once promoted.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = stop.changed() => return,
            }
        }
        let ok = match catch_panic(reconcile_once(state.clone())).await {
            Ok(ok) => ok,
            Err(why) => {
                tracing::error!(
                    "the reconcile of snapshot records failed: a bug stopped it ({why}); it runs again later"
                );
                false
            }
        };
        let wait = if first && !ok {
            Duration::from_secs(1)
        } else {
            first = false;
            let base = s.reconcile_interval.as_millis() as u64;
            let mut b = [0u8; 4];
            let _ = getrandom::fill(&mut b);
            let spread = base / 10;
            let jitter = if spread == 0 {
                0
            } else {
                u32::from_le_bytes(b) as u64 % spread
            };
            Duration::from_millis(base - base / 20 + jitter)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    #[test]
    fn longest_gap_allows_for_uneven_schedules() {
        let from = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let cases = [
            ("0 */12 * * *", 12 * 3600),
            ("0 0,6 * * *", 18 * 3600),
            ("@every 90s", 90),
            ("*/5 * * * *", 300),
        ];
        for (spec, secs) in cases {
            let s = Schedule::parse(spec).unwrap();
            assert_eq!(longest_gap(&s, from), Duration::from_secs(secs), "{spec}");
        }
    }
}
