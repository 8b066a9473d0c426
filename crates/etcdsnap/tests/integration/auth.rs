//! The supervisor's credentials against a real server: the failure limiter (the right token
//! always passes; guessing is slowed, and its rate is measured), the viewer and join tokens
//! (each reaches only its endpoints, and is rotated by rewriting its file), and cross-site
//! requests (refused, nothing deleted), on the supervisor's endpoints and the Kubernetes API.

use std::time::{Duration, Instant};

use crate::harness::*;

/// The secret of a `K10<hash>::<user>:<secret>` token file of `s`.
fn secret_of(s: &Server, file: &str) -> String {
    let t = std::fs::read_to_string(s.data_dir().join("server").join(file)).unwrap();
    t.trim().rsplit(':').next().unwrap().to_string()
}

/// (what, request, body, the viewer's status, the join token's status)
type RoleCase<'a> = (&'a str, (&'a str, &'a str), Option<&'a str>, u16, u16);
/// (what, headers, status, what the answer says)
type HeaderCase<'a> = (&'a str, Vec<(&'a str, String)>, u16, &'a str);
/// (name, headers, status)
type KubeCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `method path` with Basic `user:secret` (when given) and a JSON body (when given); the
/// status and the answer.
async fn call(
    c: &reqwest::Client,
    s_url: &str,
    (method, path): (&str, &str),
    login: Option<(&str, &str)>,
    body: Option<&str>,
) -> (u16, String) {
    let mut rb = c.request(method.parse().unwrap(), format!("{s_url}{path}"));
    if let Some((user, secret)) = login {
        rb = rb.basic_auth(user, Some(secret));
    }
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[test]
fn the_right_token_passes_after_25_wrong_ones_and_guessing_is_slowed() {
    let s = Server::start(Etcd::V35);
    let secret = secret_of(&s, "token");
    let url = s.url();
    let list = Some(r#"{"operation":"list"}"#);
    let (right, pending_then, answers) = rt().block_on(async {
        let c = client();
        let started = Instant::now();
        // 25 wrong guesses at once from 127.0.0.1, at the snapshot and the progress endpoints.
        let mut guesses = tokio::task::JoinSet::new();
        for i in 0..25 {
            let (c, url) = (c.clone(), url.clone());
            guesses.spawn(async move {
                let guess = format!("guess-{i:02}-0123456789abcdef");
                let ep = if i % 2 == 0 {
                    ("POST", "/db/snapshot")
                } else {
                    ("GET", "/db/snapshot/progress")
                };
                let body = (i % 2 == 0).then_some(r#"{"operation":"list"}"#);
                let (code, _) = call(&c, &url, ep, Some(("server", &guess)), body).await;
                (code, started.elapsed())
            });
        }
        // Once a wrong answer is out, the failures are counted; then the right token.
        let first = guesses.join_next().await.unwrap().unwrap();
        let asked = Instant::now();
        let right = call(
            &c,
            &url,
            ("POST", "/db/snapshot"),
            Some(("server", &secret)),
            list,
        )
        .await;
        let right = (right.0, asked.elapsed());
        let pending_then = guesses.len();
        let mut answers = vec![first];
        while let Some(a) = guesses.join_next().await {
            answers.push(a.unwrap());
        }
        (right, pending_then, answers)
    });
    assert_eq!(right.0, 200, "the right token after 25 wrong ones");
    assert!(
        right.1 < Duration::from_secs(3),
        "the right token waited {:?}",
        right.1
    );
    assert!(
        pending_then >= 15,
        "the right token was answered while {pending_then} wrong answers still waited"
    );
    assert!(answers.iter().all(|(c, _)| *c == 401), "{answers:?}");
    // The measured rate: 25 wrong answers, one after another, each delayed.
    let last = answers.iter().map(|(_, t)| *t).max().unwrap();
    let rate = answers.len() as f64 / last.as_secs_f64();
    let least: Duration = (1..=25)
        .map(etcdsnap_core::server::auth::AuthGuard::delay)
        .sum();
    println!(
        "guess rate from one address: 25 wrong guesses answered over {:.1}s = {rate:.2} guesses/s (delays alone: {:.1}s; steady state 1 per {:?})",
        last.as_secs_f64(),
        least.as_secs_f64(),
        etcdsnap_core::server::auth::AuthGuard::CAP
    );
    assert!(
        last >= least.mul_f64(0.95),
        "25 failures answered in {last:?}, less than their delays {least:?}"
    );
    assert!(rate <= 1.5, "{rate} guesses/s");
    // And the CLI on the same address works meanwhile and after.
    ok(&s.cli(&["ls"]));
    assert!(s.log_text().contains("failed authentications"));
}

#[test]
fn viewer_and_join_tokens_reach_only_their_endpoints_and_rotate() {
    let s = Server::start(Etcd::V35);
    ok(&s.cli(&["save", "--name", "keep"]));
    let files = s.snapshot_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].clone();
    for (file, user) in [("viewer-token", "viewer"), ("join-token", "join")] {
        let p = s.data_dir().join("server").join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("K10") && text.contains(&format!("::{user}:")),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let viewer = secret_of(&s, "viewer-token");
    let join = secret_of(&s, "join-token");
    let url = s.url();
    let delete = format!(r#"{{"operation":"delete","name":["{name}"]}}"#);
    let save = r#"{"operation":"save"}"#;
    let remove = r#"{"name":"n1"}"#;
    let cases: Vec<RoleCase> = vec![
        ("page", ("GET", "/ui"), None, 200, 403),
        ("page data", ("GET", "/ui.json"), None, 200, 403),
        ("progress", ("GET", "/db/snapshot/progress"), None, 200, 403),
        ("save", ("POST", "/db/snapshot"), Some(save), 403, 403),
        ("delete", ("POST", "/db/snapshot"), Some(&delete), 403, 403),
        (
            "bootstrap",
            ("GET", "/v1-etcdsnap/server-bootstrap"),
            None,
            403,
            200,
        ),
        ("members", ("GET", "/db/info"), None, 403, 200),
        (
            "member remove",
            ("POST", "/db/member-remove"),
            Some(remove),
            403,
            403,
        ),
    ];
    let got = rt().block_on(async {
        let c = client();
        let mut got = Vec::new();
        for (what, req, body, _, _) in &cases {
            let v = call(&c, &url, *req, Some(("viewer", &viewer)), *body).await;
            let j = call(&c, &url, *req, Some(("join", &join)), *body).await;
            got.push((*what, v, j));
        }
        got
    });
    for ((what, _, _, want_v, want_j), (_, v, j)) in cases.iter().zip(&got) {
        assert_eq!(v.0, *want_v, "viewer {what}: {}", v.1);
        assert_eq!(j.0, *want_j, "join {what}: {}", j.1);
        if v.0 == 403 {
            assert!(v.1.contains("the viewer token may not"), "{}", v.1);
        }
    }
    assert!(got[0].1.1.contains(&name), "the page lists the snapshot");
    assert!(
        got[5].2.1.contains("ServerCAKey"),
        "the join token gets the CAs"
    );
    assert_eq!(
        s.snapshot_files(),
        vec![name.clone()],
        "nothing saved or deleted"
    );
    // The viewer token given to the CLI is told what it lacks.
    let viewer_token = std::fs::read_to_string(s.data_dir().join("server/viewer-token")).unwrap();
    let err = fails(&s.cli(&["delete", &name, "--etcd-token", viewer_token.trim()]));
    assert!(err.contains("the viewer token may not"), "{err}");
    assert_eq!(s.snapshot_files(), vec![name]);

    // Rotation: a new secret in the file is in force within a few seconds, the old one refused.
    let file = s.data_dir().join("server/viewer-token");
    let new = "fedcba9876543210fedcba9876543210";
    std::fs::write(&file, format!("{new}\n")).unwrap();
    let page = |secret: &str| {
        let secret = secret.to_string();
        let url = url.clone();
        rt().block_on(async move {
            call(
                &client(),
                &url,
                ("GET", "/ui.json"),
                Some(("viewer", &secret)),
                None,
            )
            .await
            .0
        })
    };
    wait_for(Duration::from_secs(10), "the new viewer token", || {
        (page(new) == 200).then_some(())
    });
    assert_eq!(page(&viewer), 401, "the old viewer token still works");
    assert!(s.log_text().contains("the new one is in force"));
}

#[test]
fn a_cross_site_text_plain_delete_is_refused_and_deletes_nothing() {
    let s = Server::start(Etcd::V35);
    ok(&s.cli(&["save", "--name", "keep"]));
    let files = s.snapshot_files();
    let name = files[0].clone();
    let secret = secret_of(&s, "token");
    let url = s.url();
    let delete = format!(r#"{{"operation":"delete","name":["{name}"]}}"#);
    let host = format!("127.0.0.1:{}", s.port);
    let cases: Vec<HeaderCase> = vec![
        (
            "text/plain, as a form of another site posts it",
            vec![("content-type", "text/plain".into())],
            415,
            "is not accepted here",
        ),
        (
            "JSON from another site's page",
            vec![
                ("content-type", "application/json".into()),
                ("origin", "https://evil.example".into()),
            ],
            403,
            "cross-site request refused",
        ),
        (
            "text/plain, the browser saying cross-site",
            vec![
                ("content-type", "text/plain".into()),
                ("sec-fetch-site", "cross-site".into()),
            ],
            403,
            "cross-site request refused",
        ),
        (
            "same-site is another origin too",
            vec![
                ("content-type", "application/json".into()),
                ("sec-fetch-site", "same-site".into()),
                ("origin", format!("https://{host}")),
            ],
            403,
            "cross-site request refused",
        ),
    ];
    let got = rt().block_on(async {
        let c = client();
        let mut got = Vec::new();
        for (_, headers, _, _) in &cases {
            let mut rb = c
                .post(format!("{url}/db/snapshot"))
                .basic_auth("server", Some(&secret))
                .body(delete.clone());
            for (k, v) in headers {
                rb = rb.header(*k, v);
            }
            let r = rb.send().await.unwrap();
            got.push((r.status().as_u16(), r.text().await.unwrap()));
        }
        got
    });
    for ((what, _, code, says), (got_code, body)) in cases.iter().zip(&got) {
        assert_eq!(got_code, code, "{what}: {body}");
        assert!(body.contains(says), "{what}: {body}");
    }
    assert_eq!(
        s.snapshot_files(),
        vec![name.clone()],
        "a snapshot was deleted"
    );
    assert!(ok(&s.cli(&["ls"])).contains(&name));
    // The server's own origin (a form on its own page, were there one) still works.
    let own = rt().block_on(async {
        client()
            .post(format!("{url}/db/snapshot"))
            .basic_auth("server", Some(&secret))
            .header("content-type", "application/json")
            .header("origin", format!("https://{host}"))
            .body(delete.clone())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(own, 200);
    assert!(s.snapshot_files().is_empty());
}

#[test]
fn kubernetes_api_writes_refuse_other_body_types_and_cross_site_origins() {
    let s = Server::start(Etcd::V35);
    let bearer = std::fs::read_to_string(s.data_dir().join("server/cred/admin.token")).unwrap();
    let url = format!("{}/api/v1/namespaces/kube-system/configmaps", s.url());
    let cm = |name: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"k":"v"}}}}"#
        )
    };
    let cases: Vec<KubeCase> = vec![
        ("text-plain", vec![("content-type", "text/plain")], 415),
        (
            "form",
            vec![("content-type", "application/x-www-form-urlencoded")],
            415,
        ),
        (
            "cross-origin",
            vec![
                ("content-type", "application/json"),
                ("origin", "https://evil.example"),
            ],
            403,
        ),
        (
            "cross-site",
            vec![
                ("content-type", "application/json"),
                ("sec-fetch-site", "cross-site"),
            ],
            403,
        ),
        ("json", vec![("content-type", "application/json")], 201),
    ];
    let got = rt().block_on(async {
        let c = client();
        let mut got = Vec::new();
        for (name, headers, _) in &cases {
            let mut rb = c.post(&url).bearer_auth(bearer.trim()).body(cm(name));
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            let r = rb.send().await.unwrap();
            got.push((r.status().as_u16(), r.text().await.unwrap()));
        }
        got
    });
    for ((name, _, code), (got_code, body)) in cases.iter().zip(&got) {
        assert_eq!(got_code, code, "{name}: {body}");
    }
    // Only the JSON one was written; kubectl still writes (it sends JSON or protobuf).
    let listed = ok(&s.kubectl(&["-n", "kube-system", "get", "cm", "-o", "name"]));
    assert_eq!(listed.trim(), "configmap/json", "{listed}");
    ok(&s.kubectl(&[
        "-n",
        "kube-system",
        "create",
        "configmap",
        "by-kubectl",
        "--from-literal=k=v",
    ]));
    ok(&s.kubectl(&["-n", "kube-system", "label", "cm", "by-kubectl", "x=y"]));
    ok(&s.kubectl(&["-n", "kube-system", "delete", "cm", "by-kubectl"]));
    // Wrong bearer tokens are slowed like wrong Basic logins; the right one still passes.
    let sixth = rt().block_on(async {
        let c = client();
        let mut took = Duration::ZERO;
        for i in 0..6 {
            let t = Instant::now();
            let r = c
                .get(&url)
                .bearer_auth(format!("guess-{i}-0123456789abcdef"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 401);
            took = t.elapsed();
        }
        took
    });
    assert!(
        sixth >= Duration::from_millis(900),
        "the 6th guess took {sixth:?}"
    );
    ok(&s.kubectl(&["-n", "kube-system", "get", "cm"]));
}
