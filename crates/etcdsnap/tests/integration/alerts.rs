//! Alerting: the metrics the rules read, from a real server whose S3 uploads fail; the rules
//! themselves through promtool (check and unit tests); the Grafana dashboard's queries name
//! only metrics the server exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::*;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file)
}

fn promtool() -> PathBuf {
    let p = PathBuf::from(std::env::var("PROMTOOL_BIN").expect(
        "PROMTOOL_BIN is not set: run `source <(ci/install-deps.sh --env)` after `ci/install-deps.sh test`",
    ));
    assert!(
        p.exists(),
        "{} is missing: run ci/install-deps.sh test",
        p.display()
    );
    p
}

/// The value of the first sample of `name` whose labels contain `labels`.
fn sample(body: &str, name: &str, labels: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            (l.starts_with(&format!("{name}{{")) && l.contains(labels))
                || (labels.is_empty() && l.starts_with(&format!("{name} ")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn metrics(s: &Server) -> String {
    let (code, body) = https_get(&format!("{}/metrics", s.url())).unwrap();
    assert_eq!(code, 200, "{body}");
    body
}

/// Metric names in a PromQL text: `etcdsnap_…` words, without histogram suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("etcdsnap_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let mut name = &text[start..end];
        for suffix in ["_bucket", "_count", "_sum"] {
            name = name.strip_suffix(suffix).unwrap_or(name);
        }
        out.insert(name.to_string());
        i = end;
    }
    out
}

#[test]
fn metrics_tell_when_snapshots_last_succeeded_and_failed() {
    let closed = free_port();
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let s = Server::builder(Etcd::V35)
        .args([
            "--etcd-snapshot-schedule-cron=@every 2s",
            "--etcd-s3",
            &format!("--etcd-s3-endpoint=127.0.0.1:{closed}"),
            "--etcd-s3-insecure",
            "--etcd-s3-bucket=nobucket",
            "--etcd-s3-timeout=2s",
        ])
        .start();
    let body = metrics(&s);
    assert_eq!(
        sample(&body, "etcdsnap_snapshot_schedule_interval_seconds", ""),
        Some(2.0),
        "{body}"
    );
    let start = sample(&body, "etcdsnap_server_start_time_seconds", "").unwrap();
    assert!(
        start >= started - 1.0,
        "start {start}, test began {started}"
    );

    // A scheduled save: the local copy succeeds, the S3 store cannot be reached.
    let body = wait_for(
        Duration::from_secs(60),
        "a save and a failed upload",
        || {
            let body = metrics(&s);
            let ok = sample(
                &body,
                "etcdsnap_snapshot_last_success_timestamp_seconds",
                "store=\"local\"",
            );
            let bad = sample(
                &body,
                "etcdsnap_snapshot_last_failure_timestamp_seconds",
                "store=\"s3\"",
            );
            (ok.is_some() && bad.is_some()).then_some(body)
        },
    );
    let ok = sample(
        &body,
        "etcdsnap_snapshot_last_success_timestamp_seconds",
        "store=\"local\"",
    )
    .unwrap();
    let bad = sample(
        &body,
        "etcdsnap_snapshot_last_failure_timestamp_seconds",
        "store=\"s3\"",
    )
    .unwrap();
    assert!(ok >= start && bad >= start, "{body}");
    assert_eq!(
        sample(
            &body,
            "etcdsnap_snapshot_last_success_timestamp_seconds",
            "store=\"s3\""
        ),
        None,
        "no upload succeeded:\n{body}"
    );
    assert_eq!(
        sample(
            &body,
            "etcdsnap_snapshot_last_failure_timestamp_seconds",
            "store=\"local\""
        ),
        None,
        "no local save failed:\n{body}"
    );
    let size = sample(
        &body,
        "etcdsnap_snapshot_last_size_bytes",
        "store=\"local\"",
    )
    .unwrap();
    let files = s.snapshot_files();
    let sizes: Vec<f64> = files
        .iter()
        .map(|f| std::fs::metadata(s.snapshot_dir().join(f)).unwrap().len() as f64)
        .collect();
    assert!(sizes.contains(&size), "last size {size}, files {sizes:?}");

    // The reconcile after a save counts what the local store holds.
    ok_cli(&s);
    let body = wait_for(Duration::from_secs(30), "the listing's counts", || {
        let body = metrics(&s);
        let n = sample(&body, "etcdsnap_snapshot_files", "store=\"local\"")?;
        let have = s
            .snapshot_files()
            .iter()
            .filter(|f| !f.ends_with(".part"))
            .count() as f64;
        (n >= 2.0 && (n - have).abs() <= 1.0).then_some(body)
    });
    assert!(sample(&body, "etcdsnap_snapshot_stored_bytes", "store=\"local\"").unwrap() > 0.0);

    // Every metric the rules and the dashboard read is one the server exports.
    let exported = metric_names(&body);
    for file in ["prometheus-rules.yaml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(deploy(file)).unwrap();
        let used = metric_names(&text);
        assert!(used.len() >= 4, "{file}: {used:?}");
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} reads {missing:?}, not exported:\n{body}"
        );
    }
}

fn ok_cli(s: &Server) {
    ok(&s.cli(&["save"]));
}

#[test]
fn prometheus_rules_pass_promtool_checks_and_unit_tests() {
    let check = Command::new(promtool())
        .args(["check", "rules"])
        .arg(deploy("prometheus-rules.yaml"))
        .output()
        .unwrap();
    let out = ok(&check);
    assert!(out.contains("SUCCESS: 5 rules found"), "{out}");
    let test = Command::new(promtool())
        .args(["test", "rules"])
        .arg(deploy("prometheus-rules.test.yaml"))
        .output()
        .unwrap();
    assert!(ok(&test).contains("SUCCESS"), "{}", stdout(&test));

    // The unit tests can fail: with the rule's threshold changed, they do.
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(deploy("prometheus-rules.yaml")).unwrap();
    let broken = rules.replacen("> 2 * max by", "> 4 * max by", 1);
    assert_ne!(broken, rules);
    std::fs::write(dir.path().join("prometheus-rules.yaml"), broken).unwrap();
    std::fs::copy(
        deploy("prometheus-rules.test.yaml"),
        dir.path().join("prometheus-rules.test.yaml"),
    )
    .unwrap();
    let test = Command::new(promtool())
        .args(["test", "rules", "prometheus-rules.test.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!test.status.success(), "{}", stdout(&test));
}

#[test]
fn grafana_dashboard_is_valid_json_with_queries() {
    let text = std::fs::read_to_string(deploy("grafana-dashboard.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(d["uid"], "etcdsnap");
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= 5);
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{p}");
        for t in targets {
            assert!(t["expr"].as_str().unwrap().contains("etcdsnap_"), "{t}");
        }
    }
}
