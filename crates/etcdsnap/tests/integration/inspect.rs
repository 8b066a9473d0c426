//! `etcd-snapshot status|verify|inspect` against real etcd 3.4 and 3.5 snapshots:
//! * oracles: `status -w json` equals `etcdutl snapshot status -w json` (3.5) and `etcdctl
//!   snapshot status -w json` (3.4) on a history with sub-revisions, overwrites, deletions, a
//!   lease, large values and a compaction; `inspect -o json` equals `etcdctl get "" --prefix -w
//!   json --rev R` of the live cluster at the latest and an older revision;
//! * Kubernetes objects written as the API server writes them (protobuf Secret, ConfigMap,
//!   Deployment, a JSON object, an encrypted value) and decoded back, with the filters;
//! * corruption named by `verify` (truncation, bit flips in meta, branch and leaf pages, a
//!   dangling page id), exit code 1, no panic;
//! * `--diff`, name lookup in the snapshot dir, and S3 (s3s-fs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::*;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("bad base64 {s:?}: {e}"))
}

/// `etcdsnap etcd-snapshot <args>` with no config file and `TMPDIR` inside `dir`.
fn cli(dir: &Path, args: &[&str]) -> Output {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = Command::new(etcdsnap_bin());
    cmd.arg("etcd-snapshot")
        .args(args)
        .env("ETCDSNAP_CONFIG_FILE", empty_config(dir))
        .env("TMPDIR", &tmp);
    without_aws_env(&mut cmd);
    cmd.output().unwrap()
}

/// Asserts the command failed with exit code 1 and did not panic; returns stderr.
#[track_caller]
fn fails_1(o: &Output) -> String {
    let err = fails(o);
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn json(o: &Output) -> Value {
    let out = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// `etcdctl snapshot save` of `ep` to `path`.
fn etcdctl_save(v: Etcd, ep: &str, path: &Path) {
    ok(&Command::new(v.etcdctl())
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "save"])
        .arg(path)
        .arg(format!("--endpoints={ep}"))
        .output()
        .unwrap());
}

/// What etcd's own tool says about a snapshot: etcdutl for 3.5, etcdctl for 3.4.
fn etcd_status(v: Etcd, path: &Path) -> Value {
    let mut cmd = match v {
        Etcd::V35 => Command::new(env_bin("ETCDUTL35_BIN")),
        Etcd::V34 => Command::new(v.etcdctl()),
    };
    let o = cmd
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(path)
        .output()
        .unwrap();
    json(&o)
}

/// `etcdctl get "" --prefix -w json [--rev R]` of the live cluster.
fn etcdctl_get(v: Etcd, ep: &str, rev: Option<i64>) -> Value {
    let mut cmd = Command::new(v.etcdctl());
    cmd.env("ETCDCTL_API", "3")
        .args(["get", "", "--prefix", "-w", "json"])
        .arg(format!("--endpoints={ep}"));
    if let Some(r) = rev {
        cmd.arg(format!("--rev={r}"));
    }
    json(&cmd.output().unwrap())
}

/// Deterministic bytes that are neither UTF-8 nor JSON.
fn binary(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    let mut block = Sha256::digest(seed.as_bytes()).to_vec();
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    out.truncate(len);
    out
}

/// A key as etcd's JSON gives it (base64) → its bytes, and each kv of an etcdctl answer as
/// (create, mod, version, lease, value).
type Kvs = BTreeMap<Vec<u8>, (i64, i64, i64, i64, Vec<u8>)>;

