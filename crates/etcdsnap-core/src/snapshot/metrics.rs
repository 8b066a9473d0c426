//! Prometheus metrics of snapshot work: K3s's histograms with our prefix, each labelled
//! `status=success|error`, and beyond K3s the gauges that alerts need, labelled
//! `store=local|s3`: when the last snapshot succeeded and failed, its size, and how many
//! snapshots each store holds (from the last listing). `deploy/prometheus-rules.yaml` alerts on
//! them; `deploy/grafana-dashboard.json` draws them. The status page (`/ui`) also reads the
//! last failure's message per store and a bounded history of the last [`HISTORY`] saves.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::store::SnapshotRecord;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

type Hist = Family<StatusLabel, Histogram, fn() -> Histogram>;

/// Which store a gauge is about: `local` or `s3`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabel {
    pub store: &'static str,
}

type Seconds = Gauge<f64, AtomicU64>;
type ByStore = Family<StoreLabel, Gauge>;
type SecondsByStore = Family<StoreLabel, Seconds>;

fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn new_hist() -> Histogram {
    // 0.1 s … ~27 min.
    Histogram::new(exponential_buckets(0.1, 2.0, 15))
}

/// How many saves [`Metrics::history`] keeps (the oldest is dropped first).
pub const HISTORY: usize = 100;

/// One save of this process, as the status page charts it.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveEntry {
    pub started: DateTime<Utc>,
    /// From the lock being taken to the answer (local file, upload, retention).
    pub duration: Duration,
    /// The local file written and its bytes on disk; `None` when no file was written.
    pub file: Option<(String, u64)>,
    /// Why the save failed.
    pub error: Option<String>,
}

/// The engine's metrics and the registry that renders them.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub save: Hist,
    pub save_local: Hist,
    pub save_s3: Hist,
    pub reconcile: Hist,
    pub reconcile_local: Hist,
    pub reconcile_s3: Hist,
    /// Unix time of the last successful snapshot per store (at start: the newest one found).
    pub last_success: SecondsByStore,
    /// Unix time of the last failed save or upload per store.
    pub last_failure: SecondsByStore,
    /// Bytes of the last successful snapshot per store.
    pub last_size: ByStore,
    /// Snapshot files (objects) each store held at the last listing, and their bytes.
    pub files: ByStore,
    pub bytes: ByStore,
    /// Seconds between two scheduled snapshots (0: none scheduled).
    pub schedule_interval: Seconds,
    /// Unix time the server started, so that alerts wait one interval after a fresh start.
    pub started: Seconds,
    /// Restore drills: the last success and failure (Unix time), how long the last successful
    /// one took, and the seconds between scheduled drills (0: none scheduled).
    pub drill_last_success: Seconds,
    pub drill_last_failure: Seconds,
    pub drill_duration: Seconds,
    pub drill_interval: Seconds,
    /// The message of the last failure per store.
    failure_messages: Mutex<HashMap<&'static str, String>>,
    /// The last [`HISTORY`] saves, oldest first.
    history: Mutex<VecDeque<SaveEntry>>,
}

/// Registers `metric` under `name` and hands it back, so each metric is one line below.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// A duration histogram whose `success` and `error` series exist from the start, so
/// dashboards see zeros rather than nothing.
fn status_hist() -> Hist {
    let h: Hist = Family::new_with_constructor(new_hist);
    for status in ["success", "error"] {
        drop(h.get_or_create(&StatusLabel { status }));
    }
    h
}

