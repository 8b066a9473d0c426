//! A real Azure Blob server: azurite (from npm), on a free loopback port, its blobs on disk in a
//! temporary directory. Tests use its well-known development account.

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};

use crate::{Proc, env_bin, free_port};

/// azurite's development account and its published key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// azurite-blob on a loopback port.
pub struct Azurite {
    pub proc: Proc,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Azurite {
    /// Starts azurite-blob (`AZURITE_BLOB_BIN`) with `containers` created.
    pub async fn start(containers: &[&str]) -> Azurite {
        let bin = env_bin("AZURITE_BLOB_BIN");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path())
            .args(["--skipApiVersionCheck", "--silent"]);
        let mut proc = Proc::spawn_temp("azurite-blob", cmd);
        proc.wait_port(port);
        let a = Azurite { proc, port, dir };
        for c in containers {
            a.create_container(c).await;
        }
        a
    }

    /// What `--etcd-azure-endpoint` takes: path style, the account in the path.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Creates a container with a Shared Key signed request (object_store has no call for it).
    pub async fn create_container(&self, name: &str) {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        // Path-style requests name the account twice in the canonicalized resource.
        let to_sign = format!(
            "PUT\n{}x-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container",
            "\n".repeat(11)
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(ACCOUNT_KEY)
            .unwrap();
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            to_sign.as_bytes(),
        );
        let sig = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
        let url = format!("{}/{name}?restype=container", self.endpoint());
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sent = http
                .put(&url)
                .header("x-ms-date", &date)
                .header("x-ms-version", version)
                .header("content-length", "0")
                .header("authorization", format!("SharedKey {ACCOUNT}:{sig}"))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => panic!(
                    "create container {name}: {} {}; log:\n{}",
                    r.status(),
                    r.text().await.unwrap_or_default(),
                    self.proc.log_text()
                ),
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "create container {name}: {e}; log:\n{}",
                        self.proc.log_text()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// A plain object_store client for checking what the store wrote.
    pub fn raw_client(&self, container: &str) -> MicrosoftAzure {
        etcdsnap_core::tls::install_crypto_provider();
        MicrosoftAzureBuilder::new()
            .with_account(ACCOUNT)
            .with_access_key(ACCOUNT_KEY)
            .with_container_name(container)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .build()
            .unwrap()
    }
}