fn etcdctl_kvs(v: &Value) -> Kvs {
    let n = |kv: &Value, f: &str| kv.get(f).and_then(Value::as_i64).unwrap_or(0);
    v["kvs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            (
                unb64(kv["key"].as_str().unwrap()),
                (
                    n(kv, "create_revision"),
                    n(kv, "mod_revision"),
                    n(kv, "version"),
                    n(kv, "lease"),
                    kv.get("value")
                        .and_then(Value::as_str)
                        .map(unb64)
                        .unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// Our `inspect -o json` back to bytes: text is the value, binary is base64; a JSON value
/// is compared by its parsed form, so it is written back compactly and compared parsed too.
fn our_kvs(v: &Value) -> Kvs {
    v["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            let value = match kv["value_type"].as_str().unwrap() {
                "text" => kv["value"].as_str().unwrap().as_bytes().to_vec(),
                "binary" => unb64(kv["value"].as_str().unwrap()),
                "empty" => Vec::new(),
                "json" => serde_json::to_vec(&kv["value"]).unwrap(),
                other => panic!("unexpected value type {other} in the fixture: {kv}"),
            };
            let n = |f: &str| kv[f].as_i64().unwrap();
            (
                kv["key"].as_str().unwrap().as_bytes().to_vec(),
                (
                    n("create_revision"),
                    n("mod_revision"),
                    n("version"),
                    n("lease"),
                    value,
                ),
            )
        })
        .collect()
}

/// JSON values of etcd compared parsed, as `our_kvs` renders them.
fn normalise(mut kvs: Kvs) -> Kvs {
    for (_, (_, _, _, _, v)) in kvs.iter_mut() {
        if matches!(v.first(), Some(b'{' | b'['))
            && let Ok(j) = serde_json::from_slice::<Value>(v)
        {
            *v = serde_json::to_vec(&j).unwrap();
        }
    }
    kvs
}

struct History {
    /// A revision between the compaction and the latest, where etcd answered too.
    older: i64,
    compacted: i64,
    latest: i64,
}

/// A history with transactions (sub-revisions), overwrites, deletions, a lease, values of
/// 300 KiB and 1.2 MiB, a JSON value, and a compaction.
fn write_history(ep: &str) -> History {
    rt().block_on(async {
        use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
        let mut c = etcd_client(ep, None).await;
        for batch in 0..6 {
            let ops: Vec<TxnOp> = (0..50)
                .map(|i| {
                    TxnOp::put(
                        format!("/k/{batch}/{i:03}"),
                        format!("value {batch}-{i} {}", "x".repeat(i * 7)),
                        None,
                    )
                })
                .collect();
            c.txn(
                Txn::new()
                    .when(vec![Compare::version("/nothing", CompareOp::Equal, 0)])
                    .and_then(ops),
            )
            .await
            .unwrap();
        }
        let mut rev = 0;
        for i in 0..40 {
            let r = c
                .put(format!("/k/1/{i:03}"), format!("overwritten {i}"), None)
                .await
                .unwrap();
            rev = r.header().unwrap().revision();
        }
        let compacted = rev;
        c.delete(
            "/k/2/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
        for i in 0..10 {
            c.delete(format!("/k/3/{i:03}"), None).await.unwrap();
        }
        let lease = c.lease_grant(3600, None).await.unwrap().id();
        for k in ["/lease/a", "/lease/b"] {
            c.put(k, "leased", Some(PutOptions::new().with_lease(lease)))
                .await
                .unwrap();
        }
        c.put("/big/text", "t".repeat(300 * 1024), None)
            .await
            .unwrap();
        c.put("/big/binary", binary("big", 1_200_000), None)
            .await
            .unwrap();
        c.put("/bin/small", binary("small", 100), None)
            .await
            .unwrap();
        c.put("/json/doc", r#"{"b": [1, 2], "a": {"x": "y"}}"#, None)
            .await
            .unwrap();
        let older = c
            .put("/empty", "", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        c.compact(
            compacted,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .unwrap();
        for i in 0..20 {
            c.put(format!("/k/4/{i:03}"), format!("later {i}"), None)
                .await
                .unwrap();
        }
        c.delete("/k/0/000", None).await.unwrap();
        let latest = c
            .put("/big/text", "u".repeat(310 * 1024), None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        History {
            older,
            compacted,
            latest,
        }
    })
}

both!(status_and_inspect_match_etcd, oracle);
fn oracle(v: Etcd) {
    let etcd = PlainEtcd::start(v, None, "m1", None, false);
    let ep = etcd.endpoint();
    let h = write_history(&ep);
    let live_latest = etcdctl_get(v, &ep, None);
    let live_older = etcdctl_get(v, &ep, Some(h.older));
    let work = tempfile::tempdir().unwrap();
    let name = "on-demand-m1-1730308816";
    let snap = work.path().join(name);
    etcdctl_save(v, &ep, &snap);
    drop(etcd);
    let path = snap.to_str().unwrap();

    // status: etcd's four figures, and ours.
    let theirs = etcd_status(v, &snap);
    let ours = json(&cli(work.path(), &["status", "-w", "json", path]));
    for f in ["hash", "revision", "totalKey", "totalSize"] {
        assert_eq!(
            ours[f], theirs[f],
            "etcd {v:?}: {f}: ours {ours}, etcd {theirs}"
        );
    }
    assert_eq!(ours["revision"], h.latest);
    assert_eq!(ours["trailer"], "valid");
    assert_eq!(ours["node"], "m1");
    assert_eq!(ours["createdAt"], "2024-10-30T17:20:16Z");
    assert_eq!(ours["compactedRevision"], h.compacted);
    assert_eq!(
        ours["fileSize"].as_u64().unwrap(),
        std::fs::metadata(&snap).unwrap().len()
    );
    let hex = hex_sha(&std::fs::read(&snap).unwrap());
    assert_eq!(ours["sha256"], hex);
    let table = ok(&cli(work.path(), &["status", path]));
    assert!(
        table.contains(&format!("{:x}", theirs["hash"].as_u64().unwrap())),
        "{table}"
    );
    assert!(table.contains("valid (sha256 "), "{table}");
    let skipped = json(&cli(
        work.path(),
        &["status", "-w", "json", "--skip-hash-check", path],
    ));
    assert_eq!(skipped["trailer"], "unchecked");
    assert_eq!(skipped["hash"], theirs["hash"]);

    // A zip of the same snapshot: the same figures, and its own size.
    let zip = work.path().join(format!("{name}.zip"));
    write_zip(&snap, &zip);
    let z = json(&cli(
        work.path(),
        &["status", "-w", "json", zip.to_str().unwrap()],
    ));
    for f in ["hash", "revision", "totalKey", "totalSize", "sha256"] {
        assert_eq!(z[f], ours[f], "zip: {f}");
    }
    assert_eq!(
        z["compressedSize"].as_u64().unwrap(),
        std::fs::metadata(&zip).unwrap().len()
    );
    assert_eq!(z["uncompressedSize"], ours["fileSize"]);
    assert!(
        list_files(&work.path().join("tmp")).is_empty(),
        "the decompressed copy is removed"
    );

    // The same snapshot made into a .zst by the zstd command: the same figures again, and
    // `verify` and `inspect --keys-only` read it.
    let zst = work.path().join(format!("{name}.zst"));
    ok(&Command::new("zstd")
        .args(["-q", "-3", "-o"])
        .arg(&zst)
        .arg(&snap)
        .output()
        .expect("the zstd command (apt-get install zstd)"));
    let zst_path = zst.to_str().unwrap();
    let z = json(&cli(work.path(), &["status", "-w", "json", zst_path]));
    for f in ["hash", "revision", "totalKey", "totalSize", "sha256"] {
        assert_eq!(z[f], ours[f], "zst: {f}");
    }
    assert_eq!(z["trailer"], "valid");
    assert_eq!(
        z["compressedSize"].as_u64().unwrap(),
        std::fs::metadata(&zst).unwrap().len()
    );
    assert_eq!(z["uncompressedSize"], ours["fileSize"]);
    ok(&cli(work.path(), &["verify", zst_path]));
    let keys = ok(&cli(work.path(), &["inspect", "--keys-only", zst_path]));
    assert_eq!(
        keys,
        ok(&cli(work.path(), &["inspect", "--keys-only", path])),
        "the keys of the .zst and of the raw file"
    );
    assert!(
        list_files(&work.path().join("tmp")).is_empty(),
        "the decompressed copy of the .zst is removed"
    );

    // inspect at the latest and an older revision, against the live cluster.
    for (rev, live) in [(None, &live_latest), (Some(h.older), &live_older)] {
        let mut args = vec!["inspect", "-o", "json", path];
        let r;
        if let Some(x) = rev {
            r = format!("--rev={x}");
            args.push(&r);
        }
        let got = json(&cli(work.path(), &args));
        let expect = normalise(etcdctl_kvs(live));
        let have = our_kvs(&got);
        assert_eq!(
            have.len(),
            expect.len(),
            "etcd {v:?} rev {rev:?}: key count"
        );
        assert_eq!(have, expect, "etcd {v:?} rev {rev:?}");
        assert_eq!(got["count"], live["count"]);
        assert_eq!(got["header"]["revision"], rev.unwrap_or(h.latest));
        assert_eq!(got["header"]["compacted_revision"], h.compacted);
        // The zip lists the same.
        if rev.is_none() {
            let zargs = ["inspect", "-o", "json", zip.to_str().unwrap()];
            assert_eq!(our_kvs(&json(&cli(work.path(), &zargs))), have);
        }
    }
    // The fixture has what it claims.
    let latest = etcdctl_kvs(&live_latest);
    assert_eq!(
        latest.values().filter(|x| x.3 != 0).count(),
        2,
        "leased keys"
    );
    assert!(latest.values().any(|x| x.4.len() > 1_000_000));
    assert!(!latest.contains_key(&b"/k/0/000"[..]) && !latest.contains_key(&b"/k/2/001"[..]));

    // keys-only: the same keys and revisions, no values.
    let ko = json(&cli(
        work.path(),
        &["inspect", "-o", "json", "--keys-only", path],
    ));
    let kvs = ko["kvs"].as_array().unwrap();
    assert_eq!(kvs.len(), latest.len());
    assert!(
        kvs.iter()
            .all(|kv| kv.get("value").is_none() && kv.get("value_type").is_none())
    );
    let table = ok(&cli(
        work.path(),
        &["inspect", "--keys-only", "--prefix", "/lease/", path],
    ));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0]
            .split_whitespace()
            .eq(["KEY", "CREATE", "MOD", "VERSION", "LEASE"])
    );
    let lease_hex = format!("{:016x}", latest[&b"/lease/a"[..]].3 as u64);
    assert!(
        lines[1].starts_with("/lease/a ") && lines[1].ends_with(&lease_hex),
        "{table}"
    );

    // Below the compaction: a clear error.
    let err = fails_1(&cli(
        work.path(),
        &["inspect", path, &format!("--rev={}", h.compacted - 1)],
    ));
    assert!(
        err.contains("compacted") && err.contains(&h.compacted.to_string()),
        "{err}"
    );
    let err = fails_1(&cli(
        work.path(),
        &["inspect", path, &format!("--rev={}", h.latest + 5)],
    ));
    assert!(err.contains("future revision"), "{err}");

    // verify
    let out = ok(&cli(work.path(), &["verify", path]));
    assert!(
        out.starts_with(&format!("OK {name}: SHA-256 trailer matches")),
        "{out}"
    );
}

fn hex_sha(snapshot: &[u8]) -> String {
    Sha256::digest(&snapshot[..snapshot.len() - 32])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_zip(raw: &Path, zip: &Path) {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::fs::File::create(zip).unwrap());
    let name = raw.file_name().unwrap().to_str().unwrap();
    z.start_file(
        name,
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated),
    )
    .unwrap();
    z.write_all(&std::fs::read(raw).unwrap()).unwrap();
    z.finish().unwrap();
}

// ---- Kubernetes objects, encoded as the API server stores them ----

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A length-delimited field.
fn ld(n: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint((n << 3) | 2, &mut out);
    varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// A varint field.
fn vf(n: u64, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(n << 3, &mut out);
    varint(v, &mut out);
    out
}

/// A map entry (a message of key = 1, value = 2).
fn entry(n: u64, k: &[u8], v: &[u8]) -> Vec<u8> {
    ld(n, &[ld(1, k), ld(2, v)].concat())
}

fn object_meta(name: &str, ns: &str, uid: &str, secs: u64) -> Vec<u8> {
    [
        ld(1, name.as_bytes()),
        ld(3, ns.as_bytes()),
        ld(5, uid.as_bytes()),
        vf(7, 3),
        ld(8, &[vf(1, secs), vf(2, 0)].concat()),
        entry(11, b"app", b"web"),
        entry(12, b"note", b"hello"),
        ld(14, b"example.com/guard"),
        // managedFields (17), skipped by the reader.
        ld(17, &ld(1, b"kubectl")),
    ]
    .concat()
}

/// `k8s\0` + runtime.Unknown{typeMeta, raw, contentEncoding, contentType}.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    [
        b"k8s\0".to_vec(),
        ld(
            1,
            &[ld(1, api_version.as_bytes()), ld(2, kind.as_bytes())].concat(),
        ),
        ld(2, raw),
        ld(3, b""),
        ld(4, b""),
    ]
    .concat()
}

const SECRET_BYTES: &[u8] = b"s3cr3t\x00\xff";

fn proto_secret() -> Vec<u8> {
    let raw = [
        ld(
            1,
            &object_meta("db-pass", "default", "uid-secret", 1_704_164_645),
        ),
        entry(2, b"password", SECRET_BYTES),
        entry(2, b"user", b"admin"),
        ld(3, b"Opaque"),
    ]
    .concat();
    envelope("v1", "Secret", &raw)
}

fn proto_configmap() -> Vec<u8> {
    let raw = [
        ld(
            1,
            &object_meta("settings", "kube-system", "uid-cm", 1_704_164_646),
        ),
        entry(2, b"config.yaml", b"a: 1\n"),
        entry(3, b"blob", &[0, 1, 2, 255]),
    ]
    .concat();
    envelope("v1", "ConfigMap", &raw)
}

fn proto_deployment() -> Vec<u8> {
    let spec = [vf(1, 3), ld(2, &ld(1, &entry(1, b"app", b"web")))].concat();
    let raw = [
        ld(
            1,
            &object_meta("web", "default", "uid-deploy", 1_704_164_647),
        ),
        ld(2, &spec),
        ld(3, &vf(1, 2)),
    ]
    .concat();
    envelope("apps/v1", "Deployment", &raw)
}

const JSON_CM: &str = r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"plain","namespace":"default","uid":"uid-json","creationTimestamp":"2024-01-02T03:04:05Z"},"data":{"k":"v"}}"#;

