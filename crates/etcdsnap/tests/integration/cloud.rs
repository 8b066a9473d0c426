//! GCS and Azure Blob (beyond K3s) against real emulators and real etcd: the same layout,
//! metadata, retention, listing, deletion and restore as S3, through `--etcd-azure-*` and
//! `--etcd-gcs-*`. Azure runs against azurite (npm). GCS runs against fake-gcs-server (PyPI),
//! which does not take object_store's uploads: its tests put the objects through the
//! emulator's JSON API and test everything else (README, "GCS and Azure Blob").

use std::collections::BTreeSet;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{Attribute, GetOptions, ObjectStore, ObjectStoreExt, PutPayload};

use crate::check::{check_json, result, text};
use crate::harness::*;
use crate::restore::{MESSAGE, dump, kv, reset, restart};
use crate::s3::with;
use etcdsnap_testkit::azure::{ACCOUNT, ACCOUNT_KEY, Azurite};
use etcdsnap_testkit::gcs::FakeGcs;

const CONTAINER: &str = "snaps";
const BUCKET: &str = "gsnaps";

/// The `--etcd-azure-*` flags (one spelling for `server` and `etcd-snapshot`) for `folder`.
fn azure_flags(az: &Azurite, folder: &str) -> Vec<String> {
    vec![
        "--etcd-azure".into(),
        format!("--etcd-azure-account={ACCOUNT}"),
        format!("--etcd-azure-container={CONTAINER}"),
        format!("--etcd-azure-folder={folder}"),
        format!("--etcd-azure-access-key={ACCOUNT_KEY}"),
        format!("--etcd-azure-endpoint={}", az.endpoint()),
    ]
}

/// `etcd-snapshot <sub> <flags...> <extra...>`.
fn sub(name: &str, flags: &[String], extra: &[&str]) -> Vec<String> {
    std::iter::once(name.to_string())
        .chain(with(flags, extra))
        .collect()
}

/// `etcd-snapshot <args>`; the account key never appears in what it prints.
fn snap(s: &Server, args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = s.cli(&args);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains(ACCOUNT_KEY), "the key leaked:\n{text}");
    out
}

#[track_caller]
fn assert_log_clean(s: &Server) {
    let log = s.proc.log_text();
    assert!(!log.contains(ACCOUNT_KEY), "the key is in the server log");
}

/// The one snapshot name a `save` printed.
fn saved_name(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Snapshot ")?.strip_suffix(" saved."))
        .unwrap_or_else(|| panic!("no saved snapshot in {out}"))
        .to_string()
}

/// Reads the container or bucket with a client of its own.
struct Raw {
    rt: tokio::runtime::Runtime,
    store: Box<dyn ObjectStore>,
}

impl Raw {
    fn new(az: &Azurite) -> Raw {
        Raw {
            rt: rt(),
            store: Box::new(az.raw_client(CONTAINER)),
        }
    }

    fn gcs(gcs: &FakeGcs) -> Raw {
        Raw {
            rt: rt(),
            store: Box::new(gcs.raw_client(BUCKET)),
        }
    }

    fn keys(&self, prefix: &str) -> BTreeSet<String> {
        self.rt.block_on(async {
            let p = ObjPath::from(prefix);
            self.store
                .list(Some(&p))
                .map_ok(|o| o.location.to_string())
                .try_collect()
                .await
                .unwrap()
        })
    }

    /// The user metadata of `key`, names as stored (lower-cased).
    fn metadata(&self, key: &str) -> std::collections::HashMap<String, String> {
        self.rt.block_on(async {
            let opts = GetOptions {
                head: true,
                ..Default::default()
            };
            let r = self
                .store
                .get_opts(&ObjPath::from(key), opts)
                .await
                .unwrap();
            r.attributes
                .iter()
                .filter_map(|(k, v)| match k {
                    Attribute::Metadata(k) => Some((k.to_lowercase(), v.to_string())),
                    _ => None,
                })
                .collect()
        })
    }

    fn put(&self, key: &str, body: &'static [u8]) {
        self.rt.block_on(async {
            self.store
                .put(&ObjPath::from(key), PutPayload::from_static(body))
                .await
                .unwrap();
        });
    }
}

