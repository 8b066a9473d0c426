//! ETCDSnapshotFile records, events, Secrets and ConfigMaps through the supervisor's Kubernetes
//! API, read and written by the real `kubectl` and the `kubernetes` Python client, with real
//! etcd and s3s-fs. Record names are computed here from K3s's rule, independently of the server.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::harness::*;
use etcdsnap_testkit::s3::{ACCESS_KEY, S3sFs, SECRET_KEY};

/// K3s's record name: `local-`/`s3-`, the lower-cased file name, and the first 6 hex chars of
/// sha256(node + location).
fn record_name(storage: &str, file: &str, node: &str, location: &str) -> String {
    let h = Sha256::digest(format!("{node}{location}").as_bytes());
    let hex: String = h.iter().take(3).map(|b| format!("{b:02x}")).collect();
    format!("{storage}-{}-{hex}", file.to_lowercase())
}

fn local_location(s: &Server, file: &str) -> String {
    let p = s.snapshot_dir().join(file).canonicalize().unwrap();
    format!("file://{}", p.display())
}

fn saved_name(out: &str) -> String {
    // "Snapshot <name> saved."
    out.split_whitespace().nth(1).unwrap().to_string()
}

fn json_of(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn records(s: &Server) -> Vec<serde_json::Value> {
    let list = json_of(&ok(&s.kubectl(&["get", "etcdsnapshotfile", "-o", "json"])));
    list["items"].as_array().unwrap().clone()
}

fn record_names(s: &Server) -> Vec<String> {
    let mut v: Vec<String> = records(s)
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

both!(kubectl_gets_describes_and_deletes_records, kubectl_records);
fn kubectl_records(v: Etcd) {
    let s = Server::start(v);
    let a = saved_name(&ok(&s.cli(&["save", "--name", "Alpha"])));
    let b = saved_name(&ok(&s.cli(&["save", "--snapshot-compress"])));
    assert!(b.ends_with(".zip"), "{b}");
    let want_a = record_name("local", &a, "n1", &local_location(&s, &a));
    let want_b = record_name("local", &b, "n1", &local_location(&s, &b));
    let mut want = vec![want_a.clone(), want_b.clone()];
    want.sort();
    assert_eq!(record_names(&s), want);

    // Table: K3s's columns, then -o wide adds READY and ERROR.
    let table = ok(&s.kubectl(&["get", "etcdsnapshotfile"]));
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "SNAPSHOTNAME",
            "NODE",
            "LOCATION",
            "SIZE",
            "CREATIONTIME"
        ],
        "{table}"
    );
    let size_a = std::fs::metadata(s.snapshot_dir().join(&a)).unwrap().len();
    let row_a: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with(&want_a))
        .unwrap_or_else(|| panic!("{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(row_a[1], a);
    assert_eq!(row_a[2], "n1");
    assert_eq!(row_a[3], local_location(&s, &a));
    assert_eq!(row_a[4], size_a.to_string());
    chrono::DateTime::parse_from_rfc3339(row_a[5]).unwrap();
    // The whole collection in one answer (streamed page by page), as Table and as List,
    // says the same as the paged answers.
    let whole = ok(&s.kubectl(&["get", "etcdsnapshotfile", "--chunk-size=0", "--show-labels"]));
    let paged = ok(&s.kubectl(&["get", "etcdsnapshotfile", "--chunk-size=1", "--show-labels"]));
    assert_eq!(whole, paged);
    assert!(
        whole.contains("etcd.k3s.cattle.io/snapshot-storage-node=n1"),
        "{whole}"
    );
    let raw = json_of(&ok(&s.kubectl(&[
        "get",
        "--raw",
        "/apis/k3s.cattle.io/v1/etcdsnapshotfiles",
    ])));
    assert_eq!(raw["kind"], "ETCDSnapshotFileList");
    assert_eq!(raw["items"].as_array().unwrap().len(), 2, "{raw:#}");
    assert!(
        raw["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    let wide = ok(&s.kubectl(&["get", "etcdsnapshotfile", "-o", "wide"]));
    assert!(
        wide.lines().next().unwrap().ends_with("READY   ERROR"),
        "{wide}"
    );
    assert!(
        wide.lines().filter(|l| l.contains(" true")).count() == 2,
        "{wide}"
    );

    // Objects: K3s's label, annotation, finalizer, and the API server's metadata.
    let obj = json_of(&ok(&s.kubectl(&[
        "get",
        "etcdsnapshotfile",
        &want_a,
        "-o",
        "json",
    ])));
    let md = &obj["metadata"];
    assert_eq!(obj["apiVersion"], "k3s.cattle.io/v1");
    assert_eq!(obj["kind"], "ETCDSnapshotFile");
    assert_eq!(
        md["labels"]["etcd.k3s.cattle.io/snapshot-storage-node"],
        "n1"
    );
    let hash = md["annotations"]["etcd.k3s.cattle.io/snapshot-token-hash"]
        .as_str()
        .unwrap();
    assert!(hash.len() == 12 && hash.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        md["finalizers"][0],
        "wrangler.cattle.io/managed-etcd-snapshots-controller"
    );
    assert_eq!(md["uid"].as_str().unwrap().len(), 36);
    assert!(
        md["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert_eq!(md["generation"], 1);
    assert_eq!(obj["spec"]["snapshotName"], a.as_str());
    assert_eq!(obj["spec"]["nodeName"], "n1");
    assert_eq!(obj["status"]["readyToUse"], true);
    assert_eq!(obj["status"]["size"], size_a.to_string());
    let yaml = ok(&s.kubectl(&["get", "etcdsnapshotfile", &want_b, "-o", "yaml"]));
    assert!(yaml.contains("kind: ETCDSnapshotFile"), "{yaml}");
    assert!(yaml.contains(&format!("snapshotName: {b}")), "{yaml}");
    let names = ok(&s.kubectl(&["get", "etcdsnapshotfile", "-o", "name"]));
    assert!(
        names.contains(&format!("etcdsnapshotfile.k3s.cattle.io/{want_a}\n")),
        "{names}"
    );

    // Label selectors.
    let sel = |l: &str| {
        ok(&s.kubectl(&["get", "etcdsnapshotfile", "-l", l, "-o", "name"]))
            .lines()
            .count()
    };
    assert_eq!(sel("etcd.k3s.cattle.io/snapshot-storage-node=n1"), 2);
    assert_eq!(sel("etcd.k3s.cattle.io/snapshot-storage-node=other"), 0);
    assert_eq!(sel("etcd.k3s.cattle.io/snapshot-storage-node!=n1"), 0);

    // describe shows the record's event.
    let d = ok(&s.kubectl(&["describe", "etcdsnapshotfile", &want_a]));
    assert!(d.contains("ETCDSnapshotCreated"), "{d}");
    assert!(d.contains(&format!("Snapshot {a} saved on n1")), "{d}");
    assert!(d.contains("etcdsnap-supervisor"), "{d}");

    // Deleting a record keeps the file; the next reconcile brings the record back.
    ok(&s.kubectl(&["delete", "etcdsnapshotfile", &want_a]));
    assert!(s.snapshot_dir().join(&a).exists(), "the file stays");
    assert_eq!(record_names(&s), vec![want_b.clone()]);
    // `ls` answers from the listing; the records follow it in the background.
    ok(&s.cli(&["ls"]));
    wait_for(Duration::from_secs(10), "the record back", || {
        (record_names(&s) == want).then_some(())
    });

    // A file removed by hand loses its record at the next reconcile.
    std::fs::remove_file(s.snapshot_dir().join(&b)).unwrap();
    ok(&s.cli(&["ls"]));
    wait_for(Duration::from_secs(10), "the record removed", || {
        (record_names(&s) == vec![want_a.clone()]).then_some(())
    });

    // delete removes the file and the record, with an event.
    ok(&s.cli(&["delete", &a]));
    assert!(record_names(&s).is_empty());
    let ev = ok(&s.kubectl(&[
        "get",
        "events",
        "-A",
        "--field-selector",
        "reason=ETCDSnapshotDeleted",
        "-o",
        "json",
    ]));
    let ev = json_of(&ev);
    let msgs: Vec<&str> = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        msgs.contains(&format!("Snapshot {a} deleted").as_str()),
        "{msgs:?}"
    );

    // 404 and 405 as Kubernetes words them.
    let e = fails(&s.kubectl(&["get", "etcdsnapshotfile", "nope"]));
    assert!(
        e.contains("NotFound") && e.contains("\"nope\" not found"),
        "{e}"
    );
}

#[test]
fn wrong_credentials_are_refused() {
    let s = Server::start(Etcd::V35);
    ok(&s.kubectl(&["get", "etcdsnapshotfile"]));
    let mode = std::fs::metadata(s.kubeconfig()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    let e = fails(&s.kubectl(&["--token=not-the-token", "get", "etcdsnapshotfile"]));
    assert!(e.contains("Unauthorized"), "{e}");
    // Without any credential: 401 with a Kubernetes Status.
    let (code, body) = https_get(&format!(
        "{}/apis/k3s.cattle.io/v1/etcdsnapshotfiles",
        s.url()
    ))
    .unwrap();
    assert_eq!(code, 401, "{body}");
    assert_eq!(json_of(&body)["reason"], "Unauthorized");
    let e = fails(&s.kubectl(&["--token=not-the-token", "get", "etcdsnapshotfile"]));
    assert!(e.contains("Unauthorized"), "{e}");
    // `etcdsnap kubectl` uses the written kubeconfig.
    let out = Command::new(etcdsnap_bin())
        .args(["kubectl", "get", "etcdsnapshotfile", "-o", "name"])
        .env("KUBECONFIG", s.kubeconfig())
        .env("PATH", path_with_kubectl())
        .output()
        .unwrap();
    ok(&out);
}

fn path_with_kubectl() -> String {
    let dir = env_bin("KUBECTL_BIN").parent().unwrap().to_path_buf();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn watch_sees_a_new_record() {
    let s = Server::start(Etcd::V35);
    // -v=6: kubectl logs each response, the list's among them.
    let mut child = Command::new(env_bin("KUBECTL_BIN"))
        .arg(format!("--kubeconfig={}", s.kubeconfig().display()))
        .args(["get", "etcdsnapshotfile", "--watch", "-o", "name", "-v=6"])
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines_of = |out: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let rx = lines_of(Box::new(child.stdout.take().unwrap()));
    let log = lines_of(Box::new(child.stderr.take().unwrap()));
    // kubectl watches from the revision of its list: once the list has answered, a record
    // made after it reaches kubectl through the watch, not the list.
    let mut said = Vec::new();
    let listed = std::iter::from_fn(|| log.recv_timeout(Duration::from_secs(30)).ok())
        .inspect(|l| said.push(l.clone()))
        .any(|l| {
            l.contains("etcdsnapshotfiles") && l.contains("200 OK") && !l.contains("watch=true")
        });
    assert!(listed, "kubectl did not list:\n{}", said.join("\n"));
    let name = saved_name(&ok(&s.cli(&["save"])));
    let want = format!(
        "etcdsnapshotfile.k3s.cattle.io/{}",
        record_name("local", &name, "n1", &local_location(&s, &name))
    );
    let seen = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen.ok().as_deref(), Some(want.as_str()));
}

#[test]
fn secrets_and_configmaps_through_kubectl() {
    let s = Server::start(Etcd::V35);
    let dir = s.data_dir().to_path_buf();
    let cm = dir.join("cm.yaml");
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: kube-system\ndata:\n  a: \"1\"\n",
    )
    .unwrap();
    let k = |args: &[&str]| s.kubectl(args);
    assert!(ok(&k(&["apply", "-f", cm.to_str().unwrap()])).contains("created"));
    assert!(ok(&k(&["apply", "-f", cm.to_str().unwrap()])).contains("unchanged"));
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: kube-system\ndata:\n  a: \"2\"\n  b: \"3\"\n",
    )
    .unwrap();
    assert!(ok(&k(&["apply", "-f", cm.to_str().unwrap()])).contains("configured"));
    let got = json_of(&ok(&k(&[
        "-n",
        "kube-system",
        "get",
        "configmap",
        "settings",
        "-o",
        "json",
    ])));
    assert_eq!(got["data"], serde_json::json!({"a": "2", "b": "3"}));
    ok(&k(&[
        "-n",
        "kube-system",
        "patch",
        "configmap",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"b":null,"c":"4"}}"#,
    ]));
    let got = json_of(&ok(&k(&[
        "-n",
        "kube-system",
        "get",
        "cm",
        "settings",
        "-o",
        "json",
    ])));
    assert_eq!(got["data"], serde_json::json!({"a": "2", "c": "4"}));

    // replace with a stale resourceVersion is a 409 conflict.
    let mut stale = got.clone();
    ok(&k(&[
        "-n",
        "kube-system",
        "patch",
        "cm",
        "settings",
        "-p",
        r#"{"data":{"d":"5"}}"#,
    ]));
    stale["data"]["e"] = "6".into();
    let stale_path = dir.join("stale.json");
    std::fs::write(&stale_path, stale.to_string()).unwrap();
    let e = fails(&k(&["replace", "-f", stale_path.to_str().unwrap()]));
    assert!(
        e.contains("Conflict") || e.contains("the object has been modified"),
        "{e}"
    );

    // A Secret from a manifest with stringData; kubectl decodes its data.
    let sec = dir.join("sec.yaml");
    std::fs::write(
        &sec,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: kube-system\ntype: Opaque\nstringData:\n  user: admin\n",
    )
    .unwrap();
    ok(&k(&["apply", "-f", sec.to_str().unwrap()]));
    let user = ok(&k(&[
        "-n",
        "kube-system",
        "get",
        "secret",
        "creds",
        "-o",
        "jsonpath={.data.user}",
    ]));
    assert_eq!(user, "YWRtaW4=");
    // kubectl's typed `create` sends protobuf bodies.
    ok(&k(&[
        "-n",
        "kube-system",
        "create",
        "configmap",
        "typed",
        "--from-literal=x=1",
    ]));
    ok(&k(&[
        "-n",
        "kube-system",
        "create",
        "secret",
        "generic",
        "typed",
        "--from-literal=pw=hunter2",
    ]));
    let cm_t = json_of(&ok(&k(&[
        "-n",
        "kube-system",
        "get",
        "cm",
        "typed",
        "-o",
        "json",
    ])));
    assert_eq!(cm_t["data"], serde_json::json!({"x": "1"}));
    let sec_t = json_of(&ok(&k(&[
        "-n",
        "kube-system",
        "get",
        "secret",
        "typed",
        "-o",
        "json",
    ])));
    assert_eq!(sec_t["data"], serde_json::json!({"pw": "aHVudGVyMg=="}));
    assert_eq!(sec_t["type"], "Opaque");
    // An invalid name is a 422.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n  namespace: kube-system\n",
    )
    .unwrap();
    let e = fails(&k(&["create", "-f", bad.to_str().unwrap()]));
    assert!(e.contains("Invalid") || e.contains("invalid"), "{e}");
    // Records are the server's: kubectl cannot create one.
    let rec = dir.join("rec.yaml");
    std::fs::write(
        &rec,
        "apiVersion: k3s.cattle.io/v1\nkind: ETCDSnapshotFile\nmetadata:\n  name: local-x-000000\nspec:\n  snapshotName: x\n  nodeName: n1\n  location: file:///x\n",
    )
    .unwrap();
    fails(&k(&["create", "-f", rec.to_str().unwrap()]));
    ok(&k(&["delete", "-f", sec.to_str().unwrap()]));
    ok(&k(&["delete", "-f", cm.to_str().unwrap()]));
    let e = fails(&k(&["-n", "kube-system", "get", "cm", "settings"]));
    assert!(e.contains("configmaps \"settings\" not found"), "{e}");
}