fn encrypted() -> Vec<u8> {
    let mut v = b"k8s:enc:aescbc:v1:key1:".to_vec();
    v.extend(binary("cipher", 64));
    v
}

#[test]
fn kubernetes_objects_are_decoded() {
    let s = Server::start(Etcd::V35);
    s.put(&[
        ("/registry/secrets/default/db-pass".into(), proto_secret()),
        ("/registry/secrets/default/sealed".into(), encrypted()),
        (
            "/registry/configmaps/kube-system/settings".into(),
            proto_configmap(),
        ),
        ("/registry/configmaps/default/plain".into(), JSON_CM.into()),
        (
            "/registry/deployments/default/web".into(),
            proto_deployment(),
        ),
        ("/registry/broken/x".into(), b"k8s\0\x12\xffjunk".to_vec()),
        ("/plain/text".into(), b"hello world".to_vec()),
        ("/plain/bin".into(), binary("plain", 40)),
    ]);
    ok(&s.cli(&["save", "--name", "k8s"]));
    let name = s
        .snapshot_files()
        .into_iter()
        .find(|f| f.starts_with("k8s-"))
        .unwrap();
    // A bare name is found in <data-dir>/server/db/snapshots (the harness passes -d).
    let all = json(&s.cli(&["inspect", "-o", "json", &name]));
    let by_key: BTreeMap<String, Value> = all["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv.clone()))
        .collect();
    let get = |k: &str| by_key.get(k).unwrap_or_else(|| panic!("no {k} in {all}"));

    let secret = get("/registry/secrets/default/db-pass");
    assert_eq!(secret["value_type"], "kubernetes");
    assert_eq!(secret["encoding"], "protobuf");
    let o = &secret["value"];
    assert_eq!(o["apiVersion"], "v1");
    assert_eq!(o["kind"], "Secret");
    assert_eq!(o["type"], "Opaque");
    assert_eq!(o["data"]["password"], b64(SECRET_BYTES));
    assert_eq!(o["data"]["user"], b64(b"admin"));
    let m = &o["metadata"];
    assert_eq!(m["name"], "db-pass");
    assert_eq!(m["namespace"], "default");
    assert_eq!(m["uid"], "uid-secret");
    assert_eq!(m["generation"], 3);
    assert_eq!(m["creationTimestamp"], "2024-01-02T03:04:05Z");
    assert_eq!(m["labels"]["app"], "web");
    assert_eq!(m["annotations"]["note"], "hello");
    assert_eq!(m["finalizers"][0], "example.com/guard");
    assert!(m.get("managedFields").is_none());
    assert!(secret.get("note").is_none(), "{secret}");

    let cm = &get("/registry/configmaps/kube-system/settings")["value"];
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["data"]["config.yaml"], "a: 1\n");
    assert_eq!(cm["binaryData"]["blob"], b64(&[0, 1, 2, 255]));
    assert_eq!(cm["metadata"]["namespace"], "kube-system");

    let dep = get("/registry/deployments/default/web");
    assert_eq!(dep["value"]["apiVersion"], "apps/v1");
    assert_eq!(dep["value"]["kind"], "Deployment");
    assert_eq!(dep["value"]["metadata"]["uid"], "uid-deploy");
    assert!(dep["value"].get("spec").is_none());
    let note = dep["note"].as_str().unwrap();
    assert!(
        note.contains("Deployment") && note.contains("protobuf"),
        "{note}"
    );

    let plain = get("/registry/configmaps/default/plain");
    assert_eq!(plain["encoding"], "json");
    assert_eq!(
        plain["value"],
        serde_json::from_str::<Value>(JSON_CM).unwrap()
    );

    let sealed = get("/registry/secrets/default/sealed");
    assert_eq!(sealed["value_type"], "encrypted");
    assert_eq!(sealed["encryption"]["provider"], "aescbc");
    assert_eq!(sealed["encryption"]["version"], "v1");
    assert_eq!(sealed["encryption"]["key"], "key1");
    assert!(sealed.get("value").is_none(), "{sealed}");

    let broken = get("/registry/broken/x");
    assert_eq!(broken["value_type"], "binary");
    assert!(broken["note"].as_str().unwrap().contains("protobuf"));
    assert_eq!(get("/plain/text")["value"], "hello world");
    assert_eq!(get("/plain/bin")["value"], b64(&binary("plain", 40)));

    // The table summarises, and never shows a secret's data.
    let table = ok(&s.cli(&["inspect", &name, "--prefix", "/registry/"]));
    let line = |k: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{k} ")))
            .unwrap_or_else(|| panic!("no {k} in\n{table}"))
            .to_string()
    };
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["KEY", "CREATE", "MOD", "VERSION", "LEASE", "VALUE"])
    );
    let l = line("/registry/secrets/default/db-pass");
    assert!(
        l.contains("v1/Secret default/db-pass (protobuf, ")
            && l.contains("type=Opaque keys=password,user"),
        "{l}"
    );
    assert!(
        !table.contains(&b64(SECRET_BYTES)) && !table.contains("admin"),
        "{table}"
    );
    assert!(
        line("/registry/secrets/default/sealed")
            .contains("encrypted at rest (aescbc v1, key key1)")
    );
    assert!(
        line("/registry/configmaps/default/plain").contains("v1/ConfigMap default/plain (json, ")
    );
    assert!(
        line("/registry/deployments/default/web")
            .contains("apps/v1/Deployment default/web (protobuf, ")
    );

    // Filters: kind (decoded, or the key layout for the encrypted Secret), namespace.
    let keys = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["inspect", "-o", "json", name.as_str()];
        a.extend_from_slice(args);
        json(&s.cli(&a))["kvs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| kv["key"].as_str().unwrap().to_string())
            .collect()
    };
    let secrets = [
        "/registry/secrets/default/db-pass",
        "/registry/secrets/default/sealed",
    ];
    assert_eq!(keys(&["--kind", "Secret"]), secrets);
    assert_eq!(keys(&["--kind", "secrets", "--keys-only"]), secrets);
    assert_eq!(
        keys(&["--namespace", "kube-system"]),
        ["/registry/configmaps/kube-system/settings"]
    );
    assert_eq!(
        keys(&["--kind", "ConfigMap", "-n", "default"]),
        ["/registry/configmaps/default/plain"]
    );
    assert_eq!(
        keys(&["--kind", "Deployment"]),
        ["/registry/deployments/default/web"]
    );
    // A kind that matches nothing says why, not only "0 keys".
    let none = s.cli(&["inspect", name.as_str(), "--kind", "Bogus"]);
    let said = stderr(&none);
    assert!(said.contains("0 keys at revision"), "{said}");
    assert!(
        said.contains("no object of kind or resource \"Bogus\" is in this snapshot"),
        "{said}"
    );

    // YAML carries the same entries.
    let yaml = ok(&s.cli(&[
        "inspect",
        "-o",
        "yaml",
        &name,
        "--prefix",
        "/registry/secrets/",
    ]));
    let y: Value = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"));
    assert_eq!(y["count"], 2);
    assert_eq!(y["kvs"][0]["value"]["data"]["password"], b64(SECRET_BYTES));
    assert_eq!(y["kvs"][1]["encryption"]["key"], "key1");

    // An unknown name: the message says where it looked.
    let err = fails_1(&s.cli(&["inspect", "nope-n1-1"]));
    assert!(
        err.contains("not found") && err.contains("server/db/snapshots"),
        "{err}"
    );
    let err = fails_1(&s.cli(&["inspect", &name, "-o", "xml"]));
    assert!(err.contains("invalid output format"), "{err}");
}

