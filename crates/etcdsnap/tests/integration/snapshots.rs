//! Local snapshots through the CLI and the supervisor API, against both etcd versions.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::*;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

both!(save_is_named_verified_and_restorable, save_and_restore);
fn save_and_restore(v: Etcd) {
    let s = Server::start(v);
    let kvs: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| {
            (
                format!("/registry/k{i:03}"),
                format!("value-{i}").into_bytes(),
            )
        })
        .collect();
    s.put(&kvs);
    let before = now();
    let out = ok(&s.cli(&["save"]));
    let after = now() + 1;
    let files = s.snapshot_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = &files[0];
    assert_eq!(out.trim(), format!("Snapshot {name} saved."));
    // Checklist 1: on-demand-<node>-<unix rounded>.
    let ts: i64 = name.strip_prefix("on-demand-n1-").unwrap().parse().unwrap();
    assert!(
        (before..=after).contains(&ts),
        "{ts} not in {before}..={after}"
    );
    // Checklist 4/5: 0600 file, 0700 default dir, whole pages plus the trailer, no .part left.
    let path = s.snapshot_dir().join(name);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&s.snapshot_dir()), 0o700);
    assert_eq!(std::fs::metadata(&path).unwrap().len() % 512, 32);
    etcdsnap_core::snapfile::verify::verify_file(&path).unwrap();

    // The snapshot restores with etcd's own tool, and the restored etcd has the keys.
    let restore_dir = tempfile::tempdir().unwrap();
    let data = restore_dir.path().join("restored");
    let pp = free_port();
    let out = v
        .restore_cmd()
        .args(["snapshot", "restore"])
        .arg(&path)
        .arg(format!("--data-dir={}", data.display()))
        .args(["--name", "r1"])
        .arg(format!("--initial-cluster=r1=http://127.0.0.1:{pp}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{pp}"
        ))
        .output()
        .unwrap();
    ok(&out);
    let restored = PlainEtcd::start(v, Some(data), "r1", Some(pp), false);
    assert_eq!(
        restored.get("/registry/k007").as_deref(),
        Some(&b"value-7"[..])
    );
    assert_eq!(
        restored.get("/registry/k199").as_deref(),
        Some(&b"value-199"[..])
    );
}

both!(compressed_save_leaves_only_a_valid_zip, compressed_save);
fn compressed_save(v: Etcd) {
    let s = Server::start(v);
    s.put(&[("/a".into(), vec![b'x'; 100_000])]);
    let out = ok(&s.cli(&["save", "--snapshot-compress", "--name", "zipped"]));
    let files = s.snapshot_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let zip = &files[0];
    assert!(
        zip.starts_with("zipped-n1-") && zip.ends_with(".zip"),
        "{zip}"
    );
    assert_eq!(out.trim(), format!("Snapshot {zip} saved."));
    let path = s.snapshot_dir().join(zip);
    let t = Command::new("unzip").arg("-t").arg(&path).output().unwrap();
    assert!(ok(&t).contains("No errors detected"));
    // One entry, named after the file without .zip, that is an intact etcd snapshot.
    let l = ok(&Command::new("unzip")
        .arg("-Z1")
        .arg(&path)
        .output()
        .unwrap());
    assert_eq!(l.trim(), zip.trim_end_matches(".zip"));
    let extract = tempfile::tempdir().unwrap();
    ok(&Command::new("unzip")
        .arg("-q")
        .arg(&path)
        .arg("-d")
        .arg(extract.path())
        .output()
        .unwrap());
    let raw = extract.path().join(zip.trim_end_matches(".zip"));
    etcdsnap_core::snapfile::verify::verify_file(&raw).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() < std::fs::metadata(&raw).unwrap().len());
}

/// Kubernetes-like JSON values: compressible, as etcd data is.
fn json_values(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let v = format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{i}","namespace":"default","uid":"{:032x}"}},"data":{{"payload":"{}"}}}}"#,
                i * 7919,
                "abcdefghij".repeat(400 + i % 50)
            );
            (format!("/registry/configmaps/default/cm-{i}"), v.into_bytes())
        })
        .collect()
}

