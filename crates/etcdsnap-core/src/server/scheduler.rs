//! Scheduled snapshots: at each cron tick, wait a random 0–5 s, save with the server's settings,
//! then apply local (and S3) retention. Ticks that pass while a save runs are skipped and logged.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::ServerState;
use crate::snapshot::SaveRequest;

/// Most random delay before a scheduled save, so that servers sharing a schedule spread out.
pub const JITTER_MAX: Duration = Duration::from_secs(5);

fn jitter() -> Duration {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    let ms = u32::from_le_bytes(b) as u64 % (JITTER_MAX.as_millis() as u64 + 1);
    Duration::from_millis(ms)
}

/// Runs until `stop` flips.
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
    let mut after = Utc::now();
    loop {
        let Some(next) = s.schedule.next_after(after) else {
            tracing::warn!("the snapshot schedule {} has no future runs", s.schedule);
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait + jitter()) => {}
            _ = stop.changed() => return,
        }
        let req = SaveRequest {
            prefix: s.name.clone(),
            dir: s.dir.clone(),
            compress: s.compress,
            retention: s.retention,
            s3: s.s3.clone(),
        };
        match state.engine.save(&req).await {
            Ok(r) => {
                for w in &r.warnings {
                    tracing::warn!("scheduled snapshot: {w}");
                }
            }
            Err(e) => tracing::error!("Failed to take scheduled snapshot: {e}"),
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