// ---- corruption ----

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The page size and the root page of bucket `key` (a branch) with its first child (a leaf),
/// read from the bytes the way bbolt lays them out.
fn key_pages(bytes: &[u8]) -> (usize, u64, u64) {
    let ps = u32::from_le_bytes(bytes[24..28].try_into().unwrap()) as usize;
    // Meta with the higher txid: its root bucket page.
    let meta = |i: usize| {
        (
            u64_at(bytes, i * ps + 16 + 48),
            u64_at(bytes, i * ps + 16 + 16),
        )
    };
    let root = meta(0).max(meta(1)).1 as usize;
    // Root leaf: find element "key" (flags u32, pos u32, ksize u32, vsize u32).
    let count = u16::from_le_bytes(bytes[root * ps + 10..root * ps + 12].try_into().unwrap());
    for i in 0..count as usize {
        let e = root * ps + 16 + 16 * i;
        let pos = u32::from_le_bytes(bytes[e + 4..e + 8].try_into().unwrap()) as usize;
        let ksize = u32::from_le_bytes(bytes[e + 8..e + 12].try_into().unwrap()) as usize;
        if &bytes[e + pos..e + pos + ksize] == b"key" {
            let branch = u64_at(bytes, e + pos + ksize);
            let flags = u16::from_le_bytes(
                bytes[branch as usize * ps + 8..branch as usize * ps + 10]
                    .try_into()
                    .unwrap(),
            );
            assert_eq!(flags, 0x01, "bucket key's root is a branch page");
            let child = u64_at(bytes, branch as usize * ps + 16 + 8);
            return (ps, branch, child);
        }
    }
    panic!("no bucket key");
}

