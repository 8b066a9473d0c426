//! The Kubernetes API's answers to requests the real API server refuses (issue 24): bad label
//! and field selectors, bad `limit`, `resourceVersion`, `timeoutSeconds` and `continue`,
//! objects too large for etcd or for a request, and `kubectl create -f` with kubectl's default
//! validation. Each must be the API server's status code with a Status naming the problem,
//! never a silent "No resources found". Through the real kubectl and raw HTTPS requests.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// The bearer token of the kubeconfig the server wrote.
fn kube_token(s: &Server) -> String {
    std::fs::read_to_string(s.kubeconfig())
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: ").map(str::to_string))
        .unwrap()
}

/// A raw request to the Kubernetes API with the kubeconfig's token: status and body (status 0
/// and the error when no whole answer came within 10 s, e.g. a watch that went on).
fn raw(s: &Server, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, String) {
    let (url, token) = (format!("{}{path}", s.url()), kube_token(s));
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    rt().block_on(async move {
        let c = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut rb = c.request(method, &url).bearer_auth(token);
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let r = match rb.send().await {
            Ok(r) => r,
            Err(e) => return (0, e.to_string()),
        };
        let code = r.status().as_u16();
        match r.text().await {
            Ok(t) => (code, t),
            Err(e) => (0, format!("{code}, then {e}")),
        }
    })
}

/// Asserts `body` is a Kubernetes Status of `code` whose message holds `want`.
#[track_caller]
fn assert_status(what: &str, code: u16, body: &str, want: &str) {
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: the answer is not JSON ({e}): {body}"));
    assert_eq!(v["kind"], "Status", "{what}: {body}");
    assert_eq!(v["code"], code, "{what}: {body}");
    assert!(
        v["message"].as_str().unwrap_or("").contains(want),
        "{what}: the message does not say {want:?}: {body}"
    );
}

enum Probe {
    /// kubectl with these args: its exit code and what it prints (stdout and stderr).
    Kubectl(&'static [&'static str]),
    /// A raw GET of this path: the HTTP status and body.
    Get(&'static str),
}

