//! The server process: start-up errors, scheduling, external etcd, metrics, shutdown.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

#[test]
fn invalid_cron_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(etcdsnap_bin())
        .args(["server", "-d"])
        .arg(dir.path())
        .args(["--etcd-snapshot-schedule-cron", "0 */12 * *"])
        .arg(format!("--https-listen-port={}", free_port()))
        .env("ETCDSNAP_CONFIG_FILE", empty_config(dir.path()))
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(
        err.contains("--etcd-snapshot-schedule-cron") && err.contains("0 */12 * *"),
        "{err}"
    );
    // Nothing was started or created.
    assert!(!dir.path().join("server/db/etcd").exists());
}

#[test]
fn busy_etcd_ports_name_the_port_and_the_flag() {
    for flag in ["--etcd-client-port", "--etcd-peer-port"] {
        let dir = tempfile::tempdir().unwrap();
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let out = Command::new(etcdsnap_bin())
            .args(["server", "-d"])
            .arg(dir.path())
            .args(["--bind-address", "127.0.0.1"])
            .arg(format!("--https-listen-port={}", free_port()))
            .arg(format!("--etcd-client-port={}", free_port()))
            .arg(format!("--etcd-peer-port={}", free_port()))
            .arg(format!("{flag}={port}"))
            .arg(format!("--etcd-binary={}", Etcd::V35.etcd().display()))
            .env("ETCDSNAP_CONFIG_FILE", empty_config(dir.path()))
            .output()
            .unwrap();
        let err = fails(&out);
        assert!(
            err.contains(&format!("127.0.0.1:{port}")) && err.contains(flag),
            "{flag}: {err}"
        );
        // The supervisor port gives the same kind of message.
        let out = Command::new(etcdsnap_bin())
            .args(["server", "-d"])
            .arg(dir.path())
            .args(["--bind-address", "127.0.0.1"])
            .arg(format!("--https-listen-port={port}"))
            .env("ETCDSNAP_CONFIG_FILE", empty_config(dir.path()))
            .output()
            .unwrap();
        let err = fails(&out);
        assert!(
            err.contains(&format!("127.0.0.1:{port}")) && err.contains("--https-listen-port"),
            "{err}"
        );
        drop(busy);
    }
}

#[test]
fn missing_etcd_binary_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(etcdsnap_bin())
        .args(["server", "-d"])
        .arg(dir.path())
        .arg(format!("--https-listen-port={}", free_port()))
        .env("PATH", "/nonexistent")
        .env("ETCDSNAP_CONFIG_FILE", empty_config(dir.path()))
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(
        err.contains("etcd binary not found") && err.contains("--etcd-binary"),
        "{err}"
    );
}