impl Default for Metrics {
    /// Every metric, registered in the order `/metrics` shows them. Over 100 lines on purpose:
    /// it is the table of the 17 metrics (name, help, kind), one entry each; split, the table
    /// would be scattered over functions that each hold a few rows of it.
    fn default() -> Self {
        let mut r = Registry::default();
        let started = Seconds::default();
        started.set(unix(Utc::now()));
        Metrics {
            save: register(
                &mut r,
                "etcdsnap_etcd_snapshot_save_duration_seconds",
                "Total time taken to complete the etcd snapshot process",
                status_hist(),
            ),
            save_local: register(
                &mut r,
                "etcdsnap_etcd_snapshot_save_local_duration_seconds",
                "Total time taken to save a local snapshot file",
                status_hist(),
            ),
            save_s3: register(
                &mut r,
                "etcdsnap_etcd_snapshot_save_s3_duration_seconds",
                "Total time taken to upload a snapshot file to S3",
                status_hist(),
            ),
            reconcile: register(
                &mut r,
                "etcdsnap_etcd_snapshot_reconcile_duration_seconds",
                "Total time taken to sync the list of etcd snapshots",
                status_hist(),
            ),
            reconcile_local: register(
                &mut r,
                "etcdsnap_etcd_snapshot_reconcile_local_duration_seconds",
                "Total time taken to list local snapshot files",
                status_hist(),
            ),
            reconcile_s3: register(
                &mut r,
                "etcdsnap_etcd_snapshot_reconcile_s3_duration_seconds",
                "Total time taken to list S3 snapshot files",
                status_hist(),
            ),
            last_success: register(
                &mut r,
                "etcdsnap_snapshot_last_success_timestamp_seconds",
                "Unix time of the last successful snapshot in each store (at start, the newest one found)",
                SecondsByStore::default(),
            ),
            last_failure: register(
                &mut r,
                "etcdsnap_snapshot_last_failure_timestamp_seconds",
                "Unix time of the last failed snapshot save (local) or upload (s3)",
                SecondsByStore::default(),
            ),
            last_size: register(
                &mut r,
                "etcdsnap_snapshot_last_size_bytes",
                "Bytes of the last successful snapshot in each store",
                ByStore::default(),
            ),
            files: register(
                &mut r,
                "etcdsnap_snapshot_files",
                "Snapshot files (objects) in each store at the last listing",
                ByStore::default(),
            ),
            bytes: register(
                &mut r,
                "etcdsnap_snapshot_stored_bytes",
                "Bytes of all snapshot files (objects) in each store at the last listing",
                ByStore::default(),
            ),
            schedule_interval: register(
                &mut r,
                "etcdsnap_snapshot_schedule_interval_seconds",
                "Seconds between two scheduled snapshots (0: none scheduled)",
                Seconds::default(),
            ),
            started: register(
                &mut r,
                "etcdsnap_server_start_time_seconds",
                "Unix time the server started",
                started,
            ),
            drill_last_success: register(
                &mut r,
                "etcdsnap_restore_drill_last_success_timestamp_seconds",
                "Unix time of the last restore drill that passed (0: none yet)",
                Seconds::default(),
            ),
            drill_last_failure: register(
                &mut r,
                "etcdsnap_restore_drill_last_failure_timestamp_seconds",
                "Unix time of the last restore drill that failed (0: none)",
                Seconds::default(),
            ),
            drill_duration: register(
                &mut r,
                "etcdsnap_restore_drill_duration_seconds",
                "Seconds the last passing restore drill took",
                Seconds::default(),
            ),
            drill_interval: register(
                &mut r,
                "etcdsnap_restore_drill_interval_seconds",
                "Seconds between two scheduled restore drills (0: none scheduled)",
                Seconds::default(),
            ),
            registry: Mutex::new(r),
            failure_messages: Mutex::default(),
            history: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Records one observation.
    pub fn observe(h: &Hist, ok: bool, d: Duration) {
        let status = if ok { "success" } else { "error" };
        h.get_or_create(&StatusLabel { status })
            .observe(d.as_secs_f64());
    }

    /// A snapshot saved (local) or uploaded (s3) now.
    pub fn succeeded(&self, store: &'static str, size: u64) {
        let l = StoreLabel { store };
        self.last_success.get_or_create(&l).set(unix(Utc::now()));
        self.last_size.get_or_create(&l).set(size as i64);
    }

    /// A save (local) or upload (s3) failed now, because of `why`.
    pub fn failed(&self, store: &'static str, why: &str) {
        self.last_failure
            .get_or_create(&StoreLabel { store })
            .set(unix(Utc::now()));
        self.failure_messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(store, why.to_string());
    }

    /// When `store` last succeeded and last failed (as the gauges say), and the message of
    /// that failure. Reading creates no series: a store never used stays out of `/metrics`.
    pub fn last_outcomes(
        &self,
        store: &'static str,
    ) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<String>) {
        let l = StoreLabel { store };
        let time = |g: Option<f64>| {
            g.filter(|t| *t > 0.0)
                .and_then(|t| DateTime::from_timestamp_millis((t * 1000.0) as i64))
        };
        let success = time(self.last_success.get(&l).map(|g| g.get()));
        let failure = time(self.last_failure.get(&l).map(|g| g.get()));
        let message = self
            .failure_messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(store)
            .cloned();
        (success, failure, message)
    }

    /// Adds a finished save to the history, dropping the oldest beyond [`HISTORY`].
    pub fn saved(&self, entry: SaveEntry) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() >= HISTORY {
            h.pop_front();
        }
        h.push_back(entry);
    }

    /// The saves of this process, oldest first (at most [`HISTORY`]).
    pub fn history(&self) -> Vec<SaveEntry> {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.iter().cloned().collect()
    }

    /// What a listing of `store` found: the counts, and the newest successful snapshot when it
    /// is newer than the last one this process saw (a restarted server alerts on the snapshots
    /// it has, not from zero).
    pub fn listed(&self, store: &'static str, records: &[SnapshotRecord]) {
        let l = StoreLabel { store };
        let ok = records
            .iter()
            .filter(|r| r.status == crate::store::SnapshotStatus::Successful);
        let (mut n, mut total, mut newest) = (0i64, 0i64, None::<&SnapshotRecord>);
        for r in ok {
            n += 1;
            total += r.size as i64;
            if newest.is_none_or(|b| r.created_at > b.created_at) {
                newest = Some(r);
            }
        }
        self.files.get_or_create(&l).set(n);
        self.bytes.get_or_create(&l).set(total);
        if let Some(r) = newest {
            let last = self.last_success.get_or_create(&l);
            if unix(r.created_at) > last.get() {
                last.set(unix(r.created_at));
                self.last_size.get_or_create(&l).set(r.size as i64);
            }
        }
    }

    /// A restore drill ended now.
    pub fn drilled(&self, ok: bool, d: Duration) {
        if ok {
            self.drill_last_success.set(unix(Utc::now()));
            self.drill_duration.set(d.as_secs_f64());
        } else {
            self.drill_last_failure.set(unix(Utc::now()));
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().expect("metrics registry poisoned");
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }
}