both!(zstd_save_is_smaller_than_zip_and_reads_back, zstd_save);
fn zstd_save(v: Etcd) {
    let s = Server::start(v);
    s.put(&json_values(400));
    let zip = ok(&s.cli(&["save", "--snapshot-compress", "--name", "z"]));
    let zip = zip.split_whitespace().nth(1).unwrap().to_string();
    // Naming the format turns compression on; the level is zstd's.
    let out = ok(&s.cli(&[
        "save",
        "--snapshot-compress-format=zstd",
        "--snapshot-compress-level=9",
        "--name",
        "zs",
    ]));
    let zst = out.split_whitespace().nth(1).unwrap().to_string();
    assert!(zst.starts_with("zs-n1-") && zst.ends_with(".zst"), "{out}");
    let (zip_path, zst_path) = (s.snapshot_dir().join(&zip), s.snapshot_dir().join(&zst));
    assert_eq!(mode(&zst_path), 0o600);
    let (zip_len, zst_len) = (
        std::fs::metadata(&zip_path).unwrap().len(),
        std::fs::metadata(&zst_path).unwrap().len(),
    );
    assert!(zst_len < zip_len, "zstd {zst_len} bytes, zip {zip_len}");

    // The zstd command reads it, and what it reads is an intact etcd snapshot with the data.
    let extract = tempfile::tempdir().unwrap();
    let raw = extract.path().join("raw.db");
    ok(&Command::new("zstd")
        .args(["-q", "-d", "-o"])
        .arg(&raw)
        .arg(&zst_path)
        .output()
        .expect("the zstd command (apt-get install zstd)"));
    let raw_len = etcdsnap_core::snapfile::verify::verify_file(&raw).unwrap();
    assert!(zst_len * 5 < raw_len, "zstd {zst_len} of {raw_len} bytes");
    let status = ok(&s.cli(&["status", "-w", "json", zst_path.to_str().unwrap()]));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["trailer"], "valid");
    assert_eq!(status["uncompressedSize"].as_u64(), Some(raw_len));

    // Listed as compressed, by `ls` and in the records.
    let ls = ok(&s.cli(&["ls", "-o", "json"]));
    let ls: serde_json::Value = serde_json::from_str(&ls).unwrap();
    let item = ls["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["spec"]["snapshotName"] == zst.as_str())
        .unwrap_or_else(|| panic!("{zst} not in {ls}"));
    assert_eq!(item["status"]["size"], zst_len.to_string(), "{item}");
    assert_eq!(item["spec"]["metadata"], serde_json::Value::Null, "{item}");

    // A level zstd does not have: refused, named, and nothing written.
    let before = s.snapshot_files();
    let err = fails(&s.cli(&[
        "save",
        "--snapshot-compress-format=zstd",
        "--snapshot-compress-level=25",
    ]));
    assert!(
        err.contains("invalid compression level 25 for zstd") && err.contains("1 (fastest) to 19"),
        "{err}"
    );
    assert_eq!(s.snapshot_files(), before);

    // Prune counts .zst files with the others of their prefix.
    ok(&s.cli(&["prune", "--name", "zs", "--snapshot-retention", "1"]));
    assert!(s.snapshot_files().contains(&zst));
}