/// `server --cluster-reset --cluster-reset-restore-path=<name>` with the store's `flags` on an
/// empty data dir (a new machine with the old token), then the restored server, started.
fn restore_on_a_new_machine(flags: &[String], token: &str, name: &str, store: &str) -> Server {
    let b = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let token_flag = format!("--token={token}");
    let path_flag = format!("--cluster-reset-restore-path={name}");
    let args = with(flags, &[&token_flag, &path_flag]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = reset(Etcd::V35, b.path(), ports, &args);
    let text = ok(&out);
    assert!(text.contains(MESSAGE), "{text}");
    let log = stderr(&out);
    let fetched = format!("Retrieving etcd snapshot {name} from {store}");
    assert!(log.contains(&fetched), "{log}");
    assert!(!log.contains(ACCOUNT_KEY) && !text.contains(ACCOUNT_KEY));
    restart(Etcd::V35, b, ports)
}

/// Saves, retention, metadata, `ls` (table and JSON), and `delete` of object and metadata.
#[test]
fn azure_save_ls_retention_and_delete() {
    let az = rt().block_on(Azurite::start(&[CONTAINER]));
    let raw = Raw::new(&az);
    // Three saves named for three seconds in a row, at once.
    let s = Server::builder(Etcd::V35).distinct_name_seconds().start();
    let flags = azure_flags(&az, "cl/a");
    let mut names = Vec::new();
    for _ in 0..3 {
        let out = ok(&snap(&s, &sub("save", &flags, &["--snapshot-retention=2"])));
        names.push(saved_name(&out));
    }
    // Retention 2 in the container; a CLI save never prunes local files.
    let kept = BTreeSet::from([format!("cl/a/{}", names[1]), format!("cl/a/{}", names[2])]);
    assert_eq!(raw.keys("cl/a"), kept, "{}", s.proc.log_text());
    assert_eq!(s.snapshot_files().len(), 3);
    // K3s's metadata names, spelled as Azure allows them (C# identifiers: `_` for `-`).
    let meta = raw.metadata(&format!("cl/a/{}", names[2]));
    assert_eq!(meta.get("k3s_node_name").map(String::as_str), Some("n1"));
    assert_eq!(
        meta.get("k3s_token_hash").map(String::len),
        Some(12),
        "{meta:?}"
    );
    assert!(meta.contains_key("k3s_cluster_id"), "{meta:?}");

    // Extra metadata beside the newest snapshot, and something outside the folder.
    raw.put(&format!("cl/a/.metadata/{}", names[2]), br#"{"k":"v"}"#);
    raw.put(&format!("cl/a-old/{}", names[0]), b"not ours");
    let out = ok(&snap(&s, &sub("ls", &flags, &[])));
    for n in &names[1..] {
        let loc = format!("azure://{CONTAINER}/cl/a/{n}");
        assert!(
            out.lines()
                .any(|l| l.starts_with(n.as_str()) && l.contains(&loc)),
            "{loc}:\n{out}"
        );
    }
    assert!(
        !out.contains("a-old") && !out.contains(".metadata"),
        "{out}"
    );

    let out = ok(&snap(&s, &sub("ls", &flags, &["-o", "json"])));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == format!("s3-{}", names[2]))
        .unwrap_or_else(|| panic!("no remote item for {}:\n{out}", names[2]));
    assert_eq!(
        item["spec"]["location"],
        format!("azure://{CONTAINER}/cl/a/{}", names[2]),
        "{item}"
    );
    assert_eq!(item["spec"]["nodeName"], "n1", "{item}");
    assert!(item["spec"]["s3"].is_null(), "no S3 settings: {item}");
    assert_eq!(item["spec"]["metadata"]["k"], "v", "{item}");

    // `status` downloads the object (here, not on the server) and reads it.
    let out = ok(&snap(
        &s,
        &sub("status", &flags, &["-w", "json", &names[1]]),
    ));
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        st["location"],
        format!("azure://{CONTAINER}/cl/a/{}", names[1]),
        "{st}"
    );
    assert_eq!(st["trailer"], "valid", "{st}");

    // delete: the object and its metadata go, the other snapshot stays.
    let out = ok(&snap(&s, &sub("delete", &flags, &[&names[2]])));
    assert!(
        out.contains(&format!("Snapshot {} deleted.", names[2])),
        "{out}"
    );
    assert_eq!(
        raw.keys("cl/a"),
        BTreeSet::from([format!("cl/a/{}", names[1])])
    );
    assert_log_clean(&s);
}

