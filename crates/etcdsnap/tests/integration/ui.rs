//! The status page in a real browser: Debian's headless Chromium loads `/ui` from a real
//! `etcdsnap server` (embedded etcd, S3 on s3s-fs) and the DOM it built is checked against
//! `etcdsnap etcd-snapshot ls -o json`. Chromium authenticates with the credentials in the URL
//! and trusts exactly the server's key (`--ignore-certificate-errors-spki-list`). A missing
//! Chromium fails the test.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::harness::*;
use etcdsnap_testkit::s3::{ACCESS_KEY, S3sFs, SECRET_KEY};

const BUCKET: &str = "uibucket";
/// A file name that would be markup if the page did not escape it.
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// The base64 SHA-256 of the server's public key, as Chromium's SPKI pin list wants it.
fn spki_pin(server: &Server) -> String {
    let pem = std::fs::read(server.seen("server/tls/serving-supervisor.crt")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let spki = cert.tbs_certificate.subject_pki.raw;
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki))
}

/// Runs headless Chromium on `url` with `extra` flags; its stdout (the DOM with `--dump-dom`).
fn chromium(server: &Server, url: &str, extra: &[String]) -> String {
    let bin = env_bin("CHROMIUM_BIN");
    let profile = tempfile::tempdir().unwrap();
    let out_path = profile.path().join("stdout");
    let err_path = profile.path().join("stderr");
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!(
        "--user-data-dir={}",
        profile.path().join("p").display()
    ))
    .arg(format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_pin(server)
    ))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out_path).unwrap())
    .stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish in 90s; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        status.success(),
        "chromium failed ({status}); stderr:\n{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    out
}

fn dump_dom(server: &Server, url: &str) -> String {
    chromium(server, url, &["--dump-dom".to_string()])
}

/// `https://server:<secret>@127.0.0.1:<port>/ui`, the secret percent-encoded.
fn ui_url(server: &Server, password: &str) -> String {
    let enc: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("https://server:{enc}@127.0.0.1:{}/ui", server.port)
}

/// The server token's secret part (`K10<hash>::server:<secret>`).
fn secret(server: &Server) -> String {
    let token = server.token();
    let (_, creds) = token.split_once("::").unwrap();
    creds.split_once(':').unwrap().1.to_string()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The part of `dom` from `start` to the next `end` after it.
fn section<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let i = dom
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in the page:\n{dom}"));
    let j = dom[i..].find(end).map(|j| i + j).unwrap_or(dom.len());
    &dom[i..j]
}

/// The value between `before` and the next `after`, for each occurrence in `s`.
fn all_between(s: &str, before: &str, after: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(before) {
        rest = &rest[i + before.len()..];
        let j = rest.find(after).unwrap();
        out.push(rest[..j].to_string());
        rest = &rest[j..];
    }
    out
}

/// Name → bytes of the snapshot rows in a store's table.
fn table_of(dom: &str, store: &str) -> BTreeMap<String, u64> {
    let div = section(dom, &format!("id=\"store-{store}\""), "</table>");
    let rows = all_between(div, "<tr class=\"snapshot\">", "</tr>");
    rows.iter()
        .map(|row| {
            let name = all_between(row, "<td class=\"name\"", "</td>")[0].clone();
            let name = unescape(&name[name.find('>').unwrap() + 1..]);
            let bytes = all_between(row, "data-bytes=\"", "\"")[0].parse().unwrap();
            (name, bytes)
        })
        .collect()
}

fn ls_json(server: &Server, s3: &[String]) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut args = vec!["ls", "-o", "json"];
    args.extend(s3.iter().map(String::as_str));
    let out = ok(&server.cli(&args));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut by_store: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for item in v["items"].as_array().unwrap() {
        let loc = item["spec"]["location"].as_str().unwrap();
        let store = if loc.starts_with("s3://") {
            "s3"
        } else {
            "local"
        };
        let name = item["spec"]["snapshotName"].as_str().unwrap().to_string();
        let size = item["status"]["size"].as_str().unwrap().parse().unwrap();
        by_store.entry(store.into()).or_default().insert(name, size);
    }
    by_store
}

/// GET `url` without verifying the certificate, with basic auth `auth`: the status, the
/// `WWW-Authenticate` header and the body.
fn get(url: &str, auth: Option<(&str, &str)>) -> (u16, String, String) {
    rt().block_on(async {
        let c = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut req = c.get(url);
        if let Some((user, pass)) = auth {
            req = req.basic_auth(user, Some(pass));
        }
        let r = req.send().await.unwrap();
        let code = r.status().as_u16();
        let www = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (code, www, r.text().await.unwrap())
    })
}