#[test]
fn embedded_etcd_uses_k3s_cert_layout_and_mtls() {
    let s = Server::start(Etcd::V35);
    let tls = s.data_dir().join("server/tls");
    for f in [
        "etcd/server-ca.crt",
        "etcd/server-ca.key",
        "etcd/peer-ca.crt",
        "etcd/peer-ca.key",
        "etcd/server-client.crt",
        "etcd/server-client.key",
        "etcd/peer-server-client.crt",
        "etcd/peer-server-client.key",
        "etcd/client.crt",
        "etcd/client.key",
        "server-ca.crt",
    ] {
        assert!(tls.join(f).is_file(), "{f} missing");
    }
    // Token: K10<sha256 of the supervisor CA>::server:<secret>, 0600.
    let token = s.token();
    let ca = std::fs::read(tls.join("server-ca.crt")).unwrap();
    use sha2::Digest;
    let hash = hex_encode(&sha2::Sha256::digest(&ca));
    assert!(token.starts_with(&format!("K10{hash}::server:")), "{token}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.data_dir().join("server/token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // etcd refuses clients without a certificate.
    let (ca, _, _) = s.etcd_tls();
    let out = Command::new(s.etcd.etcdctl())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", s.etcd_endpoint()))
        .arg(format!("--cacert={}", ca.display()))
        .args(["--command-timeout=3s", "get", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Data lives in server/db/etcd under a member name derived from the node name.
    let name = std::fs::read_to_string(s.data_dir().join("server/db/etcd/name")).unwrap();
    assert!(name.starts_with("n1-"), "{name}");
    assert!(s.data_dir().join("server/db/etcd/member").is_dir());
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

both!(scheduled_snapshots_use_prefix_and_retention, scheduled);
fn scheduled(v: Etcd) {
    let s = Server::builder(v)
        .args([
            "--etcd-snapshot-schedule-cron=@every 1s",
            "--etcd-snapshot-retention=2",
            "--etcd-snapshot-name=foo",
        ])
        .start();
    // Jitter is up to 5 s per run: within ~25 s at least 3 runs happen, retention keeps 2.
    wait_for(Duration::from_secs(40), "three scheduled snapshots", || {
        let log = s.proc.log_text();
        (log.matches("Saving etcd snapshot to").count() >= 3
            && log.contains("Removing local snapshot"))
        .then_some(())
    });
    let files = s.snapshot_files();
    let scheduled: Vec<_> = files.iter().filter(|f| f.starts_with("foo-n1-")).collect();
    assert!(!scheduled.is_empty() && scheduled.len() <= 2, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("foo-n1-") || f.ends_with(".part")),
        "{files:?}"
    );
    assert!(
        s.proc.log_text().contains("Removing local snapshot"),
        "{}",
        s.proc.log_text()
    );
    // The server's metrics count the saves.
    let (code, body) = https_get(&format!("{}/metrics", s.url())).unwrap();
    assert_eq!(code, 200);
    let line = body
        .lines()
        .find(|l| {
            l.starts_with("etcdsnap_etcd_snapshot_save_duration_seconds_count{status=\"success\"}")
        })
        .unwrap_or_else(|| panic!("no save count in metrics:\n{body}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{line}");
    for m in [
        "etcdsnap_etcd_snapshot_save_local_duration_seconds",
        "etcdsnap_etcd_snapshot_save_s3_duration_seconds",
        "etcdsnap_etcd_snapshot_reconcile_duration_seconds",
    ] {
        assert!(body.contains(m), "{m} missing");
    }
}

#[test]
fn disabled_snapshots_run_no_schedule() {
    let s = Server::builder(Etcd::V35)
        .args([
            "--etcd-snapshot-schedule-cron=@every 1s",
            "--etcd-disable-snapshots",
        ])
        .start();
    // The server decides once etcd answers, before it is ready: no scheduler was started. A
    // started one says so at once (its first log line, the schedule's interval in the
    // metrics), well before the save below has gone through the CLI and the API.
    assert!(s.proc.log_text().contains("ETCD snapshots are disabled"));
    // On-demand saves still work.
    ok(&s.cli(&["save"]));
    assert_eq!(s.snapshot_files().len(), 1, "{:?}", s.snapshot_files());
    let log = s.proc.log_text();
    assert!(!log.contains("scheduled snapshots:"), "{log}");
    let (code, body) = https_get(&format!("{}/metrics", s.url())).unwrap();
    assert_eq!(code, 200);
    let interval = body
        .lines()
        .find_map(|l| l.strip_prefix("etcdsnap_snapshot_schedule_interval_seconds "))
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(interval, Some(0.0), "a schedule is set:\n{body}");
}

#[test]
fn sigterm_stops_etcd_and_exits_zero() {
    let mut s = Server::start(Etcd::V34);
    let etcd_pid = child_pids(s.proc.pid());
    assert_eq!(etcd_pid.len(), 1, "one etcd child expected: {etcd_pid:?}");
    let st = s.proc.terminate(Duration::from_secs(30)).unwrap();
    assert!(st.success(), "exit {st}; log:\n{}", s.proc.log_text());
    assert!(
        !std::path::Path::new(&format!("/proc/{}", etcd_pid[0])).exists() || is_zombie(etcd_pid[0])
    );
    assert!(s.proc.log_text().contains("stopping etcd"));
}

#[test]
fn a_dead_etcd_is_restarted_and_the_server_keeps_serving() {
    let s = Server::start(Etcd::V35);
    s.put(&[("/before".to_string(), b"1".to_vec())]);
    let pids = child_pids(s.proc.pid());
    assert_eq!(pids.len(), 1);
    // SAFETY: killing the etcd our server started.
    unsafe {
        libc::kill(pids[0], libc::SIGKILL);
    }
    wait_for(Duration::from_secs(30), "etcd restarted", || {
        let now = child_pids(s.proc.pid());
        (now.len() == 1 && now[0] != pids[0]).then_some(())
    });
    let log = s.proc.log_text();
    assert!(
        log.contains("etcd exited unexpectedly") && log.contains("restarting it in 1s"),
        "{log}"
    );
    assert!(log.contains("Last lines of its log"), "{log}");
    wait_for(Duration::from_secs(30), "healthy again", || {
        matches!(https_get(&format!("{}/healthz", s.url())), Some((200, _))).then_some(())
    });
    // The server never went away: the same process answers, with the data intact.
    ok(&s.cli(&["save"]));
    assert_eq!(
        get_key(
            &s.etcd_endpoint(),
            Some((&s.etcd_tls().0, &s.etcd_tls().1, &s.etcd_tls().2)),
            "/before"
        ),
        Some(b"1".to_vec())
    );
}

pub fn child_pids(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(c.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains(") Z "))
        .unwrap_or(true)
}

#[test]
fn external_etcd_with_mtls_and_endpoint_fallback() {
    let etcd = PlainEtcd::start(Etcd::V35, None, "ext", None, true);
    let (ca, cert, key) = etcd.tls_paths().unwrap();
    put_keys(
        &etcd.endpoint(),
        Some((&ca, &cert, &key)),
        &[("/ext/key".into(), b"v".to_vec())],
    );
    let dead = format!("https://127.0.0.1:{}", free_port());
    let s = Server::builder(Etcd::V35)
        .arg(format!("--datastore-endpoint={dead},{}", etcd.endpoint()))
        .arg(format!("--datastore-cafile={}", ca.display()))
        .arg(format!("--datastore-certfile={}", cert.display()))
        .arg(format!("--datastore-keyfile={}", key.display()))
        .start();
    ok(&s.cli(&["save"]));
    let files = s.snapshot_files();
    assert_eq!(files.len(), 1);
    etcdsnap_core::snapfile::verify::verify_file(&s.snapshot_dir().join(&files[0])).unwrap();
    // No embedded etcd was started.
    assert!(!s.data_dir().join("server/db/etcd").exists());
    assert!(child_pids(s.proc.pid()).is_empty());
    // Without the client certificate the external cluster refuses us, and save says so.
    let s2 = Server::builder(Etcd::V35)
        .arg(format!("--datastore-endpoint={}", etcd.endpoint()))
        .arg(format!("--datastore-cafile={}", ca.display()))
        .no_wait()
        .start();
    // Wait for the server to have asked etcd: until then it answers 503 with no cause.
    let (code, body) = wait_for(
        Duration::from_secs(30),
        "an answer after asking etcd",
        || {
            https_get(&format!("{}/healthz", s2.url()))
                .filter(|(code, body)| *code != 503 || body.trim() != "etcd is not ready:")
        },
    );
    assert_eq!(code, 503, "{body}");
}

/// Under systemd (`Type=notify`) the server says READY=1 only once etcd answers and the API
/// serves, and STOPPING=1 when it begins to stop.
#[test]
fn notify_systemd_when_ready() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let s = Server::builder(Etcd::V35)
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .no_wait()
        .start();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY=1 within 60 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    // Ours, not etcd's (etcd speaks sd_notify too, and must not tell before the server serves).
    assert_eq!(
        msg, "READY=1\nSTATUS=etcd is ready; serving the supervisor API",
        "{msg}"
    );
    // Ready means ready: the API answers and etcd is healthy at once.
    let (code, body) = https_get(&format!("{}/healthz", s.url())).unwrap();
    assert_eq!((code, body.trim()), (200, "ok"), "{}", s.log_text());
    s.stop();
    let n = sock.recv(&mut buf).expect("STOPPING=1 at shutdown");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "STOPPING=1");
}
