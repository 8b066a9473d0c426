//! S3 end to end: real `etcdsnap server`s and the real CLI against s3s-fs (plain HTTP, SigV4
//! checked) and moto (HTTPS with a private CA). Every test checks that the S3 secret key shows up
//! in no CLI output and no server log.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjPath;
use object_store::{Attribute, GetOptions, ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use crate::harness::*;
use etcdsnap_testkit::s3::{ACCESS_KEY, MotoTls, RecordingProxy, S3sFs, SECRET_KEY, raw_client};

const BUCKET: &str = "snapbucket";

/// The `etcd-snapshot` flags for `server`'s bucket and `folder`, with static keys.
fn s3_flags(server: &S3sFs, folder: &str) -> Vec<String> {
    vec![
        "--s3".into(),
        format!("--s3-endpoint={}", server.endpoint()),
        "--s3-insecure".into(),
        format!("--s3-bucket={BUCKET}"),
        format!("--s3-access-key={ACCESS_KEY}"),
        format!("--s3-secret-key={SECRET_KEY}"),
        format!("--s3-folder={folder}"),
        "--s3-timeout=20s".into(),
    ]
}

/// The server's `--etcd-s3*` flags for the same.
fn server_s3_flags(endpoint: &str, folder: &str) -> Vec<String> {
    vec![
        "--etcd-s3".into(),
        format!("--etcd-s3-endpoint={endpoint}"),
        "--etcd-s3-insecure".into(),
        format!("--etcd-s3-bucket={BUCKET}"),
        format!("--etcd-s3-access-key={ACCESS_KEY}"),
        format!("--etcd-s3-secret-key={SECRET_KEY}"),
        format!("--etcd-s3-folder={folder}"),
        "--etcd-s3-timeout=5s".into(),
    ]
}

/// Fails if an S3 secret appears in the output.
#[track_caller]
fn assert_no_secret_in(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !text.contains(s),
            "{what} contains the secret {s:?}:\n{text}"
        );
    }
}

/// `etcd-snapshot <sub> <args...>` with extra environment; the secret key must not leak.
fn snap_env(s: &Server, sub: &str, args: &[String], envs: &[(&str, &str)]) -> Output {
    let mut all: Vec<&str> = vec![sub];
    all.extend(args.iter().map(String::as_str));
    let out = s.cli_env(&all, envs);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_no_secret_in(
        &format!("output of etcd-snapshot {sub}"),
        &text,
        &[SECRET_KEY],
    );
    out
}

fn snap(s: &Server, sub: &str, args: &[String]) -> Output {
    snap_env(s, sub, args, &[])
}

pub(crate) fn with(base: &[String], extra: &[&str]) -> Vec<String> {
    base.iter()
        .cloned()
        .chain(extra.iter().map(|a| a.to_string()))
        .collect()
}

/// The server log must not hold the secret key (nor `more` secrets).
#[track_caller]
fn assert_log_clean(s: &Server, more: &[&str]) {
    let mut secrets = vec![SECRET_KEY];
    secrets.extend_from_slice(more);
    assert_no_secret_in("the server log", &s.proc.log_text(), &secrets);
}

fn lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// The one file that `save` added to the snapshot dir.
fn new_file(s: &Server, before: &[String]) -> String {
    let added: Vec<String> = s
        .snapshot_files()
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    assert_eq!(added.len(), 1, "expected one new snapshot file: {added:?}");
    added.into_iter().next().unwrap()
}

/// `K10<ca hash>::server:<secret>` → the first 12 hex of sha256(secret).
fn token_hash(s: &Server) -> String {
    let token = s.token();
    let secret = token
        .split_once("::server:")
        .unwrap_or_else(|| panic!("unexpected token format {token:?}"))
        .1;
    hex_prefix(&Sha256::digest(secret.as_bytes()), 12)
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(n)
        .collect()
}

/// A raw S3 client with its own runtime (a reqwest client is tied to the runtime it first ran
/// in), for checking what the server wrote.
struct Raw {
    rt: tokio::runtime::Runtime,
    store: AmazonS3,
}

/// What a HEAD returns that the tests look at.
struct Head {
    size: u64,
    content_type: Option<String>,
    meta: std::collections::HashMap<String, String>,
}

impl Raw {
    fn s3s(server: &S3sFs) -> Raw {
        Raw {
            rt: rt(),
            store: server.raw_client(BUCKET),
        }
    }

    fn moto(moto: &MotoTls, bucket: &str) -> Raw {
        Raw {
            rt: rt(),
            store: raw_client(
                &format!("https://127.0.0.1:{}", moto.port),
                bucket,
                Some(&moto.pki.ca_pem),
            ),
        }
    }

    /// Every object of the bucket: key, last modified, size; sorted by key.
    fn objects(&self) -> Vec<(String, DateTime<Utc>, u64)> {
        let mut v: Vec<(String, DateTime<Utc>, u64)> = self.rt.block_on(async {
            self.store
                .list(None)
                .map_ok(|m| (m.location.to_string(), m.last_modified, m.size))
                .try_collect()
                .await
                .expect("listing the bucket")
        });
        v.sort();
        v
    }

    /// Keys directly under `folder/` (not in sub-folders).
    fn snapshot_keys(&self, folder: &str) -> BTreeSet<String> {
        let p = format!("{folder}/");
        self.objects()
            .into_iter()
            .filter_map(|(k, _, _)| k.strip_prefix(&p).map(str::to_string))
            .filter(|rest| !rest.contains('/'))
            .collect()
    }

    /// Starts a multipart upload of `key` with one part and leaves it, as a killed process does.
    fn leave_unfinished_upload(&self, key: &str) {
        self.rt.block_on(async {
            let mut up = self.store.put_multipart(&ObjPath::from(key)).await.unwrap();
            up.put_part(PutPayload::from(vec![7u8; 5 << 20]))
                .await
                .unwrap();
            std::mem::forget(up);
        })
    }