/// Scheduled snapshots from the server's config file (the flags' names as keys) go up and are
/// pruned to the retention; the CLI reads the same file.
#[test]
fn azure_scheduled_snapshots_follow_retention() {
    let az = rt().block_on(Azurite::start(&[CONTAINER]));
    let raw = Raw::new(&az);
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "etcd-azure: true\n\
             etcd-azure-account: {ACCOUNT}\n\
             etcd-azure-container: {CONTAINER}\n\
             etcd-azure-folder: sched\n\
             etcd-azure-access-key: {ACCOUNT_KEY}\n\
             etcd-azure-endpoint: {}\n\
             etcd-snapshot-schedule-cron: '@every 1s'\n\
             etcd-snapshot-retention: 2\n",
            az.endpoint()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let mut s = Server::builder(Etcd::V35)
        .env("ETCDSNAP_CONFIG_FILE", cfg)
        .start();
    let marker = format!("Uploaded snapshot azure://{CONTAINER}/sched/");
    wait_for(Duration::from_secs(45), "three scheduled uploads", || {
        (s.proc.log_text().matches(&marker).count() >= 3).then_some(())
    });
    let out = ok(&s.cli_env(&["ls"], &[("ETCDSNAP_CONFIG_FILE", cfg)]));
    assert!(
        out.contains(&format!("azure://{CONTAINER}/sched/")),
        "{out}"
    );
    // The records of the Azure objects reach kubectl (remote storage node, azure:// location).
    let loc = format!("azure://{CONTAINER}/sched/");
    let table = wait_for(Duration::from_secs(30), "Azure records in kubectl", || {
        let out = s.kubectl(&["get", "etcdsnapshotfile", "-o", "wide"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && text.contains(&loc)).then_some(text)
    });
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("s3-") && l.contains(&loc)),
        "{table}"
    );
    s.proc.terminate(Duration::from_secs(20));
    let log = s.proc.log_text();
    let ups: Vec<String> = log
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(&marker)?;
            Some(rest.split_whitespace().next()?.to_string())
        })
        .collect();
    let newest: BTreeSet<String> = ups[ups.len() - 2..]
        .iter()
        .map(|n| format!("sched/{n}"))
        .collect();
    assert_eq!(raw.keys("sched"), newest, "uploads: {ups:?}");
    assert_log_clean(&s);
}

/// `--cluster-reset-restore-path=<name>` with `--etcd-azure*` downloads the object and
/// restores it onto an empty data dir.
#[test]
fn azure_restore_onto_an_empty_data_dir() {
    let az = rt().block_on(Azurite::start(&[CONTAINER]));
    let a = Server::start(Etcd::V35);
    a.put(&kv("prod", 30));
    let flags = azure_flags(&az, "cl");
    // Over 8 MiB, so that the upload goes in blocks (Put Block + Put Block List): big values,
    // then small ones over them (the database keeps the old revisions; the dump stays small).
    let big = noise("big", 9);
    a.put(&big);
    let small: Vec<(String, Vec<u8>)> = big.into_iter().map(|(k, _)| (k, b"x".to_vec())).collect();
    a.put(&small);
    let out = ok(&snap(
        &a,
        &sub("save", &flags, &["--snapshot-compress=false"]),
    ));
    let name = saved_name(&out);
    let log = a.proc.log_text();
    let size = std::fs::metadata(a.snapshot_dir().join(&name))
        .unwrap()
        .len();
    assert!(size > 8 << 20, "{size} bytes: too small for a block upload");
    assert!(
        log.contains(&format!(
            "Uploaded snapshot azure://{CONTAINER}/cl/{name} ({size} bytes)"
        )),
        "{log}"
    );
    let at_snapshot = dump(&a);
    let token = a.token();

    let bs = restore_on_a_new_machine(&flags, &token, &name, "Azure Blob");
    assert_eq!(dump(&bs), at_snapshot);

    // The same object restored by the CLI for an etcd of one's own, and drilled.
    let work = tempfile::tempdir().unwrap();
    let local = |args: Vec<String>| {
        let mut cmd = std::process::Command::new(etcdsnap_bin());
        cmd.arg("etcd-snapshot")
            .args(&args)
            .arg(format!("--etcd-binary={}", Etcd::V35.etcd().display()))
            .env("ETCDSNAP_CONFIG_FILE", empty_config(work.path()))
            .env("TMPDIR", work.path());
        without_aws_env(&mut cmd);
        let out = cmd.output().unwrap();
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!text.contains(ACCOUNT_KEY), "the key leaked:\n{text}");
        out
    };
    let out_dir = work.path().join("restored");
    let text = ok(&local(sub(
        "restore",
        &flags,
        &[&name, &format!("--output-dir={}", out_dir.display())],
    )));
    assert!(text.contains("etcd --name default"), "{text}");
    assert!(out_dir.join("member/snap/db").is_file());
    let report: serde_json::Value =
        serde_json::from_str(&ok(&local(sub("drill", &flags, &[&name, "-o", "json"])))).unwrap();
    assert_eq!(report["name"], name.as_str(), "{report}");
    assert_eq!(
        report["location"],
        format!("azure://{CONTAINER}/cl/{name}"),
        "{report}"
    );
    assert!(report["keys"].as_u64().unwrap() >= 39, "{report}");
    // A drill of a remote store needs the name: the newest local one would be the wrong file.
    let err = fails(&local(sub("drill", &flags, &[])));
    assert!(err.contains("give the snapshot to drill"), "{err}");
}