#[test]
fn zstd_scheduled_snapshots_follow_retention() {
    let s = Server::builder(Etcd::V35)
        .args([
            "--etcd-snapshot-compress",
            "--etcd-snapshot-compress-format",
            "zstd",
            "--etcd-snapshot-schedule-cron",
            "@every 1s",
            "--etcd-snapshot-retention",
            "2",
        ])
        .start();
    s.put(&json_values(50));
    // Four saves (the count is of the log's lines), so retention has run at least twice.
    wait_for(Duration::from_secs(40), "four scheduled saves", || {
        let log = std::fs::read_to_string(s.data_dir().join("server.log")).unwrap_or_default();
        (log.matches(" bytes of database)").count() >= 4).then_some(())
    });
    let files = wait_for(
        Duration::from_secs(5),
        "retention after the last save",
        || {
            let f = s.snapshot_files();
            (f.len() == 2).then_some(f)
        },
    );
    assert_eq!(files.len(), 2, "retention 2: {files:?}");
    for f in &files {
        assert!(
            f.starts_with("etcd-snapshot-n1-") && f.ends_with(".zst"),
            "{files:?}"
        );
        etcdsnap_core::snapfile::verify::verify_file(&s.snapshot_dir().join(f)).unwrap();
    }
}

/// Copies of a snapshot named for the year 2100 outranked every new snapshot by their names,
/// so retention 2 deleted each scheduled snapshot as soon as it was taken. Now they are
/// ordered by when they were written (and warned about), the file just taken is never
/// deleted, and the copies age out like any other file.
#[test]
fn snapshots_named_for_the_future_do_not_make_retention_eat_new_ones() {
    let s = Server::builder(Etcd::V35)
        .args([
            "--etcd-snapshot-schedule-cron",
            "@every 2s",
            "--etcd-snapshot-retention",
            "2",
        ])
        .start();
    let first = wait_for(Duration::from_secs(30), "a first scheduled save", || {
        s.snapshot_files().into_iter().next()
    });
    let future = ["etcd-snapshot-x-4102444800", "etcd-snapshot-y-4102444801"];
    for name in future {
        let tmp = s.snapshot_dir().join(format!(".{name}.tmp"));
        std::fs::copy(s.snapshot_dir().join(&first), &tmp).unwrap();
        std::fs::rename(&tmp, s.snapshot_dir().join(name)).unwrap();
    }
    let copied = now();
    let files = wait_for(
        Duration::from_secs(60),
        "two scheduled snapshots taken after the copies, and the copies aged out",
        || {
            let f = s.snapshot_files();
            let newer = f
                .iter()
                .filter(|n| {
                    // A save in progress shows as `<name>.part`: not a number, not counted.
                    n.starts_with("etcd-snapshot-n1-")
                        && n.rsplit('-')
                            .next()
                            .and_then(|t| t.parse::<i64>().ok())
                            .is_some_and(|t| t > copied)
                })
                .count();
            (newer == 2 && f.len() == 2).then_some(f)
        },
    );
    assert!(
        files.iter().all(|f| !future.contains(&f.as_str())),
        "{files:?}"
    );
    let log = s.proc.log_text();
    assert!(
        log.contains("snapshot etcd-snapshot-x-4102444800 in")
            && log.contains("in the future: retention orders it by when it was written"),
        "{log}"
    );
}

#[test]
fn zip_is_readable_by_go_archive_zip() {
    let s = Server::start(Etcd::V35);
    ok(&s.cli(&["save", "--etcd-snapshot-compress"]));
    let zip = s.snapshot_dir().join(&s.snapshot_files()[0]);
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("check.go");
    std::fs::write(
        &prog,
        r#"package main

import (
	"archive/zip"
	"crypto/sha256"
	"bytes"
	"fmt"
	"io"
	"os"
)

func main() {
	r, err := zip.OpenReader(os.Args[1])
	if err != nil { fmt.Println("open:", err); os.Exit(1) }
	if len(r.File) != 1 { fmt.Println("entries:", len(r.File)); os.Exit(1) }
	f := r.File[0]
	if f.Method != zip.Deflate { fmt.Println("method:", f.Method); os.Exit(1) }
	rc, err := f.Open()
	if err != nil { fmt.Println("entry:", err); os.Exit(1) }
	data, err := io.ReadAll(rc)
	if err != nil { fmt.Println("read:", err); os.Exit(1) }
	body, trailer := data[:len(data)-32], data[len(data)-32:]
	sum := sha256.Sum256(body)
	if !bytes.Equal(sum[:], trailer) { fmt.Println("sha mismatch"); os.Exit(1) }
	fmt.Printf("%s %o %d\n", f.Name, f.Mode().Perm(), len(data))
}
"#,
    )
    .unwrap();
    let out = Command::new(env_bin("GO_BIN"))
        .arg("run")
        .arg(&prog)
        .arg(&zip)
        .env("GO111MODULE", "off")
        .env("GOCACHE", dir.path().join("cache"))
        .output()
        .expect("cannot run Go (GO_BIN from ci/install-deps.sh --env)");
    let text = ok(&out);
    let name = zip
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(".zip")
        .to_string();
    assert!(text.starts_with(&format!("{name} 600 ")), "{text}");
}

