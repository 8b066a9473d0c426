//! Real S3 servers: s3s-fs (plain HTTP, checks SigV4, on disk) and moto (TLS with a CA made
//! here, any credentials, in memory). Each test starts its own server on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3, AmazonS3Builder};
use sha2::{Digest, Sha256};

use crate::{Proc, env_bin, free_port};

pub const ACCESS_KEY: &str = "etcdsnaptestak";
pub const SECRET_KEY: &str = "etcdsnaptestsecretkey0123456789";

/// s3s-fs on a loopback port; buckets are directories under `root`.
pub struct S3sFs {
    pub proc: Proc,
    pub port: u16,
    pub root: tempfile::TempDir,
}

impl S3sFs {
    pub fn start(buckets: &[&str]) -> S3sFs {
        let bin = env_bin("S3S_FS_BIN");
        let root = tempfile::tempdir().unwrap();
        for b in buckets {
            std::fs::create_dir_all(root.path().join(b)).unwrap();
        }
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path());
        let mut proc = Proc::spawn_temp("s3s-fs", cmd);
        proc.wait_port(port);
        S3sFs { proc, port, root }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A plain object_store client for checking what the store wrote.
    pub fn raw_client(&self, bucket: &str) -> AmazonS3 {
        raw_client(&format!("http://127.0.0.1:{}", self.port), bucket, None)
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, all PEM.
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl TestPki {
    pub fn new() -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "etcdsnap test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca).unwrap();
        TestPki {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// moto over HTTPS with a certificate from [`TestPki`].
pub struct MotoTls {
    pub proc: Proc,
    pub port: u16,
    pub pki: TestPki,
    pub dir: tempfile::TempDir,
}

impl MotoTls {
    pub fn start() -> MotoTls {
        let bin = env_bin("MOTO_SERVER_BIN");
        let pki = TestPki::new();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.pem"), &pki.cert_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), &pki.key_pem).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
        // Another test process may take the free port before moto binds it: then the port
        // answers (the other program) while moto exits. Ours is the one whose log says it
        // runs on that port; otherwise try another port.
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .arg("-c")
                .arg(dir.path().join("server.pem"))
                .arg("-k")
                .arg(dir.path().join("server.key"));
            let mut proc = Proc::spawn_temp("moto_server", cmd);
            let deadline = Instant::now() + Duration::from_secs(30);
            let running = format!("Running on https://127.0.0.1:{port}");
            loop {
                if proc.log_text().contains(&running) {
                    proc.wait_port(port);
                    return MotoTls {
                        proc,
                        port,
                        pki,
                        dir,
                    };
                }
                if let Ok(Some(_)) = proc.child.try_wait() {
                    let log = proc.log_text();
                    assert!(log.contains("in use"), "moto_server exited; log:\n{log}");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "moto_server not ready on port {port}; log:\n{}",
                    proc.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("moto_server found no free port in 5 tries")
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A plain HTTPS client that trusts only this server's CA.
    fn client(&self) -> reqwest::Client {
        etcdsnap_core::tls::install_crypto_provider();
        let ca = reqwest::Certificate::from_pem(self.pki.ca_pem.as_bytes()).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .no_proxy()
            .build()
            .unwrap()
    }

    /// Creates a bucket with a plain PUT (moto does not check signatures).
    pub async fn create_bucket(&self, bucket: &str) {
        let http = self.client();
        let url = format!("https://127.0.0.1:{}/{bucket}", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match http.put(&url).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) if Instant::now() > deadline => panic!(
                    "create bucket {bucket}: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ),
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "create bucket {bucket}: {e}; log:\n{}",
                        self.proc.log_text()
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Lets anonymous (unsigned) requests do these S3 actions on `bucket` and its objects, by
    /// a bucket policy; everything else stays refused to them (moto checks anonymous requests
    /// against the policy, and calls a HEAD `s3:HeadObject`).
    pub async fn allow_anonymous(&self, bucket: &str, actions: &[&str]) {
        let http = self.client();
        let actions: Vec<String> = actions.iter().map(|a| format!("{a:?}")).collect();
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":[{}],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}}]}}"#,
            actions.join(",")
        );
        // moto takes a request with any SigV4 header as signed by its owner.
        let r = http
            .put(format!("https://127.0.0.1:{}/{bucket}?policy", self.port))
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(policy)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "put policy: {}", r.status());
    }
}

/// An object_store client independent of the store under test.
pub fn raw_client(url: &str, bucket: &str, ca_pem: Option<&str>) -> AmazonS3 {
    etcdsnap_core::tls::install_crypto_provider();
    let mut options = object_store::ClientOptions::new().with_allow_http(true);
    if let Some(ca) = ca_pem {
        options = options
            .with_root_certificate(object_store::Certificate::from_pem(ca.as_bytes()).unwrap());
    }
    AmazonS3Builder::new()
        .with_endpoint(url)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_virtual_hosted_style_request(false)
        .with_allow_http(true)
        .with_client_options(options)
        .build()
        .unwrap()
}

/// A TCP relay in front of a server that records every byte the client sends.
pub struct RecordingProxy {
    pub port: u16,
    pub sent: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingProxy {
    pub async fn start(upstream_port: u16) -> RecordingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&sent);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                    else {
                        return;
                    };
                    let (mut cr, mut cw) = client.split();
                    let (mut sr, mut sw) = server.split();
                    let up = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            // The first 4 KiB of each read hold any request head; the rest
                            // of a big upload's body is not needed.
                            record
                                .lock()
                                .unwrap()
                                .extend_from_slice(&buf[..n.min(4096)]);
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = sw.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        let _ = cw.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        RecordingProxy { port, sent, task }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }

    pub fn clear(&self) {
        self.sent.lock().unwrap().clear();
    }

    /// Request lines (`METHOD target`) seen so far.
    pub fn request_lines(&self) -> Vec<String> {
        self.text()
            .split("\r\n")
            .filter(|l| {
                ["GET ", "PUT ", "HEAD ", "POST ", "DELETE "]
                    .iter()
                    .any(|m| l.starts_with(m))
                    && l.ends_with(" HTTP/1.1")
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A valid raw etcd snapshot: `size` bytes of data followed by their SHA-256 (the total size is
/// `size + 32`, so a multiple of 512 for `size` gives K3s's `size % 512 == 32`).
pub fn raw_snapshot(size: usize, seed: u8) -> Vec<u8> {
    let mut data: Vec<u8> = (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let sum = Sha256::digest(&data);
    data.extend_from_slice(&sum);
    data
}

pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}