#[test]
fn refused_list_and_watch_parameters_are_named_in_a_400() {
    use Probe::*;
    let s = Server::start(Etcd::V35);
    let k = |args: &[&str]| s.kubectl_ks(args);
    ok(&k(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=a=1",
    ]));
    ok(&k(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=a=1",
    ]));
    ok(&k(&["label", "configmap", "settings", "tier=2"]));

    // (probe, exit code or HTTP status, what the output must hold)
    let table: &[(Probe, u16, &str)] = &[
        // Label selectors Kubernetes refuses.
        (
            Kubectl(&["get", "secrets", "-l", "a b"]),
            1,
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
        ),
        (
            Kubectl(&["get", "secrets", "-l", "=x"]),
            1,
            "found '=', expected: !, identifier, or 'end of string'",
        ),
        (
            Kubectl(&["get", "secrets", "-l", "a in (b"]),
            1,
            "unable to parse requirement: found '', expected: ',' or ')'",
        ),
        (
            Kubectl(&["get", "cm", "-l", "a=b c"]),
            1,
            "found 'c', expected: ',' or 'end of string'",
        ),
        (
            Kubectl(&["get", "cm", "-l", "Bad_/x"]),
            1,
            "key: Invalid value: \"Bad_/x\"",
        ),
        (
            Kubectl(&["get", "cm", "-l", "tier>x"]),
            1,
            "the value must be an integer",
        ),
        // Field selectors: fields the resource does not support, terms without an operator.
        (
            Kubectl(&["get", "secrets", "--field-selector", "foo=bar"]),
            1,
            "field label not supported: foo",
        ),
        (
            Kubectl(&["get", "cm", "--field-selector", "type=Opaque"]),
            1,
            "field label not supported: type",
        ),
        (
            Kubectl(&[
                "get",
                "etcdsnapshotfiles",
                "--field-selector",
                "spec.nodeName=n1",
            ]),
            1,
            "field label not supported: spec.nodeName",
        ),
        (
            Kubectl(&["get", "secrets", "--field-selector", "nonsense"]),
            1,
            "can't understand 'nonsense'",
        ),
        // What Kubernetes accepts still works.
        (
            Kubectl(&["get", "secrets", "--field-selector", "type=Opaque"]),
            0,
            "creds",
        ),
        (
            Kubectl(&["get", "cm", "--field-selector", "metadata.name=settings"]),
            0,
            "settings",
        ),
        (
            Kubectl(&["get", "cm", "-l", "tier in (1, 2)"]),
            0,
            "settings",
        ),
        (
            Kubectl(&["get", "cm", "-l", "tier>1,tier<3"]),
            0,
            "settings",
        ),
        (
            Kubectl(&["get", "cm", "-l", "!tier"]),
            0,
            "No resources found",
        ),
        (
            Kubectl(&["get", "cm", "--field-selector", "metadata.name!=settings"]),
            0,
            "No resources found",
        ),
        // The same refusals on watch.
        (
            Get(
                "/api/v1/namespaces/kube-system/secrets?watch=1&timeoutSeconds=1&labelSelector=%3Dx",
            ),
            400,
            "found '=', expected",
        ),
        (
            Get(
                "/api/v1/namespaces/kube-system/secrets?watch=1&timeoutSeconds=1&fieldSelector=foo%3Dbar",
            ),
            400,
            "field label not supported: foo",
        ),
        // limit, resourceVersion, timeoutSeconds, continue.
        (
            Get("/api/v1/namespaces/kube-system/secrets?limit=abc"),
            400,
            "limit: Invalid value: \"abc\"",
        ),
        (
            Get("/api/v1/namespaces/kube-system/secrets?limit=-1"),
            400,
            "limit: Invalid value: \"-1\"",
        ),
        (
            Get("/apis/k3s.cattle.io/v1/etcdsnapshotfiles?limit=1.5"),
            400,
            "limit: Invalid value: \"1.5\"",
        ),
        (
            Get("/api/v1/namespaces/kube-system/secrets?resourceVersion=abc"),
            400,
            "resourceVersion: Invalid value: \"abc\"",
        ),
        (
            Get("/api/v1/namespaces/kube-system/secrets?watch=1&resourceVersion=abc"),
            400,
            "resourceVersion: Invalid value: \"abc\"",
        ),
        (
            Get("/api/v1/namespaces/kube-system/secrets?watch=1&timeoutSeconds=soon"),
            400,
            "timeoutSeconds: Invalid value: \"soon\"",
        ),
        (
            Get("/api/v1/namespaces/kube-system/secrets?continue=garbage"),
            400,
            "continue key is not valid",
        ),
        (
            // A token of another list (the key /registry/configmaps/kube-system/z).
            Get(
                "/api/v1/namespaces/kube-system/secrets?limit=1&continue=L3JlZ2lzdHJ5L2NvbmZpZ21hcHMva3ViZS1zeXN0ZW0veg",
            ),
            400,
            "continue key is not valid",
        ),
        (
            Get(
                "/api/v1/namespaces/kube-system/configmaps?continue=L3JlZ2lzdHJ5L2NvbmZpZ21hcHMva3ViZS1zeXN0ZW0veg&resourceVersion=5",
            ),
            400,
            "specifying resource version is not allowed when using continue",
        ),
        // What Kubernetes accepts still works.
        (
            Get("/api/v1/namespaces/kube-system/secrets?limit=0&resourceVersion=0"),
            200,
            "\"creds\"",
        ),
        (
            Get(
                "/api/v1/namespaces/kube-system/configmaps?limit=1&continue=L3JlZ2lzdHJ5L2NvbmZpZ21hcHMva3ViZS1zeXN0ZW0vYQ",
            ),
            200,
            "\"settings\"",
        ),
        (
            Get(
                "/api/v1/namespaces/kube-system/configmaps?watch=1&timeoutSeconds=1&resourceVersion=1",
            ),
            200,
            "\"settings\"",
        ),
    ];
    let mut failures = Vec::new();
    for (probe, want_code, want) in table {
        match probe {
            Kubectl(args) => {
                let o = k(args);
                let out = format!("{}{}", stdout(&o), stderr(&o));
                let code = o.status.code().unwrap_or(-1);
                if code != i32::from(*want_code) || !out.contains(want) {
                    failures.push(format!(
                        "kubectl {args:?}: exit {code} (want {want_code}), output {out:?} (want {want:?})"
                    ));
                }
            }
            Get(path) => {
                let (code, body) = raw(&s, "GET", path, None);
                let status = serde_json::from_str::<Value>(&body)
                    .ok()
                    .filter(|v| v["kind"] == "Status");
                // A refusal is a Status of the code, reason BadRequest; its message is checked.
                let (status_ok, text) = match &status {
                    Some(v) => (
                        v["code"] == *want_code && v["reason"] == "BadRequest",
                        v["message"].as_str().unwrap_or("").to_string(),
                    ),
                    None => (*want_code == 200, body.clone()),
                };
                let body = text;
                if code != *want_code || !body.contains(want) || !status_ok {
                    failures.push(format!(
                        "GET {path}: {code} (want {want_code}), body {body:?} (want {want:?})"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn kubectl_create_and_apply_f_work_with_default_validation() {
    let s = Server::start(Etcd::V35);
    let dir = s.data_dir().to_path_buf();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let secret = write(
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: kube-system\nstringData:\n  user: admin\n",
    );
    let cm = write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: kube-system\ndata:\n  a: \"1\"\n",
    );
    let record = write(
        "rec.yaml",
        "apiVersion: k3s.cattle.io/v1\nkind: ETCDSnapshotFile\nmetadata:\n  name: local-x-000000\nspec:\n  snapshotName: x\n  nodeName: n1\n  location: file:///x\n",
    );
    let pod = write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: default\n",
    );
    ok(&s.kubectl(&["create", "-f", &secret]));
    ok(&s.kubectl(&["apply", "-f", &cm]));
    ok(&s.kubectl(&["apply", "-f", &cm]));
    ok(&s.kubectl(&["replace", "-f", &secret]));
    // Records are refused by the server, with its reason, not by kubectl for want of OpenAPI.
    let e = fails(&s.kubectl(&["create", "-f", &record]));
    assert!(
        e.contains("written by the etcdsnap server only") && !e.contains("openapi"),
        "{e}"
    );
    let e = fails(&s.kubectl(&["apply", "-f", &record]));
    assert!(!e.contains("openapi"), "{e}");
    // A kind not served: kubectl says so (it falls back to OpenAPI v2, which has no schema).
    let e = fails(&s.kubectl(&["create", "-f", &pod]));
    assert!(
        e.contains("no matches for kind \"Pod\"") && !e.contains("openapi"),
        "{e}"
    );
    let (code, body) = raw(&s, "GET", "/openapi/v2", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["swagger"],
        "2.0"
    );
}

#[test]
fn objects_too_large_for_etcd_or_a_request_are_413() {
    let s = Server::start(Etcd::V35);
    let dir = s.data_dir().to_path_buf();
    let file = |name: &str, bytes: usize| {
        let p = dir.join(name);
        std::fs::write(&p, vec![b'a'; bytes]).unwrap();
        format!("v={}", p.display())
    };
    let k = |args: &[&str]| s.kubectl_ks(args);
    // Under etcd's 1.5 MiB: stored.
    ok(&k(&[
        "create",
        "cm",
        "fits",
        "--from-file",
        &file("1m", 1 << 20),
    ]));
    // Over it, refused by etcd's check (1.7 MB) and by its gRPC limit (2.2 MB): a 413 naming
    // the size and the limit.
    for (name, bytes) in [("big-a", 1_700_000), ("big-b", 2_200_000)] {
        let e = fails(&k(&[
            "create",
            "cm",
            name,
            "--from-file",
            &file(name, bytes),
        ]));
        assert!(
            e.contains("is too large to store") && e.contains("1572864") && !e.contains("grpc"),
            "{name}: {e}"
        );
    }
    // A Secret's base64 makes 1.2 MB of data 1.6 MB.
    let e = fails(&k(&[
        "create",
        "secret",
        "generic",
        "big",
        "--from-file",
        &file("s", 1_200_000),
    ]));
    assert!(e.contains("Secret \"big\" is too large to store"), "{e}");
    // An update that grows past the limit.
    let big = "a".repeat(1_700_000);
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "fits", "namespace": "kube-system"},
        "data": {"v": big},
    });
    let (code, text) = raw(
        &s,
        "PUT",
        "/api/v1/namespaces/kube-system/configmaps/fits",
        Some(serde_json::to_vec(&body).unwrap()),
    );
    assert_eq!(code, 413, "{text}");
    assert_status(
        "PUT",
        413,
        &text,
        "ConfigMap \"fits\" is too large to store",
    );
    // Over the API server's 3 MiB body limit.
    let e = fails(&k(&[
        "create",
        "cm",
        "huge",
        "--from-file",
        &file("h", 3_300_000),
    ]));
    assert!(
        e.contains("Request entity too large: limit is 3145728"),
        "{e}"
    );
    let (code, text) = raw(
        &s,
        "POST",
        "/api/v1/namespaces/kube-system/configmaps",
        Some(vec![b' '; 3 << 20 | 1]),
    );
    assert_status("POST", 413, &text, "limit is 3145728");
    assert_eq!(code, 413);
    // Nothing of it was stored, and the small one is intact.
    let names = ok(&k(&["get", "cm", "-o", "name"]));
    assert_eq!(names.trim(), "configmap/fits", "{names}");
    let e = fails(&k(&["get", "secret", "big"]));
    assert!(e.contains("not found"), "{e}");
}
