//! Scheduled snapshots: at each cron tick, wait a random 0–5 s, save with the server's settings,
//! then apply local (and S3) retention. Ticks that pass while a save runs are skipped and logged.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::ServerState;
use crate::snapshot::plan::{Remote, RemotePlan, SavePlan};
use crate::store::s3::S3Target;

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
        Err(e)
            if scheduled
                && e.to_string()
                    .contains("failed to get etcd S3 config secret") =>
        {
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
        let ok = match state
            .engine
            .reconcile(s.dir.as_deref(), store.as_ref(), &[])
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("{e}");
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