    fn exists(&self, key: &str) -> bool {
        self.rt.block_on(async {
            match self.store.head(&ObjPath::from(key)).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => panic!("HEAD {key}: {e}"),
            }
        })
    }

    fn head(&self, key: &str) -> Head {
        self.rt.block_on(async {
            let r = self
                .store
                .get_opts(
                    &ObjPath::from(key),
                    GetOptions {
                        head: true,
                        ..Default::default()
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("HEAD {key}: {e}"));
            let mut meta = std::collections::HashMap::new();
            let mut content_type = None;
            for (a, v) in r.attributes.iter() {
                match a {
                    Attribute::ContentType => content_type = Some(v.as_ref().to_string()),
                    Attribute::Metadata(k) => {
                        meta.insert(k.to_ascii_lowercase(), v.as_ref().to_string());
                    }
                    _ => {}
                }
            }
            Head {
                size: r.meta.size,
                content_type,
                meta,
            }
        })
    }

    fn get(&self, key: &str) -> Vec<u8> {
        self.rt.block_on(async {
            self.store
                .get(&ObjPath::from(key))
                .await
                .unwrap_or_else(|e| panic!("GET {key}: {e}"))
                .bytes()
                .await
                .unwrap()
                .to_vec()
        })
    }

    fn put(&self, key: &str, data: &[u8]) {
        self.rt.block_on(async {
            self.store
                .put(&ObjPath::from(key), PutPayload::from(data.to_vec()))
                .await
                .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
        })
    }
}

// --- 1. save --s3 -------------------------------------------------------------------------

fn save_uploads_body(v: Etcd) {
    let fs = S3sFs::start(&[BUCKET]);
    let raw = Raw::s3s(&fs);
    // Saves in a row are named for seconds in a row, at once.
    let s = Server::builder(v).distinct_name_seconds().start();
    let flags = s3_flags(&fs, "f");

    let out = ok(&snap(&s, "save", &flags));
    let name = new_file(&s, &[]);
    // K3s semantics: the name is printed once per storage it was saved to.
    assert_eq!(
        lines(&out),
        vec![format!("Snapshot {name} saved."); 2],
        "stdout: {out}"
    );
    let local = std::fs::read(s.snapshot_dir().join(&name)).unwrap();
    let key = format!("f/{name}");
    assert!(
        raw.get(&key) == local,
        "the object differs from the local file"
    );
    let h = raw.head(&key);
    assert_eq!(h.size, local.len() as u64);
    assert_eq!(h.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(
        h.meta.get("k3s-node-name").map(String::as_str),
        Some("n1"),
        "{:?}",
        h.meta
    );
    assert_eq!(
        h.meta.get("k3s-token-hash"),
        Some(&token_hash(&s)),
        "{:?}",
        h.meta
    );
    // Only the snapshot itself: no sidecar without extra metadata.
    assert_eq!(raw.snapshot_keys("f"), BTreeSet::from([name.clone()]));

    // Compressed: the .zip is uploaded as application/zip.
    let before = s.snapshot_files();
    let out = ok(&snap(&s, "save", &with(&flags, &["--snapshot-compress"])));
    let zip = new_file(&s, &before);
    assert!(zip.ends_with(".zip"), "{zip}");
    assert_eq!(lines(&out), vec![format!("Snapshot {zip} saved."); 2]);
    let key = format!("f/{zip}");
    assert!(raw.get(&key) == std::fs::read(s.snapshot_dir().join(&zip)).unwrap());
    let h = raw.head(&key);
    assert_eq!(h.content_type.as_deref(), Some("application/zip"));
    assert_eq!(h.meta.get("k3s-node-name").map(String::as_str), Some("n1"));

    // zstd (naming the format turns compression on): a .zst, as application/zstd.
    let before = s.snapshot_files();
    let out = ok(&snap(
        &s,
        "save",
        &with(&flags, &["--snapshot-compress-format=zstd"]),
    ));
    let zst = new_file(&s, &before);
    assert!(zst.ends_with(".zst"), "{zst}");
    assert_eq!(lines(&out), vec![format!("Snapshot {zst} saved."); 2]);
    let key = format!("f/{zst}");
    assert!(raw.get(&key) == std::fs::read(s.snapshot_dir().join(&zst)).unwrap());
    let h = raw.head(&key);
    assert_eq!(h.content_type.as_deref(), Some("application/zstd"));
    // `ls --s3` lists it with the others.
    let listed = ok(&snap(&s, "ls", &flags));
    assert!(
        listed.contains(&format!("s3://{BUCKET}/f/{zst}")),
        "{listed}"
    );
    // The local files are all kept.
    assert_eq!(s.snapshot_files(), vec![name, zip, zst]);
    assert_log_clean(&s, &[]);
}

mod save_uploads_with_k3s_metadata {
    #[test]
    fn etcd_3_4() {
        super::save_uploads_body(crate::harness::Etcd::V34)
    }
    #[test]
    fn etcd_3_5() {
        super::save_uploads_body(crate::harness::Etcd::V35)
    }
}

/// Checklist 26: the objects carry `K3s-Cluster-Id`, so that K3s tools can tell clusters apart.
#[test]
fn uploaded_objects_carry_a_cluster_id() {
    let fs = S3sFs::start(&[BUCKET]);
    let raw = Raw::s3s(&fs);
    let s = Server::start(Etcd::V35);
    ok(&snap(&s, "save", &s3_flags(&fs, "f")));
    let name = new_file(&s, &[]);
    let h = raw.head(&format!("f/{name}"));
    let id = h.meta.get("k3s-cluster-id").cloned().unwrap_or_default();
    // A plain etcd: the etcd cluster ID, 16 hex digits.
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "k3s-cluster-id {id:?} is not the etcd cluster ID: {:?}",
        h.meta
    );
}

/// A protobuf field with a length-delimited value, as the API server encodes objects.
fn pb(number: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    let mut out = vec![(number << 3) | 2, body.len() as u8];
    out.extend_from_slice(body);
    out
}