both!(ls_lists_in_table_json_and_yaml, ls_formats);
fn ls_formats(v: Etcd) {
    // b is named for an earlier second than a, at once.
    let s = Server::builder(v).distinct_name_seconds().start();
    ok(&s.cli(&["save", "--name", "b"]));
    ok(&s.cli(&["save", "--name", "a"]));
    // A stray file without a timestamp is listed with its mtime (a minute ahead: after both
    // names); .part files are not listed.
    let stray = s.snapshot_dir().join("stray");
    std::fs::write(&stray, b"x").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stray)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    std::fs::write(s.snapshot_dir().join("x-1.part"), b"x").unwrap();
    let table = ok(&s.cli(&["ls"]));
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["Name", "Location", "Size", "Created"]);
    assert_eq!(lines.len(), 4, "{table}");
    let b_row: Vec<&str> = lines[1].split_whitespace().collect();
    let a_row: Vec<&str> = lines[2].split_whitespace().collect();
    assert!(b_row[0].starts_with("b-n1-"), "sorted by time: {table}");
    assert!(a_row[0].starts_with("a-n1-"), "sorted by time: {table}");
    assert_eq!(
        b_row[1],
        format!("file://{}/{}", s.snapshot_dir().display(), b_row[0])
    );
    let size: u64 = b_row[2].parse().unwrap();
    assert_eq!(
        size,
        std::fs::metadata(s.snapshot_dir().join(b_row[0]))
            .unwrap()
            .len()
    );
    chrono::DateTime::parse_from_rfc3339(b_row[3]).unwrap();
    assert!(lines[3].starts_with("stray "), "newest by mtime: {table}");
    assert!(!table.contains(".part"));
    // Aliases.
    assert_eq!(ok(&s.cli(&["list"])), table);
    assert_eq!(ok(&s.cli(&["l"])), table);

    let json: serde_json::Value = serde_json::from_str(&ok(&s.cli(&["ls", "-o", "json"]))).unwrap();
    assert_eq!(json["kind"], "List");
    let items = json["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["kind"], "ETCDSnapshotFile");
    assert_eq!(items[0]["metadata"]["name"], format!("local-{}", b_row[0]));
    assert_eq!(items[0]["spec"]["nodeName"], "n1");
    assert_eq!(items[0]["status"]["size"], b_row[2]);
    let yaml = ok(&s.cli(&["ls", "-o", "yaml"]));
    assert!(yaml.contains("kind: List"), "{yaml}");
    assert!(
        yaml.contains(&format!("name: local-{}", a_row[0])),
        "{yaml}"
    );
    let err = fails(&s.cli(&["ls", "-o", "xml"]));
    assert!(err.contains("invalid output format: xml"), "{err}");
}