/// Bad settings fail with the flag to fix, write nothing remote, and never print the key.
#[test]
fn azure_bad_input_is_clear_and_keeps_the_key_secret() {
    let az = rt().block_on(Azurite::start(&[CONTAINER]));
    let raw = Raw::new(&az);
    let s = Server::start(Etcd::V35);
    let good = azure_flags(&az, "f");
    // A well-formed key that is not the account's.
    let wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=";
    let swap = |from: &str, to: &str| -> Vec<String> {
        good.iter()
            .map(|f| {
                if f.starts_with(from) {
                    to.to_string()
                } else {
                    f.clone()
                }
            })
            .collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            swap(
                "--etcd-azure-access-key=",
                &format!("--etcd-azure-access-key={wrong_key}"),
            ),
            "access denied to container snaps: check --etcd-azure-account and --etcd-azure-access-key",
        ),
        (
            swap("--etcd-azure-container=", "--etcd-azure-container=missing"),
            "container missing does not exist: create it, or fix --etcd-azure-container",
        ),
        (
            swap("--etcd-azure-container=", "--etcd-azure-folder=f"),
            "Azure Blob container name was not set: give --etcd-azure-container",
        ),
        (
            swap("--etcd-azure-access-key=", "--etcd-azure-folder=f"),
            "Azure Blob account key was not set: give --etcd-azure-access-key",
        ),
        (
            swap(
                "--etcd-azure-endpoint=",
                &format!("--etcd-azure-endpoint=127.0.0.1:{}", az.port),
            ),
            "etcd-azure-endpoint must be an http:// or https:// URL",
        ),
        (
            with(&good, &["--etcd-s3", "--etcd-s3-bucket=b"]),
            "--etcd-s3 and --etcd-azure are all enabled",
        ),
    ];
    for (flags, want) in cases {
        let out = snap(&s, &sub("save", &flags, &[]));
        let err = fails(&out);
        assert!(err.contains(want), "{want}:\n{err}");
        assert!(!err.contains(wrong_key), "{err}");
    }
    assert!(raw.keys("").is_empty(), "{:?}", raw.keys(""));
    assert!(s.snapshot_files().is_empty(), "nothing saved");
    assert_log_clean(&s);
    assert!(!s.proc.log_text().contains(wrong_key));
}

/// `etcdsnap check` probes the container: write, read back, delete; a wrong key fails with
/// the Azure flags to fix and without the key.
#[test]
fn azure_check_probes_the_container() {
    let az = rt().block_on(Azurite::start(&[CONTAINER]));
    let raw = Raw::new(&az);
    let dir = tempfile::tempdir().unwrap();
    let flags = azure_flags(&az, "chk");
    let (o, v) = check_json(dir.path(), &flags);
    let r = result(&v, "s3");
    assert_eq!(r["status"], "ok", "{}", text(&o));
    let detail = r["detail"].as_str().unwrap();
    assert!(
        detail.contains("container snaps exists")
            && detail.contains(&format!("azure://{CONTAINER}/chk/")),
        "{detail}"
    );
    assert!(raw.keys("").is_empty(), "probe left: {:?}", raw.keys(""));

    let wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=";
    let bad: Vec<String> = flags
        .iter()
        .map(|f| match f.starts_with("--etcd-azure-access-key=") {
            true => format!("--etcd-azure-access-key={wrong}"),
            false => f.clone(),
        })
        .collect();
    let (o, v) = check_json(dir.path(), &bad);
    let r = result(&v, "s3");
    assert_eq!(r["status"], "fail", "{r}");
    assert!(r["fix"].as_str().unwrap().contains("--etcd-azure-"), "{r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("--etcd-azure-access-key"),
        "{r}"
    );
    assert!(!text(&o).contains(wrong), "the key was printed");
}