/// An etcd that is a Kubernetes datastore: K3s's cluster ID is the kube-system namespace UID,
/// stored as protobuf (`k8s\0` + runtime.Unknown) or JSON.
#[test]
fn cluster_id_is_the_kube_system_uid_of_a_kubernetes_datastore() {
    let uid = "0c7a8a5e-55a4-4f55-a1f7-3b9d1ef0a6b2";
    let meta = [pb(1, b"kube-system"), pb(5, uid.as_bytes())].concat();
    let namespace = pb(1, &meta);
    let type_meta = [pb(1, b"v1"), pb(2, b"Namespace")].concat();
    let proto = [b"k8s\0".to_vec(), pb(1, &type_meta), pb(2, &namespace)].concat();
    let json =
        format!(r#"{{"kind":"Namespace","metadata":{{"name":"kube-system","uid":"{uid}"}}}}"#);
    for (i, value) in [proto, json.into_bytes()].into_iter().enumerate() {
        let fs = S3sFs::start(&[BUCKET]);
        let raw = Raw::s3s(&fs);
        let s = Server::builder(if i == 0 { Etcd::V35 } else { Etcd::V34 }).start();
        s.put(&[("/registry/namespaces/kube-system".to_string(), value)]);
        ok(&snap(&s, "save", &s3_flags(&fs, "f")));
        let name = new_file(&s, &[]);
        let h = raw.head(&format!("f/{name}"));
        assert_eq!(
            h.meta.get("k3s-cluster-id").map(String::as_str),
            Some(uid),
            "{:?}",
            h.meta
        );
    }
}

// --- 2. ls --s3 ---------------------------------------------------------------------------

#[test]
fn ls_shows_local_and_s3_rows_and_only_folder_snapshots() {
    let fs = S3sFs::start(&[BUCKET]);
    let raw = Raw::s3s(&fs);
    let s = Server::start(Etcd::V35);
    let flags = s3_flags(&fs, "f");
    ok(&snap(&s, "save", &flags));
    let name = new_file(&s, &[]);
    // Things that are not snapshots of folder `f`: a sibling folder sharing the prefix, a
    // metadata object, an empty object.
    raw.put("f-old/on-demand-n9-1700000000", b"not ours");
    raw.put(&format!("f/.metadata/{name}"), br#"{"a":"b"}"#);
    raw.put("f/.metadata/on-demand-n9-1700000001", br#"{"c":"d"}"#);
    raw.put("f/on-demand-n9-1700000002", b"");

    let out = ok(&snap(&s, "ls", &flags));
    let rows = lines(&out);
    assert_eq!(
        rows[0].split_whitespace().collect::<Vec<_>>(),
        ["Name", "Location", "Size", "Created"],
        "{out}"
    );
    assert_eq!(rows.len(), 3, "header + local + s3 rows expected:\n{out}");
    let local_loc = format!(
        "file://{}",
        s.snapshot_dir()
            .join(&name)
            .canonicalize()
            .unwrap()
            .display()
    );
    let s3_loc = format!("s3://{BUCKET}/f/{name}");
    let size = std::fs::metadata(s.snapshot_dir().join(&name))
        .unwrap()
        .len()
        .to_string();
    for loc in [&local_loc, &s3_loc] {
        let row = rows
            .iter()
            .find(|r| r.split_whitespace().nth(1) == Some(loc.as_str()))
            .unwrap_or_else(|| panic!("no row for {loc}:\n{out}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[0], name, "{row}");
        assert_eq!(cols[2], size, "{row}");
    }
    for not in ["f-old", "1700000001", "1700000002", ".metadata"] {
        assert!(!out.contains(not), "{not} listed:\n{out}");
    }

    let out = ok(&snap(&s, "ls", &with(&flags, &["-o", "json"])));
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let items = list["items"].as_array().unwrap();
    let names: BTreeSet<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            format!("local-{name}").as_str(),
            format!("s3-{name}").as_str()
        ]),
        "{out}"
    );
    let s3_item = items
        .iter()
        .find(|i| i["metadata"]["name"] == format!("s3-{name}"))
        .unwrap();
    assert_eq!(s3_item["spec"]["location"], s3_loc.as_str(), "{s3_item}");
    assert_eq!(s3_item["spec"]["snapshotName"], name.as_str(), "{s3_item}");

    // Without --s3 only the local row.
    let out = ok(&s.cli(&["ls"]));
    assert_eq!(lines(&out).len(), 2, "{out}");
    assert!(!out.contains("s3://"), "{out}");
    assert_log_clean(&s, &[]);
}

// --- 3. delete --s3 -----------------------------------------------------------------------

#[test]
fn delete_removes_local_file_object_and_metadata_object() {
    let fs = S3sFs::start(&[BUCKET]);
    let raw = Raw::s3s(&fs);
    // Saves in a row are named for seconds in a row, at once.
    let s = Server::builder(Etcd::V35).distinct_name_seconds().start();
    let flags = s3_flags(&fs, "f");
    ok(&snap(&s, "save", &flags));
    let name = new_file(&s, &[]);
    ok(&snap(&s, "save", &flags));
    let other = new_file(&s, std::slice::from_ref(&name));
    let meta_key = format!("f/.metadata/{name}");
    raw.put(&meta_key, br#"{"a":"b"}"#);
    assert!(raw.exists(&format!("f/{name}")));

    let out = ok(&snap(&s, "delete", &with(&flags, &[&name])));
    assert_eq!(
        lines(&out),
        vec![format!("Snapshot {name} deleted."); 2],
        "stdout: {out}"
    );
    assert_eq!(s.snapshot_files(), vec![other.clone()]);
    assert!(!raw.exists(&format!("f/{name}")));
    assert!(!raw.exists(&meta_key));
    // The other snapshot is untouched in both places.
    assert_eq!(raw.snapshot_keys("f"), BTreeSet::from([other]));

    // Deleting it again: found nowhere.
    let out = snap(&s, "delete", &with(&flags, &[&name]));
    assert_eq!(ok(&out).trim(), "");
    assert!(
        stderr(&out).contains(&format!("Snapshot {name} not found.")),
        "{}",
        stderr(&out)
    );
    assert_log_clean(&s, &[]);
}

// --- 4. S3 retention across servers -------------------------------------------------------

#[test]
fn s3_retention_keeps_newest_objects_across_nodes() {
    let fs = S3sFs::start(&[BUCKET]);
    let raw = Raw::s3s(&fs);
    // Two servers of one cluster: n2 joins n1. Saves in a row are named for seconds in a row,
    // at once.
    let s1 = Server::builder(Etcd::V35).distinct_name_seconds().start();
    let s2 = Server::builder(Etcd::V35)
        .distinct_name_seconds()
        .node("n2")
        .args(["--server", &s1.url(), "--token", &s1.token()])
        .start();
    crate::cluster::wait_voters(&s1, &["n1", "n2"]);
    let flags = with(&s3_flags(&fs, "shared"), &["--s3-retention=2"]);
    let mut order = Vec::new();
    for s in [&s1, &s2, &s1, &s2, &s1] {
        let before = s.snapshot_files();
        ok(&snap(s, "save", &flags));
        order.push(new_file(s, &before));
    }
    assert!(order[1].starts_with("on-demand-n2-"), "{order:?}");
    // Only the two newest uploads remain, whichever node made them.
    let objects: Vec<(String, DateTime<Utc>, u64)> = raw
        .objects()
        .into_iter()
        .filter(|(k, _, _)| k.starts_with("shared/"))
        .collect();
    let kept: BTreeSet<String> = objects
        .iter()
        .map(|(k, _, _)| k.strip_prefix("shared/").unwrap().to_string())
        .collect();
    assert_eq!(
        kept,
        BTreeSet::from([order[3].clone(), order[4].clone()]),
        "{objects:?}"
    );
    // `ls` on either server shows its own files and every node's objects.
    for s in [&s1, &s2] {
        let out = ok(&snap(s, "ls", &s3_flags(&fs, "shared")));
        for name in &order[3..] {
            assert!(
                out.lines()
                    .any(|l| l.starts_with(name.as_str()) && l.contains("s3://")),
                "{name}:\n{out}"
            );
        }
    }
    // A CLI save never prunes local snapshots.
    assert_eq!(s1.snapshot_files().len(), 3);
    assert_eq!(s2.snapshot_files().len(), 2);
    assert_log_clean(&s1, &[]);
    assert_log_clean(&s2, &[]);
}

// --- 5. prune --s3 ------------------------------------------------------------------------

#[test]
fn prune_applies_s3_retention_to_the_named_prefix_only() {
    let fs = S3sFs::start(&[BUCKET]);
    let raw = Raw::s3s(&fs);
    // Saves in a row are named for seconds in a row, at once.
    let s = Server::builder(Etcd::V35).distinct_name_seconds().start();
    let flags = s3_flags(&fs, "f");
    // Retention 0 disables pruning on save (checklist 10), so all of these stay.
    let keep_all = with(&flags, &["--s3-retention=0"]);
    let mut on_demand = Vec::new();
    let mut scheduled = Vec::new();
    for i in 0..5 {
        let before = s.snapshot_files();
        if i < 3 {
            ok(&snap(&s, "save", &keep_all));
            on_demand.push(new_file(&s, &before));
        } else {
            ok(&snap(
                &s,
                "save",
                &with(&keep_all, &["--name", "etcd-snapshot"]),
            ));
            scheduled.push(new_file(&s, &before));
        }
    }
    let all: BTreeSet<String> = on_demand.iter().chain(&scheduled).cloned().collect();
    assert_eq!(raw.snapshot_keys("f"), all);

    // Pruning `etcd-snapshot` leaves on-demand objects alone.
    let out = ok(&snap(
        &s,
        "prune",
        &with(&flags, &["--s3-retention", "1", "--name", "etcd-snapshot"]),
    ));
    assert_eq!(
        lines(&out),
        vec![format!("Snapshot {} deleted.", scheduled[0])],
        "{out}"
    );
    let mut expect = all.clone();
    expect.remove(&scheduled[0]);
    assert_eq!(raw.snapshot_keys("f"), expect);

    // Pruning on-demand (the default prefix) keeps the newest one.
    let out = ok(&snap(&s, "prune", &with(&flags, &["--s3-retention", "1"])));
    let deleted: BTreeSet<&str> = lines(&out)
        .into_iter()
        .map(|l| {
            l.strip_prefix("Snapshot ")
                .and_then(|l| l.strip_suffix(" deleted."))
                .unwrap_or_else(|| panic!("unexpected line {l:?} in {out}"))
        })
        .collect();
    assert_eq!(
        deleted,
        BTreeSet::from([on_demand[0].as_str(), on_demand[1].as_str()]),
        "{out}"
    );
    assert_eq!(
        raw.snapshot_keys("f"),
        BTreeSet::from([on_demand[2].clone(), scheduled[1].clone()])
    );
    // Local retention is the server's (5): every local file is still there.
    assert_eq!(s.snapshot_files().len(), 5);
    assert_log_clean(&s, &[]);
}

// --- 6. scheduled snapshots with S3 -------------------------------------------------------

/// Names in `Uploaded snapshot to s3://<bucket>/<folder>/<name>` log lines, in order.
fn uploaded(log: &str, folder: &str) -> Vec<String> {
    let marker = format!("Uploaded snapshot to s3://{BUCKET}/{folder}/");
    log.lines()
        .filter_map(|l| l.split_once(&marker).map(|(_, n)| n.trim().to_string()))
        .collect()
}

#[test]
fn scheduled_snapshots_upload_and_apply_s3_retention() {
    let fs = S3sFs::start(&[BUCKET]);
    let raw = Raw::s3s(&fs);
    let mut s = Server::builder(Etcd::V35)
        .args(server_s3_flags(&fs.endpoint(), "sched"))
        .args([
            "--etcd-snapshot-schedule-cron",
            "@every 1s",
            "--etcd-s3-retention",
            "2",
            "--etcd-snapshot-retention",
            "10",
        ])
        .start();
    wait_for(Duration::from_secs(45), "three scheduled uploads", || {
        (uploaded(&s.proc.log_text(), "sched").len() >= 3).then_some(())
    });
    // Stop the schedule (an in-flight save finishes first), then look at the bucket.
    s.proc.terminate(Duration::from_secs(20));
    let log = s.proc.log_text();
    let ups = uploaded(&log, "sched");
    assert!(
        ups.iter().all(|n| n.starts_with("etcd-snapshot-n1-")),
        "{ups:?}"
    );
    let kept = raw.snapshot_keys("sched");
    let newest: BTreeSet<String> = ups[ups.len() - 2..].iter().cloned().collect();
    assert_eq!(kept, newest, "uploads: {ups:?}");
    // Local copies are kept (local retention 10).
    for n in &ups {
        assert!(s.snapshot_dir().join(n).exists(), "{n} missing locally");
    }
    let h = raw.head(&format!("sched/{}", ups[ups.len() - 1]));
    assert_eq!(h.meta.get("k3s-node-name").map(String::as_str), Some("n1"));
    assert_log_clean(&s, &[]);
}

// --- 7. upload failures keep the local snapshot -------------------------------------------

#[test]
fn scheduled_upload_failure_keeps_local_snapshots() {
    let dead = free_port();
    let s = Server::builder(Etcd::V35)
        .args(server_s3_flags(&format!("127.0.0.1:{dead}"), "f"))
        .args(["--etcd-snapshot-schedule-cron", "@every 1s"])
        .start();
    wait_for(
        Duration::from_secs(45),
        "a local snapshot and the upload error in the log",
        || {
            let files = s.snapshot_files();
            let log = s.proc.log_text();
            (files.iter().any(|f| f.starts_with("etcd-snapshot-n1-"))
                && log.contains("Error received during snapshot upload to S3"))
            .then_some(())
        },
    );
    assert_log_clean(&s, &[]);
}

#[test]
fn cli_upload_failure_is_a_warning_and_keeps_the_local_snapshot() {
    let fs = S3sFs::start(&[BUCKET]);
    // Saves in a row are named for seconds in a row, at once.
    let s = Server::builder(Etcd::V35).distinct_name_seconds().start();
    let flags = with(&s3_flags(&fs, "f"), &["--s3-timeout=8s"]);
    let out = ok(&snap(&s, "save", &flags));
    let first = new_file(&s, &[]);
    assert_eq!(lines(&out).len(), 2, "{out}");
    // The S3 server goes away; the server's cached client fails on upload.
    drop(fs);
    let started = Instant::now();
    let out = snap(&s, "save", &flags);
    let stdout = ok(&out);
    assert!(started.elapsed() < Duration::from_secs(30));
    let second = new_file(&s, std::slice::from_ref(&first));
    assert_eq!(
        lines(&stdout),
        vec![format!("Snapshot {second} saved.")],
        "{stdout}"
    );
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("WARNING:") && l.contains("S3 upload failed")),
        "{err}"
    );
    // S3 retention still runs after the failed upload (checklist 29), and fails too.
    assert!(
        err.lines()
            .any(|l| l.starts_with("WARNING:") && l.contains("S3 retention failed")),
        "{err}"
    );
    assert!(s.snapshot_dir().join(&second).exists());
    assert!(
        s.proc
            .log_text()
            .contains("Error received during snapshot upload to S3"),
        "{}",
        s.proc.log_text()
    );
    assert_log_clean(&s, &[]);
}

// --- 8. errors ------------------------------------------------------------------------------

#[test]
fn s3_configuration_errors_are_clear_and_write_nothing() {
    let fs = S3sFs::start(&[BUCKET]);
    let s = Server::start(Etcd::V35);
    let flags = s3_flags(&fs, "f");
    let save = |extra: &[&str]| snap(&s, "save", &with(&flags, extra));

    // A missing bucket: the server checks the client before saving, so nothing is written.
    let err = fails(&save(&["--s3-bucket=nosuchbucket"]));
    assert!(err.contains("bucket nosuchbucket does not exist"), "{err}");
    assert!(err.contains("HTTP 400"), "a bad request: {err}");
    assert_eq!(s.snapshot_files(), Vec::<String>::new());

    // An endpoint whose name does not resolve is trouble upstream, not a bad request.
    let err = fails(&save(&["--s3-endpoint=no-such-host.invalid:9000"]));
    assert!(err.contains("cannot connect to S3 endpoint"), "{err}");
    assert!(err.contains("no-such-host.invalid"), "{err}");
    assert!(err.contains("HTTP 502"), "{err}");
    assert_eq!(s.snapshot_files(), Vec::<String>::new());

    // A wrong secret: a clear answer within seconds that does not echo the secret.
    let wrong = "WrongSecretKeyValue9876543210";
    let started = Instant::now();
    let out = save(&[&format!("--s3-secret-key={wrong}")]);
    let err = fails(&out);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_no_secret_in("stderr", &format!("{}{err}", stdout(&out)), &[wrong]);
    assert!(err.contains("access denied"), "{err}");
    // Named as the user typed it (--s3-secret-key), not by its server spelling.
    assert!(
        err.contains("check --s3-access-key and --s3-secret-key"),
        "{err}"
    );
    assert!(!err.contains("--etcd-s3-secret-key"), "{err}");
    assert!(err.contains("HTTP 502"), "S3 refused us: {err}");
    assert_eq!(s.snapshot_files(), Vec::<String>::new());

    let err = fails(&save(&["--s3-proxy=notaurl"]));
    assert!(
        err.contains("proxy URL must include scheme and host"),
        "{err}"
    );
    let err = fails(&save(&["--s3-bucket="]));
    assert!(err.contains("s3 bucket name was not set"), "{err}");
    assert_eq!(s.snapshot_files(), Vec::<String>::new());
    assert_log_clean(&s, &[wrong]);

    // Credentials from the AWS environment variables.
    let no_keys: Vec<String> = flags
        .iter()
        .filter(|f| !f.starts_with("--s3-access-key") && !f.starts_with("--s3-secret-key"))
        .cloned()
        .collect();
    let out = ok(&snap_env(
        &s,
        "save",
        &no_keys,
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    ));
    let name = new_file(&s, &[]);
    assert_eq!(lines(&out), vec![format!("Snapshot {name} saved."); 2]);
    assert!(Raw::s3s(&fs).exists(&format!("f/{name}")));
    assert_log_clean(&s, &[wrong]);
}

// --- 9. HTTPS with a private CA ---------------------------------------------------------------

#[test]
fn https_endpoint_needs_the_ca_or_skip_verify() {
    let moto = MotoTls::start();
    rt().block_on(moto.create_bucket("tlsbucket"));
    let raw = Raw::moto(&moto, "tlsbucket");
    // Saves in a row are named for seconds in a row, at once.
    let s = Server::builder(Etcd::V35).distinct_name_seconds().start();
    let base: Vec<String> = vec![
        "--s3".into(),
        format!("--s3-endpoint={}", moto.endpoint()),
        "--s3-bucket=tlsbucket".into(),
        format!("--s3-access-key={ACCESS_KEY}"),
        format!("--s3-secret-key={SECRET_KEY}"),
        "--s3-folder=tls".into(),
        "--s3-timeout=10s".into(),
    ];
    let ca = format!("--s3-endpoint-ca={}", moto.ca_path().display());
    let out = ok(&snap(&s, "save", &with(&base, &[&ca])));
    let first = new_file(&s, &[]);
    assert_eq!(lines(&out), vec![format!("Snapshot {first} saved."); 2]);
    assert!(
        raw.get(&format!("tls/{first}")) == std::fs::read(s.snapshot_dir().join(&first)).unwrap()
    );

    // Without the CA the certificate is unknown: the error names the two ways out.
    let started = Instant::now();
    let err = fails(&snap(&s, "save", &base));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        err.contains("--etcd-s3-endpoint-ca") || err.contains("--etcd-s3-skip-ssl-verify"),
        "{err}"
    );
    assert_eq!(s.snapshot_files(), vec![first.clone()]);

    let out = ok(&snap(&s, "save", &with(&base, &["--s3-skip-ssl-verify"])));
    let second = new_file(&s, std::slice::from_ref(&first));
    assert_eq!(lines(&out), vec![format!("Snapshot {second} saved."); 2]);
    assert!(raw.exists(&format!("tls/{second}")));
    assert_log_clean(&s, &[]);
}