/// `kubectl --dry-run=server` on every write verb: answered as if done, nothing written, and
/// still checked (a taken name, an invalid name, a record that cannot be created).
#[test]
fn kubectl_server_dry_runs_write_nothing() {
    let s = Server::start(Etcd::V35);
    let dir = s.data_dir().to_path_buf();
    let k = |args: &[&str]| s.kubectl_ks(args);
    ok(&k(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=user=admin",
    ]));
    ok(&k(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=a=1",
    ]));
    let before = |kind: &str, name: &str| json_of(&ok(&k(&["get", kind, name, "-o", "json"])));
    let (secret0, cm0) = (before("secret", "creds"), before("cm", "settings"));

    // create
    let out = ok(&k(&[
        "create",
        "secret",
        "generic",
        "dry",
        "--from-literal=pw=x",
        "--dry-run=server",
    ]));
    assert!(out.contains("(server dry run)"), "{out}");
    ok(&k(&[
        "create",
        "configmap",
        "dry",
        "--from-literal=x=1",
        "--dry-run=server",
    ]));
    for kind in ["secret", "configmap"] {
        let e = fails(&k(&["get", kind, "dry"]));
        assert!(e.contains("\"dry\" not found"), "{kind}: {e}");
    }
    let e = fails(&k(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=user=x",
        "--dry-run=server",
    ]));
    assert!(e.contains("already exists"), "{e}");
    let e = fails(&k(&["create", "configmap", "Bad_Name", "--dry-run=server"]));
    assert!(e.contains("Invalid") || e.contains("invalid"), "{e}");

    // patch, apply (a patch), replace (an update)
    let patched = json_of(&ok(&k(&[
        "patch",
        "cm",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"9"}}"#,
        "--dry-run=server",
        "-o",
        "json",
    ])));
    assert_eq!(
        patched["data"]["a"], "9",
        "the answer is the patched object"
    );
    let cm = dir.join("cm.yaml");
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: kube-system\ndata:\n  a: \"7\"\n",
    )
    .unwrap();
    ok(&s.kubectl(&["apply", "-f", cm.to_str().unwrap(), "--dry-run=server"]));
    let mut replaced = cm0.clone();
    replaced["data"]["a"] = "8".into();
    let replace = dir.join("replace.json");
    std::fs::write(&replace, replaced.to_string()).unwrap();
    ok(&s.kubectl(&[
        "replace",
        "-f",
        replace.to_str().unwrap(),
        "--dry-run=server",
    ]));
    ok(&k(&[
        "patch",
        "secret",
        "creds",
        "-p",
        r#"{"data":{"user":"eA=="}}"#,
        "--dry-run=server",
    ]));

    // delete, of a Secret and of a record
    let out = ok(&k(&["delete", "secret", "creds", "--dry-run=server"]));
    assert!(out.contains("deleted (server dry run)"), "{out}");
    ok(&k(&["delete", "cm", "settings", "--dry-run=server"]));
    assert_eq!(before("secret", "creds"), secret0);
    assert_eq!(before("cm", "settings"), cm0);

    let name = saved_name(&ok(&s.cli(&["save"])));
    let record = wait_for(Duration::from_secs(30), "the save's record", || {
        record_names(&s).into_iter().next()
    });
    let out = ok(&s.kubectl(&["delete", "etcdsnapshotfile", &record, "--dry-run=server"]));
    assert!(out.contains("(server dry run)"), "{out}");
    assert_eq!(record_names(&s), std::slice::from_ref(&record));
    assert!(s.snapshot_files().contains(&name));
    let rec = dir.join("rec.yaml");
    std::fs::write(
        &rec,
        "apiVersion: k3s.cattle.io/v1\nkind: ETCDSnapshotFile\nmetadata:\n  name: local-x-000000\nspec:\n  snapshotName: x\n  nodeName: n1\n  location: file:///x\n",
    )
    .unwrap();
    fails(&s.kubectl(&[
        "create",
        "-f",
        rec.to_str().unwrap(),
        "--validate=false",
        "--dry-run=server",
    ]));
    assert_eq!(record_names(&s), [record]);
    // No event says a record was deleted.
    let events = ok(&s.kubectl(&["get", "events", "-A", "-o", "json"]));
    assert!(!events.contains("ETCDSnapshotDeleted"), "{events}");
}