static CASE: AtomicU64 = AtomicU64::new(0);

fn write_case(dir: &Path, bytes: &[u8]) -> PathBuf {
    let p = dir.join(format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn verify_names_corruption() {
    let etcd = PlainEtcd::start(Etcd::V35, None, "m1", None, false);
    let kvs: Vec<(String, Vec<u8>)> = (0..400)
        .map(|i| {
            (
                format!("/c/{i:04}"),
                format!("value {i} {}", "y".repeat(80)).into_bytes(),
            )
        })
        .collect();
    put_keys(&etcd.endpoint(), None, &kvs);
    let work = tempfile::tempdir().unwrap();
    let snap = work.path().join("etcd-snapshot-m1-1730308816");
    etcdctl_save(Etcd::V35, &etcd.endpoint(), &snap);
    let orig = std::fs::read(&snap).unwrap();
    let (ps, branch, leaf) = key_pages(&orig);
    let (b, l) = (branch as usize * ps, leaf as usize * ps);
    let data_len = orig.len() - 32;
    assert!(ok(&cli(work.path(), &["verify", snap.to_str().unwrap()])).starts_with("OK "));

    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit, Vec<String>)> = vec![
        (
            "truncated in meta 0",
            Box::new(|v| v.truncate(50)),
            vec!["truncated".into()],
        ),
        (
            "truncated in meta 1",
            Box::new(move |v| v.truncate(ps + 100)),
            vec!["truncated".into()],
        ),
        (
            "truncated halfway",
            Box::new(move |v| v.truncate(data_len / 2)),
            vec!["truncated".into()],
        ),
        (
            "truncated at a page boundary",
            Box::new(move |v| v.truncate(data_len / 2 / ps * ps)),
            vec!["truncated".into()],
        ),
        (
            "trailer and last page cut",
            Box::new(move |v| v.truncate(data_len - ps)),
            // Caught by the high-water mark, or (when the last page lies past it) as a file
            // without a trailer: both messages say truncated.
            vec!["truncated".into()],
        ),
        (
            "trailer cut",
            Box::new(move |v| v.truncate(data_len + 10)),
            vec!["trailer".into()],
        ),
        (
            "meta 0 checksum",
            Box::new(|v| v[16 + 40] ^= 0x01),
            vec!["meta page 0".into(), "checksum".into()],
        ),
        (
            "both metas",
            Box::new(move |v| {
                v[16 + 40] ^= 0x01;
                v[ps + 16 + 40] ^= 0x01;
            }),
            vec!["no valid meta page".into()],
        ),
        (
            "branch page type",
            Box::new(move |v| v[b + 8] = 0x20),
            vec![format!("page {branch} "), "branch or leaf".into()],
        ),
        (
            "branch page id",
            Box::new(move |v| v[b] ^= 0x01),
            vec![format!(
                "page {branch}: its header says it is page {}",
                branch ^ 1
            )],
        ),
        (
            "dangling page id",
            Box::new(move |v| {
                v[b + 16 + 16 + 8..b + 16 + 16 + 16].copy_from_slice(&9_999_999u64.to_le_bytes())
            }),
            vec![
                format!("page {branch} element 1 points to page 9999999"),
                "dangling".into(),
            ],
        ),
        (
            "leaf element count",
            Box::new(move |v| v[l + 10..l + 12].copy_from_slice(&0xFFF0u16.to_le_bytes())),
            vec![format!("page {leaf}"), "past the end of the page".into()],
        ),
        (
            "leaf key bytes",
            Box::new(move |v| {
                // The first element's key: its 9th byte is the '_' of a revision.
                let pos =
                    u32::from_le_bytes(v[l + 16 + 4..l + 16 + 8].try_into().unwrap()) as usize;
                v[l + 16 + pos + 8] = b'~';
            }),
            vec![format!("page {leaf} element 0"), "revision".into()],
        ),
        (
            "leaf value byte",
            Box::new(move |v| v[l + ps - 3] ^= 0x40),
            vec!["checksum mismatch".into()],
        ),
    ];
    for (what, edit, expect) in cases {
        let mut bytes = orig.clone();
        edit(&mut bytes);
        let p = write_case(work.path(), &bytes);
        let err = fails_1(&cli(work.path(), &["verify", p.to_str().unwrap()]));
        for e in &expect {
            assert!(err.contains(e.as_str()), "{what}: expected {e:?} in: {err}");
        }
        // status and inspect fail or succeed, but never panic.
        for args in [
            vec!["status"],
            vec!["inspect", "--keys-only"],
            vec!["inspect", "-o", "json"],
        ] {
            let mut a = args.clone();
            a.push(p.to_str().unwrap());
            let o = cli(work.path(), &a);
            let err = stderr(&o);
            assert!(!err.contains("panicked"), "{what}: {args:?}: {err}");
            assert!(
                o.status.code().is_some_and(|c| c <= 1),
                "{what}: {args:?}: {o:?}"
            );
        }
    }
    // A bit flip in a value: the structure is fine, the trailer is not; status says so.
    let mut bytes = orig.clone();
    bytes[l + ps - 3] ^= 0x40;
    let p = write_case(work.path(), &bytes);
    let o = cli(work.path(), &["status", "-w", "json", p.to_str().unwrap()]);
    assert_eq!(json(&o)["trailer"], "invalid");
    assert!(stderr(&o).contains("WARNING"), "{}", stderr(&o));

    // A raw database file without trailer (etcd's own member/snap/db) verifies on structure.
    drop(etcd);
    let p = write_case(work.path(), &orig[..data_len]);
    let err = fails_1(&cli(work.path(), &["verify", p.to_str().unwrap()]));
    assert!(err.contains("--skip-hash-check"), "{err}");
    let out = ok(&cli(
        work.path(),
        &["verify", "--skip-hash-check", p.to_str().unwrap()],
    ));
    assert!(
        out.contains("trailer not checked") && out.contains("structure verified"),
        "{out}"
    );
}

// ---- diff, S3 ----

#[test]
fn diff_lists_added_removed_and_changed_keys() {
    let etcd = PlainEtcd::start(Etcd::V35, None, "m1", None, false);
    let ep = etcd.endpoint();
    let kv = |k: &str, v: &[u8]| (k.to_string(), v.to_vec());
    put_keys(
        &ep,
        None,
        &[
            kv("/a", b"same"),
            kv("/b", b"to be removed"),
            kv("/c", b"old"),
            kv("/registry/configmaps/default/plain", JSON_CM.as_bytes()),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let one = work.path().join("one");
    etcdctl_save(Etcd::V35, &ep, &one);
    rt().block_on(async {
        let mut c = etcd_client(&ep, None).await;
        c.delete("/b", None).await.unwrap();
    });
    let changed_cm = JSON_CM.replace(r#""k":"v""#, r#""k":"w""#);
    put_keys(
        &ep,
        None,
        &[
            kv("/a", b"same"),
            kv("/c", b"new"),
            kv("/d", b"added"),
            kv("/registry/configmaps/default/plain", changed_cm.as_bytes()),
        ],
    );
    let two = work.path().join("two");
    etcdctl_save(Etcd::V35, &ep, &two);
    let (p1, p2) = (one.to_str().unwrap(), two.to_str().unwrap());
    let r = json(&cli(
        work.path(),
        &["inspect", p1, "--diff", p2, "-o", "json"],
    ));
    assert_eq!(
        (
            r["added"].as_u64(),
            r["removed"].as_u64(),
            r["changed"].as_u64()
        ),
        (Some(1), Some(1), Some(2)),
        "{r}"
    );
    let changes: Vec<(String, String)> = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().into(),
                c["change"].as_str().unwrap().into(),
            )
        })
        .collect();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        changes,
        [
            s("/b", "removed"),
            s("/c", "changed"),
            s("/d", "added"),
            s("/registry/configmaps/default/plain", "changed"),
        ]
    );
    let cm = &r["changes"][3];
    assert_eq!(cm["fields"], serde_json::json!(["data.k"]));
    assert!(cm["old"]["mod_revision"].as_i64() < cm["new"]["mod_revision"].as_i64());
    let table = ok(&cli(work.path(), &["inspect", p1, "--diff", p2]));
    assert!(
        table.contains("1 added, 1 removed, 2 changed from one"),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("changed")
            && l.contains("/registry/configmaps/default/plain")
            && l.ends_with("data.k")),
        "{table}"
    );
    let only = json(&cli(
        work.path(),
        &[
            "inspect",
            p1,
            "--diff",
            p2,
            "-o",
            "json",
            "--prefix",
            "/registry/",
        ],
    ));
    assert_eq!(only["changes"].as_array().unwrap().len(), 1);
    let err = fails_1(&cli(
        work.path(),
        &["inspect", p1, "--diff", p2, "--rev", "2"],
    ));
    assert!(err.contains("--rev"), "{err}");
}

