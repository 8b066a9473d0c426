//! Prometheus histograms of snapshot work, K3s's set with our prefix, each labelled
//! `status=success|error`.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

type Hist = Family<StatusLabel, Histogram, fn() -> Histogram>;

fn new_hist() -> Histogram {
    // 0.1 s … ~27 min.
    Histogram::new(exponential_buckets(0.1, 2.0, 15))
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
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let mk = |registry: &mut Registry, name: &str, help: &str| {
            let h: Hist = Family::new_with_constructor(new_hist);
            // Both series exist from the start, so dashboards see zeros rather than nothing.
            for status in ["success", "error"] {
                drop(h.get_or_create(&StatusLabel { status }));
            }
            registry.register(name, help, h.clone());
            h
        };
        let save = mk(
            &mut registry,
            "etcdsnap_etcd_snapshot_save_duration_seconds",
            "Total time taken to complete the etcd snapshot process",
        );
        let save_local = mk(
            &mut registry,
            "etcdsnap_etcd_snapshot_save_local_duration_seconds",
            "Total time taken to save a local snapshot file",
        );
        let save_s3 = mk(
            &mut registry,
            "etcdsnap_etcd_snapshot_save_s3_duration_seconds",
            "Total time taken to upload a snapshot file to S3",
        );
        let reconcile = mk(
            &mut registry,
            "etcdsnap_etcd_snapshot_reconcile_duration_seconds",
            "Total time taken to sync the list of etcd snapshots",
        );
        let reconcile_local = mk(
            &mut registry,
            "etcdsnap_etcd_snapshot_reconcile_local_duration_seconds",
            "Total time taken to list local snapshot files",
        );
        let reconcile_s3 = mk(
            &mut registry,
            "etcdsnap_etcd_snapshot_reconcile_s3_duration_seconds",
            "Total time taken to list S3 snapshot files",
        );
        Metrics {
            registry: Mutex::new(registry),
            save,
            save_local,
            save_s3,
            reconcile,
            reconcile_local,
            reconcile_s3,
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

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().expect("metrics registry poisoned");
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }
}