/// A server killed mid-upload left its multipart upload in the bucket (parts stored and
/// billed); started again, it aborts it before its first scheduled snapshot, and leaves
/// another node's upload (maybe a save in progress) to that node.
#[test]
fn a_restarted_server_aborts_the_upload_its_killed_process_left() {
    let moto = MotoTls::start();
    rt().block_on(moto.create_bucket("stale"));
    let raw = Raw::moto(&moto, "stale");
    raw.leave_unfinished_upload("up/etcd-snapshot-n1-1700000001");
    raw.leave_unfinished_upload("up/etcd-snapshot-n2-1700000002");
    let s = Server::builder(Etcd::V35)
        .args([
            "--etcd-s3".to_string(),
            format!("--etcd-s3-endpoint={}", moto.endpoint()),
            "--etcd-s3-bucket=stale".into(),
            format!("--etcd-s3-access-key={ACCESS_KEY}"),
            format!("--etcd-s3-secret-key={SECRET_KEY}"),
            "--etcd-s3-folder=up".into(),
            format!("--etcd-s3-endpoint-ca={}", moto.ca_path().display()),
        ])
        .start();
    let own =
        "aborted the incomplete multipart upload of s3://stale/up/etcd-snapshot-n1-1700000001";
    wait_for(
        Duration::from_secs(30),
        "the stale upload to be aborted",
        || s.log_text().contains(own).then_some(()),
    );
    let log = s.log_text();
    assert!(!log.contains("etcd-snapshot-n2-1700000002"), "{log}");
    assert!(log.contains("aborted 1 incomplete upload(s)"), "{log}");
    assert!(
        !raw.exists("up/etcd-snapshot-n1-1700000001"),
        "no object was made of it"
    );
}