#[test]
fn status_page_in_chromium_matches_ls() {
    let s3 = S3sFs::start(&[BUCKET]);
    let server = Server::builder(Etcd::V35)
        .args([
            "--etcd-snapshot-schedule-cron=0 3 1 1 *".to_string(),
            "--etcd-s3".into(),
            format!("--etcd-s3-endpoint={}", s3.endpoint()),
            "--etcd-s3-insecure".into(),
            format!("--etcd-s3-bucket={BUCKET}"),
            format!("--etcd-s3-access-key={ACCESS_KEY}"),
            format!("--etcd-s3-secret-key={SECRET_KEY}"),
            "--etcd-s3-folder=ui".into(),
            "--etcd-s3-timeout=10s".into(),
        ])
        .start();
    let s3_flags = vec![
        "--s3".to_string(),
        format!("--s3-endpoint={}", s3.endpoint()),
        "--s3-insecure".into(),
        format!("--s3-bucket={BUCKET}"),
        format!("--s3-access-key={ACCESS_KEY}"),
        format!("--s3-secret-key={SECRET_KEY}"),
        "--s3-folder=ui".into(),
    ];
    server.put(&noise("ui", 1));
    for _ in 0..2 {
        let mut args = vec!["save"];
        args.extend(s3_flags.iter().map(String::as_str));
        ok(&server.cli(&args));
    }
    std::fs::write(server.snapshot_dir().join(HOSTILE), b"not a snapshot").unwrap();
    let listed = ls_json(&server, &s3_flags);
    assert_eq!(listed["local"].len(), 3, "{listed:?}");
    assert_eq!(listed["s3"].len(), 2, "{listed:?}");

    let pass = secret(&server);
    let dom = dump_dom(&server, &ui_url(&server, &pass));

    // The tables say what `ls` says, store by store.
    assert_eq!(table_of(&dom, "local"), listed["local"], "{dom}");
    assert_eq!(table_of(&dom, "s3"), listed["s3"], "{dom}");
    // The hostile name is text, not an element.
    assert!(!dom.contains("<img"), "{dom}");
    assert!(
        dom.contains("&lt;img src=x onerror=alert(1)&gt;</td>"),
        "{dom}"
    );
    // One point per save in each chart.
    let sizes = section(&dom, "<svg id=\"size-chart\"", "</svg>");
    let durations = section(&dom, "<svg id=\"duration-chart\"", "</svg>");
    assert_eq!(
        sizes.matches("<circle class=\"point\"").count(),
        2,
        "{sizes}"
    );
    assert_eq!(durations.matches("<circle class=\"point\"").count(), 2);
    for name in listed["s3"].keys() {
        assert!(sizes.contains(name.as_str()), "{name} not charted: {sizes}");
    }
    // Last success in both stores, no failure; the schedule and its next runs; etcd health.
    for store in ["local", "s3"] {
        let div = section(&dom, &format!("id=\"store-{store}\""), "</table>");
        let success = all_between(div, "class=\"last-success ok\">", "<");
        assert!(success[0].starts_with("20"), "{store}: {div}");
        assert_eq!(
            all_between(div, "class=\"last-failure ok\">", "<"),
            ["never"]
        );
    }
    assert!(dom.contains("<code id=\"cron\">0 3 1 1 *</code>"), "{dom}");
    let next = all_between(&dom, "<time class=\"next-run\">", "</time>");
    assert_eq!(next.len(), 3, "{dom}");
    assert!(next[0].contains("-01-01T03:00:00Z"), "{next:?}");
    assert!(
        dom.contains("etcd: <span class=\"ok\">healthy</span>"),
        "{dom}"
    );
    assert!(
        !dom.contains(&pass) && !dom.contains(SECRET_KEY),
        "a secret on the page"
    );

    // A screenshot renders (and is kept next to the server's files for a look).
    let png = server.data_dir().join("ui.png");
    chromium(
        &server,
        &ui_url(&server, &pass),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1100,1500".into(),
            "--hide-scrollbars".into(),
        ],
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{}",
        bytes.len()
    );
    if let Some(keep) = std::env::var_os("ETCDSNAP_UI_SCREENSHOT") {
        std::fs::copy(&png, Path::new(&keep)).unwrap();
    }

    // Without the token, or with a wrong one, the browser shows no data (headless Chromium
    // cancels the login prompt and dumps nothing), and the answer is a 401 that asks for one.
    for url in [
        format!("https://127.0.0.1:{}/ui", server.port),
        ui_url(&server, "wrong"),
    ] {
        let dom = dump_dom(&server, &url);
        assert!(!dom.contains("etcdsnap status"), "{dom}");
        for name in listed["local"].keys() {
            assert!(!dom.contains(name.as_str()), "{dom}");
        }
    }
    for path in ["/ui", "/ui.json"] {
        let (code, headers, body) = get(&format!("{}{path}", server.url()), None);
        assert_eq!(code, 401, "{body}");
        assert_eq!(headers, "Basic realm=\"etcdsnap\"");
        for name in listed["local"].keys() {
            assert!(!body.contains(name.as_str()), "{body}");
        }
        let (code, _, body) = get(
            &format!("{}{path}", server.url()),
            Some(("server", "wrong")),
        );
        assert_eq!(code, 401, "{body}");
    }
    let (code, _, body) = get(
        &format!("{}/ui.json", server.url()),
        Some(("server", &pass)),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["stores"][0]["snapshots"].as_array().unwrap().len(),
        3,
        "{v}"
    );
    assert_eq!(v["saves"].as_array().unwrap().len(), 2, "{v}");

    let log = server.proc.log_text();
    assert!(
        !log.contains(&pass) && !log.contains(SECRET_KEY),
        "a secret in the log"
    );
}
