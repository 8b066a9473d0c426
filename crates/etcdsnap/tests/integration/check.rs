//! `etcdsnap check` against a real server (embedded etcd 3.5) and a real S3 server (s3s-fs):
//! a healthy setup passes, and each broken piece (stopped etcd, wrong S3 secret, unwritable
//! snapshot dir, bad cron) fails its own check with a fix, and exit code 1.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::*;
use etcdsnap_testkit::s3::{ACCESS_KEY, S3sFs, SECRET_KEY};

const BUCKET: &str = "checkbucket";

/// `etcdsnap check -d <dir> <args>` with an empty config file and no AWS variables.
fn check(dir: &Path, args: &[String]) -> Output {
    let mut cmd = Command::new(etcdsnap_bin());
    cmd.arg("check")
        .arg("-d")
        .arg(dir)
        .args(args)
        .env("ETCDSNAP_CONFIG_FILE", empty_config(dir));
    without_aws_env(&mut cmd);
    cmd.output().unwrap()
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `check -o json`: the results by name, after checking that all seven are there, in order.
pub(crate) fn check_json(dir: &Path, args: &[String]) -> (Output, Vec<Value>) {
    let mut args = args.to_vec();
    args.extend(["-o".to_string(), "json".to_string()]);
    let o = check(dir, &args);
    let v: Vec<Value> = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not a JSON array ({e}):\n{}", text(&o)));
    let names: Vec<&str> = v.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "config",
            "etcd",
            "certificates",
            "snapshot-dir",
            "s3",
            "schedule",
            "last-snapshot"
        ],
        "{}",
        text(&o)
    );
    for r in &v {
        let st = r["status"].as_str().unwrap();
        assert!(
            ["ok", "skipped", "warn", "fail"].contains(&st),
            "{r}: bad status"
        );
        assert_eq!(
            r["fix"].is_string(),
            st == "warn" || st == "fail",
            "{r}: a fix exactly when not ok"
        );
    }
    (o, v)
}

pub(crate) fn result<'a>(v: &'a [Value], name: &str) -> &'a Value {
    v.iter().find(|r| r["name"] == name).unwrap()
}