both!(delete_removes_and_reports, delete_names);
fn delete_names(v: Etcd) {
    let s = Server::start(v);
    ok(&s.cli(&["save", "--name", "one"]));
    ok(&s.cli(&["save", "--name", "two"]));
    let files = s.snapshot_files();
    let meta = s.data_dir().join("server/db/.metadata");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(meta.join(&files[0]), b"{}").unwrap();
    let out = s.cli(&["delete", &files[0], "missing-snap"]);
    let stdout = ok(&out);
    assert_eq!(stdout.trim(), format!("Snapshot {} deleted.", files[0]));
    assert!(
        stderr(&out).contains("Snapshot missing-snap not found."),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.snapshot_files(), vec![files[1].clone()]);
    assert!(!meta.join(&files[0]).exists(), "sidecar removed");
    // Checklist 16 and path safety.
    assert!(fails(&s.cli(&["delete"])).contains("no snapshots given for removal"));
    let outside = s.data_dir().join("victim");
    std::fs::write(&outside, b"keep me").unwrap();
    let err = fails(&s.cli(&["delete", "../../../victim"]));
    assert!(err.contains("invalid snapshot name"), "{err}");
    assert!(outside.exists());
    let err = fails(&s.cli(&["save", "extra-arg"]));
    assert!(err.contains("save takes no arguments"), "{err}");
    assert_eq!(s.snapshot_files(), vec![files[1].clone()]);
}

fn touch_snapshots(dir: &std::path::Path, names: &[&str]) {
    for n in names {
        std::fs::write(dir.join(n), b"not really a snapshot").unwrap();
    }
}

both!(prune_applies_retention_by_prefix, prune_rules);
fn prune_rules(v: Etcd) {
    let s = Server::builder(v)
        .args(["--etcd-snapshot-retention", "3"])
        .start();
    let d = s.snapshot_dir();
    std::fs::create_dir_all(&d).unwrap();
    let meta = s.data_dir().join("server/db/.metadata");
    std::fs::create_dir_all(&meta).unwrap();
    touch_snapshots(
        &d,
        &[
            "on-demand-n1-1000",
            "on-demand-n2-1001",
            "on-demand-n1-1002.zip",
            "on-demand-n1-1003",
            "on-demand-n1-1004",
            "etcd-snapshot-n1-900",
            "etcd-snapshot-n1-901",
            "etcd-snapshot-n1-902",
            "other-n1-1",
        ],
    );
    std::fs::write(meta.join("on-demand-n1-1000"), b"{}").unwrap();
    // CLI save never prunes (checklist 11), even with a retention flag.
    ok(&s.cli(&["save", "--etcd-snapshot-retention", "1"]));
    assert_eq!(s.snapshot_files().len(), 10);
    let saved = s
        .snapshot_files()
        .into_iter()
        .find(|f| f.len() > 20 && f.starts_with("on-demand-n1-17"))
        .unwrap();
    // Without a retention flag, the server's retention (3) applies to on-demand* (12, 13).
    let out = ok(&s.cli(&["prune"]));
    assert!(out.contains("Snapshot on-demand-n1-1000 deleted."), "{out}");
    assert!(!meta.join("on-demand-n1-1000").exists());
    let files = s.snapshot_files();
    assert_eq!(
        files,
        [
            "etcd-snapshot-n1-900",
            "etcd-snapshot-n1-901",
            "etcd-snapshot-n1-902",
            "on-demand-n1-1003",
            "on-demand-n1-1004",
            saved.as_str(),
            "other-n1-1",
        ]
    );
    // With a retention flag (either spelling) and --name.
    ok(&s.cli(&["prune", "--snapshot-retention", "2"]));
    assert_eq!(
        s.snapshot_files()
            .iter()
            .filter(|f| f.starts_with("on-demand"))
            .count(),
        2
    );
    ok(&s.cli(&[
        "prune",
        "--name",
        "etcd-snapshot",
        "--etcd-snapshot-retention=1",
    ]));
    let files = s.snapshot_files();
    assert_eq!(
        files
            .iter()
            .filter(|f| f.starts_with("etcd-snapshot"))
            .cloned()
            .collect::<Vec<_>>(),
        ["etcd-snapshot-n1-902"]
    );
    // Retention below 1 disables pruning (checklist 10).
    ok(&s.cli(&["prune", "--snapshot-retention", "0"]));
    assert_eq!(s.snapshot_files(), files);
    assert!(files.contains(&"other-n1-1".to_string()));
}

