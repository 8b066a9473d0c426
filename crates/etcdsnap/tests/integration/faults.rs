//! Faults and hostile clients against a real `etcdsnap server`: descriptor exhaustion, idle and
//! slow connections, token guessing, plain HTTP on the TLS port, a server killed mid-save, a
//! second server on the same data dir, dead external endpoints, a CLI that starts before the
//! server is ready. Each test checks that nothing is lost and what the user is told.

use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;

/// A TLS client config that trusts the server's own CA.
fn tls_config(s: &Server) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    etcdsnap_core::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(s.data_dir().join("server/tls/server-ca.crt")).unwrap();
    for c in CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Opens `n` connections that finish the TLS handshake and then say nothing.
async fn idle_tls(
    s: &Server,
    n: usize,
) -> Vec<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(tls_config(s));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", s.port)).await else {
            continue;
        };
        if let Ok(Ok(t)) =
            tokio::time::timeout(Duration::from_secs(5), connector.connect(name.clone(), tcp)).await
        {
            out.push(t);
        }
    }
    out
}

#[test]
fn idle_connections_and_few_descriptors_do_not_lock_out_the_token_holder() {
    let s = Server::builder(Etcd::V35).fd_limit(200).start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let held = rt.block_on(idle_tls(&s, 210));
    assert!(
        held.len() > 100,
        "only {} connections got through",
        held.len()
    );
    // Raw TCP connections that never even start TLS.
    let raw: Vec<std::net::TcpStream> = (0..40)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", s.port)).ok())
        .collect();
    let started = Instant::now();
    let out = s.cli(&["ls"]);
    let took = started.elapsed();
    ok(&out);
    assert!(
        took < Duration::from_secs(5),
        "an authenticated ls took {took:?} with {} idle TLS and {} idle TCP connections",
        held.len(),
        raw.len()
    );
    eprintln!(
        "ls answered in {took:?} with {} idle TLS connections",
        held.len()
    );
    // The accept loop did not spin: a handful of log lines, not megabytes.
    let log = s.proc.log_text();
    let accept_lines = log.matches("accept failed").count();
    assert!(accept_lines < 20, "{accept_lines} accept-failure lines");
    drop(held);
    drop(raw);
}