#[test]
fn status_of_an_s3_object() {
    use etcdsnap_testkit::s3::{ACCESS_KEY, S3sFs, SECRET_KEY};
    let etcd = PlainEtcd::start(Etcd::V35, None, "m1", None, false);
    put_keys(&etcd.endpoint(), None, &[("/x".into(), b"y".to_vec())]);
    let work = tempfile::tempdir().unwrap();
    let name = "etcd-snapshot-m7-1730308816";
    let snap = work.path().join(name);
    etcdctl_save(Etcd::V35, &etcd.endpoint(), &snap);
    let zip = work.path().join(format!("{name}.zip"));
    write_zip(&snap, &zip);
    let fs = S3sFs::start(&["inspectbucket"]);
    let folder = fs.root.path().join("inspectbucket/snaps");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(&snap, folder.join(name)).unwrap();
    std::fs::copy(&zip, folder.join(format!("{name}.zip"))).unwrap();
    let ep = format!("--s3-endpoint={}", fs.endpoint());
    let flags = [
        "--s3",
        &ep,
        "--s3-insecure",
        "--s3-bucket=inspectbucket",
        "--s3-folder=snaps",
        &format!("--s3-access-key={ACCESS_KEY}"),
        &format!("--s3-secret-key={SECRET_KEY}"),
    ]
    .map(|s| s.to_string());
    let expect = etcd_status(Etcd::V35, &snap);
    for object in [name.to_string(), format!("{name}.zip")] {
        let mut args = vec!["status", "-w", "json", object.as_str()];
        args.extend(flags.iter().map(String::as_str));
        let got = json(&cli(work.path(), &args));
        for f in ["hash", "revision", "totalKey", "totalSize"] {
            assert_eq!(got[f], expect[f], "{object}: {f}");
        }
        assert_eq!(
            got["location"],
            format!("s3://inspectbucket/snaps/{object}")
        );
        assert_eq!(got["trailer"], "valid");
        assert_eq!(got["node"], "m7");
        assert!(
            list_files(&work.path().join("tmp")).is_empty(),
            "the download is removed: {:?}",
            list_files(&work.path().join("tmp"))
        );
    }
    let mut args = vec!["status", "missing-n1-1"];
    args.extend(flags.iter().map(String::as_str));
    let err = fails_1(&cli(work.path(), &args));
    assert!(err.contains("not found"), "{err}");
    // The same name, looked up in --dir without --s3.
    let got = json(&cli(
        work.path(),
        &[
            "status",
            "-w",
            "json",
            "--dir",
            work.path().to_str().unwrap(),
            name,
        ],
    ));
    assert_eq!(got["hash"], expect["hash"]);
}