#[test]
fn check_passes_on_a_running_server_and_fails_once_it_stops() {
    let s = Server::start(Etcd::V35);
    let out = s.cli(&["save"]);
    assert!(out.status.success(), "{}", text(&out));
    let port = vec![format!("--etcd-client-port={}", s.client_port)];

    let o = check(s.data_dir(), &port);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(stdout.lines().count(), 7, "{stdout}");
    for line in stdout.lines() {
        let status = line.split_whitespace().next().unwrap();
        assert!(
            ["ok", "warn", "skipped"].contains(&status),
            "not ok: {line}"
        );
    }

    let (o, v) = check_json(s.data_dir(), &port);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let etcd = result(&v, "etcd");
    assert_eq!(etcd["status"], "ok", "{etcd}");
    let detail = etcd["detail"].as_str().unwrap();
    assert!(
        detail.contains("etcd 3.5") && detail.contains("leader (this member)"),
        "{detail}"
    );
    assert!(detail.contains("no alarms"), "{detail}");
    assert_eq!(result(&v, "certificates")["status"], "ok");
    assert_eq!(result(&v, "snapshot-dir")["status"], "ok");
    assert_eq!(result(&v, "s3")["status"], "skipped");
    assert_eq!(result(&v, "schedule")["status"], "ok");
    let last = result(&v, "last-snapshot");
    assert_eq!(last["status"], "ok", "{last}");
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .starts_with("on-demand-n1-"),
        "{last}"
    );
    // The check left no probe file in the snapshot dir.
    assert_eq!(s.snapshot_files().len(), 1, "{:?}", s.snapshot_files());

    // The same settings from a config file, as `server -c` reads it.
    let cfg = s.data_dir().join("check.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data-dir: {}\netcd-client-port: {}\netcd-snapshot-schedule-cron: '@every 1h'\n",
            s.data_dir().display(),
            s.client_port
        ),
    )
    .unwrap();
    let (o, v) = check_json(s.data_dir(), &["-c".into(), cfg.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(result(&v, "etcd")["status"], "ok");
    assert!(
        result(&v, "schedule")["detail"]
            .as_str()
            .unwrap()
            .starts_with("\"@every 1h\""),
        "{v:?}"
    );

    // With the server (and its etcd) stopped, the etcd check fails and says what to do.
    let (dir, _ports) = s.stop();
    let (o, v) = check_json(dir.path(), &port);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let etcd = result(&v, "etcd");
    assert_eq!(etcd["status"], "fail", "{etcd}");
    assert!(
        etcd["fix"].as_str().unwrap().contains("etcdsnap server"),
        "{etcd}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("checks failed: etcd"), "{stderr}");
    // The other checks still judge what they can.
    assert_eq!(result(&v, "certificates")["status"], "ok");
    assert_eq!(result(&v, "last-snapshot")["status"], "ok");
}

fn s3_args(fs: &S3sFs, secret: &str) -> Vec<String> {
    vec![
        "--etcd-s3".into(),
        format!("--etcd-s3-endpoint={}", fs.endpoint()),
        "--etcd-s3-insecure".into(),
        format!("--etcd-s3-bucket={BUCKET}"),
        format!("--etcd-s3-access-key={ACCESS_KEY}"),
        format!("--etcd-s3-secret-key={secret}"),
        "--etcd-s3-folder=snaps/node1".into(),
        "--etcd-s3-timeout=10s".into(),
    ]
}

#[test]
fn check_s3_probe_and_wrong_secret() {
    let fs = S3sFs::start(&[BUCKET]);
    let dir = tempfile::tempdir().unwrap();
    // No server here: the etcd check fails, the S3 check is judged on its own.
    let (o, v) = check_json(dir.path(), &s3_args(&fs, SECRET_KEY));
    let s3 = result(&v, "s3");
    assert_eq!(s3["status"], "ok", "{}", text(&o));
    let detail = s3["detail"].as_str().unwrap();
    assert!(
        detail.contains("probe object written, read back and deleted")
            && detail.contains(&format!("s3://{BUCKET}/snaps/node1/")),
        "{detail}"
    );
    let left = files_below(&fs.root.path().join(BUCKET));
    assert!(
        !left
            .iter()
            .any(|f| f.to_string_lossy().contains(".etcdsnap-check-")),
        "probe object left behind: {left:?}"
    );

    let wrong = "wrongsecretkey0123456789wrongsecret";
    let (o, v) = check_json(dir.path(), &s3_args(&fs, wrong));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s3 = result(&v, "s3");
    assert_eq!(s3["status"], "fail", "{s3}");
    assert!(
        s3["fix"].as_str().unwrap().contains("--etcd-s3-secret-key"),
        "{s3}"
    );
    let all = text(&o);
    assert!(!all.contains(wrong), "the secret key was printed:\n{all}");
    // The text form too.
    let o = check(dir.path(), &s3_args(&fs, wrong));
    let all = text(&o);
    assert!(!all.contains(wrong), "the secret key was printed:\n{all}");
    assert!(
        all.lines().any(|l| l.starts_with("FAIL")
            && l.contains(" s3 ")
            && l.contains("--etcd-s3-secret-key")),
        "{all}"
    );
}

#[test]
fn check_fails_an_unwritable_snapshot_dir_and_a_bad_cron() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (o, v) = check_json(
        dir.path(),
        &[format!(
            "--etcd-snapshot-dir={}",
            file.join("snapshots").display()
        )],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let d = result(&v, "snapshot-dir");
    assert_eq!(d["status"], "fail", "{d}");
    assert!(
        d["fix"].as_str().unwrap().contains("--etcd-snapshot-dir"),
        "{d}"
    );

    let (o, v) = check_json(
        dir.path(),
        &["--etcd-snapshot-schedule-cron=0 25 * * *".to_string()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = result(&v, "schedule");
    assert_eq!(s["status"], "fail", "{s}");
    assert!(s["detail"].as_str().unwrap().contains("25"), "{s}");
    assert!(
        s["fix"]
            .as_str()
            .unwrap()
            .contains("--etcd-snapshot-schedule-cron"),
        "{s}"
    );
    // Scheduled snapshots off: the schedule is not judged.
    let (_, v) = check_json(
        dir.path(),
        &[
            "--etcd-snapshot-schedule-cron=0 25 * * *".to_string(),
            "--etcd-disable-snapshots".to_string(),
        ],
    );
    let s = result(&v, "schedule");
    assert_eq!(s["status"], "ok", "{s}");
    assert!(s["detail"].as_str().unwrap().starts_with("disabled"), "{s}");
}

#[test]
fn check_fails_what_the_server_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    // A config the server refuses at start (a NUL in the node name): check used to pass it.
    let cfg = dir.path().join("nul.yaml");
    std::fs::write(&cfg, "node-name: \"a\\0b\"\n").unwrap();
    let mut cmd = Command::new(etcdsnap_bin());
    cmd.args(["check", "-o", "json", "-d"])
        .arg(dir.path())
        .env("ETCDSNAP_CONFIG_FILE", &cfg);
    without_aws_env(&mut cmd);
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let c = result(&v, "config");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("invalid --node-name: invalid snapshot name prefix"),
        "{c}"
    );
    // The server agrees.
    let o = Command::new(etcdsnap_bin())
        .args(["server", "-d"])
        .arg(dir.path())
        .env("ETCDSNAP_CONFIG_FILE", &cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("invalid --node-name"), "{}", text(&o));
    // Flags the server accepts give an ok config check.
    let (_, v) = check_json(dir.path(), &[]);
    assert_eq!(result(&v, "config")["status"], "ok");
}

/// Replaces `<tls>/<leaf>.crt` with a certificate for the same key, from the CA `<tls>/<ca>`
/// (whose subject is `ca_cn`, O=etcdsnap, as the server makes it), valid from the start of the
/// day `from_days` from now to the start of the day `to_days` from now (negative: past).
fn reissue(
    tls: &Path,
    ca: &str,
    ca_cn: &str,
    leaf: &str,
    eku: rcgen::ExtendedKeyUsagePurpose,
    (from_days, to_days): (i64, i64),
) {
    use rcgen::{CertificateParams, DistinguishedName, DnType, Issuer, KeyPair};
    let read = |p: String| std::fs::read_to_string(tls.join(p)).unwrap();
    let ca_key = KeyPair::from_pem(&read(format!("{ca}.key"))).unwrap();
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ca_cn);
    dn.push(DnType::OrganizationName, "etcdsnap");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca_params, &ca_key);
    let key = KeyPair::from_pem(&read(format!("{leaf}.key"))).unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, leaf);
    p.extended_key_usages = vec![eku];
    p.use_authority_key_identifier_extension = true;
    let day = |d: i64| {
        use chrono::Datelike;
        let t = chrono::Utc::now() + chrono::TimeDelta::days(d);
        rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
    };
    p.not_before = day(from_days);
    p.not_after = day(to_days);
    let cert = p.signed_by(&key, &issuer).unwrap();
    std::fs::write(tls.join(format!("{leaf}.crt")), cert.pem()).unwrap();
}