#[test]
fn slow_headers_are_cut_off() {
    let s = Server::start(Etcd::V35);
    let rt = rt();
    let closed_after = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut t = idle_tls(&s, 1).await.pop().expect("a TLS connection");
        t.write_all(b"POST /db/snapshot HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        // One byte every two seconds: a slowloris.
        loop {
            if started.elapsed() > Duration::from_secs(40) {
                return None;
            }
            if t.write_all(b"X").await.is_err() {
                return Some(started.elapsed());
            }
            tokio::select! {
                r = t.read(&mut buf) => {
                    if matches!(r, Ok(0) | Err(_)) { return Some(started.elapsed()); }
                }
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    });
    let after = closed_after.expect("the server kept a slowloris connection for 40 s");
    assert!(after < Duration::from_secs(25), "closed after {after:?}");
}

#[test]
fn token_guessing_is_slowed_per_address() {
    let s = Server::start(Etcd::V35);
    let post = |secret: &str| -> u16 {
        rt().block_on(async {
            reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap()
                .post(format!("{}/db/snapshot", s.url()))
                .basic_auth("server", Some(secret))
                .body(r#"{"operation":"list"}"#)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let token = s.token();
    let secret = token.rsplit(':').next().unwrap().to_string();
    assert_eq!(post(&secret), 200);
    let codes: Vec<u16> = (0..25).map(|i| post(&format!("guess-{i}"))).collect();
    assert!(codes[..20].iter().all(|c| *c == 401), "{codes:?}");
    assert!(codes[20..].iter().all(|c| *c == 429), "{codes:?}");
    assert_eq!(post(&secret), 429, "the whole address waits out the window");
    assert!(s.proc.log_text().contains("failed authentications"));
}

#[test]
fn plain_http_on_the_https_port_is_told_to_use_https() {
    let s = Server::start(Etcd::V35);
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut resp = String::new();
    let _ = tcp.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("use https://"), "{resp}");
}

#[test]
fn a_server_killed_mid_save_leaves_nothing_and_cleans_up_at_restart() {
    let mut s = Server::start(Etcd::V35);
    let big: Vec<(String, Vec<u8>)> = (0..96)
        .map(|i| (format!("/big/{i}"), vec![(i % 251) as u8; 1 << 20]))
        .collect();
    s.put(&big);
    let mut save = Command::new(etcdsnap_bin());
    save.args(["etcd-snapshot", "save", "--snapshot-compress", "-d"])
        .arg(s.data_dir())
        .arg(format!("--etcd-server={}", s.url()))
        .env("ETCDSNAP_CONFIG_FILE", empty_config(s.data_dir()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut save = save.spawn().unwrap();
    wait_for(Duration::from_secs(20), "a .part file", || {
        s.snapshot_files()
            .iter()
            .any(|f| f.ends_with(".part"))
            .then_some(())
    });
    let etcd = crate::server::child_pids(s.proc.pid());
    // SAFETY: killing the server this test started.
    unsafe {
        libc::kill(s.proc.pid(), libc::SIGKILL);
    }
    s.proc.wait_exit(Duration::from_secs(10));
    let _ = save.wait();
    // The etcd child dies with its server (PR_SET_PDEATHSIG).
    wait_for(Duration::from_secs(10), "the orphaned etcd to go", || {
        etcd.iter()
            .all(|p| {
                !std::path::Path::new(&format!("/proc/{p}")).exists()
                    || std::fs::read_to_string(format!("/proc/{p}/stat"))
                        .is_ok_and(|st| st.contains(") Z"))
            })
            .then_some(())
    });
    let leftovers = s.snapshot_files();
    assert!(
        leftovers.iter().all(|f| f.ends_with(".part")),
        "only the .part of the killed save may remain: {leftovers:?}"
    );
    let ports = s.ports();
    let dir = s.dir;
    let s = Server::builder(Etcd::V35).dir(dir).ports(ports).start();
    assert!(
        s.snapshot_files().is_empty(),
        "stale .part not removed: {:?}",
        s.snapshot_files()
    );
    assert!(
        s.proc
            .log_text()
            .contains("left by a snapshot save that did not finish"),
        "{}",
        s.proc.log_text()
    );
    ok(&s.cli(&["save"]));
    assert_eq!(s.snapshot_files().len(), 1);
}

#[test]
fn a_second_server_on_the_same_data_dir_fails_at_once() {
    let s = Server::start(Etcd::V35);
    let started = Instant::now();
    let out = Command::new(etcdsnap_bin())
        .arg("server")
        .arg("-d")
        .arg(s.data_dir())
        .args(Ports::free().args())
        .arg(format!("--etcd-binary={}", Etcd::V35.etcd().display()))
        .env("ETCDSNAP_CONFIG_FILE", empty_config(s.data_dir()))
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.contains("is in use by another etcdsnap server")
            && err.contains(&s.proc.pid().to_string()),
        "{err}"
    );
    // The first server is unharmed.
    ok(&s.cli(&["save"]));
}

#[test]
fn dead_external_endpoints_are_named_in_the_503() {
    let (a, b) = (free_port(), free_port());
    let eps = format!("http://127.0.0.1:{a},http://127.0.0.1:{b}");
    let s = Server::builder(Etcd::V35)
        .args(["--datastore-endpoint", &eps])
        .no_wait()
        .start();
    wait_for(
        Duration::from_secs(30),
        "a 503 naming both endpoints",
        || {
            let (code, body) = https_get(&format!("{}/healthz", s.url()))?;
            (code == 503
                && body.contains(&format!("127.0.0.1:{a}"))
                && body.contains(&format!("127.0.0.1:{b}")))
            .then_some(())
        },
    );
}

#[test]
fn the_cli_waits_for_a_server_that_is_still_starting() {
    let s = Server::builder(Etcd::V35).no_wait().start();
    // No wait for healthy: the CLI meets a server whose etcd is starting (the token file is
    // written first, before etcd starts).
    wait_for(Duration::from_secs(20), "the token file", || {
        s.data_dir().join("server/token").exists().then_some(())
    });
    let out = s.cli(&["save"]);
    let text = ok(&out);
    assert!(text.starts_with("Snapshot on-demand-"), "{text}");
}

#[test]
fn single_dash_long_flags_work_as_in_k3s() {
    let s = Server::start(Etcd::V35);
    let out = ok(&s.cli(&["save", "-name", "dash", "-snapshot-compress"]));
    assert!(out.contains("Snapshot dash-n1-"), "{out}");
    assert!(
        s.snapshot_files()
            .iter()
            .any(|f| f.starts_with("dash-n1-") && f.ends_with(".zip"))
    );
    let ls = ok(&s.cli(&["ls", "-o", "json"]));
    assert!(ls.contains("\"kind\": \"List\""), "{ls}");
}

#[test]
fn a_bare_token_with_another_servers_ca_says_so() {
    let a = Server::start(Etcd::V35);
    let b = Server::start(Etcd::V35);
    let secret_b = b.token().rsplit(':').next().unwrap().to_string();
    // B's bare secret, A's data dir (so A's CA), B's address.
    let out = Command::new(etcdsnap_bin())
        .args(["etcd-snapshot", "ls", "--etcd-token", &secret_b])
        .arg(format!("--etcd-server={}", b.url()))
        .arg("-d")
        .arg(a.data_dir())
        .env("ETCDSNAP_CONFIG_FILE", empty_config(a.data_dir()))
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(
        err.contains("did not sign") && err.contains("belongs to another server"),
        "{err}"
    );
}