#[test]
fn python_kubernetes_client_reads_records_and_writes_configmaps() {
    let s = Server::start(Etcd::V35);
    let name = saved_name(&ok(&s.cli(&["save"])));
    let script = r#"
import json, sys
from kubernetes import client, config
config.load_kube_config(config_file=sys.argv[1])
co = client.CustomObjectsApi()
files = co.list_cluster_custom_object("k3s.cattle.io", "v1", "etcdsnapshotfiles")
core = client.CoreV1Api()
cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="from-python"), data={"k": "v"})
core.create_namespaced_config_map("kube-system", cm)
back = core.read_namespaced_config_map("from-python", "kube-system")
try:
    core.read_namespaced_secret("missing", "kube-system")
    status = 200
except client.exceptions.ApiException as e:
    status = e.status
print(json.dumps({"names": [f["spec"]["snapshotName"] for f in files["items"]],
                  "cm": back.data, "missing": status}))
"#;
    let out = Command::new(env_bin("KUBE_PYTHON"))
        .args(["-c", script])
        .arg(s.kubeconfig())
        .output()
        .unwrap();
    let got = json_of(&ok(&out));
    assert_eq!(got["names"], serde_json::json!([name]));
    assert_eq!(got["cm"], serde_json::json!({"k": "v"}));
    assert_eq!(got["missing"], 404);
}

