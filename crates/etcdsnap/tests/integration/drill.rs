//! Restore drills against real etcd: `etcd-snapshot drill` restores a snapshot into a
//! throwaway etcd and reads every key back; the server runs them on a schedule and exports the
//! outcome. Both leave nothing behind: no files, no etcd process.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::*;

fn drill(s: &Server, v: Etcd, tmp: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(etcdsnap_bin());
    cmd.args(["etcd-snapshot", "drill"])
        .args(args)
        .arg("-d")
        .arg(s.data_dir())
        .arg(format!("--etcd-binary={}", v.etcd().display()))
        .env("ETCDSNAP_CONFIG_FILE", empty_config(tmp))
        .env("TMPDIR", tmp.join("t"));
    without_aws_env(&mut cmd);
    cmd.output().unwrap()
}

/// Keys the live etcd holds at `rev`, counted by etcd itself.
fn live_keys(s: &Server, rev: i64) -> i64 {
    let (ca, cert, key) = s.etcd_tls();
    rt().block_on(async {
        let mut c = etcd_client(&s.etcd_endpoint(), Some((&ca, &cert, &key))).await;
        let o = etcd_client::GetOptions::new()
            .with_from_key()
            .with_count_only()
            .with_revision(rev);
        c.get(vec![0u8], Some(o)).await.unwrap().count()
    })
}

/// The pids of processes whose command line holds `marker` (a drill's etcd).
fn drill_etcd_pids(marker: &Path) -> String {
    let out = Command::new("pgrep")
        .args(["-f", &marker.display().to_string()])
        .output()
        .unwrap();
    stdout(&out).trim().to_string()
}

fn no_drill_etcd_runs(marker: &Path) {
    let pids = drill_etcd_pids(marker);
    assert!(pids.is_empty(), "an etcd of a drill still runs: {pids}");
}