// --- 10. the session token reaches S3 ------------------------------------------------------

#[test]
fn cli_session_token_reaches_the_wire_and_secrets_stay_out_of_logs() {
    let fs = S3sFs::start(&[BUCKET]);
    // The relay needs a runtime that keeps running while the CLI works.
    let relay_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let relay = relay_rt.block_on(RecordingProxy::start(fs.port));
    let s = Server::start(Etcd::V35);
    let token = "SessionTokenForTheWire4242";
    let flags: Vec<String> = s3_flags(&fs, "tok")
        .into_iter()
        .map(|f| {
            if f.starts_with("--s3-endpoint=") {
                format!("--s3-endpoint=127.0.0.1:{}", relay.port)
            } else {
                f
            }
        })
        .chain([format!("--s3-session-token={token}")])
        .collect();
    let out = snap(&s, "save", &flags);
    let wire = relay.text();
    assert!(
        wire.lines().any(|l| l
            .trim_end()
            .eq_ignore_ascii_case(&format!("x-amz-security-token: {token}"))),
        "no x-amz-security-token header on the wire; CLI stderr: {}\nwire:\n{wire}",
        stderr(&out)
    );
    // Over plain HTTP the object carries a SHA-256 checksum, which s3s-fs checks on arrival.
    let heads: Vec<&str> = wire.split("\r\n\r\n").collect();
    let put = heads
        .iter()
        .find(|h| h.starts_with("PUT ") && h.contains("/tok/"))
        .unwrap_or_else(|| panic!("no PUT of the snapshot on the wire:\n{wire}"));
    assert!(
        put.to_ascii_lowercase()
            .contains("\r\nx-amz-checksum-sha256: "),
        "no SHA-256 checksum on the upload:\n{put}"
    );
    // s3s-fs takes the token as part of the signature; the save works end to end.
    let name = new_file(&s, &[]);
    assert_eq!(lines(&ok(&out)), vec![format!("Snapshot {name} saved."); 2]);
    let all_out = format!("{}{}", stdout(&out), stderr(&out));
    assert_no_secret_in("CLI output", &all_out, &[token]);
    assert_log_clean(&s, &[token, ACCESS_KEY]);
    drop(relay);
}