const BUCKET: &str = "bucket";

/// The Secret manifest of the K3s page, filled in for `fs`.
fn secret_manifest(fs: &S3sFs, secret_key: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: k3s-etcd-snapshot-s3-config
  namespace: kube-system
type: etcd.k3s.cattle.io/s3-config-secret
stringData:
  etcd-s3-endpoint: "{}"
  etcd-s3-endpoint-ca: ""
  etcd-s3-endpoint-ca-name: ""
  etcd-s3-skip-ssl-verify: "false"
  etcd-s3-access-key: "{ACCESS_KEY}"
  etcd-s3-secret-key: "{secret_key}"
  etcd-s3-bucket: "{BUCKET}"
  etcd-s3-folder: "folder"
  etcd-s3-region: "us-east-1"
  etcd-s3-insecure: "true"
  etcd-s3-timeout: "5m"
  etcd-s3-proxy: ""
"#,
        fs.endpoint()
    )
}

fn apply(s: &Server, file: &Path, text: &str) {
    std::fs::write(file, text).unwrap();
    ok(&s.kubectl(&["apply", "-f", file.to_str().unwrap()]));
}

#[test]
fn s3_config_secret_drives_uploads_and_rotates_without_restart() {
    let fs = S3sFs::start(&[BUCKET]);
    let s = Server::builder(Etcd::V35)
        .args([
            "--etcd-s3",
            "--etcd-s3-config-secret=k3s-etcd-snapshot-s3-config",
        ])
        .start();
    let manifest = s.data_dir().join("s3-secret.yaml");
    apply(&s, &manifest, &secret_manifest(&fs, SECRET_KEY));
    // Extra metadata, from its ConfigMap, reaches the sidecar, the record and S3.
    let cm = ok(&s.kubectl(&[
        "-n",
        "kube-system",
        "create",
        "configmap",
        "k3s-etcd-snapshot-extra-metadata",
        "--from-literal=team=storage",
        "--dry-run=client",
        "-o",
        "yaml",
    ]));
    apply(&s, &s.data_dir().join("extra.yaml"), &cm);

    // As K3s's CLI does with the server's config file: only the Secret's name.
    let save = |extra: &[&str]| {
        let mut a = vec![
            "save",
            "--s3",
            "--s3-config-secret=k3s-etcd-snapshot-s3-config",
        ];
        a.extend_from_slice(extra);
        s.cli(&a)
    };
    let name = saved_name(&ok(&save(&[])));
    let object = fs.root.path().join(BUCKET).join("folder").join(&name);
    assert!(
        object.is_file(),
        "not uploaded to {}; log:\n{}",
        object.display(),
        std::fs::read_to_string(s.data_dir().join("server.log")).unwrap()
    );
    let sidecar = s.data_dir().join("server/db/.metadata").join(&name);
    assert_eq!(
        json_of(&std::fs::read_to_string(&sidecar).unwrap()),
        serde_json::json!({"team": "storage"})
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sidecar).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        fs.root
            .path()
            .join(BUCKET)
            .join("folder/.metadata")
            .join(&name)
            .is_file()
    );
    let s3_loc = format!("s3://{BUCKET}/folder/{name}");
    // The object carries K3s-Node-Name n1, which the name's digest uses.
    let s3_rec = record_name("s3", &name, "n1", &s3_loc);
    let local_rec = record_name("local", &name, "n1", &local_location(&s, &name));
    let recs = records(&s);
    let by_name = |n: &str| {
        recs.iter()
            .find(|r| r["metadata"]["name"] == n)
            .unwrap_or_else(|| panic!("no record {n}: {recs:?}"))
            .clone()
    };
    let r = by_name(&s3_rec);
    assert_eq!(r["spec"]["location"], s3_loc.as_str());
    assert_eq!(
        r["metadata"]["labels"]["etcd.k3s.cattle.io/snapshot-storage-node"],
        "s3"
    );
    assert_eq!(r["spec"]["s3"]["bucket"], BUCKET);
    assert_eq!(r["spec"]["metadata"]["team"], "storage");
    assert_eq!(by_name(&local_rec)["spec"]["metadata"]["team"], "storage");
    assert!(!serde_json::to_string(&recs).unwrap().contains(SECRET_KEY));

    // Rotate to a wrong key: the next save's upload fails, with a failed record.
    apply(
        &s,
        &manifest,
        &secret_manifest(&fs, "wrong-secret-key-000000"),
    );
    let out = save(&["--name", "rotated"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    let failed: Vec<serde_json::Value> = records(&s)
        .into_iter()
        .filter(|r| r["status"]["readyToUse"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{text}\n{failed:?}");
    let msg = failed[0]["status"]["error"]["message"].as_str().unwrap();
    assert!(msg.contains("failed to initialize S3 client"), "{msg}");
    assert!(msg.contains("access denied"), "{msg}");
    assert!(
        s.snapshot_dir().join(saved_name(&stdout(&out))).exists(),
        "the local snapshot is taken"
    );
    // And back: applies at once, no restart.
    apply(&s, &manifest, &secret_manifest(&fs, SECRET_KEY));
    let again = saved_name(&ok(&save(&["--name", "back"])));
    assert!(
        fs.root
            .path()
            .join(BUCKET)
            .join("folder")
            .join(&again)
            .is_file()
    );
    let log = std::fs::read_to_string(s.data_dir().join("server.log")).unwrap();
    assert!(!log.contains(SECRET_KEY), "secret in the log");
    drop(s);

    // With a second S3 setting the Secret is ignored, with K3s's warning.
    let s = Server::builder(Etcd::V35)
        .args([
            "--etcd-s3",
            "--etcd-s3-config-secret=k3s-etcd-snapshot-s3-config",
            &format!("--etcd-s3-endpoint={}", fs.endpoint()),
            "--etcd-s3-insecure",
            &format!("--etcd-s3-bucket={BUCKET}"),
            &format!("--etcd-s3-access-key={ACCESS_KEY}"),
            &format!("--etcd-s3-secret-key={SECRET_KEY}"),
            "--etcd-s3-folder=flags",
        ])
        .start();
    let m2 = s.data_dir().join("s3-secret.yaml");
    apply(&s, &m2, &secret_manifest(&fs, SECRET_KEY));
    let n = saved_name(&ok(&s.cli(&[
        "save",
        "--s3",
        "--s3-config-secret=k3s-etcd-snapshot-s3-config",
        &format!("--s3-endpoint={}", fs.endpoint()),
        "--s3-insecure",
        &format!("--s3-bucket={BUCKET}"),
        &format!("--s3-access-key={ACCESS_KEY}"),
        &format!("--s3-secret-key={SECRET_KEY}"),
        "--s3-folder=flags",
    ])));
    assert!(fs.root.path().join(BUCKET).join("flags").join(&n).is_file());
    let log = std::fs::read_to_string(s.data_dir().join("server.log")).unwrap();
    assert!(
        log.contains("Ignoring s3 configuration from etcd-s3-config-secret"),
        "{log}"
    );
    // ... and says which settings made it ignore the Secret.
    assert!(
        log.contains("--etcd-s3-access-key, --etcd-s3-secret-key, --etcd-s3-bucket, --etcd-s3-folder, --etcd-s3-endpoint, --etcd-s3-insecure set; give --etcd-s3 and --etcd-s3-config-secret alone to use the Secret"),
        "{log}"
    );
}

/// The shipped CRD prints what the supervisor prints.
#[test]
fn shipped_crd_has_the_served_columns() {
    let text = include_str!("../../../../deploy/etcdsnapshotfile-crd.yaml");
    let crd: serde_json::Value = serde_saphyr::from_str(text).unwrap();
    assert_eq!(crd["metadata"]["name"], "etcdsnapshotfiles.k3s.cattle.io");
    assert_eq!(crd["spec"]["scope"], "Cluster");
    let v = &crd["spec"]["versions"][0];
    let cols: Vec<String> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_uppercase())
        .collect();
    let s = Server::start(Etcd::V35);
    ok(&s.cli(&["save"]));
    let wide = ok(&s.kubectl(&["get", "etcdsnapshotfile", "-o", "wide"]));
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[0], "NAME");
    assert_eq!(
        header[1..],
        cols.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
}

/// Protobuf as a Kubernetes API server stores it: `k8s\0` and a `runtime.Unknown`.
mod pb {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    /// A length-delimited field.
    pub fn ld(field: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![(field << 3) | 2];
        varint(body.len(), &mut out);
        out.extend_from_slice(body);
        out
    }

    pub fn meta(name: &str, ns: &str) -> Vec<u8> {
        let mut m = ld(1, name.as_bytes());
        if !ns.is_empty() {
            m.extend(ld(3, ns.as_bytes()));
        }
        m.extend(ld(5, b"0b6c3f1e-0000-4000-8000-000000000001"));
        m
    }

    pub fn stored(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = ld(1, api_version.as_bytes());
        tm.extend(ld(2, kind.as_bytes()));
        let mut unknown = ld(1, &tm);
        unknown.extend(ld(2, raw));
        let mut out = b"k8s\0".to_vec();
        out.extend(unknown);
        out
    }

    /// A v1 Secret with `data`.
    pub fn secret(name: &str, data: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = ld(1, &meta(name, "kube-system"));
        for (k, v) in data {
            let mut entry = ld(1, k.as_bytes());
            entry.extend(ld(2, v.as_bytes()));
            raw.extend(ld(2, &entry));
        }
        raw.extend(ld(3, b"etcd.k3s.cattle.io/s3-config-secret"));
        stored("v1", "Secret", &raw)
    }
}

/// An etcd that holds a Kubernetes cluster: its protobuf Secret drives the upload, encrypted
/// ones give a clear error, and the supervisor refuses to write the cluster's objects.
#[test]
fn kubernetes_datastore_secrets_are_read_never_written() {
    let fs = S3sFs::start(&[BUCKET]);
    let s = Server::start(Etcd::V35);
    let ns = pb::stored("v1", "Namespace", &pb::ld(1, &pb::meta("kube-system", "")));
    let endpoint = fs.endpoint();
    let data = [
        ("etcd-s3-endpoint", endpoint.as_str()),
        ("etcd-s3-access-key", ACCESS_KEY),
        ("etcd-s3-secret-key", SECRET_KEY),
        ("etcd-s3-bucket", BUCKET),
        ("etcd-s3-folder", "k8s"),
        ("etcd-s3-insecure", "true"),
    ];
    s.put(&[
        ("/registry/namespaces/kube-system".to_string(), ns),
        (
            "/registry/secrets/kube-system/k3s-etcd-snapshot-s3-config".to_string(),
            pb::secret("k3s-etcd-snapshot-s3-config", &data),
        ),
        (
            "/registry/secrets/kube-system/sealed".to_string(),
            b"k8s:enc:aescbc:v1:key1:\x01\x02\x03ciphertext".to_vec(),
        ),
    ]);
    let (dir, ports) = s.stop();
    let s = Server::builder(Etcd::V35).dir(dir).ports(ports).start();
    let log = std::fs::read_to_string(s.data_dir().join("server.log")).unwrap();
    assert!(
        log.contains("this etcd holds a Kubernetes cluster"),
        "{log}"
    );

    let got = json_of(&ok(&s.kubectl(&[
        "-n",
        "kube-system",
        "get",
        "secret",
        "k3s-etcd-snapshot-s3-config",
        "-o",
        "json",
    ])));
    assert_eq!(got["type"], "etcd.k3s.cattle.io/s3-config-secret");
    assert_eq!(got["data"]["etcd-s3-bucket"], "YnVja2V0");
    let name = saved_name(&ok(&s.cli(&[
        "save",
        "--s3",
        "--s3-config-secret=k3s-etcd-snapshot-s3-config",
    ])));
    assert!(
        fs.root
            .path()
            .join(BUCKET)
            .join("k8s")
            .join(&name)
            .is_file(),
        "uploaded with the cluster's Secret"
    );
    // Records are still the server's to write.
    assert!(record_names(&s).iter().any(|n| n.starts_with("s3-")));

    let e = fails(&s.kubectl(&["-n", "kube-system", "get", "secret", "sealed"]));
    assert!(e.contains("encrypted at rest"), "{e}");
    let out = s.cli(&["save", "--s3", "--s3-config-secret=sealed"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("encrypted at rest"), "{text}");

    let e = fails(&s.kubectl(&[
        "-n",
        "kube-system",
        "create",
        "configmap",
        "mine",
        "--from-literal=a=b",
    ]));
    assert!(e.contains("this etcd holds a Kubernetes cluster"), "{e}");
    assert!(e.contains("that cluster's kubectl"), "{e}");
}