both!(
    a_drill_restores_the_newest_snapshot_and_reads_every_key_back,
    cli_drill
);
fn cli_drill(v: Etcd) {
    let s = Server::start(v);
    s.put(&noise("drill", 3));
    let kvs: Vec<(String, Vec<u8>)> = (0..500)
        .map(|i| (format!("/small/{i:04}"), format!("v{i}").into_bytes()))
        .collect();
    s.put(&kvs);
    ok(&s.cli(&["save"]));
    ok(&s.cli(&["save", "--snapshot-compress"]));
    let zip = s
        .snapshot_files()
        .into_iter()
        .find(|f| f.ends_with(".zip"))
        .unwrap();
    // Written after the saves: not in the snapshot, so not in the drill.
    s.put(&[("/after".to_string(), b"x".to_vec())]);
    let st: serde_json::Value =
        serde_json::from_str(&ok(&s.cli(&["status", &zip, "-w", "json"]))).unwrap();
    let rev = st["revision"].as_i64().unwrap();

    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("t")).unwrap();
    // No name: the newest snapshot, the zip.
    let out = drill(&s, v, tmp.path(), &["-o", "json"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(report["name"], zip.as_str(), "{report}");
    assert_eq!(report["revision"].as_i64(), Some(rev), "{report}");
    let keys = report["keys"].as_i64().unwrap();
    assert_eq!(keys, live_keys(&s, rev), "{report}");
    assert!(keys >= 503, "{report}");
    assert_eq!(report["sha256"].as_str().unwrap().len(), 64);
    let want_version = if v == Etcd::V34 { "3.4." } else { "3.5." };
    assert!(
        report["etcdVersion"]
            .as_str()
            .unwrap()
            .starts_with(want_version),
        "{report}"
    );
    assert!(list_files(&tmp.path().join("t")).is_empty(), "left behind");
    no_drill_etcd_runs(&tmp.path().join("t"));

    // The raw one by name, as a table.
    let raw = s
        .snapshot_files()
        .into_iter()
        .find(|f| !f.ends_with(".zip"))
        .unwrap();
    let text = ok(&drill(&s, v, tmp.path(), &[&raw]));
    assert!(text.contains("Drill passed"), "{text}");
    assert!(text.contains(&raw), "{text}");

    // A damaged snapshot fails the drill and leaves nothing.
    let bad = tmp.path().join("damaged");
    let mut bytes = std::fs::read(s.snapshot_dir().join(&raw)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&bad, bytes).unwrap();
    let err = fails(&drill(&s, v, tmp.path(), &[bad.to_str().unwrap()]));
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(
        !err.contains("snapshot restore into"),
        "verified before the restore: {err}"
    );
    assert!(list_files(&tmp.path().join("t")).is_empty(), "left behind");
}

#[test]
fn a_drill_without_an_etcd_binary_says_which_flag_to_give() {
    let s = Server::start(Etcd::V35);
    ok(&s.cli(&["save"]));
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(etcdsnap_bin());
    cmd.args(["etcd-snapshot", "drill", "-d"])
        .arg(s.data_dir())
        .arg("--etcd-binary=/nonexistent/etcd")
        .env("ETCDSNAP_CONFIG_FILE", empty_config(tmp.path()));
    let err = fails(&cmd.output().unwrap());
    assert!(err.contains("/nonexistent/etcd"), "{err}");
    let empty = tmp.path().join("none");
    std::fs::create_dir(&empty).unwrap();
    let mut cmd = Command::new(etcdsnap_bin());
    cmd.args(["etcd-snapshot", "drill", "--dir"])
        .arg(&empty)
        .arg(format!("--etcd-binary={}", Etcd::V35.etcd().display()))
        .env("ETCDSNAP_CONFIG_FILE", empty_config(tmp.path()));
    let err = fails(&cmd.output().unwrap());
    assert!(err.contains("no snapshot in"), "{err}");
}

fn metric(s: &Server, name: &str) -> f64 {
    let (code, body) = https_get(&format!("{}/metrics", s.url())).unwrap();
    assert_eq!(code, 200);
    body.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

#[test]
fn scheduled_drills_fail_without_a_snapshot_pass_with_one_and_clean_up() {
    let s = Server::builder(Etcd::V35)
        .args([
            "--etcd-snapshot-drill-schedule-cron=@every 2s",
            "--etcd-disable-snapshots",
        ])
        .start();
    assert_eq!(metric(&s, "etcdsnap_restore_drill_interval_seconds"), 2.0);
    // No snapshot yet: the drill fails and says why.
    wait_for(Duration::from_secs(30), "a failed drill", || {
        (metric(&s, "etcdsnap_restore_drill_last_failure_timestamp_seconds") > 0.0).then_some(())
    });
    assert!(
        s.log_text()
            .contains("Restore drill failed: no snapshot in")
    );
    assert_eq!(
        metric(&s, "etcdsnap_restore_drill_last_success_timestamp_seconds"),
        0.0
    );
    s.put(&noise("sched", 2));
    ok(&s.cli(&["save", "--snapshot-compress"]));
    wait_for(Duration::from_secs(60), "a passing drill", || {
        let ok_at = metric(&s, "etcdsnap_restore_drill_last_success_timestamp_seconds");
        let bad_at = metric(&s, "etcdsnap_restore_drill_last_failure_timestamp_seconds");
        (ok_at > bad_at).then_some(())
    });
    assert!(metric(&s, "etcdsnap_restore_drill_duration_seconds") > 0.0);
    let log = s.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("Restore drill passed"))
        .unwrap();
    assert!(
        line.contains(".zip") && line.contains("keys at revision"),
        "{line}"
    );
    // The status page shows the drills.
    let token = s.token();
    let secret = token.rsplit(':').next().unwrap().to_string();
    let page: serde_json::Value = rt().block_on(async {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap()
            .get(format!("{}/ui.json", s.url()))
            .basic_auth("server", Some(&secret))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(page["drills"]["intervalSeconds"], 2.0, "{page}");
    assert!(page["drills"]["lastSuccess"].is_string(), "{page}");
    assert!(page["drills"]["lastFailure"].is_string(), "{page}");
    // Stopped mid-schedule (perhaps mid-drill): no drill files, no drill etcd.
    let db = s.data_dir().join("server/db");
    let (dir, _) = s.stop();
    // The server has exited; a drill's etcd it stopped may take a moment to be gone.
    let marker = dir.path().join("server/db/.etcdsnap-drill");
    wait_for(Duration::from_secs(10), "no etcd of a drill to run", || {
        drill_etcd_pids(&marker).is_empty().then_some(())
    });
    let left: Vec<String> = list_files(&db)
        .into_iter()
        .filter(|f| f.contains("drill"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn drill_dirs(dir: &Path) -> Vec<String> {
    list_files(dir)
        .into_iter()
        .filter(|f| f.starts_with(".etcdsnap-drill-"))
        .collect()
}

/// A server killed (SIGKILL) while a scheduled drill restores leaves its drill dirs in
/// `server/db`; the next start removes them (before, they stayed for ever).
#[test]
fn a_server_killed_mid_drill_leaves_no_drill_dirs_after_its_restart() {
    let tools = tempfile::tempdir().unwrap();
    let marker = tools.path().join("restoring");
    let wrapper = crate::restore::hanging_etcdutl(tools.path(), &marker);
    let mut s = Server::builder(Etcd::V35)
        .args([
            "--etcd-snapshot-drill-schedule-cron=@every 2s".to_string(),
            "--etcd-disable-snapshots".to_string(),
            format!("--etcdutl-binary={}", wrapper.display()),
        ])
        .start();
    s.put(&noise("k", 1));
    ok(&s.cli(&["save"]));
    wait_for(Duration::from_secs(60), "a drill to restore", || {
        marker.exists().then_some(())
    });
    let db = s.data_dir().join("server/db");
    assert!(!drill_dirs(&db).is_empty(), "{:?}", list_files(&db));
    let kids = crate::server::child_pids(s.proc.pid());
    // SAFETY: the server this test started, then its children.
    unsafe {
        libc::kill(s.proc.pid(), libc::SIGKILL);
        for k in kids {
            libc::kill(k, libc::SIGKILL);
        }
    }
    s.proc.wait_exit(Duration::from_secs(10));
    assert!(!drill_dirs(&db).is_empty(), "the kill came too late");
    let ports = s.ports();
    let s = Server::builder(Etcd::V35).dir(s.dir).ports(ports).start();
    assert!(drill_dirs(&db).is_empty(), "{:?}", drill_dirs(&db));
    assert!(
        s.log_text()
            .contains("left by a restore drill that was killed"),
        "{}",
        s.log_text()
    );
}

/// A CLI drill killed while it restores leaves its dirs in `$TMPDIR`; the next drill removes
/// them, as their owner is gone (dirs of a drill still running are left alone).
#[test]
fn a_killed_cli_drill_leaves_temp_dirs_that_the_next_drill_removes() {
    let s = Server::start(Etcd::V35);
    s.put(&noise("k", 1));
    ok(&s.cli(&["save", "--snapshot-compress"]));
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    std::fs::create_dir(&t).unwrap();
    let tools = tempfile::tempdir().unwrap();
    let marker = tools.path().join("restoring");
    let wrapper = crate::restore::hanging_etcdutl(tools.path(), &marker);
    // A directory of a drill that still runs (this test's pid) stays.
    let alive = t.join(format!(".etcdsnap-drill-{}-etcd-x", std::process::id()));
    std::fs::create_dir(&alive).unwrap();
    let mut cmd = Command::new(etcdsnap_bin());
    cmd.args(["etcd-snapshot", "drill"])
        .arg("-d")
        .arg(s.data_dir())
        .arg(format!("--etcd-binary={}", Etcd::V35.etcd().display()))
        .arg(format!("--etcdutl-binary={}", wrapper.display()))
        .env("ETCDSNAP_CONFIG_FILE", empty_config(tmp.path()))
        .env("TMPDIR", &t)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    without_aws_env(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    wait_for(Duration::from_secs(60), "the drill to restore", || {
        marker.exists().then_some(())
    });
    crate::restore::kill_tree(&mut child);
    let left = drill_dirs(&t);
    assert!(left.len() >= 2, "{left:?}");
    ok(&drill(&s, Etcd::V35, tmp.path(), &[]));
    assert_eq!(
        drill_dirs(&t),
        [alive.file_name().unwrap().to_string_lossy()]
    );
}
