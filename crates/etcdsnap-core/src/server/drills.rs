//! Scheduled restore drills (`--etcd-snapshot-drill-schedule-cron`): at each tick the newest
//! successful local snapshot goes through [`crate::drill`], and the outcome is logged and
//! exported as metrics that `deploy/prometheus-rules.yaml` alerts on. The snapshot is
//! hard-linked (or copied, across file systems) into the drill's own directory first, so that
//! retention may delete it meanwhile without harming the drill.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio::sync::watch;

use super::ServerState;
use crate::drill::{Drill, DrillReport};
use crate::restore::RestoreTool;
use crate::schedule::Schedule;
use crate::source::Source;
use crate::{Error, Result};

/// What scheduled drills need, resolved when the server starts.
#[derive(Debug, Clone)]
pub struct DrillSettings {
    pub schedule: Schedule,
    pub etcd_binary: PathBuf,
    pub tool: RestoreTool,
}

/// Runs drills at each tick until `stop`.
pub async fn run(state: Arc<ServerState>, d: DrillSettings, mut stop: watch::Receiver<bool>) {
    tracing::info!(
        "restore drills: {} (next at {}), with {} and {}",
        d.schedule,
        d.schedule
            .next_after(Utc::now())
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "never".into()),
        d.tool.path.display(),
        d.etcd_binary.display()
    );
    state
        .engine
        .metrics
        .drill_interval
        .set(super::scheduler::longest_gap(&d.schedule, Utc::now()).as_secs_f64());
    let mut after = Utc::now();
    loop {
        let Some(next) = super::scheduler::next_tick(
            &d.schedule,
            after,
            std::time::Duration::ZERO,
            "drill",
            &mut stop,
        )
        .await
        else {
            return;
        };
        let started = Instant::now();
        let r = tokio::select! {
            r = drill_newest(&state, &d) => r,
            _ = stop.changed() => return,
        };
        state.engine.metrics.drilled(r.is_ok(), started.elapsed());
        match r {
            Ok(rep) => tracing::info!(
                "Restore drill passed: {} restored with {} and served by etcd {}: {} keys at revision {} match the snapshot (sha256 {}), in {:.1}s",
                rep.name,
                d.tool.path.display(),
                rep.etcd_version,
                rep.keys,
                rep.revision,
                rep.sha256,
                rep.seconds
            ),
            Err(e) => tracing::error!("Restore drill failed: {e}"),
        }
        after = next.max(Utc::now());
    }
}

/// Drills the newest successful local snapshot.
async fn drill_newest(state: &ServerState, d: &DrillSettings) -> Result<DrillReport> {
    let local = state.engine.local(state.snapshots.dir.as_deref(), false)?;
    let newest = crate::drill::newest_snapshot(&local)
        .await?
        .ok_or_else(|| {
            Error::Other(format!(
                "no snapshot in {} to drill: take one with `etcdsnap etcd-snapshot save`",
                local.dir().display()
            ))
        })?;
    let work_parent = state.engine.config().data_dir.join("server/db");
    let held = crate::drill::work_dir(&work_parent, "src")?;
    let copy = hold(&local.dir().join(&newest.key), held.path(), &newest.name)?;
    tracing::info!("Restore drill of {} starting", newest.name);
    Drill {
        source: Source::Path(copy),
        etcd_binary: d.etcd_binary.clone(),
        tool: d.tool.clone(),
        work_parent,
    }
    .run()
    .await
    .map(|mut rep| {
        rep.location = newest.location.clone();
        rep
    })
}

/// A link to (or copy of) `file` named `name` in `dir`.
fn hold(file: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let dest = dir.join(name);
    if std::fs::hard_link(file, &dest).is_err() {
        std::fs::copy(file, &dest).map_err(|e| Error::io("copy", file, e))?;
    }
    Ok(dest)
}