#[test]
fn cli_requests_use_the_server_snapshot_dir() {
    let custom = tempfile::tempdir().unwrap();
    let s = Server::builder(Etcd::V35)
        .arg(format!("--etcd-snapshot-dir={}", custom.path().display()))
        .start();
    ok(&s.cli(&["save"]));
    assert_eq!(list_files(custom.path()).len(), 1);
    assert!(s.snapshot_files().is_empty());
    let table = ok(&s.cli(&["ls"]));
    assert!(
        table.contains(&format!("file://{}/on-demand-n1-", custom.path().display())),
        "{table}"
    );
    // delete and prune on a server that never wrote to the default dir are not errors.
    let s2 = Server::start(Etcd::V34);
    ok(&s2.cli(&["prune"]));
    let out = s2.cli(&["delete", "nothing-here"]);
    ok(&out);
    assert!(stderr(&out).contains("Snapshot nothing-here not found."));
}

#[test]
fn custom_snapshot_dir_must_be_allowed_by_the_server() {
    let custom = tempfile::tempdir().unwrap();
    let s = Server::builder(Etcd::V35)
        .arg(format!(
            "--etcd-snapshot-allowed-dirs={}",
            custom.path().display()
        ))
        .start();
    let missing = s.data_dir().join("does-not-exist");
    let err = fails(&s.cli(&["save", "--dir", missing.to_str().unwrap()]));
    assert!(err.contains("is not one this server allows"), "{err}");
    assert!(!missing.exists());
    ok(&s.cli(&[
        "save",
        "--etcd-snapshot-dir",
        custom.path().to_str().unwrap(),
    ]));
    assert_eq!(list_files(custom.path()).len(), 1);
    assert!(s.snapshot_files().is_empty());
}

#[test]
fn concurrent_save_fails_fast_with_in_progress() {
    let s = Server::start(Etcd::V35);
    // ~96 MiB of data so that a save takes long enough to overlap.
    let big: Vec<(String, Vec<u8>)> = (0..96)
        .map(|i| (format!("/big/{i}"), vec![(i % 251) as u8; 1 << 20]))
        .collect();
    s.put(&big);
    // The first save compresses, which makes it slower still.
    let mut first = Command::new(etcdsnap_bin());
    first
        .args(["etcd-snapshot", "save", "--snapshot-compress", "-d"])
        .arg(s.data_dir())
        .arg(format!("--etcd-server={}", s.url()))
        .env("ETCDSNAP_CONFIG_FILE", empty_config(s.data_dir()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let first = first.spawn().unwrap();
    wait_for(Duration::from_secs(20), "a .part file", || {
        s.snapshot_files()
            .iter()
            .any(|f| f.ends_with(".part"))
            .then_some(())
    });
    let second = s.cli(&["save"]);
    let err = fails(&second);
    assert!(err.contains("snapshot save already in progress"), "{err}");
    let first = first.wait_with_output().unwrap();
    ok(&first);
    let files = s.snapshot_files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".zip"), "{files:?}");
}