/// Days until the end of the first certificate in `pem`.
fn days_left(pem: &[u8]) -> i64 {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    let c = p.parse_x509().unwrap();
    (c.validity().not_after.timestamp() - chrono::Utc::now().timestamp()) / 86400
}

#[test]
fn serving_certificates_are_reported_and_renewed_at_start_from_the_same_ca() {
    use rcgen::ExtendedKeyUsagePurpose::ServerAuth;
    let s = Server::start(Etcd::V35);
    let token = s.token();
    let port = vec![format!("--etcd-client-port={}", s.client_port)];
    let (dir, ports) = s.stop();
    let tls = dir.path().join("server/tls");
    let ca_before = std::fs::read(tls.join("server-ca.crt")).unwrap();
    // New certificates: a year for serving ones, ten years for CAs, each one reported.
    let (_, v) = check_json(dir.path(), &port);
    let certs = result(&v, "certificates");
    assert_eq!(certs["status"], "ok", "{certs}");
    let detail = certs["detail"].as_str().unwrap();
    for (kind, file) in [
        ("CA", "server-ca.crt"),
        ("serving", "serving-supervisor.crt"),
        ("CA", "etcd/server-ca.crt"),
        ("CA", "etcd/peer-ca.crt"),
        ("serving", "etcd/server-client.crt"),
        ("serving", "etcd/peer-server-client.crt"),
        ("serving", "etcd/client.crt"),
    ] {
        assert!(
            detail.contains(&format!("{kind} {file}: until ")),
            "{file} not reported as {kind}: {detail}"
        );
    }
    assert!(days_left(&std::fs::read(tls.join("serving-supervisor.crt")).unwrap()) <= 365);
    assert!(days_left(&ca_before) > 3600);

    // The supervisor's certificate ends in 30 days: a warning naming it and the fix.
    reissue(
        &tls,
        "server-ca",
        "etcdsnap-server-ca",
        "serving-supervisor",
        ServerAuth,
        (-335, 30),
    );
    let (_, v) = check_json(dir.path(), &port);
    let certs = result(&v, "certificates");
    assert_eq!(certs["status"], "warn", "{certs}");
    let detail = certs["detail"].as_str().unwrap();
    assert!(
        detail.contains("serving serving-supervisor.crt: until") && detail.contains("(29 days)"),
        "{detail}"
    );
    assert!(
        certs["fix"]
            .as_str()
            .unwrap()
            .contains("restart the server")
    );
    // etcd's serving certificate expired yesterday: the check fails.
    reissue(
        &tls.join("etcd"),
        "server-ca",
        "etcd-server-ca",
        "server-client",
        ServerAuth,
        (-400, -1),
    );
    let (_, v) = check_json(dir.path(), &port);
    let certs = result(&v, "certificates");
    assert_eq!(certs["status"], "fail", "{certs}");
    assert!(
        certs["detail"]
            .as_str()
            .unwrap()
            .contains("serving etcd/server-client.crt: EXPIRED on"),
        "{certs}"
    );

    // A restart renews both from the same CA; etcd serves with the new one, the token holds.
    let s = Server::builder(Etcd::V35).dir(dir).ports(ports).start();
    let log = s.log_text();
    for f in ["serving-supervisor.crt", "server-client.crt"] {
        assert!(
            log.lines()
                .any(|l| l.contains("renewing certificate") && l.contains(f)),
            "no renewal of {f} logged:\n{log}"
        );
    }
    for f in ["serving-supervisor.crt", "etcd/server-client.crt"] {
        let left = days_left(&std::fs::read(tls.join(f)).unwrap());
        assert!((360..=365).contains(&left), "{f}: {left} days left");
    }
    assert_eq!(std::fs::read(tls.join("server-ca.crt")).unwrap(), ca_before);
    assert_eq!(s.token(), token);
    // The CLI pins the CA by the hash in the token: it accepts the renewed certificate.
    ok(&s.cli(&["save", "--etcd-token", &token]));
    let (_, v) = check_json(s.data_dir(), &port);
    assert_eq!(result(&v, "certificates")["status"], "ok");
}
