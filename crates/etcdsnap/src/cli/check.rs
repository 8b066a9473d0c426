//! `etcdsnap check`: gathers what the server's flags describe, runs the library's checks
//! ([`etcdsnap_core::check`]) and prints one line per check, or a JSON array. Flags that do not
//! validate are not refused here: the check they belong to reports them.

use anyhow::{Result, bail};
use chrono::Utc;
use etcdsnap_core::check::{self, CheckResult, EtcdSettings, SnapshotDir, Status};
use etcdsnap_core::etcd::ClientTls;
use etcdsnap_core::schedule::Schedule;
use etcdsnap_core::server::scheduler::longest_gap;
use etcdsnap_core::store::local::default_snapshot_dir;
use etcdsnap_core::store::remote::S3Target;

use super::{CheckArgs, ServerArgs, default_data_dir};

fn etcd_settings(a: &ServerArgs, data_dir: &std::path::Path) -> EtcdSettings {
    match &a.datastore_endpoint {
        Some(eps) => EtcdSettings {
            endpoints: eps
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            tls: ClientTls {
                ca_file: a.datastore_cafile.clone(),
                cert_file: a.datastore_certfile.clone(),
                key_file: a.datastore_keyfile.clone(),
            },
            external: true,
        },
        None => EtcdSettings::embedded(data_dir, a.etcd_client_port),
    }
}

/// The S3 flags' secret values, never to be printed.
fn secrets(a: &ServerArgs) -> Vec<String> {
    [
        &a.s3.secret_key,
        &a.s3.session_token,
        &a.cloud.azure_access_key,
    ]
    .into_iter()
    .flatten()
    .filter(|s| !s.is_empty())
    .cloned()
    .collect()
}

/// `s` without the S3 secrets of `a`.
fn scrub(a: &ServerArgs, s: String) -> String {
    secrets(a)
        .iter()
        .fold(s, |acc, x| acc.replace(x.as_str(), "<redacted>"))
}

async fn s3_check(a: &ServerArgs) -> CheckResult {
    let scrub = |s: String| scrub(a, s);
    let cfg = match super::cloud::remote_config(&a.s3, &a.cloud, Some(a.etcd_snapshot_retention)) {
        Ok(None) => return check::s3_skipped(),
        Ok(Some(cfg)) => cfg,
        Err(e) => return check::s3_invalid(&scrub(format!("{e:#}"))),
    };
    match S3Target::new(cfg) {
        Ok(t) => check::s3(&t, Utc::now).await,
        Err(e) => check::s3_invalid(&scrub(e.to_string())),
    }
}

/// Runs every check, in [`check::CHECKS`] order.
pub async fn results(a: &ServerArgs) -> Vec<CheckResult> {
    let now = Utc::now();
    let data_dir = a.data_dir.clone().unwrap_or_else(default_data_dir);
    let etcd = etcd_settings(a, &data_dir);
    let extra_certs: Vec<_> = if etcd.external {
        [&a.datastore_cafile, &a.datastore_certfile]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let dir = match &a.etcd_snapshot_dir {
        Some(d) if !d.as_os_str().is_empty() => SnapshotDir {
            path: d.clone(),
            custom: true,
        },
        _ => SnapshotDir {
            path: default_snapshot_dir(&data_dir),
            custom: false,
        },
    };
    let spec = &a.etcd_snapshot_schedule_cron;
    let gap = (!a.etcd_disable_snapshots)
        .then(|| Schedule::parse(spec).ok())
        .flatten()
        .map(|s| longest_gap(&s, now));
    let files = check::snapshot_files(&dir.path);
    let refused = super::server::config(a)
        .err()
        .map(|e| scrub(a, format!("{e:#}")));
    vec![
        check::config(refused),
        check::etcd(&etcd).await,
        check::certificates(
            &data_dir.join("server").join("tls"),
            &extra_certs,
            Utc::now(),
        ),
        check::snapshot_dir(&dir),
        s3_check(a).await,
        check::schedule(spec, a.etcd_disable_snapshots, now),
        check::last_snapshot(files.last(), gap, Utc::now()),
    ]
}

/// One line per check: status, name, what was seen, and the fix when not ok.
pub fn text(results: &[CheckResult]) -> String {
    let width = results.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for r in results {
        let mut line = format!("{:<7} {:<width$}  {}", r.status.label(), r.name, r.detail);
        if let Some(fix) = r.fix.as_deref().filter(|_| r.status != Status::Ok) {
            line.push_str(" -- fix: ");
            line.push_str(fix);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

pub async fn run(a: CheckArgs) -> Result<()> {
    let results = results(&a.server).await;
    let rendered = if a.output == "json" {
        serde_json::to_string_pretty(&results)? + "\n"
    } else {
        text(&results)
    };
    // The library scrubs what it knows; this is the last guard before anything is printed.
    if secrets(&a.server)
        .iter()
        .any(|s| rendered.contains(s.as_str()))
    {
        bail!(
            "refusing to print the check results: they contain an S3 secret (a bug: please report it)"
        );
    }
    print!("{rendered}");
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r.status == Status::Fail)
        .map(|r| r.name)
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} checks failed: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