#[test]
fn wrong_token_is_rejected_with_a_clear_error() {
    let s = Server::start(Etcd::V35);
    let good = s.token();
    let (prefix, _) = good.rsplit_once(':').unwrap();
    let wrong = format!("{prefix}:not-the-secret");
    let err = fails(&s.cli(&["save", "--etcd-token", &wrong]));
    assert!(
        err.contains("401") && err.contains("rejected the token"),
        "{err}"
    );
    assert!(s.snapshot_files().is_empty());
    // The raw API answers 401 too.
    let code = rt().block_on(async {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap()
            .post(format!("{}/db/snapshot", s.url()))
            .basic_auth("server", Some("nope"))
            .body(r#"{"operation":"save"}"#)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(code, 401);
    // A token whose CA hash is another server's is refused before anything is sent.
    let other = format!("K10{}::server:x", "0".repeat(64));
    let err = fails(&s.cli(&["save", "--etcd-token", &other]));
    assert!(err.contains("does not match the token's CA hash"), "{err}");
    // The right token, given explicitly, works.
    ok(&s.cli(&["save", "--etcd-token", &good]));
    // No server there: a clear message.
    let mut cmd = Command::new(etcdsnap_bin());
    cmd.args([
        "etcd-snapshot",
        "ls",
        "--etcd-server",
        &format!("https://127.0.0.1:{}", free_port()),
    ])
    .arg("-d")
    .arg(s.data_dir())
    .env("ETCDSNAP_CONFIG_FILE", empty_config(s.data_dir()));
    let err = fails(&cmd.output().unwrap());
    assert!(err.contains("cannot reach the etcdsnap server"), "{err}");
}

#[test]
fn etcd_dying_mid_save_leaves_no_file() {
    let s = Server::start(Etcd::V35);
    let big: Vec<(String, Vec<u8>)> = (0..96)
        .map(|i| (format!("/big/{i}"), vec![(i % 251) as u8; 1 << 20]))
        .collect();
    s.put(&big);
    let mut save = Command::new(etcdsnap_bin());
    save.args(["etcd-snapshot", "save", "--snapshot-compress", "-d"])
        .arg(s.data_dir())
        .arg(format!("--etcd-server={}", s.url()))
        .env("ETCDSNAP_CONFIG_FILE", empty_config(s.data_dir()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let save = save.spawn().unwrap();
    wait_for(Duration::from_secs(20), "a .part file", || {
        s.snapshot_files()
            .iter()
            .any(|f| f.ends_with(".part"))
            .then_some(())
    });
    let etcd = crate::server::child_pids(s.proc.pid());
    assert_eq!(etcd.len(), 1);
    // SAFETY: killing the etcd our server started.
    unsafe {
        libc::kill(etcd[0], libc::SIGKILL);
    }
    let out = save.wait_with_output().unwrap();
    assert!(!out.status.success(), "save succeeded with etcd killed");
    // The client gets the real error, not a dropped connection.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 503") && err.contains("etcd"), "{err}");
    assert_eq!(
        s.snapshot_files(),
        Vec::<String>::new(),
        "a partial snapshot was left"
    );
}

#[test]
fn k3s_environment_variables_are_read_with_a_notice() {
    let s = Server::start(Etcd::V35);
    // No -d: the data dir (and so the token) comes from K3s's variable alone.
    let out = Command::new(etcdsnap_bin())
        .args(["etcd-snapshot", "save"])
        .arg(format!("--etcd-server={}", s.url()))
        .env("ETCDSNAP_CONFIG_FILE", empty_config(s.data_dir()))
        .env_remove("ETCDSNAP_DATA_DIR")
        .env("K3S_DATA_DIR", s.data_dir())
        .output()
        .unwrap();
    let printed = ok(&out);
    assert!(printed.contains("saved"), "{printed}");
    assert!(
        stderr(&out).contains("notice: K3S_DATA_DIR is read as ETCDSNAP_DATA_DIR"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.snapshot_files().len(), 1);
    // Ours wins when both are set, and the notice says so.
    let out = Command::new(etcdsnap_bin())
        .args(["etcd-snapshot", "ls"])
        .arg(format!("--etcd-server={}", s.url()))
        .env("ETCDSNAP_CONFIG_FILE", empty_config(s.data_dir()))
        .env("ETCDSNAP_DATA_DIR", s.data_dir())
        .env("K3S_DATA_DIR", "/nonexistent")
        .output()
        .unwrap();
    ok(&out);
    assert!(
        stderr(&out).contains("notice: K3S_DATA_DIR is ignored: ETCDSNAP_DATA_DIR is set too"),
        "{}",
        stderr(&out)
    );
}