// --- 11. one config file for server and CLI -------------------------------------------------

#[test]
fn shared_config_file_enables_s3_for_the_cli() {
    let fs = S3sFs::start(&[BUCKET]);
    let raw = Raw::s3s(&fs);
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "etcd-s3: true\n\
             etcd-s3-endpoint: {}\n\
             etcd-s3-insecure: true\n\
             etcd-s3-bucket: {BUCKET}\n\
             etcd-s3-access-key: {ACCESS_KEY}\n\
             etcd-s3-secret-key: {SECRET_KEY}\n\
             etcd-s3-folder: fromconfig\n\
             etcd-s3-timeout: 20s\n\
             etcd-snapshot-schedule-cron: '0 0 1 1 *'\n",
            fs.endpoint()
        ),
    )
    .unwrap();
    let cfg_str = cfg.to_str().unwrap();
    let s = Server::builder(Etcd::V35)
        .env("ETCDSNAP_CONFIG_FILE", cfg_str)
        .start();
    let out = snap_env(&s, "save", &[], &[("ETCDSNAP_CONFIG_FILE", cfg_str)]);
    let stdout = ok(&out);
    let name = new_file(&s, &[]);
    assert_eq!(
        lines(&stdout),
        vec![format!("Snapshot {name} saved."); 2],
        "stdout: {stdout}\nstderr: {}",
        stderr(&out)
    );
    assert_eq!(
        raw.snapshot_keys("fromconfig"),
        BTreeSet::from([name.clone()])
    );
    // And `ls` through the same file shows the S3 copy.
    let out = ok(&snap_env(
        &s,
        "ls",
        &[],
        &[("ETCDSNAP_CONFIG_FILE", cfg_str)],
    ));
    assert!(
        out.contains(&format!("s3://{BUCKET}/fromconfig/{name}")),
        "{out}"
    );
    assert_log_clean(&s, &[]);
}