/// The `--etcd-gcs-*` flags for the emulator's bucket and `folder` (unsigned requests).
fn gcs_flags(gcs: &FakeGcs, folder: &str) -> Vec<String> {
    vec![
        "--etcd-gcs".into(),
        format!("--etcd-gcs-bucket={BUCKET}"),
        format!("--etcd-gcs-folder={folder}"),
        format!("--etcd-gcs-endpoint={}", gcs.endpoint()),
    ]
}

/// GCS listing (with K3s's metadata and extra metadata), prune to the retention, delete of
/// object and metadata, and restore of an object by `--cluster-reset-restore-path`. The
/// objects are local snapshots put into the emulator's bucket through its JSON API, with the
/// metadata K3s writes (the upload itself is what fake-gcs-server cannot take).
#[test]
fn gcs_ls_prune_delete_and_restore() {
    let gcs = FakeGcs::start(&[BUCKET]);
    let raw = Raw::gcs(&gcs);
    // Three saves named for three seconds in a row, at once.
    let a = Server::builder(Etcd::V35).distinct_name_seconds().start();
    a.put(&kv("prod", 30));
    let flags = gcs_flags(&gcs, "g");
    let mut names = Vec::new();
    let mut at_second = None;
    for i in 0..3 {
        let out = ok(&a.cli(&["save", "--snapshot-compress=false"]));
        let name = saved_name(&out);
        if i == 1 {
            at_second = Some(dump(&a));
        }
        let body = std::fs::read(a.snapshot_dir().join(&name)).unwrap();
        rt().block_on(gcs.put(
            BUCKET,
            &format!("g/{name}"),
            body,
            &[("K3s-Node-Name", "n9"), ("K3s-Token-Hash", "0123456789ab")],
        ));
        names.push(name);
    }
    rt().block_on(gcs.put(
        BUCKET,
        &format!("g/.metadata/{}", names[2]),
        br#"{"k":"v"}"#.to_vec(),
        &[],
    ));

    let out = ok(&snap(&a, &sub("ls", &flags, &["-o", "json"])));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    for n in &names {
        let item = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == format!("s3-{n}"))
            .unwrap_or_else(|| panic!("no remote item for {n}:\n{out}"));
        assert_eq!(
            item["spec"]["location"],
            format!("gs://{BUCKET}/g/{n}"),
            "{item}"
        );
        // The uploading node comes from the object's K3s-Node-Name metadata.
        assert_eq!(item["spec"]["nodeName"], "n9", "{item}");
        assert!(item["spec"]["s3"].is_null(), "{item}");
    }
    let newest = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == format!("s3-{}", names[2]))
        .unwrap();
    assert_eq!(newest["spec"]["metadata"]["k"], "v", "{newest}");

    // prune with retention 2: the oldest object goes (and the oldest local file).
    let out = ok(&snap(
        &a,
        &sub("prune", &flags, &["--snapshot-retention=2"]),
    ));
    assert!(
        out.contains(&format!("Snapshot {} deleted.", names[0])),
        "{out}"
    );
    let keys = raw.keys("g");
    assert!(!keys.contains(&format!("g/{}", names[0])), "{keys:?}");
    assert!(keys.contains(&format!("g/{}", names[1])), "{keys:?}");

    // delete: the newest object and its metadata go.
    ok(&snap(&a, &sub("delete", &flags, &[&names[2]])));
    assert_eq!(raw.keys("g"), BTreeSet::from([format!("g/{}", names[1])]));

    // Restore the second snapshot from the bucket onto an empty data dir.
    let token = a.token();
    let bs = restore_on_a_new_machine(&flags, &token, &names[1], "GCS");
    assert_eq!(Some(dump(&bs)), at_second);
}
