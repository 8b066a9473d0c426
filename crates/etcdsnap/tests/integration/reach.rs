//! What a token holder reaches through `POST /db/snapshot` (issue 23), against a real server
//! with embedded etcd: only the server's snapshot dirs, and remote stores with the request's
//! own keys. The server's files (CA keys, the etcd database), other folders and the server's
//! own cloud identity stay out of reach.

use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcdsnap_testkit::s3::{ACCESS_KEY, S3sFs, SECRET_KEY};

use crate::harness::*;

/// `POST /db/snapshot` with the server's token: status and body.
fn post(s: &Server, body: &str) -> (u16, String) {
    s.post_snapshot(body.as_bytes())
}

/// A loopback listener that keeps every byte sent to it, to see what a server sent to an
/// endpoint a request named. Each connection is read until it is quiet for a second.
struct Trap {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Trap {
    fn start() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(64) {
                let Ok(mut conn) = conn else { continue };
                let keep = keep.clone();
                std::thread::spawn(move || {
                    conn.set_read_timeout(Some(Duration::from_secs(1))).ok();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        keep.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Trap { port, seen }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}

/// Reconciles of the snapshot records the server has finished, as its metrics count them.
fn reconciles(s: &Server) -> u64 {
    let (code, body) = https_get(&format!("{}/metrics", s.url())).unwrap();
    assert_eq!(code, 200);
    body.lines()
        .filter(|l| l.starts_with("etcdsnap_etcd_snapshot_reconcile_duration_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The message without its `etcd-snapshot error ID <n>: ` prefix.
fn message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let m = v["message"].as_str().unwrap_or(body);
    m.split_once(": ")
        .map(|(_, rest)| rest)
        .unwrap_or(m)
        .to_string()
}

#[test]
fn a_request_reaches_only_the_servers_snapshot_dirs() {
    let allowed = tempfile::tempdir().unwrap();
    let decoy = tempfile::tempdir().unwrap();
    let decoy_name = "etcd-snapshot-n1-1700000000";
    std::fs::write(decoy.path().join(decoy_name), b"not a snapshot of yours").unwrap();
    let s = Server::builder(Etcd::V35)
        .arg(format!(
            "--etcd-snapshot-allowed-dirs={}",
            allowed.path().display()
        ))
        .start();
    ok(&s.cli(&["save"]));
    let own = s.snapshot_files();
    assert_eq!(own.len(), 1);
    let data = s.data_dir().to_path_buf();
    let tls = data.join("server/tls");
    let key = list_files(&tls)
        .into_iter()
        .find(|f| f.ends_with(".key"))
        .expect("the server's CA key in server/tls");
    let key_bytes = std::fs::read(tls.join(&key)).unwrap();
    let db = data.join("server/db/etcd/member/snap/db");
    assert!(db.is_file());
    let snapdir = s.snapshot_dir();
    let decoy_dir = decoy.path().display().to_string();
    let tls_dir = tls.display().to_string();
    let snap_dir = db.parent().unwrap().display().to_string();
    let traversal = format!("{}/../../tls", snapdir.display());
    let requests = [
        format!(r#"{{"operation":"list","dir":"{decoy_dir}"}}"#),
        r#"{"operation":"list","dir":"/etc/ssh"}"#.to_string(),
        format!(r#"{{"operation":"save","dir":"{decoy_dir}"}}"#),
        format!(r#"{{"operation":"delete","dir":"{decoy_dir}","name":["{decoy_name}"]}}"#),
        format!(
            r#"{{"operation":"prune","dir":"{decoy_dir}","name":["etcd-snapshot"],"retention":0}}"#
        ),
        format!(r#"{{"operation":"delete","dir":"{tls_dir}","name":["{key}"]}}"#),
        format!(r#"{{"operation":"delete","dir":"{snap_dir}","name":["db"]}}"#),
        format!(r#"{{"operation":"delete","dir":"{traversal}","name":["{key}"]}}"#),
        format!(r#"{{"operation":"save","dir":"{tls_dir}"}}"#),
    ];
    for body in &requests {
        let (code, answer) = post(&s, body);
        assert_eq!(code, 400, "{body}: {answer}");
        assert!(
            answer.contains("is not one this server allows"),
            "{body}: {answer}"
        );
        assert!(!answer.contains(decoy_name), "{body}: {answer}");
    }
    // Nothing outside the allowed dirs was listed, written or deleted.
    assert_eq!(list_files(decoy.path()), vec![decoy_name.to_string()]);
    assert_eq!(std::fs::read(tls.join(&key)).unwrap(), key_bytes);
    assert!(db.is_file());
    assert_eq!(s.snapshot_files(), own);
    assert_eq!(
        https_get(&format!("{}/healthz", s.url())).map(|r| r.0),
        Some(200)
    );
    // No record was made for the decoy, and the real snapshot's record is still there.
    let records = s.kubectl(&["get", "etcdsnapshotfiles", "-o", "name"]);
    let records = stdout(&records);
    assert!(!records.contains("1700000000"), "{records}");
    assert!(records.lines().count() >= 1, "{records}");

    // The CLI: the decoy is refused with the fix; an allowed dir works, and the server's own
    // dir named explicitly (with a trailing slash) is the same as no --dir.
    let err = fails(&s.cli(&["ls", "--dir", &decoy_dir]));
    assert!(
        err.contains("is not one this server allows")
            && err.contains("--etcd-snapshot-allowed-dirs"),
        "{err}"
    );
    ok(&s.cli(&["save", "--dir", allowed.path().to_str().unwrap()]));
    assert_eq!(list_files(allowed.path()).len(), 1);
    let listed = ok(&s.cli(&["ls", "--dir", allowed.path().to_str().unwrap()]));
    assert!(listed.contains(&list_files(allowed.path())[0]), "{listed}");
    // Records cover every allowed dir: listing one does not delete and re-create the
    // records of the other (same uids). Each listing reconciles the records after it answers,
    // in the background: the uids are compared once those reconciles have run.
    let uids = || {
        let out = s.kubectl(&[
            "get",
            "etcdsnapshotfiles",
            "-o",
            "jsonpath={.items[*].metadata.uid}",
        ]);
        let mut v: Vec<String> = stdout(&out)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    let before = wait_for(Duration::from_secs(20), "records of both dirs", || {
        let u = uids();
        (u.len() == 2).then_some(u)
    });
    let reconciled = reconciles(&s);
    ok(&s.cli(&["ls", "--dir", allowed.path().to_str().unwrap()]));
    ok(&s.cli(&["ls"]));
    wait_for(
        Duration::from_secs(20),
        "the reconciles of both listings",
        || (reconciles(&s) >= reconciled + 2).then_some(()),
    );
    assert_eq!(uids(), before, "records were re-created");
    let mine = format!("{}/", snapdir.display());
    let listed = ok(&s.cli(&["ls", "--dir", &mine]));
    assert!(listed.contains(&own[0]), "{listed}");
    // A newline in a dir is quoted in the log, never a line of its own.
    let (code, _) = post(&s, r#"{"operation":"list","dir":"/x\nERROR forged line"}"#);
    assert_eq!(code, 400);
    let log = s.log_text();
    assert!(
        !log.lines().any(|l| l.starts_with("ERROR forged line")),
        "{log}"
    );
}

/// A service-account key file with a fresh RSA key (openssl).
fn gcs_key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("sa.json");
    std::fs::write(
        &path,
        etcdsnap_testkit::gcs::service_account_key(
            "SERVERKEYID0001",
            "server-identity@proj.iam.gserviceaccount.com",
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_request_never_borrows_the_servers_credentials() {
    let fs = S3sFs::start(&["ours"]);
    let trap = Trap::start();
    let keys = tempfile::tempdir().unwrap();
    let sa = gcs_key_file(keys.path());
    // The server's identity is its environment's keys (as an instance role would be); its own
    // store is the s3s-fs bucket.
    let s = Server::builder(Etcd::V35)
        .args([
            "--etcd-s3".to_string(),
            format!("--etcd-s3-endpoint={}", fs.endpoint()),
            "--etcd-s3-insecure".into(),
            "--etcd-s3-bucket=ours".into(),
            "--etcd-s3-folder=srv".into(),
            "--etcd-s3-timeout=10s".into(),
        ])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_SESSION_TOKEN", "SERVERSESSIONTOKEN")
        .start();
    let t = trap.port;
    let sa = sa.display();
    let refused = [
        // The server's identity against an endpoint the request chose, over plain HTTP.
        format!(
            r#"{{"operation":"list","s3":{{"bucket":"ours","endpoint":"127.0.0.1:{t}","insecure":true,"timeout":"3s"}}}}"#
        ),
        format!(
            r#"{{"operation":"save","s3":{{"bucket":"loot","endpoint":"127.0.0.1:{t}","insecure":true,"timeout":"3s"}}}}"#
        ),
        // The server's own store, but through a proxy the request chose.
        format!(
            r#"{{"operation":"list","s3":{{"bucket":"ours","endpoint":"{}","insecure":true,"proxy":"http://127.0.0.1:{t}","timeout":"3s"}}}}"#,
            fs.endpoint()
        ),
        // A key file on the server, and a token for it sent to the request's endpoint.
        format!(
            r#"{{"operation":"list","s3":{{"provider":"gcs","bucket":"bkt","credentialsFile":"{sa}","endpoint":"http://127.0.0.1:{t}","timeout":"3s"}}}}"#
        ),
        // Google's application-default credentials are the server's identity too.
        r#"{"operation":"list","s3":{"provider":"gcs","bucket":"bkt","timeout":"3s"}}"#.to_string(),
    ];
    for body in &refused {
        let (code, answer) = post(&s, body);
        assert_eq!(code, 400, "{body}: {answer}");
        assert!(
            answer.contains("carries no keys of its own")
                || answer.contains("key file on the server"),
            "{body}: {answer}"
        );
    }
    // A CA path in a request tells nothing about the file: the same answer whether it exists.
    let ca = |path: &str| {
        message(
            &post(
                &s,
                &format!(
                    r#"{{"operation":"list","s3":{{"bucket":"bkt","accessKey":"A","secretKey":"S","endpoint":"127.0.0.1:{t}","endpointCA":"{path}","timeout":"3s"}}}}"#
                ),
            )
            .1,
        )
    };
    let exists = ca("/etc/hostname");
    assert!(exists.contains("names a file on the server"), "{exists}");
    assert_eq!(exists, ca("/no/such/file"));
    assert_eq!(exists, ca(&sa.to_string()));

    // With its own keys a request reaches its own endpoint, signed with those keys only.
    let (code, answer) = post(
        &s,
        &format!(
            r#"{{"operation":"list","s3":{{"bucket":"theirs","endpoint":"127.0.0.1:{t}","insecure":true,"accessKey":"AKREQUESTOWNKEY","secretKey":"request-secret","timeout":"3s"}}}}"#
        ),
    );
    assert_ne!(code, 200, "{answer}");
    wait_for(
        Duration::from_secs(10),
        "the request's own key at the trap",
        || trap.text().contains("AKREQUESTOWNKEY").then_some(()),
    );
    // The server's own store without keys gets the server's credentials (another folder).
    let (code, answer) = post(
        &s,
        &format!(
            r#"{{"operation":"list","s3":{{"bucket":"ours","endpoint":"{}","insecure":true,"folder":"other","timeout":"10s"}}}}"#,
            fs.endpoint()
        ),
    );
    assert_eq!(code, 200, "{answer}");

    let seen = trap.text();
    for secret in [
        ACCESS_KEY,
        "SERVERSESSIONTOKEN",
        "Bearer",
        "SERVERKEYID0001",
        "server-identity@",
    ] {
        assert!(!seen.contains(secret), "the trap received {secret}: {seen}");
    }
    let log = s.log_text();
    assert!(
        !log.contains(SECRET_KEY) && !log.contains("request-secret"),
        "{log}"
    );
}