// --- proxies and timeouts ------------------------------------------------------------------

/// Absolute-form request lines (`GET http://...`), as a client sends them to an HTTP proxy.
fn proxied_requests(relay: &RecordingProxy, fs: &S3sFs) -> usize {
    let target = format!(" http://{}/{BUCKET}", fs.endpoint());
    relay
        .request_lines()
        .iter()
        .filter(|l| l.contains(&target))
        .count()
}

/// Checklist 34: the server's environment proxy is used by default, `--s3-proxy none` turns it
/// off, and an explicit `--s3-proxy` URL is used.
#[test]
fn s3_proxy_from_environment_none_and_explicit() {
    let fs = S3sFs::start(&[BUCKET]);
    let relay_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // A relay in front of s3s-fs acts as a forward proxy for plain HTTP: s3s-fs accepts the
    // absolute-form request target.
    let relay = relay_rt.block_on(RecordingProxy::start(fs.port));
    let proxy_url = format!("http://127.0.0.1:{}", relay.port);
    // Saves in a row are named for seconds in a row, at once.
    let s = Server::builder(Etcd::V35)
        .distinct_name_seconds()
        .env("HTTP_PROXY", &proxy_url)
        .env("http_proxy", &proxy_url)
        .env("NO_PROXY", "")
        .env("no_proxy", "")
        .start();
    let flags = s3_flags(&fs, "px");

    ok(&snap(&s, "save", &flags));
    assert!(
        proxied_requests(&relay, &fs) > 0,
        "the environment proxy was not used: {:?}",
        relay.request_lines()
    );

    relay.clear();
    ok(&snap(&s, "save", &with(&flags, &["--s3-proxy=none"])));
    assert_eq!(relay.request_lines(), Vec::<String>::new());

    // An explicit proxy: the environment one is a dead port this time.
    // Another node name, so its snapshot cannot take the first server's object name.
    let s2 = Server::builder(Etcd::V35)
        .node("n2")
        .env("HTTP_PROXY", &format!("http://127.0.0.1:{}", free_port()))
        .env("NO_PROXY", "")
        .start();
    relay.clear();
    ok(&snap(
        &s2,
        "save",
        &with(&flags, &[&format!("--s3-proxy={proxy_url}")]),
    ));
    assert!(
        proxied_requests(&relay, &fs) > 0,
        "--s3-proxy was not used: {:?}",
        relay.request_lines()
    );
    assert_eq!(Raw::s3s(&fs).snapshot_keys("px").len(), 3);
    assert_log_clean(&s, &[]);
    assert_log_clean(&s2, &[]);
}

/// Checklist 36: an endpoint that accepts connections and never answers is given up on after
/// `--s3-timeout`, not after minutes.
#[test]
fn s3_timeout_bounds_a_silent_endpoint() {
    // The kernel completes the handshakes; nobody ever reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = silent.local_addr().unwrap().to_string();
    let s = Server::start(Etcd::V35);
    let flags: Vec<String> = vec![
        "--s3".into(),
        format!("--s3-endpoint={endpoint}"),
        "--s3-insecure".into(),
        format!("--s3-bucket={BUCKET}"),
        format!("--s3-access-key={ACCESS_KEY}"),
        format!("--s3-secret-key={SECRET_KEY}"),
        "--s3-timeout=2s".into(),
    ];
    let started = Instant::now();
    let err = fails(&snap(&s, "save", &flags));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}: {err}");
    assert!(
        err.contains(&format!("failed to test for existence of bucket {BUCKET}")),
        "{err}"
    );
    assert_eq!(s.snapshot_files(), Vec::<String>::new());
    assert_log_clean(&s, &[]);
    drop(silent);
}

// --- 9. faults in the middle of uploads ----------------------------------------------------

