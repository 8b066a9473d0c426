//! One table of bad input: server flags and config files, CLI flags and names, API bodies. Every
//! row must fail with a clear message (checked word for word where K3s has one), with the exit
//! code or HTTP status it names, and leave no snapshot behind.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::*;

enum Input {
    /// `etcdsnap server` with these flags (and a config file when given): must not start.
    Server(Vec<String>, Option<&'static str>),
    /// `etcdsnap etcd-snapshot` against the running server (the row's flags come last, so
    /// they win).
    Cli(Vec<String>),
    /// `etcdsnap etcd-snapshot` with only the row's arguments.
    Local(Vec<String>),
    /// A raw `POST /db/snapshot` body with the right token.
    Api(Vec<u8>),
}

struct Row {
    what: &'static str,
    input: Input,
    /// Exit code of the process, or HTTP status for `Api` rows.
    code: i32,
    says: &'static str,
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn server(args: &[&str]) -> Input {
    Input::Server(strs(args), None)
}

fn config(text: &'static str) -> Input {
    Input::Server(Vec::new(), Some(text))
}

fn cli(args: &[&str]) -> Input {
    Input::Cli(strs(args))
}

fn api(body: &str) -> Input {
    Input::Api(body.as_bytes().to_vec())
}

fn rows(dir: &std::path::Path) -> Vec<Row> {
    let long = "n".repeat(300);
    let writable_token = dir.join("token-666");
    std::fs::write(&writable_token, "secret").unwrap();
    std::fs::set_permissions(&writable_token, std::fs::Permissions::from_mode(0o666)).unwrap();
    let tf = format!("--token-file={}", writable_token.display());
    let random = dir.join("random.pem");
    std::fs::write(
        &random,
        (0..300u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let random_ca = format!("--datastore-cafile={}", random.display());
    let random_key = format!("--datastore-keyfile={}", random.display());
    let random_cert = format!("--datastore-certfile={}", random.display());
    let weak = |name: &str, text: &str| -> &'static str {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        Box::leak(p.display().to_string().into_boxed_str())
    };
    let weak_token_file = format!("--token-file={}", weak("weak-token", "short-secret\n"));
    let weak_viewer = format!("--viewer-token-file={}", weak("weak-viewer", "abc\n"));
    let weak_join = format!(
        "--join-token-file={}",
        weak("weak-join", &format!("K10{}::join:abc\n", "0".repeat(64)))
    );
    let viewer_as_join = format!(
        "--join-token-file={}",
        weak(
            "viewer-as-join",
            &format!("K10{}::viewer:0123456789abcdef0123\n", "0".repeat(64)),
        )
    );
    let cli_tf = format!("--etcd-token-file={}", writable_token.display());
    let empty_token = dir.join("token-empty");
    std::fs::write(&empty_token, "\n").unwrap();
    std::fs::set_permissions(&empty_token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cli_empty = format!("--token-file={}", empty_token.display());
    let other_ca = format!("K10{}::server:x", "0".repeat(64));
    let big_body = format!(
        r#"{{"operation":"list","name":["{}"]}}"#,
        "x".repeat(2 << 20)
    );
    // Leaked once for the table's 'static strings.
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        // --- server flags ----------------------------------------------------------------
        Row {
            what: "invalid cron",
            input: server(&["--etcd-snapshot-schedule-cron", "0 */12 * *"]),
            code: 1,
            says: "--etcd-snapshot-schedule-cron",
        },
        Row {
            what: "cron with a bad field",
            input: server(&["--etcd-snapshot-schedule-cron", "99 * * * *"]),
            code: 1,
            says: "99",
        },
        Row {
            what: "drill cron with a bad field",
            input: server(&["--etcd-snapshot-drill-schedule-cron", "0 25 * * *"]),
            code: 1,
            says: "--etcd-snapshot-drill-schedule-cron",
        },
        Row {
            what: "drills with no etcd to run them",
            input: server(&[
                "--etcd-snapshot-drill-schedule-cron=@every 1h",
                "--etcdutl-binary=/nonexistent/etcdutl",
            ]),
            code: 1,
            says: "/nonexistent/etcdutl",
        },
        Row {
            what: "non-numeric retention",
            input: server(&["--etcd-snapshot-retention", "abc"]),
            code: 2,
            says: "invalid value 'abc'",
        },
        Row {
            what: "bad S3 timeout",
            input: server(&["--etcd-s3", "--etcd-s3-bucket=bkt", "--etcd-s3-timeout=5x"]),
            code: 1,
            says: "invalid --etcd-s3-timeout",
        },
        Row {
            what: "zero S3 timeout",
            input: server(&["--etcd-s3", "--etcd-s3-bucket=bkt", "--etcd-s3-timeout=0s"]),
            code: 1,
            says: "etcd-s3-timeout must be greater than 0s",
        },
        Row {
            what: "S3 endpoint 127.0.0.1:abc",
            input: server(&["--etcd-s3", "--etcd-s3-bucket=bkt", "--etcd-s3-endpoint=127.0.0.1:abc"]),
            code: 1,
            says: "the port \"abc\" is not a number from 1 to 65535",
        },
        Row {
            what: "S3 endpoint 127.0.0.1:99999",
            input: server(&["--etcd-s3", "--etcd-s3-bucket=bkt", "--etcd-s3-endpoint=127.0.0.1:99999"]),
            code: 1,
            says: "the port \"99999\" is not a number from 1 to 65535",
        },
        Row {
            what: "S3 endpoint [::1",
            input: server(&["--etcd-s3", "--etcd-s3-bucket=bkt", "--etcd-s3-endpoint=[::1"]),
            code: 1,
            says: "lacks its closing ']'",
        },
        Row {
            what: "S3 endpoint bob@minio:9000",
            input: server(&["--etcd-s3", "--etcd-s3-bucket=bkt", "--etcd-s3-endpoint=bob@minio:9000"]),
            code: 1,
            says: "user information (user@host) is not allowed",
        },
        Row {
            what: "S3 endpoint with a scheme",
            input: server(&[
                "--etcd-s3",
                "--etcd-s3-bucket=bkt",
                "--etcd-s3-endpoint=https://minio:9000",
            ]),
            code: 1,
            says: "without a scheme",
        },
        Row {
            what: "S3 proxy without scheme",
            input: server(&["--etcd-s3", "--etcd-s3-bucket=bkt", "--etcd-s3-proxy=notaurl"]),
            code: 1,
            says: "invalid etcd-s3-proxy \"notaurl\": proxy URL must include scheme and host",
        },
        Row {
            what: "S3 bucket name in upper case",
            input: server(&["--etcd-s3", "--etcd-s3-bucket=UPPER"]),
            code: 1,
            says: "invalid etcd-s3-bucket \"UPPER\": S3 bucket names are 3 to 63 lowercase letters",
        },
        Row {
            what: "S3 bucket name too short (CLI)",
            input: cli(&["ls", "--s3", "--s3-bucket=ab"]),
            code: 1,
            says: "invalid --s3-bucket \"ab\"",
        },
        Row {
            what: "S3 bucket name with underscores (API)",
            input: api(r#"{"operation":"list","s3":{"bucket":"a_b_c","timeout":"5s","accessKey":"A","secretKey":"S"}}"#),
            code: 400,
            says: "S3 bucket names are 3 to 63 lowercase letters",
        },
        Row {
            what: "S3 proxy of a scheme we do not speak",
            input: server(&["--etcd-s3", "--etcd-s3-bucket=bkt", "--etcd-s3-proxy=ftp://p:21"]),
            code: 1,
            says: "invalid etcd-s3-proxy \"ftp://p:21\": the scheme \"ftp\" is not a proxy etcdsnap speaks",
        },
        Row {
            what: "S3 folder with ..",
            input: server(&["--etcd-s3", "--etcd-s3-bucket=bkt", "--etcd-s3-folder=a/../b"]),
            code: 1,
            says: "etcd-s3-folder",
        },
        Row {
            what: "S3 bucket lookup type",
            input: server(&[
                "--etcd-s3",
                "--etcd-s3-bucket=bkt",
                "--etcd-s3-bucket-lookup-type=virtual",
            ]),
            code: 1,
            says: "must be auto, dns or path",
        },
        Row {
            what: "S3 CA that is not a file",
            input: server(&[
                "--etcd-s3",
                "--etcd-s3-bucket=bkt",
                "--etcd-s3-endpoint-ca=/no/such/ca.pem",
            ]),
            code: 1,
            says: "/no/such/ca.pem",
        },
        Row {
            what: "unknown flag",
            input: server(&["--no-such-flag"]),
            code: 2,
            says: "unexpected argument '--no-such-flag'",
        },
        Row {
            what: "node name with a slash",
            input: server(&["--node-name", "a/b"]),
            code: 1,
            says: "invalid --node-name",
        },
        Row {
            what: "node name starting with a dot",
            input: server(&["--node-name", ".hidden"]),
            code: 1,
            says: "starts with '.'",
        },
        Row {
            what: "scheduled prefix with ..",
            input: server(&["--etcd-snapshot-name", ".."]),
            code: 1,
            says: "invalid snapshot name prefix",
        },
        Row {
            what: "external endpoint scheme",
            input: server(&["--datastore-endpoint", "ftp://x"]),
            code: 1,
            says: "must be an http:// or https://",
        },
        Row {
            what: "empty external endpoint",
            input: server(&["--datastore-endpoint", ","]),
            code: 1,
            says: "--datastore-endpoint is empty",
        },
        Row {
            what: "client cert without key",
            input: server(&[
                "--datastore-endpoint",
                "https://127.0.0.1:1",
                "--datastore-certfile",
                "/x.crt",
            ]),
            code: 1,
            says: "needs both --datastore-certfile and --datastore-keyfile",
        },
        Row {
            what: "datastore CA file of random bytes",
            input: server(&["--datastore-endpoint", "https://127.0.0.1:1", &random_ca]),
            code: 1,
            says: "random.pem does not hold a PEM certificate",
        },
        Row {
            what: "datastore client key of random bytes",
            input: server(&[
                "--datastore-endpoint",
                "https://127.0.0.1:1",
                &random_cert,
                &random_key,
            ]),
            code: 1,
            says: "--datastore-certfile",
        },
        Row {
            what: "data dir under a file",
            input: server(&["-d", "/etc/passwd/x"]),
            code: 1,
            says: "/etc/passwd/x",
        },
        Row {
            what: "CLI: world-writable token file",
            input: cli(&["ls", &cli_tf]),
            code: 1,
            says: "chmod 600",
        },
        Row {
            what: "CLI: empty token file",
            input: cli(&["ls", &cli_empty]),
            code: 1,
            says: "is empty: put the server's token in it",
        },
        Row {
            what: "CLI: token file and token both",
            input: cli(&["ls", &cli_empty, "--etcd-token", "x"]),
            code: 2,
            says: "cannot be used with",
        },
        Row {
            what: "world-writable token file",
            input: Input::Server(vec![tf], None),
            code: 1,
            says: "chmod 600",
        },
        Row {
            what: "weak token",
            input: server(&["--token", "short-secret"]),
            code: 1,
            says: "the token secret of --token (or ETCDSNAP_TOKEN) is 12 characters long; a token secret needs at least 16 (etcdsnap generates 32 hex digits): generate one with `openssl rand -hex 16`",
        },
        Row {
            what: "weak token file",
            input: Input::Server(vec![weak_token_file], None),
            code: 1,
            says: "weak-token is 12 characters long",
        },
        Row {
            what: "weak viewer token file",
            input: Input::Server(vec![weak_viewer], None),
            code: 1,
            says: "the token secret of --viewer-token-file",
        },
        Row {
            what: "weak join token file",
            input: Input::Server(vec![weak_join], None),
            code: 1,
            says: "`openssl rand -hex 16`",
        },
        Row {
            what: "missing join token file",
            input: server(&["--join-token-file=/nonexistent/join-token"]),
            code: 1,
            says: "/nonexistent/join-token",
        },
        Row {
            what: "a viewer token as the join token",
            input: Input::Server(vec![viewer_as_join], None),
            code: 1,
            says: "not the join token",
        },
        Row {
            what: "join with a weak token",
            input: server(&["--server", "https://10.0.0.1:9345", "--token", "short"]),
            code: 1,
            says: "the token secret of --token (or ETCDSNAP_TOKEN) is 5 characters long",
        },
        Row {
            what: "restore path without reset",
            input: server(&["--cluster-reset-restore-path=/x"]),
            code: 1,
            says: "invalid flag use; --cluster-reset required with --cluster-reset-restore-path",
        },
        Row {
            what: "join without a token",
            input: server(&["--server", "https://10.0.0.1:9345"]),
            code: 1,
            says: "joining a cluster with --server needs its token: pass --token or --token-file",
        },
        Row {
            what: "join over plain http",
            input: server(&["--server", "http://10.0.0.1:9345", "--token", "x"]),
            code: 1,
            says: "--server must be the https:// supervisor URL",
        },
        Row {
            what: "join with an external datastore",
            input: server(&[
                "--server",
                "https://10.0.0.1:9345",
                "--token",
                "x",
                "--datastore-endpoint",
                "https://127.0.0.1:2379",
            ]),
            code: 1,
            says: "with --datastore-endpoint every server attaches to the external cluster itself",
        },
        Row {
            what: "member ls output",
            input: Input::Cli(strs(&["member", "ls", "-o", "yaml"])),
            code: 1,
            says: "invalid output format: yaml (use table or json)",
        },
        Row {
            what: "member remove without names",
            input: Input::Cli(strs(&["member", "remove"])),
            code: 2,
            says: "required arguments were not provided",
        },
        // --- config files ------------------------------------------------------------------
        Row {
            what: "config list for a number",
            input: config("etcd-snapshot-retention: [1, 2]\n"),
            code: 2,
            says: "key etcd-snapshot-retention: a list of 2 values",
        },
        Row {
            what: "config wrong type",
            input: config("etcd-snapshot-retention: abc\n"),
            code: 2,
            says: "key etcd-snapshot-retention: invalid value 'abc'",
        },
        Row {
            what: "config nested mapping",
            input: config("etcd-s3:\n  bucket: b\n"),
            code: 2,
            says: "etcd-s3",
        },
        Row {
            what: "config appends to a single-value flag",
            input: config("etcd-snapshot-retention+: 3\n"),
            code: 2,
            says: "etcd-snapshot-retention+: appends to a list, but --etcd-snapshot-retention takes one value; write etcd-snapshot-retention: instead",
        },
        Row {
            what: "config file of 2 MiB",
            input: Input::Server(
                Vec::new(),
                Some(leak(format!("etcd-snapshot-retention: 3\n{}", "#".repeat(2 << 20)))),
            ),
            code: 2,
            says: "a config file holds flags and may be at most 1048576 bytes",
        },
        Row {
            what: "config not YAML",
            input: config("key: [unclosed\n"),
            code: 2,
            says: "invalid YAML",
        },
        Row {
            what: "unknown compression format",
            input: server(&["--etcd-snapshot-compress-format", "gzip"]),
            code: 2,
            says: "gzip",
        },
        Row {
            what: "compression level out of range",
            input: server(&[
                "--etcd-snapshot-compress-format",
                "zstd",
                "--etcd-snapshot-compress-level",
                "20",
            ]),
            code: 1,
            says: "--etcd-snapshot-compress-level",
        },
        Row {
            what: "upload concurrency 0",
            input: server(&["--etcd-s3-upload-concurrency", "0"]),
            code: 2,
            says: "--etcd-s3-upload-concurrency",
        },
        Row {
            what: "unknown S3 checksum",
            input: server(&["--etcd-s3-checksum", "md5"]),
            code: 2,
            says: "md5",
        },
        // --- CLI -------------------------------------------------------------------------
        Row {
            what: "zip level 0",
            input: cli(&["save", "--snapshot-compress", "--snapshot-compress-level=0"]),
            code: 1,
            says: "invalid compression level 0 for zip",
        },
        Row {
            what: "prefix ..",
            input: cli(&["save", "--name", ".."]),
            code: 1,
            says: "starts with '.'",
        },
        Row {
            what: "hidden prefix",
            input: cli(&["save", "--name", ".x"]),
            code: 1,
            says: "hidden files are not snapshots",
        },
        Row {
            what: "prefix with a newline",
            input: cli(&["save", "--name", "a\nb"]),
            code: 1,
            says: "control characters",
        },
        Row {
            what: "prefix with a slash",
            input: cli(&["save", "--name", "a/b"]),
            code: 1,
            says: "directory part",
        },
        Row {
            what: "prefix of 300 bytes",
            input: cli(&["save", "--name", &long]),
            code: 1,
            says: "300 bytes long",
        },
        Row {
            what: "save with arguments",
            input: cli(&["save", "extra"]),
            code: 1,
            says: "save takes no arguments",
        },
        Row {
            what: "delete without names",
            input: cli(&["delete"]),
            code: 1,
            says: "no snapshots given for removal",
        },
        Row {
            what: "delete a .part",
            input: cli(&["delete", "on-demand-n1-1.part"]),
            code: 1,
            says: "in-progress (.part)",
        },
        Row {
            what: "delete a hidden file",
            input: cli(&["delete", ".hidden"]),
            code: 1,
            says: "hidden",
        },
        Row {
            what: "delete with a path",
            input: cli(&["delete", "../etc/passwd"]),
            code: 1,
            says: "invalid snapshot name: path traversal not allowed",
        },
        Row {
            what: "delete a 300-byte name",
            input: cli(&["delete", &long]),
            code: 1,
            says: "300 bytes long",
        },
        Row {
            what: "ls output format",
            input: cli(&["ls", "-o", "xml"]),
            code: 1,
            says: "invalid output format: xml",
        },
        Row {
            what: "non-numeric CLI retention",
            input: cli(&["prune", "--snapshot-retention", "x"]),
            code: 2,
            says: "invalid value 'x'",
        },
        Row {
            what: "unknown CLI flag",
            input: cli(&["ls", "--bogus"]),
            code: 2,
            says: "unexpected argument '--bogus'",
        },
        Row {
            what: "a dir the server does not allow",
            input: cli(&["save", "--dir", "/no/such/dir"]),
            code: 1,
            says: "snapshot dir \"/no/such/dir\" is not one this server allows",
        },
        Row {
            what: "wrong token",
            input: cli(&[
                "ls",
                "--etcd-token",
                leak(format!("K10{}::server:wrong", "a".repeat(64))),
            ]),
            code: 1,
            says: "does not match the token's CA hash",
        },
        Row {
            what: "other cluster's token",
            input: cli(&["ls", "--etcd-token", leak(other_ca)]),
            code: 1,
            says: "does not match the token's CA hash",
        },
        Row {
            what: "malformed token",
            input: cli(&["ls", "--etcd-token", "K10abc::server:x"]),
            code: 1,
            says: "malformed token",
        },
        Row {
            what: "http server URL",
            input: cli(&["ls", "--etcd-server", "http://127.0.0.1:1"]),
            code: 1,
            says: "must be an https:// URL",
        },
        Row {
            what: "S3 without bucket",
            input: cli(&["save", "--s3", "--s3-endpoint=127.0.0.1:1"]),
            code: 1,
            says: "s3 bucket name was not set",
        },
        Row {
            what: "S3 folder with .. (CLI)",
            input: cli(&["ls", "--s3", "--s3-bucket=bkt", "--s3-folder=../x"]),
            code: 1,
            says: "--s3-folder \"../x\" must not contain",
        },
        Row {
            what: "S3 endpoint 127.0.0.1:abc (CLI)",
            input: cli(&["save", "--s3", "--s3-bucket=bkt", "--s3-endpoint=127.0.0.1:abc"]),
            code: 1,
            says: "the port \"abc\" is not a number from 1 to 65535",
        },
        Row {
            what: "S3 endpoint 127.0.0.1:99999 (CLI)",
            input: cli(&["save", "--s3", "--s3-bucket=bkt", "--s3-endpoint=127.0.0.1:99999"]),
            code: 1,
            says: "the port \"99999\" is not a number from 1 to 65535",
        },
        Row {
            what: "S3 endpoint [::1 (CLI)",
            input: cli(&["save", "--s3", "--s3-bucket=bkt", "--s3-endpoint=[::1"]),
            code: 1,
            says: "lacks its closing ']'",
        },
        Row {
            what: "S3 endpoint bob@minio:9000 (CLI)",
            input: cli(&["save", "--s3", "--s3-bucket=bkt", "--s3-endpoint=bob@minio:9000"]),
            code: 1,
            says: "user information (user@host) is not allowed",
        },
        Row {
            what: "dead proxy (CLI)",
            input: cli(&[
                "ls",
                "--s3",
                "--s3-bucket=bkt",
                "--s3-endpoint=127.0.0.1:9",
                "--s3-insecure",
                "--s3-access-key=a",
                "--s3-secret-key=b",
                "--s3-proxy=http://127.0.0.1:1",
                "--s3-timeout=10s",
            ]),
            code: 1,
            says: "through proxy http://127.0.0.1:1: the proxy or the endpoint is down or unreachable",
        },
        Row {
            what: "restore without output dir",
            input: Input::Local(strs(&["restore", "x.zip"])),
            code: 1,
            says: "--output-dir",
        },
        // --- issue 24: unclear errors made clear ---------------------------------------------
        Row {
            what: "bind address that is not an IP",
            input: server(&["--bind-address=not-an-ip"]),
            code: 1,
            says: "invalid --bind-address \"not-an-ip\": give an IP address of this host",
        },
        Row {
            what: "snapshot dir that does not exist (server)",
            input: server(&["--etcd-snapshot-dir=/no/such/snapshots"]),
            code: 1,
            says: "--etcd-snapshot-dir /no/such/snapshots: No such file or directory (os error 2): create it",
        },
        Row {
            what: "snapshot dir that is a file (server)",
            input: server(&["--etcd-snapshot-dir=/etc/hostname"]),
            code: 1,
            says: "--etcd-snapshot-dir /etc/hostname is not a directory",
        },
        Row {
            what: "negative retention (server)",
            input: server(&["--etcd-snapshot-retention=-1"]),
            code: 1,
            says: "invalid --etcd-snapshot-retention -1: give the number of snapshots to keep, or 0 to keep every snapshot",
        },
        Row {
            what: "negative S3 retention (server)",
            input: server(&["--etcd-s3-retention=-3"]),
            code: 1,
            says: "invalid --etcd-s3-retention -3",
        },
        Row {
            what: "negative retention (CLI)",
            input: cli(&["prune", "--snapshot-retention", "-1"]),
            code: 1,
            says: "invalid --snapshot-retention -1",
        },
        Row {
            what: "negative retention (API)",
            input: api(r#"{"operation":"prune","retention":-2}"#),
            code: 400,
            says: "invalid retention -2",
        },
        Row {
            what: "negative reconcile interval",
            input: server(&["--etcd-snapshot-reconcile-interval", "-5m"]),
            code: 1,
            says: "invalid --etcd-snapshot-reconcile-interval: invalid duration \"-5m\": negative durations are not allowed",
        },
        Row {
            what: "negative idle timeout",
            input: server(&["--etcd-snapshot-idle-timeout", "-1s"]),
            code: 1,
            says: "invalid --etcd-snapshot-idle-timeout",
        },
        Row {
            what: "negative S3 timeout (CLI)",
            input: cli(&["ls", "--s3", "--s3-bucket=bkt", "--s3-timeout", "-5m"]),
            code: 1,
            says: "negative durations are not allowed",
        },
        Row {
            what: "drill cron names its own flag",
            input: server(&["--etcd-snapshot-drill-schedule-cron=bogus"]),
            code: 1,
            says: "invalid --etcd-snapshot-drill-schedule-cron \"bogus\": expected 5 fields",
        },
        Row {
            what: "snapshot name with a space",
            input: cli(&["save", "--name", "a b"]),
            code: 1,
            says: "invalid snapshot name prefix",
        },
        Row {
            what: "scheduled snapshot name with a colon",
            input: server(&["--etcd-snapshot-name=a:b"]),
            code: 1,
            says: "invalid --etcd-snapshot-name",
        },
        Row {
            what: "restore with an empty member name",
            input: Input::Local(strs(&["restore", "x.db", "--output-dir=/tmp/x", "--name="])),
            code: 1,
            says: "invalid --name \"\": give the restored member's name",
        },
        Row {
            what: "restore with a garbage initial cluster",
            input: Input::Local(strs(&[
                "restore",
                "x.db",
                "--output-dir=/tmp/x",
                "--initial-cluster=garbage",
            ])),
            code: 1,
            says: "invalid --initial-cluster entry \"garbage\": give name=http(s)://host:port",
        },
        Row {
            what: "restore with an initial cluster without the member",
            input: Input::Local(strs(&[
                "restore",
                "x.db",
                "--output-dir=/tmp/x",
                "--initial-cluster=other=http://127.0.0.1:2380",
            ])),
            code: 1,
            says: "does not name the restored member \"default\" (--name)",
        },
        Row {
            what: "restore with bad peer URLs",
            input: Input::Local(strs(&[
                "restore",
                "x.db",
                "--output-dir=/tmp/x",
                "--initial-advertise-peer-urls=localhost",
            ])),
            code: 1,
            says: "invalid --initial-advertise-peer-urls \"localhost\"",
        },
        // --- API bodies --------------------------------------------------------------------
        Row {
            what: "body not JSON",
            input: api("not json"),
            code: 400,
            says: "invalid snapshot request",
        },
        Row {
            what: "unknown operation",
            input: api(r#"{"operation":"nap"}"#),
            code: 400,
            says: "invalid snapshot request",
        },
        Row {
            what: "no operation",
            input: api("{}"),
            code: 400,
            says: "invalid snapshot operation",
        },
        Row {
            what: "NUL in a name",
            input: api("{\"operation\":\"delete\",\"name\":[\"a\\u0000b\"]}"),
            code: 400,
            says: "path traversal not allowed",
        },
        Row {
            what: "retention as text",
            input: api(r#"{"operation":"prune","retention":"x"}"#),
            code: 400,
            says: r#"invalid snapshot request: field retention: invalid type: string \"x\", expected a whole number at line 1"#,
        },
        Row {
            what: "nested S3 field of the wrong type",
            input: api(r#"{"operation":"list","s3":{"bucket":"bkt","insecure":"yes"}}"#),
            code: 400,
            says: r#"invalid snapshot request: field s3.insecure: invalid type: string \"yes\", expected a boolean"#,
        },
        Row {
            what: "S3 timeout not Go syntax",
            input: api(r#"{"operation":"list","s3":{"bucket":"bkt","timeout":"5 minutes"}}"#),
            code: 400,
            says: "invalid snapshot request",
        },
        Row {
            what: "body over 1 MiB",
            input: Input::Api(big_body.into_bytes()),
            code: 400,
            says: "cannot read the request body",
        },
        Row {
            what: "API: unknown compression format",
            input: Input::Api(br#"{"operation":"save","compressFormat":"lz4"}"#.to_vec()),
            code: 400,
            says: "invalid snapshot compression format",
        },
        Row {
            what: "API: S3 upload concurrency too high",
            input: Input::Api(
                br#"{"operation":"save","s3":{"bucket":"bkt","timeout":"5m","uploadConcurrency":99,"accessKey":"A","secretKey":"S"}}"#
                    .to_vec(),
            ),
            code: 400,
            says: "etcd-s3-upload-concurrency 99 is too high",
        },
        Row {
            what: "API: S3 endpoint 127.0.0.1:abc",
            input: api(r#"{"operation":"save","s3":{"bucket":"bkt","timeout":"5m","endpoint":"127.0.0.1:abc"}}"#),
            code: 400,
            says: "invalid etcd-s3-endpoint 127.0.0.1:abc: the port",
        },
        Row {
            what: "API: S3 endpoint 127.0.0.1:99999",
            input: api(r#"{"operation":"save","s3":{"bucket":"bkt","timeout":"5m","endpoint":"127.0.0.1:99999"}}"#),
            code: 400,
            says: "invalid etcd-s3-endpoint 127.0.0.1:99999: the port",
        },
        Row {
            what: "API: S3 endpoint [::1",
            input: api(r#"{"operation":"save","s3":{"bucket":"bkt","timeout":"5m","endpoint":"[::1"}}"#),
            code: 400,
            says: "lacks its closing ']'",
        },
        Row {
            what: "API: S3 endpoint bob@minio:9000",
            input: api(r#"{"operation":"save","s3":{"bucket":"bkt","timeout":"5m","endpoint":"bob@minio:9000"}}"#),
            code: 400,
            says: "user information (user@host) is not allowed",
        },
        Row {
            what: "dir that does not exist",
            input: api(r#"{"operation":"save","dir":"/no/such"}"#),
            code: 400,
            says: "is not one this server allows",
        },
        Row {
            what: "unknown request field (a misspelt retention)",
            input: api(r#"{"operation":"prune","retenton":1}"#),
            code: 400,
            says: "unknown field `retenton`, expected one of",
        },
        Row {
            what: "unknown S3 field (a misspelt access key)",
            input: api(r#"{"operation":"list","s3":{"bucket":"bkt","acessKey":"x"}}"#),
            code: 400,
            says: "unknown field `acessKey`",
        },
        Row {
            what: "request dir outside the allowed ones",
            input: api(r#"{"operation":"list","dir":"/etc/ssh"}"#),
            code: 400,
            says: "is not one this server allows: a request may name only the server's snapshot dir",
        },
        Row {
            what: "request dir with a newline (log forging)",
            input: api("{\"operation\":\"list\",\"dir\":\"/x\\nERROR forged\"}"),
            code: 400,
            says: "is not one this server allows",
        },
        Row {
            what: "request S3 store without keys, not the server's",
            input: api(
                r#"{"operation":"list","s3":{"bucket":"bkt","endpoint":"127.0.0.1:9","insecure":true,"timeout":"5s"}}"#,
            ),
            code: 400,
            says: "carries no keys of its own",
        },
        Row {
            what: "request GCS key file on the server",
            input: api(
                r#"{"operation":"list","s3":{"provider":"gcs","bucket":"bkt","credentialsFile":"/etc/passwd","endpoint":"http://127.0.0.1:9","timeout":"5s"}}"#,
            ),
            code: 400,
            says: "names a GCS key file on the server",
        },
        Row {
            what: "request CA bundle naming a server file",
            input: api(
                r#"{"operation":"list","s3":{"bucket":"bkt","accessKey":"A","secretKey":"S","endpoint":"127.0.0.1:9","endpointCA":"/etc/hostname","timeout":"5s"}}"#,
            ),
            code: 400,
            says: "CA bundle names a file on the server",
        },
        Row {
            what: "allowed dir inside the data dir's server/",
            input: server(&["--etcd-snapshot-allowed-dirs=/"]),
            code: 1,
            says: "--etcd-snapshot-allowed-dirs \"/\" is inside or above",
        },
        Row {
            what: "allowed dir that does not exist",
            input: server(&["--etcd-snapshot-allowed-dirs=/no/such/dir"]),
            code: 1,
            says: "--etcd-snapshot-allowed-dirs \"/no/such/dir\": No such file or directory",
        },
        Row {
            what: "relative allowed dir",
            input: server(&["--etcd-snapshot-allowed-dirs=snaps"]),
            code: 1,
            says: "is not an absolute path",
        },
        Row {
            what: "save prefix with a slash",
            input: api(r#"{"operation":"save","name":["a/b"]}"#),
            code: 400,
            says: "invalid snapshot name prefix",
        },
    ]
}

#[test]
fn every_bad_input_gets_a_clear_error_and_writes_nothing() {
    let s = Server::start(Etcd::V35);
    let work = tempfile::tempdir().unwrap();
    let rows = rows(work.path());
    let n = rows.len();
    let mut failures = Vec::new();
    for row in rows {
        let (code, text) = match &row.input {
            Input::Server(args, cfg) => {
                let dir = tempfile::tempdir().unwrap();
                let cfg_path = match cfg {
                    Some(text) => {
                        let p = dir.path().join("config.yaml");
                        std::fs::write(&p, text).unwrap();
                        p
                    }
                    None => empty_config(dir.path()),
                };
                let out = Command::new(etcdsnap_bin())
                    .arg("server")
                    .arg("-d")
                    .arg(dir.path())
                    .args(Ports::free().args())
                    .arg(format!("--etcd-binary={}", Etcd::V35.etcd().display()))
                    .args(args)
                    .env("ETCDSNAP_CONFIG_FILE", &cfg_path)
                    .output()
                    .unwrap();
                if dir.path().join("server/db/etcd/member").exists() {
                    failures.push(format!("{}: etcd was started", row.what));
                }
                (out.status.code().unwrap_or(-1), stderr(&out))
            }
            Input::Cli(args) => {
                // `member <action>` or `etcd-snapshot <action>`, then the server's flags.
                let (command, args) = match args[0].as_str() {
                    "member" => (&args[..2], &args[2..]),
                    _ => (&args[..1], &args[1..]),
                };
                let out = Command::new(etcdsnap_bin())
                    .args(if command.len() == 1 {
                        &["etcd-snapshot"][..]
                    } else {
                        &[][..]
                    })
                    .args(command)
                    .arg("-d")
                    .arg(s.data_dir())
                    .arg(format!("--etcd-server={}", s.url()))
                    .args(args)
                    .env("ETCDSNAP_CONFIG_FILE", empty_config(s.data_dir()))
                    .output()
                    .unwrap();
                (out.status.code().unwrap_or(-1), stderr(&out))
            }
            Input::Local(args) => {
                let out = Command::new(etcdsnap_bin())
                    .arg("etcd-snapshot")
                    .args(args)
                    .env("ETCDSNAP_CONFIG_FILE", empty_config(work.path()))
                    .output()
                    .unwrap();
                (out.status.code().unwrap_or(-1), stderr(&out))
            }
            Input::Api(body) => {
                let (code, text) = s.post_snapshot(body);
                (code as i32, text)
            }
        };
        let clear = text.len() < 2000 && !text.contains("panicked");
        if code != row.code || !text.contains(row.says) || !clear {
            failures.push(format!(
                "{}: want {} and {:?}, got {code}: {}",
                row.what,
                row.code,
                row.says,
                text.chars().take(400).collect::<String>()
            ));
        }
    }
    assert!(s.snapshot_files().is_empty(), "{:?}", s.snapshot_files());
    assert!(
        failures.is_empty(),
        "{} of {n} rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{n} bad inputs, each refused with a clear message");
}
