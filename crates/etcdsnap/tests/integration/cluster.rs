//! Several servers on one host, against real etcd 3.4 and 3.5: joining with `--server` and the
//! token, the learner phase, every server's own snapshots, member removal and rejoining, and
//! the restore procedure of a cluster (reset one, the others rejoin from nothing).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::*;

const LEARNER: &str = "Unable to take snapshot: not supported for learner";
const REMOVED: &str =
    "This node has been removed from the cluster - please restart etcdsnap to rejoin the cluster";

/// A server named `node` that joins the cluster of `first`.
fn joiner(v: Etcd, first: &Server, node: &str) -> ServerBuilder {
    Server::builder(v)
        .node(node)
        .args(["--server", &first.url(), "--token", &first.token()])
}

/// `etcdsnap member ls -o json` against `s`: (name, is learner) per member.
pub fn members(s: &Server) -> Vec<(String, bool)> {
    let o = Command::new(etcdsnap_bin())
        .args(["member", "ls", "-o", "json", "-d"])
        .arg(s.data_dir())
        .arg(format!("--etcd-server={}", s.url()))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let mut out: Vec<(String, bool)> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["isLearner"].as_bool().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn member_cmd(s: &Server, args: &[&str]) -> Output {
    Command::new(etcdsnap_bin())
        .arg("member")
        .args(args)
        .arg("-d")
        .arg(s.data_dir())
        .arg(format!("--etcd-server={}", s.url()))
        .output()
        .unwrap()
}

/// Waits until `s` lists `n` voting members whose names start with the given nodes.
pub fn wait_voters(s: &Server, nodes: &[&str]) {
    wait_for(
        Duration::from_secs(60),
        "every member to be a voter",
        || {
            let m = members(s);
            let voters: Vec<&str> = m
                .iter()
                .filter(|(_, l)| !l)
                .map(|(n, _)| n.split('-').next().unwrap())
                .collect();
            (voters == nodes).then_some(())
        },
    );
}

/// Three servers: the first with `first_args`, the others joining it.
fn three(v: Etcd, first_args: &[&str], joiner_args: &[&str]) -> [Server; 3] {
    let s1 = Server::builder(v).args(first_args.iter().copied()).start();
    let s2 = joiner(v, &s1, "n2")
        .args(joiner_args.iter().copied())
        .start();
    wait_voters(&s1, &["n1", "n2"]);
    let s3 = joiner(v, &s1, "n3")
        .args(joiner_args.iter().copied())
        .start();
    wait_voters(&s1, &["n1", "n2", "n3"]);
    [s1, s2, s3]
}

fn key_of(s: &Server, key: &str) -> Option<Vec<u8>> {
    let (ca, cert, key_file) = s.etcd_tls();
    get_key(&s.etcd_endpoint(), Some((&ca, &cert, &key_file)), key)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

both!(three_servers_join_learn_and_each_snapshot, three_servers);
fn three_servers(v: Etcd) {
    // The leader keeps a learner a learner for 8 s, so that its scheduled ticks are seen.
    let s1 = Server::builder(v)
        .args(["--etcd-learner-promotion-delay=8s"])
        .start();
    s1.put(&[("/cluster/from-n1".into(), b"one".to_vec())]);
    let tick = ["--etcd-snapshot-schedule-cron", "@every 1s"];
    let s2 = joiner(v, &s1, "n2").args(tick).start();
    assert_eq!(
        members(&s1)
            .iter()
            .map(|(n, l)| (n.split('-').next().unwrap().to_string(), *l))
            .collect::<Vec<_>>(),
        [("n1".to_string(), false), ("n2".to_string(), true)],
        "n2 joins as a learner"
    );
    wait_voters(&s1, &["n1", "n2"]);
    let log2 = wait_for(Duration::from_secs(15), "n2 to log its promotion", || {
        let log = s2.proc.log_text();
        log.contains("this server's etcd was promoted to a voting member")
            .then_some(log)
    });
    let learner_at = log2
        .find(LEARNER)
        .unwrap_or_else(|| panic!("a learner's scheduled tick logs {LEARNER:?}; log:\n{log2}"));
    let promoted_at = log2
        .find("this server's etcd was promoted to a voting member")
        .expect("the promotion is logged");
    assert!(learner_at < promoted_at);
    // No snapshot was taken while a learner: every save comes after the last learner tick.
    // (The promotion line is logged by a separate 5 s loop, so a tick just after etcd promoted
    // the member may save before that line appears; etcd itself refuses learners' snapshots.)
    let last_learner_tick = log2.rfind(LEARNER).unwrap();
    if let Some(saved) = log2.find("Saving etcd snapshot") {
        assert!(
            saved > last_learner_tick,
            "a learner took a snapshot:\n{log2}"
        );
    }
    let s3 = joiner(v, &s1, "n3").args(tick).start();
    wait_voters(&s1, &["n1", "n2", "n3"]);
    // The same CAs everywhere; each server its own etcd leaf certificates.
    for s in [&s2, &s3] {
        for f in [
            "server-ca.crt",
            "server-ca.key",
            "etcd/server-ca.crt",
            "etcd/peer-ca.key",
        ] {
            assert_eq!(
                std::fs::read(s1.data_dir().join("server/tls").join(f)).unwrap(),
                std::fs::read(s.data_dir().join("server/tls").join(f)).unwrap(),
                "{f}"
            );
        }
        assert_ne!(
            std::fs::read(s1.data_dir().join("server/tls/etcd/server-client.crt")).unwrap(),
            std::fs::read(s.data_dir().join("server/tls/etcd/server-client.crt")).unwrap()
        );
    }
    // Keys written through one member are in every member's snapshot.
    s2.put(&[("/cluster/from-n2".into(), b"two-value".to_vec())]);
    for (s, node) in [(&s1, "n1"), (&s2, "n2"), (&s3, "n3")] {
        // n2 and n3 save every second: an on-demand save that meets a scheduled one holding
        // the lock is refused (as in K3s) and asked again.
        let out = wait_for(Duration::from_secs(30), "an on-demand save", || {
            let o = s.cli(&["save", "--name", "everyone"]);
            if !o.status.success() && stderr(&o).contains("snapshot save already in progress") {
                return None;
            }
            Some(ok(&o))
        });
        assert!(out.contains(&format!("everyone-{node}-")), "{out}");
        let file = s
            .snapshot_files()
            .into_iter()
            .find(|f| f.starts_with("everyone-"))
            .unwrap();
        let bytes = std::fs::read(s.snapshot_dir().join(&file)).unwrap();
        assert!(contains(&bytes, b"/cluster/from-n2"), "{node}");
        assert!(contains(&bytes, b"two-value"), "{node}");
        assert!(contains(&bytes, b"/cluster/from-n1"), "{node}");
    }
    // Scheduled snapshots on the joined servers, and every node's records in the cluster.
    wait_for(Duration::from_secs(30), "scheduled snapshots on n3", || {
        s3.snapshot_files()
            .iter()
            .any(|f| f.starts_with("etcd-snapshot-n3-"))
            .then_some(())
    });
    let nodes = wait_for(Duration::from_secs(30), "records of every node", || {
        let o = s1.kubectl(&[
            "get",
            "etcdsnapshotfile",
            "-o",
            "jsonpath={.items[*].spec.nodeName}",
        ]);
        let text = stdout(&o);
        ["n1", "n2", "n3"]
            .iter()
            .all(|n| text.split_whitespace().any(|w| w == *n))
            .then_some(text)
    });
    assert!(!nodes.is_empty());
    let table = ok(&member_cmd(&s2, &["ls"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
}

both!(
    a_removed_member_writes_a_tombstone_and_rejoins,
    removed_member
);
fn removed_member(v: Etcd) {
    let [s1, s2, mut s3] = three(v, &[], &[]);
    s1.put(&[("/cluster/kept".into(), b"yes".to_vec())]);
    // Refusals first: this server's own member, an unknown name.
    let own = members(&s1)
        .into_iter()
        .find(|(n, _)| n.starts_with("n1-"))
        .unwrap()
        .0;
    let err = fails(&member_cmd(&s1, &["remove", &own]));
    assert!(
        err.contains("is the etcd member of this server") && err.contains("another server"),
        "{err}"
    );
    let err = fails(&member_cmd(&s1, &["remove", "nobody"]));
    assert!(err.contains("no etcd member named \"nobody\""), "{err}");
    // Remove the running n3 by its node name: its etcd stops, the server exits.
    let out = ok(&member_cmd(&s2, &["remove", "n3"]));
    assert!(out.contains("Removed etcd member n3-"), "{out}");
    let st = s3.proc.wait_exit(Duration::from_secs(60));
    assert!(!st.success(), "a removed server exits with an error");
    let log = s3.proc.log_text();
    assert!(log.contains(REMOVED), "{log}");
    let db = s3.data_dir().join("server/db");
    assert!(db.join("etcd/tombstone").exists());
    wait_voters(&s1, &["n1", "n2"]);
    // Without --server the tombstone stops the start with what to do.
    let ports = s3.ports();
    let (dir, _) = (s3.dir, ());
    let o = server_cmd(Command::new(etcdsnap_bin()), v, dir.path(), "n3", ports)
        .output()
        .unwrap();
    let err = fails(&o);
    assert!(
        err.contains("tombstone") && err.contains("--server"),
        "{err}"
    );
    // With --server: the old data is backed up and n3 joins as a new member.
    let s3 = joiner(v, &s1, "n3").dir(dir).ports(ports).start();
    wait_voters(&s1, &["n1", "n2", "n3"]);
    let backups: Vec<String> = list_files(&db)
        .into_iter()
        .filter(|f| f.starts_with("etcd-backup-"))
        .collect();
    assert_eq!(backups.len(), 1, "{:?}", list_files(&db));
    assert!(db.join(&backups[0]).join("member").is_dir());
    assert!(!db.join("etcd/tombstone").exists());
    assert_eq!(key_of(&s3, "/cluster/kept").as_deref(), Some(&b"yes"[..]));
}

/// `etcdsnap server --cluster-reset` of node n1 on `dir`.
fn reset(v: Etcd, dir: &Path, ports: Ports, extra: &[&str]) -> Output {
    reset_cmd(Command::new(etcdsnap_bin()), v, dir, ports, extra)
        .output()
        .unwrap()
}

both!(
    restoring_a_cluster_resets_one_and_the_others_rejoin,
    cluster_restore
);
fn cluster_restore(v: Etcd) {
    let [s1, s2, s3] = three(v, &[], &[]);
    s2.put(&[("/restore/before".into(), b"in-the-snapshot".to_vec())]);
    let out = ok(&s1.cli(&["save", "--name", "drill"]));
    assert!(out.contains("drill-n1-"), "{out}");
    let file = s1
        .snapshot_files()
        .into_iter()
        .find(|f| f.starts_with("drill-"))
        .unwrap();
    s3.put(&[("/restore/after".into(), b"not-in-it".to_vec())]);
    // Stop all servers.
    let (d3, p3) = s3.stop();
    let (d2, p2) = s2.stop();
    let (d1, p1) = s1.stop();
    // Reset with restore on server 1.
    let path = d1.path().join("server/db/snapshots").join(&file);
    let o = reset(
        v,
        d1.path(),
        p1,
        &[&format!("--cluster-reset-restore-path={}", path.display())],
    );
    let out = ok(&o);
    assert!(
        out.contains("Managed etcd cluster membership has been reset"),
        "{out}"
    );
    let s1 = Server::builder(v).dir(d1).ports(p1).start();
    assert!(
        !s1.data_dir().join("server/db/reset-flag").exists(),
        "the first normal start removes reset-flag"
    );
    // On the others, as the README says: move server/db/etcd away (their local snapshots in
    // server/db/snapshots stay) and start them with --server.
    let mut peers = Vec::new();
    for (d, p, node) in [(d2, p2, "n2"), (d3, p3, "n3")] {
        let db = d.path().join("server/db");
        std::fs::rename(db.join("etcd"), db.join("etcd-before-restore")).unwrap();
        std::fs::create_dir_all(db.join("snapshots")).unwrap();
        std::fs::write(db.join("snapshots/etcd-snapshot-keep-1"), "mine").unwrap();
        peers.push(joiner(v, &s1, node).dir(d).ports(p).start());
        wait_voters(
            &s1,
            if node == "n2" {
                &["n1", "n2"]
            } else {
                &["n1", "n2", "n3"]
            },
        );
    }
    for s in [&s1, &peers[0], &peers[1]] {
        let got = wait_for(
            Duration::from_secs(30),
            "the restored key on a member",
            || key_of(s, "/restore/before"),
        );
        assert_eq!(got, b"in-the-snapshot");
        assert_eq!(
            key_of(s, "/restore/after"),
            None,
            "written after the snapshot"
        );
    }
    assert_eq!(members(&peers[1]).len(), 3);
    for p in &peers {
        assert_eq!(
            std::fs::read(
                p.data_dir()
                    .join("server/db/snapshots/etcd-snapshot-keep-1")
            )
            .unwrap(),
            b"mine",
            "a peer's local snapshots survive its rejoin"
        );
    }
}

both!(
    a_plain_reset_removes_the_peers_which_back_up_and_rejoin,
    plain_reset
);
fn plain_reset(v: Etcd) {
    let [s1, s2, s3] = three(v, &[], &[]);
    s1.put(&[("/reset/kept".into(), b"kept".to_vec())]);
    let (d3, p3) = s3.stop();
    let (d2, p2) = s2.stop();
    let (d1, p1) = s1.stop();
    let out = ok(&reset(v, d1.path(), p1, &[]));
    assert!(
        out.contains("Managed etcd cluster membership has been reset"),
        "{out}"
    );
    let s1 = Server::builder(v).dir(d1).ports(p1).start();
    assert_eq!(members(&s1).len(), 1);
    // The peers start on their old data, one at a time: etcd says they were removed.
    let mut back = Vec::new();
    for (d, p, node) in [(d2, p2, "n2"), (d3, p3, "n3")] {
        let mut s = joiner(v, &s1, node).dir(d).ports(p).no_wait().start();
        let st = s.proc.wait_exit(Duration::from_secs(90));
        assert!(!st.success());
        let log = s.proc.log_text();
        assert!(log.contains(REMOVED), "{log}");
        assert!(s.data_dir().join("server/db/etcd/tombstone").exists());
        back.push((s.dir, p, node));
    }
    // Restarted (as systemd would), each backs up its data and joins as a new member.
    let mut peers = Vec::new();
    let mut want = vec!["n1"];
    for (d, p, node) in back {
        let s = joiner(v, &s1, node).dir(d).ports(p).start();
        want.push(node);
        wait_voters(&s1, &want);
        let db = s.data_dir().join("server/db");
        assert!(
            list_files(&db)
                .iter()
                .any(|f| f.starts_with("etcd-backup-")),
            "{:?}",
            list_files(&db)
        );
        peers.push(s);
    }
    for s in &peers {
        assert_eq!(key_of(s, "/reset/kept").as_deref(), Some(&b"kept"[..]));
    }
}

/// Every file below `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    b"<dir>".to_vec(),
                );
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn joining_with_a_wrong_token_a_foreign_ca_or_no_server_changes_nothing() {
    let v = Etcd::V35;
    let s1 = Server::start(v);
    let token = s1.token();
    let (hash, secret) = token
        .strip_prefix("K10")
        .unwrap()
        .split_once("::server:")
        .unwrap();
    let foreign = format!("K10{}::server:{secret}", "ab".repeat(32));
    let wrong = format!("K10{hash}::server:not-the-cluster-secret");
    let weak = format!("K10{hash}::server:short");
    let dead = format!("https://127.0.0.1:{}", free_port());
    let http = format!("http://127.0.0.1:{}", s1.port);
    let viewer = std::fs::read_to_string(s1.data_dir().join("server/viewer-token")).unwrap();
    let cases: [(&str, Vec<String>, &str); 7] = [
        (
            "wrong token",
            vec!["--server".into(), s1.url(), "--token".into(), wrong],
            "rejected the token (401 Unauthorized)",
        ),
        (
            "weak token",
            vec!["--server".into(), s1.url(), "--token".into(), weak],
            "is 5 characters long",
        ),
        (
            "the viewer token",
            vec![
                "--server".into(),
                s1.url(),
                "--token".into(),
                viewer.trim().into(),
            ],
            "holds a viewer token",
        ),
        (
            "foreign CA",
            vec!["--server".into(), s1.url(), "--token".into(), foreign],
            "does not match the token's CA hash",
        ),
        (
            "unreachable server",
            vec!["--server".into(), dead, "--token".into(), token.clone()],
            "cannot reach the server to join",
        ),
        (
            "plain http",
            vec!["--server".into(), http, "--token".into(), token.clone()],
            "must be the https:// supervisor URL",
        ),
        (
            "no token",
            vec!["--server".into(), s1.url()],
            "needs its token",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("server/db/snapshots")).unwrap();
    std::fs::write(dir.path().join("server/db/snapshots/keep-me"), "old").unwrap();
    let cfg = empty_config(dir.path());
    let before = tree(dir.path());
    let ports = Ports::free();
    for (what, args, says) in cases {
        let o = server_cmd(Command::new(etcdsnap_bin()), v, dir.path(), "n2", ports)
            .args(&args)
            .env("ETCDSNAP_CONFIG_FILE", &cfg)
            .output()
            .unwrap();
        let err = fails(&o);
        assert!(err.contains(says), "{what}: {err}");
        assert!(
            !err.contains(secret),
            "{what}: the secret is printed: {err}"
        );
        assert_eq!(tree(dir.path()), before, "{what}: the data dir changed");
    }
    assert_eq!(members(&s1).len(), 1, "no member was added");
}

#[test]
fn the_join_endpoints_need_the_token_and_refuse_bad_requests() {
    let s1 = Server::start(Etcd::V35);
    let token = s1.token();
    let secret = token.split_once("::server:").unwrap().1.to_string();
    let token_of = |file: &str| {
        let t = std::fs::read_to_string(s1.data_dir().join("server").join(file)).unwrap();
        t.trim().rsplit(':').next().unwrap().to_string()
    };
    let (join, viewer) = (token_of("join-token"), token_of("viewer-token"));
    let url = s1.url();
    let (codes, bodies) = rt().block_on(async {
        let c = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut codes = BTreeMap::new();
        let mut bodies = BTreeMap::new();
        let reqs: Vec<(&str, reqwest::RequestBuilder)> = vec![
            (
                "bootstrap no auth",
                c.get(format!("{url}/v1-etcdsnap/server-bootstrap")),
            ),
            (
                "bootstrap wrong",
                c.get(format!("{url}/v1-etcdsnap/server-bootstrap"))
                    .basic_auth("server", Some("wrong")),
            ),
            (
                "bootstrap ok",
                c.get(format!("{url}/v1-etcdsnap/server-bootstrap"))
                    .basic_auth("server", Some(&secret)),
            ),
            (
                "bootstrap post",
                c.post(format!("{url}/v1-etcdsnap/server-bootstrap"))
                    .basic_auth("server", Some(&secret)),
            ),
            ("info no auth", c.get(format!("{url}/db/info"))),
            (
                "info ok",
                c.get(format!("{url}/db/info"))
                    .basic_auth("server", Some(&secret)),
            ),
            (
                "bootstrap join",
                c.get(format!("{url}/v1-etcdsnap/server-bootstrap"))
                    .basic_auth("join", Some(&join)),
            ),
            (
                "bootstrap viewer",
                c.get(format!("{url}/v1-etcdsnap/server-bootstrap"))
                    .basic_auth("viewer", Some(&viewer)),
            ),
            (
                "info join",
                c.get(format!("{url}/db/info"))
                    .basic_auth("join", Some(&join)),
            ),
            (
                "remove no auth",
                c.post(format!("{url}/db/member-remove"))
                    .header("content-type", "application/json")
                    .body("{\"name\":\"x\"}"),
            ),
            (
                "remove join",
                c.post(format!("{url}/db/member-remove"))
                    .basic_auth("join", Some(&join))
                    .header("content-type", "application/json")
                    .body("{\"name\":\"x\"}"),
            ),
            (
                "remove text",
                c.post(format!("{url}/db/member-remove"))
                    .basic_auth("server", Some(&secret))
                    .body("{\"name\":\"x\"}"),
            ),
            (
                "remove bad json",
                c.post(format!("{url}/db/member-remove"))
                    .basic_auth("server", Some(&secret))
                    .header("content-type", "application/json")
                    .body("{\"name\":"),
            ),
            (
                "remove unknown field",
                c.post(format!("{url}/db/member-remove"))
                    .basic_auth("server", Some(&secret))
                    .header("content-type", "application/json")
                    .body("{\"name\":\"x\",\"force\":true}"),
            ),
            (
                "remove empty",
                c.post(format!("{url}/db/member-remove"))
                    .basic_auth("server", Some(&secret))
                    .header("content-type", "application/json")
                    .body("{\"name\":\"\"}"),
            ),
        ];
        for (what, r) in reqs {
            let resp = r.send().await.unwrap();
            codes.insert(what, resp.status().as_u16());
            bodies.insert(what, resp.text().await.unwrap());
        }
        (codes, bodies)
    });
    let want: BTreeMap<&str, u16> = [
        ("bootstrap no auth", 401),
        ("bootstrap wrong", 401),
        ("bootstrap ok", 200),
        ("bootstrap post", 405),
        ("bootstrap join", 200),
        ("bootstrap viewer", 403),
        ("info no auth", 401),
        ("info ok", 200),
        ("info join", 200),
        ("remove no auth", 401),
        ("remove join", 403),
        ("remove text", 415),
        ("remove bad json", 400),
        ("remove unknown field", 400),
        ("remove empty", 400),
    ]
    .into_iter()
    .collect();
    assert_eq!(codes, want, "{bodies:#?}");
    let data: serde_json::Value = serde_json::from_str(&bodies["bootstrap ok"]).unwrap();
    for k in [
        "ServerCA",
        "ServerCAKey",
        "ETCDServerCA",
        "ETCDServerCAKey",
        "ETCDPeerCA",
        "ETCDPeerCAKey",
    ] {
        assert!(data[k]["Content"].is_string(), "{k}");
    }
    assert!(bodies["remove empty"].contains("the member name is empty"));
    assert!(bodies["remove unknown field"].contains("unknown field"));
    // TLS only: plain HTTP gets the 400 hint to use https, never the data.
    let plain = rt().block_on(async {
        let r = reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/v1-etcdsnap/server-bootstrap",
                s1.port
            ))
            .basic_auth("server", Some(&secret))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(plain.0, 400, "{plain:?}");
    assert!(
        plain.1.contains("https") && !plain.1.contains("ServerCA"),
        "{plain:?}"
    );
    // No key material in the server's log.
    let key = std::fs::read_to_string(s1.data_dir().join("server/tls/server-ca.key")).unwrap();
    let body_line = key.lines().nth(1).unwrap();
    let log = s1.proc.log_text();
    assert!(!log.contains(body_line), "a CA key is in the log");
    assert!(log.contains("sent the bootstrap data (cluster CAs) to a joining server"));
    // The CLI with a wrong token.
    let wrong = format!(
        "{}::server:not-the-secret",
        token.split_once("::").unwrap().0
    );
    let o = Command::new(etcdsnap_bin())
        .args(["member", "ls", "--etcd-token", &wrong])
        .arg(format!("--etcd-server={url}"))
        .output()
        .unwrap();
    let err = fails(&o);
    assert!(err.contains("rejected the token"), "{err}");
    // Guessing at the bootstrap endpoint is slowed as at /db/snapshot, never locked out.
    let (last, right) = rt().block_on(async {
        let c = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let mut last = (0, Duration::ZERO);
        for i in 0..6 {
            let t = std::time::Instant::now();
            let code = c
                .get(format!("{url}/v1-etcdsnap/server-bootstrap"))
                .basic_auth("server", Some(format!("guess-{i}-0123456789abcdef")))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            last = (code, t.elapsed());
        }
        let right = c
            .get(format!("{url}/v1-etcdsnap/server-bootstrap"))
            .basic_auth("join", Some(&join))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        (last, right)
    });
    assert_eq!(last.0, 401);
    assert!(
        last.1 >= Duration::from_millis(900),
        "the 6th guess took {:?}",
        last.1
    );
    assert_eq!(right, 200, "the right token passes whatever came before");
}

#[test]
fn a_server_joins_with_the_join_token_and_keeps_a_server_token_of_its_own() {
    use std::os::unix::fs::PermissionsExt;
    let v = Etcd::V35;
    let s1 = Server::start(v);
    let files = tempfile::tempdir().unwrap();
    let join_file = files.path().join("join-token");
    std::fs::copy(s1.data_dir().join("server/join-token"), &join_file).unwrap();
    std::fs::set_permissions(&join_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let join = std::fs::read_to_string(&join_file).unwrap();
    assert!(join.contains("::join:"), "{join}");
    let args = [
        "--server".to_string(),
        s1.url(),
        format!("--token-file={}", join_file.display()),
    ];
    let s2 = Server::builder(v).node("n2").args(args.clone()).start();
    wait_voters(&s1, &["n1", "n2"]);
    // The join token is not the server token of either server.
    let (t1, t2) = (s1.token(), s2.token());
    let secret = |t: &str| t.rsplit(':').next().unwrap().to_string();
    assert_ne!(secret(&t1), secret(&t2));
    assert_ne!(secret(&t2), secret(join.trim()));
    assert!(t2.contains("::server:"), "{t2}");
    // The join token cannot take snapshots; the joined server's own token can.
    let err = fails(&s1.cli(&["save", "--etcd-token", join.trim()]));
    assert!(err.contains("the join token may not"), "{err}");
    ok(&s2.cli(&["save"]));
    // A restart as a voter finds its own copy of the bootstrap data (no "different token").
    let (dir, ports) = s2.stop();
    let s2 = Server::builder(v)
        .node("n2")
        .dir(dir)
        .ports(ports)
        .args(args)
        .start();
    wait_for(
        Duration::from_secs(30),
        "the restarted server to list",
        || s2.cli(&["ls"]).status.success().then_some(()),
    );
    assert!(!s2.log_text().contains("different token"));
    assert_eq!(s2.token(), t2, "the joined server keeps its token");
}

/// A server started on its old data after the cluster was restored on another one: etcd runs
/// on, refused by its peers for ever. The server says why and how to rejoin, and answers
/// /healthz with 503 and that reason.
#[test]
fn a_peer_on_its_old_data_after_a_restore_says_how_to_rejoin() {
    let v = Etcd::V35;
    let [s1, s2, s3] = three(v, &[], &[]);
    ok(&s1.cli(&["save", "--name", "before"]));
    let file = s1
        .snapshot_files()
        .into_iter()
        .find(|f| f.starts_with("before-"))
        .unwrap();
    let (_d3, _p3) = s3.stop();
    let (d2, p2) = s2.stop();
    let (d1, p1) = s1.stop();
    let path = d1.path().join("server/db/snapshots").join(&file);
    ok(&reset(
        v,
        d1.path(),
        p1,
        &[&format!("--cluster-reset-restore-path={}", path.display())],
    ));
    let s1 = Server::builder(v).dir(d1).ports(p1).start();
    // Not moved aside as the README says: n2 starts on the data of the old cluster.
    let s2 = joiner(v, &s1, "n2").dir(d2).ports(p2).no_wait().start();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let said = loop {
        let log = s2.log_text();
        if log.contains("belongs to a cluster that was reset or restored on another server") {
            break log;
        }
        if std::time::Instant::now() > deadline {
            let etcd_log = std::fs::read_to_string(s2.data_dir().join("server/logs/etcd.log"))
                .or_else(|_| std::fs::read_to_string(s2.data_dir().join("server/db/etcd.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = etcd_log.lines().rev().take(40).collect();
            panic!(
                "no rejoin hint; server log:\n{log}\netcd log tail:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        said.contains("move <data-dir>/server/db/etcd aside") && said.contains("--server https://"),
        "{said}"
    );
    let (code, body) = https_get(&format!("{}/healthz", s2.url())).unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("its peers do not know it as a member"),
        "{body}"
    );
    // The restored server is not taken for the stale one.
    assert!(
        !s1.log_text()
            .contains("belongs to a cluster that was reset"),
        "{}",
        s1.log_text()
    );
}