/// S3 behind a relay that the test turns bad and good again: cut in the middle of an upload,
/// hanging past `--s3-timeout`, closing every connection. Each failed save keeps its local
/// snapshot, says the upload failed, records the failure, never leaves a partial object and
/// never costs the last good S3 copy (S3 retention 1 runs after every save); the first save
/// after the fault uploads again.
#[test]
fn s3_faults_mid_upload_keep_the_local_snapshot_and_the_last_good_copy() {
    use etcdsnap_testkit::fault::{Fault, FaultProxy};
    let fs = S3sFs::start(&[BUCKET]);
    let raw = Raw::s3s(&fs);
    let proxy = FaultProxy::start(fs.port);
    // Saves in a row are named for seconds in a row, at once.
    let s = Server::builder(Etcd::V35).distinct_name_seconds().start();
    // About 8 MiB, so that every upload is far longer than the cut.
    let data: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| {
            let v: Vec<u8> = (0..1 << 20)
                .map(|j: u32| (j.wrapping_mul(2654435761) >> (i + 3)) as u8)
                .collect();
            (format!("/data/{i}"), v)
        })
        .collect();
    s.put(&data);
    let mut flags = s3_flags(&fs, "flt");
    for f in &mut flags {
        if f.starts_with("--s3-endpoint=") {
            *f = format!("--s3-endpoint={}", proxy.endpoint());
        }
    }
    let flags = with(&flags, &["--s3-timeout=3s", "--s3-retention=1"]);

    let out = ok(&snap(&s, "save", &flags));
    let good = new_file(&s, &[]);
    assert_eq!(lines(&out).len(), 2, "{out}");
    assert_eq!(raw.snapshot_keys("flt"), BTreeSet::from([good.clone()]));

    let mut locals = vec![good.clone()];
    for (fault, what) in [
        (Fault::CutAfter(256 * 1024), "cut mid-upload"),
        (Fault::Hang, "hanging"),
        (Fault::Close, "closing connections"),
    ] {
        proxy.set(fault);
        let cuts = proxy.cuts();
        let started = Instant::now();
        let out = snap(&s, "save", &flags);
        let took = started.elapsed();
        // The save itself succeeds: the local snapshot is the backup that matters.
        let stdout = ok(&out);
        let local = new_file(&s, &locals);
        assert_eq!(
            lines(&stdout),
            vec![format!("Snapshot {local} saved.")],
            "{what}: {stdout}"
        );
        let err = stderr(&out);
        assert!(
            err.lines()
                .any(|l| l.starts_with("WARNING:") && l.contains("S3 upload failed")),
            "{what}: {err}"
        );
        // Bounded by the S3 timeout (3 s per operation), not waiting for ever.
        assert!(took < Duration::from_secs(40), "{what}: took {took:?}");
        if let Fault::CutAfter(_) = fault {
            assert!(proxy.cuts() > cuts, "the relay never cut an upload");
        }
        // No partial object, and the last good copy is still there.
        assert_eq!(
            raw.snapshot_keys("flt"),
            BTreeSet::from([good.clone()]),
            "{what}"
        );
        assert!(raw.exists(&format!("flt/{good}")));
        locals.push(local);
    }
    // Every local snapshot is kept, and the failures are on record.
    for l in &locals {
        assert!(s.snapshot_dir().join(l).exists(), "{l} missing");
    }
    let list: serde_json::Value =
        serde_json::from_str(&ok(&s.kubectl(&["get", "etcdsnapshotfile", "-o", "json"]))).unwrap();
    let failed: Vec<&serde_json::Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["spec"]["s3"].is_object() && r["status"]["readyToUse"] == false)
        .collect();
    assert_eq!(failed.len(), 3, "one failed S3 record per fault: {list:#}");
    for r in &failed {
        assert!(
            r["status"]["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{r:#}"
        );
    }

    // The S3 server is reachable again: the next save uploads, and retention 1 now keeps it.
    proxy.set(Fault::Pass);
    let out = ok(&snap(&s, "save", &flags));
    let last = new_file(&s, &locals);
    assert_eq!(
        lines(&out),
        vec![
            format!("Snapshot {last} saved."),
            format!("Snapshot {last} saved."),
            format!("Snapshot {good} deleted."),
        ],
        "{out}"
    );
    assert_eq!(raw.snapshot_keys("flt"), BTreeSet::from([last.clone()]));
    let body = raw.get(&format!("flt/{last}"));
    assert_eq!(
        body,
        std::fs::read(s.snapshot_dir().join(&last)).unwrap(),
        "the uploaded object differs from the local file"
    );
    assert_log_clean(&s, &[]);
}

/// `ls` answers from the listing; the records of what it listed follow in the background, as
/// K3s's `ls` never waited for them. 2,000 objects never seen before: the reconcile HEADs each
/// and writes 2,000 records, which held the answer up to its 5 s cap.
#[test]
fn ls_answers_from_the_listing_and_the_records_follow() {
    const N: usize = 2000;
    let fs = S3sFs::start(&[BUCKET]);
    // Objects written as files into s3s-fs's data dir, which is how s3s-fs stores them.
    let folder = fs.root.path().join(BUCKET).join("many");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..N {
        std::fs::write(
            folder.join(format!("etcd-snapshot-n9-{}", 1_700_000_000 + i)),
            b"not a real snapshot, only listed",
        )
        .unwrap();
    }
    let s = Server::start(Etcd::V35);
    let flags = s3_flags(&fs, "many");
    let s3_records = || {
        let out = ok(&s.kubectl(&["get", "etcdsnapshotfile", "-o", "name"]));
        out.lines().filter(|l| l.contains("/s3-")).count()
    };
    let started = Instant::now();
    let out = ok(&snap(&s, "ls", &flags));
    let first = started.elapsed();
    assert_eq!(out.lines().filter(|l| l.contains("s3://")).count(), N);
    let at_answer = s3_records();
    wait_for(
        Duration::from_secs(120),
        "the records of the listing",
        || (s3_records() == N).then_some(()),
    );
    let started = Instant::now();
    ok(&snap(&s, "ls", &flags));
    let second = started.elapsed();
    eprintln!(
        "ls of {N} S3 objects: {first:.2?} first ({at_answer} records at the answer), {second:.2?} once recorded"
    );
    // The reconcile of 2,000 new objects takes seconds: an answer that waited for it comes
    // with every record in place.
    assert!(
        at_answer < N,
        "the first ls ({first:.2?}) waited for the records"
    );
    assert_log_clean(&s, &[]);
}