/// Item 5: a raw snapshot's revision and key count (etcd's own figures for the file) reach its
/// ETCDSnapshotFile status after the save, survive the reconcile that rebuilds records from
/// files, and show in `ls -o wide`; a compressed one shows `-`.
#[test]
fn saved_snapshots_carry_their_status_figures_in_records_and_ls_wide() {
    // The raw and the compressed snapshot are named for two seconds, at once.
    let s = Server::builder(Etcd::V35).distinct_name_seconds().start();
    s.put(
        &(0..50)
            .map(|i| (format!("/fig/{i}"), format!("v{i}").into_bytes()))
            .collect::<Vec<_>>(),
    );
    let raw = ok(&s.cli(&["save"]))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let zip = ok(&s.cli(&["save", "--snapshot-compress"]))
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let theirs = etcd_status(Etcd::V35, &s.snapshot_dir().join(&raw));
    let record = |name: &str| -> Value {
        let list: Value =
            serde_json::from_str(&ok(&s.kubectl(&["get", "etcdsnapshotfile", "-o", "json"])))
                .unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["spec"]["snapshotName"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no record of {name}: {list:#}"))
    };
    wait_for(
        std::time::Duration::from_secs(20),
        "the figures in the record",
        || {
            let r = record(&raw);
            (r["status"]["revision"] == theirs["revision"]
                && r["status"]["totalKey"] == theirs["totalKey"])
                .then_some(())
        },
    );
    assert!(record(&zip)["status"].get("revision").is_none());
    // An `ls` reconciles the records from the files: the figures stay.
    let wide = ok(&s.cli(&["ls", "-o", "wide"]));
    let head: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        ["Name", "Location", "Size", "Created", "Revision", "Keys"],
        "{wide}"
    );
    let row = |name: &str| -> Vec<String> {
        wide.lines()
            .find(|l| l.starts_with(name) && l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in {wide}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let r = row(&raw);
    assert_eq!(r[4], theirs["revision"].to_string(), "{wide}");
    assert_eq!(r[5], theirs["totalKey"].to_string(), "{wide}");
    assert_eq!(&row(&zip)[4..], ["-", "-"], "{wide}");
    assert_eq!(record(&raw)["status"]["revision"], theirs["revision"]);
    let plain = ok(&s.cli(&["ls"]));
    assert!(!plain.contains("Revision"), "{plain}");
}

// ---- trailers, archive entry names, special files ----

/// A small real snapshot of a PlainEtcd: its bytes.
fn small_snapshot(dir: &Path) -> Vec<u8> {
    let etcd = PlainEtcd::start(Etcd::V35, None, "m1", None, false);
    let kvs: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| (format!("/t/{i:03}"), format!("value {i}").into_bytes()))
        .collect();
    put_keys(&etcd.endpoint(), None, &kvs);
    let p = dir.join("etcd-snapshot-m1-1730308816");
    etcdctl_save(Etcd::V35, &etcd.endpoint(), &p);
    std::fs::read(&p).unwrap()
}

/// `inspect` lists and then reports a bad trailer as an error, as `status` and `verify` do:
/// a bit flip, a cut trailer, a `.zst` of two frames, a `.zip` with a bit flip.
#[test]
fn inspect_reports_a_bad_or_missing_trailer() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let orig = small_snapshot(dir);
    let data_len = orig.len() - 32;
    let good = write_case(dir, &orig);
    let out = ok(&cli(
        dir,
        &["inspect", "--keys-only", good.to_str().unwrap()],
    ));
    assert!(out.contains("/t/049"), "{out}");

    let mut flipped = orig.clone();
    // The last byte of the database before the trailer: free space of the last page, which
    // a listing never reads.
    flipped[data_len - 1] ^= 0x01;
    let flip = write_case(dir, &flipped);
    let cut = write_case(dir, &orig[..data_len]);
    let two_frames = dir.join("etcd-snapshot-m1-1730308817.zst");
    let mut z = zstd::encode_all(&orig[..], 3).unwrap();
    z.extend(zstd::encode_all(&orig[..], 3).unwrap());
    std::fs::write(&two_frames, z).unwrap();
    let flipped_zip = dir.join("etcd-snapshot-m1-1730308818.zip");
    let raw = dir.join("etcd-snapshot-m1-1730308818");
    std::fs::write(&raw, &flipped).unwrap();
    write_zip(&raw, &flipped_zip);
    let cases = [
        (&flip, "checksum mismatch", false),
        (&cut, "no SHA-256 trailer", true),
        (&two_frames, "no SHA-256 trailer", true),
        (&flipped_zip, "checksum mismatch", false),
    ];
    for (p, says, absent) in cases {
        let o = cli(dir, &["inspect", "--keys-only", p.to_str().unwrap()]);
        let err = fails_1(&o);
        assert!(err.contains(says), "{}: {err}", p.display());
        assert!(err.contains("the output above may be wrong"), "{err}");
        assert_eq!(err.contains("--skip-hash-check"), absent, "{err}");
        assert!(stdout(&o).contains("/t/049"), "the listing is still shown");
        let o = cli(dir, &["inspect", "-o", "json", p.to_str().unwrap()]);
        assert!(fails_1(&o).contains(says));
        // --diff checks both snapshots.
        for pair in [[p, &good], [&good, p]] {
            let o = cli(
                dir,
                &[
                    "inspect",
                    pair[0].to_str().unwrap(),
                    "--diff",
                    pair[1].to_str().unwrap(),
                ],
            );
            assert!(fails_1(&o).contains(says), "--diff {pair:?}");
        }
    }
    // A raw database file (no trailer) lists with --skip-hash-check.
    let out = ok(&cli(
        dir,
        &[
            "inspect",
            "--keys-only",
            "--skip-hash-check",
            cut.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("/t/049"), "{out}");
}

/// A zip whose entry is a path (`../../x`, `/abs/x`, `a/b`) is refused by every reader with
/// the message restore gave (restore's own unit test covers it).
#[test]
fn every_reader_refuses_a_zip_entry_that_is_a_path() {
    use std::io::Write;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let orig = small_snapshot(dir);
    for entry in ["../../x", "/tmp/abs-x", "sub/x"] {
        let zip = dir.join("etcd-snapshot-m1-1730308816.zip");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
        z.start_file(entry, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(&orig).unwrap();
        z.finish().unwrap();
        let etcd = format!("--etcd-binary={}", Etcd::V35.etcd().display());
        let readers: [&[&str]; 4] = [&["verify"], &["status"], &["inspect"], &["drill", &etcd]];
        for args in readers {
            let mut a = args.to_vec();
            a.push(zip.to_str().unwrap());
            let err = fails_1(&cli(dir, &a));
            assert!(
                err.contains("is not a plain file name"),
                "{entry} {args:?}: {err}"
            );
        }
    }
    assert!(!dir.join("x").exists() && !dir.parent().unwrap().join("x").exists());
}

/// A FIFO (or any file that is not regular) is refused at once, before it is opened: reading
/// one waits for a writer for ever.
#[test]
fn readers_refuse_a_fifo_at_once() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let fifo = dir.join("etcd-snapshot-m1-1730308816");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let zfifo = dir.join("etcd-snapshot-m1-1730308817.zip");
    let c = std::ffi::CString::new(zfifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for p in [&fifo, &zfifo] {
        for args in [&["verify"][..], &["status"], &["inspect"]] {
            let tmp = dir.join("tmp");
            std::fs::create_dir_all(&tmp).unwrap();
            let mut child = Command::new(etcdsnap_bin())
                .arg("etcd-snapshot")
                .args(args)
                .arg(p)
                .env("ETCDSNAP_CONFIG_FILE", empty_config(dir))
                .env("TMPDIR", &tmp)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let started = std::time::Instant::now();
            while child.try_wait().unwrap().is_none() {
                if started.elapsed() > std::time::Duration::from_secs(20) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{args:?} {} hangs", p.display());
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let o = child.wait_with_output().unwrap();
            let err = fails_1(&o);
            assert!(
                err.contains("is a FIFO (named pipe), not a regular file"),
                "{args:?}: {err}"
            );
        }
    }
}
