#![allow(dead_code)]
//! Test harness: real etcd (3.4 and 3.5) and real `etcdsnap server` processes on free loopback
//! ports, each in its own temp dir, killed on drop. Binary paths come from the environment that
//! `ci/install-deps.sh --env` prints; a missing binary fails the test, it never skips it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use etcdsnap_core::tls::{EtcdCerts, default_hosts, ensure_etcd_certs};
pub use etcdsnap_testkit::{Proc, env_bin, free_port};

/// Generates one test per etcd version from a function taking [`Etcd`].
macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn etcd_3_4() {
                super::$body(crate::harness::Etcd::V34)
            }
            #[test]
            fn etcd_3_5() {
                super::$body(crate::harness::Etcd::V35)
            }
        }
    };
}

/// The etcd versions under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Etcd {
    V34,
    V35,
}

impl Etcd {
    pub fn etcd(self) -> PathBuf {
        match self {
            Etcd::V34 => env_bin("ETCD34_BIN"),
            Etcd::V35 => env_bin("ETCD35_BIN"),
        }
    }
    pub fn etcdctl(self) -> PathBuf {
        match self {
            Etcd::V34 => env_bin("ETCDCTL34_BIN"),
            Etcd::V35 => env_bin("ETCDCTL35_BIN"),
        }
    }
    /// `etcdutl snapshot restore` for 3.5, `etcdctl snapshot restore` for 3.4.
    pub fn restore_cmd(self) -> Command {
        let mut c = match self {
            Etcd::V34 => Command::new(self.etcdctl()),
            Etcd::V35 => Command::new(env_bin("ETCDUTL35_BIN")),
        };
        c.env("ETCDCTL_API", "3");
        c
    }
}

/// An empty config file in the test's own `dir`, so that a config on the test machine cannot
/// interfere (and nothing is left at a fixed path in /tmp).
pub fn empty_config(dir: &Path) -> PathBuf {
    let p = dir.join("no-config.yaml");
    if !p.exists() {
        std::fs::write(&p, "").unwrap();
    }
    p
}

pub fn etcdsnap_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_etcdsnap"))
}

/// Polls `f` until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    etcdsnap_core::tls::install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// GET over HTTPS without verifying the certificate (test-only probing).
pub fn https_get(url: &str) -> Option<(u16, String)> {
    rt().block_on(async {
        let c = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        let r = c.get(url).send().await.ok()?;
        let code = r.status().as_u16();
        Some((code, r.text().await.ok()?))
    })
}

/// A running `etcdsnap server` with embedded etcd (or external, per its args).
pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub client_port: u16,
    pub peer_port: u16,
    pub node: String,
    pub etcd: Etcd,
    pub proc: Proc,
    /// Set when the server runs on a [`SmallDisk`]: the files are read through its view.
    disk: Option<i32>,
}

pub struct ServerBuilder {
    etcd: Etcd,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    wait_ready: bool,
    dir: Option<tempfile::TempDir>,
    ports: Option<Ports>,
    fd_limit: Option<u64>,
    /// The holder pid of a [`SmallDisk`] whose mount namespace the server runs in.
    disk: Option<i32>,
}

/// The supervisor, etcd client and etcd peer ports of a server.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub https: u16,
    pub client: u16,
    pub peer: u16,
}

impl Ports {
    pub fn free() -> Ports {
        Ports {
            https: free_port(),
            client: free_port(),
            peer: free_port(),
        }
    }

    /// The flags that put a server on these ports.
    pub fn args(&self) -> Vec<String> {
        vec![
            format!("--https-listen-port={}", self.https),
            format!("--etcd-client-port={}", self.client),
            format!("--etcd-peer-port={}", self.peer),
        ]
    }
}

impl ServerBuilder {
    /// Starts the server with this descriptor limit (soft and hard), as `ulimit -n` would.
    pub fn fd_limit(mut self, n: u64) -> Self {
        self.fd_limit = Some(n);
        self
    }

    /// Reuses these ports (a restarted server keeps its member's peer URL).
    pub fn ports(mut self, p: Ports) -> Self {
        self.ports = Some(p);
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }
    /// The server's snapshot names never share a second: each takes a later second than the
    /// one before (the `ETCDSNAP_TEST_DISTINCT_NAME_SECONDS` hook of debug builds), so a test
    /// that saves several times in a row gets distinct names in order without waiting for the
    /// clock.
    pub fn distinct_name_seconds(self) -> Self {
        self.env("ETCDSNAP_TEST_DISTINCT_NAME_SECONDS", "1")
    }
    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }
    pub fn dir(mut self, d: tempfile::TempDir) -> Self {
        self.dir = Some(d);
        self
    }
    /// Runs the server in the mount namespace of `disk` (which must be mounted inside its dir).
    pub fn on(mut self, disk: &SmallDisk) -> Self {
        self.disk = Some(disk.holder.pid());
        self
    }

    pub fn start(self) -> Server {
        let dir = self.dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        std::fs::write(dir.path().join("no-config.yaml"), "").unwrap();
        let p = self.ports.unwrap_or_else(Ports::free);
        let (port, client_port, peer_port) = (p.https, p.client, p.peer);
        let node = "n1".to_string();
        let mut cmd = match self.disk {
            Some(pid) => SmallDisk::enter(pid, etcdsnap_bin()),
            None => Command::new(etcdsnap_bin()),
        };
        cmd.arg("server")
            .arg("-d")
            .arg(dir.path())
            .args(["--node-name", &node, "--bind-address", "127.0.0.1"])
            .arg(format!("--https-listen-port={port}"))
            .arg(format!("--etcd-client-port={client_port}"))
            .arg(format!("--etcd-peer-port={peer_port}"))
            .arg(format!("--etcd-binary={}", self.etcd.etcd().display()))
            .arg(format!(
                "--write-kubeconfig={}",
                dir.path().join("kubeconfig.yaml").display()
            ))
            .args(&self.args)
            .env("ETCDSNAP_CONFIG_FILE", dir.path().join("no-config.yaml"))
            .env("RUST_LOG", "info");
        without_aws_env(&mut cmd);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some(n) = self.fd_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let log = dir.path().join("server.log");
        let proc = Proc::spawn("etcdsnap server", cmd, log);
        let mut s = Server {
            dir,
            port,
            client_port,
            peer_port,
            node,
            etcd: self.etcd,
            proc,
            disk: self.disk,
        };
        if self.wait_ready {
            s.wait_healthy();
        }
        s
    }
}

impl Server {
    pub fn builder(etcd: Etcd) -> ServerBuilder {
        ServerBuilder {
            etcd,
            args: Vec::new(),
            envs: Vec::new(),
            wait_ready: true,
            dir: None,
            ports: None,
            fd_limit: None,
            disk: None,
        }
    }

    pub fn start(etcd: Etcd) -> Server {
        Self::builder(etcd).start()
    }

    pub fn ports(&self) -> Ports {
        Ports {
            https: self.port,
            client: self.client_port,
            peer: self.peer_port,
        }
    }

    /// Stops the server (SIGTERM) and hands back its data dir and ports for a restart.
    pub fn stop(mut self) -> (tempfile::TempDir, Ports) {
        let st = self.proc.terminate(Duration::from_secs(20));
        assert!(
            st.is_some_and(|s| s.success()),
            "server did not stop cleanly ({st:?}); log:\n{}",
            self.proc.log_text()
        );
        let ports = self.ports();
        (self.dir, ports)
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn wait_healthy(&mut self) {
        let start = Instant::now();
        loop {
            if let Some((200, _)) = https_get(&format!("{}/healthz", self.url())) {
                return;
            }
            if let Ok(Some(st)) = self.proc.child.try_wait() {
                panic!(
                    "server exited ({st}) before it was healthy; log:\n{}",
                    self.proc.log_text()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "server not healthy in 30s; log:\n{}",
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.seen("kubeconfig.yaml")
    }

    /// The real kubectl with the server's kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(env_bin("KUBECTL_BIN"))
            .arg(format!("--kubeconfig={}", self.kubeconfig().display()))
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("run kubectl")
    }

    /// `kubectl -n kube-system <args>`, where the records and the config Secret live.
    pub fn kubectl_ks(&self, args: &[&str]) -> Output {
        let mut a = vec!["-n", "kube-system"];
        a.extend_from_slice(args);
        self.kubectl(&a)
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.seen("server/db/snapshots")
    }

    /// `rel` below the data dir, as the server sees it (through a [`SmallDisk`]'s view).
    pub fn seen(&self, rel: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        match self.disk {
            Some(pid) => SmallDisk::view_of(pid, &p),
            None => p,
        }
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.seen("server/token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// A raw `POST /db/snapshot` of `body` (JSON) with the server token: status and body.
    pub fn post_snapshot(&self, body: &[u8]) -> (u16, String) {
        let secret = self.token().rsplit(':').next().unwrap().to_string();
        let body = body.to_vec();
        rt().block_on(async {
            let r = reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap()
                .post(format!("{}/db/snapshot", self.url()))
                .basic_auth("server", Some(secret))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// `etcdsnap etcd-snapshot <args>` against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    pub fn cli_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut cmd = match self.disk {
            Some(pid) => SmallDisk::enter(pid, etcdsnap_bin()),
            None => Command::new(etcdsnap_bin()),
        };
        cmd.arg("etcd-snapshot")
            .args(args)
            .arg("-d")
            .arg(self.dir.path())
            .arg(format!("--etcd-server={}", self.url()))
            .env(
                "ETCDSNAP_CONFIG_FILE",
                self.dir.path().join("no-config.yaml"),
            );
        without_aws_env(&mut cmd);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Files in the snapshot dir, sorted.
    pub fn snapshot_files(&self) -> Vec<String> {
        list_files(&self.snapshot_dir())
    }

    /// Client certificates of the embedded etcd.
    pub fn etcd_tls(&self) -> (PathBuf, PathBuf, PathBuf) {
        let d = self.seen("server/tls/etcd");
        (
            d.join("server-ca.crt"),
            d.join("client.crt"),
            d.join("client.key"),
        )
    }

    pub fn etcd_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    /// Writes keys into the embedded etcd.
    pub fn put(&self, kvs: &[(String, Vec<u8>)]) {
        let (ca, cert, key) = self.etcd_tls();
        put_keys(&self.etcd_endpoint(), Some((&ca, &cert, &key)), kvs);
    }
}

pub fn list_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Connects inside the caller's runtime (a tonic channel dies with the runtime that made it).
pub async fn etcd_client(
    endpoint: &str,
    tls: Option<(&Path, &Path, &Path)>,
) -> etcd_client::Client {
    let mut opts = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    if let Some((ca, cert, key)) = tls {
        opts = opts.with_tls(
            etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(
                    std::fs::read(ca).unwrap(),
                ))
                .identity(etcd_client::Identity::from_pem(
                    std::fs::read(cert).unwrap(),
                    std::fs::read(key).unwrap(),
                )),
        );
    }
    etcd_client::Client::connect([endpoint], Some(opts))
        .await
        .unwrap()
}

pub fn put_keys(endpoint: &str, tls: Option<(&Path, &Path, &Path)>, kvs: &[(String, Vec<u8>)]) {
    rt().block_on(async {
        let mut c = etcd_client(endpoint, tls).await;
        for (k, v) in kvs {
            c.put(k.as_str(), v.clone(), None).await.unwrap();
        }
    });
}

pub fn get_key(endpoint: &str, tls: Option<(&Path, &Path, &Path)>, key: &str) -> Option<Vec<u8>> {
    rt().block_on(async {
        let mut c = etcd_client(endpoint, tls).await;
        let r = c.get(key, None).await.unwrap();
        r.kvs().first().map(|kv| kv.value().to_vec())
    })
}

/// A plain etcd process (no etcdsnap), on free ports, optionally with mTLS.
pub struct PlainEtcd {
    pub dir: tempfile::TempDir,
    pub client_port: u16,
    pub certs: Option<EtcdCerts>,
    pub proc: Proc,
}

impl PlainEtcd {
    /// Starts etcd on `data_dir` (or a fresh one); `tls` turns on client-cert auth.
    pub fn start(
        v: Etcd,
        data_dir: Option<PathBuf>,
        name: &str,
        peer_port: Option<u16>,
        tls: bool,
    ) -> PlainEtcd {
        let dir = tempfile::tempdir().unwrap();
        let data = data_dir.unwrap_or_else(|| dir.path().join("data"));
        let cp = free_port();
        let pp = peer_port.unwrap_or_else(free_port);
        let scheme = if tls { "https" } else { "http" };
        let mut cmd = Command::new(v.etcd());
        cmd.arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={scheme}://127.0.0.1:{cp}"))
            .arg(format!("--advertise-client-urls={scheme}://127.0.0.1:{cp}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{pp}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{pp}"
            ))
            .arg(format!("--initial-cluster={name}=http://127.0.0.1:{pp}"));
        let certs = if tls {
            let c = ensure_etcd_certs(&dir.path().join("tls"), &default_hosts(&[])).unwrap();
            cmd.arg(format!("--cert-file={}", c.server_cert.display()))
                .arg(format!("--key-file={}", c.server_key.display()))
                .arg(format!("--trusted-ca-file={}", c.server_ca.display()))
                .arg("--client-cert-auth=true");
            Some(c)
        } else {
            None
        };
        let log = dir.path().join("etcd.log");
        let proc = Proc::spawn("etcd", cmd, log);
        let e = PlainEtcd {
            dir,
            client_port: cp,
            certs,
            proc,
        };
        let ep = e.endpoint();
        let tls_paths = e.tls_paths();
        wait_for(Duration::from_secs(20), "plain etcd", || {
            let t = tls_paths
                .as_ref()
                .map(|(a, b, c)| (a.as_path(), b.as_path(), c.as_path()));
            let ok = rt().block_on(async {
                let mut opts =
                    etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
                if let Some((ca, cert, key)) = t {
                    opts = opts.with_tls(
                        etcd_client::TlsOptions::new()
                            .ca_certificate(etcd_client::Certificate::from_pem(
                                std::fs::read(ca).ok()?,
                            ))
                            .identity(etcd_client::Identity::from_pem(
                                std::fs::read(cert).ok()?,
                                std::fs::read(key).ok()?,
                            )),
                    );
                }
                let mut c = etcd_client::Client::connect([ep.as_str()], Some(opts))
                    .await
                    .ok()?;
                c.status().await.ok()
            });
            ok.map(|_| ())
        });
        e
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.certs.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    pub fn tls_paths(&self) -> Option<(PathBuf, PathBuf, PathBuf)> {
        self.certs.as_ref().map(|c| {
            (
                c.server_ca.clone(),
                c.client_cert.clone(),
                c.client_key.clone(),
            )
        })
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let t = self.tls_paths();
        get_key(
            &self.endpoint(),
            t.as_ref()
                .map(|(a, b, c)| (a.as_path(), b.as_path(), c.as_path())),
            key,
        )
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Asserts failure and returns stderr.
#[track_caller]
pub fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "command unexpectedly succeeded:\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

impl ServerBuilder {
    /// Names the server's node `name` instead of `n1` (the `--node-name` given last wins). The
    /// `node` field of the started [`Server`] still says `n1`.
    pub fn node(self, name: &str) -> Self {
        self.args(["--node-name", name])
    }
}

/// A tmpfs of a fixed size at `dir`, mounted in a mount namespace of its own (an unprivileged
/// user namespace, so no root is needed and the host's mounts never change): the processes
/// started through it see the small disk, everybody else sees `dir` as it was. It goes away
/// when the last of them exits.
pub struct SmallDisk {
    holder: Proc,
    pub dir: PathBuf,
}

impl SmallDisk {
    pub fn new(dir: &Path, mib: u64) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            r#"mount -t tmpfs -o size="$2"m tmpfs "$1" && echo mounted && exec sleep 100000"#,
            "sh",
        ])
        .arg(dir)
        .arg(mib.to_string());
        let mut holder = Proc::spawn_temp("small-disk", cmd);
        wait_for(Duration::from_secs(10), "the small disk", || {
            if let Ok(Some(st)) = holder.child.try_wait() {
                panic!(
                    "cannot mount a tmpfs in a namespace ({st}): {}",
                    holder.log_text()
                );
            }
            holder.log_text().contains("mounted").then_some(())
        });
        SmallDisk {
            holder,
            dir: dir.to_path_buf(),
        }
    }

    fn enter(pid: i32, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={pid}"))
            .args(["--user", "--mount", "--preserve-credentials"])
            .arg(program);
        c
    }

    /// `program`, to be run on this disk.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        Self::enter(self.holder.pid(), program)
    }

    fn view_of(pid: i32, p: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{pid}/root")).join(p.strip_prefix("/").unwrap_or(p))
    }

    /// The path `p` as the processes on this disk see it.
    pub fn view(&self, p: &Path) -> PathBuf {
        Self::view_of(self.holder.pid(), p)
    }
}

/// `mib` incompressible values of 1 MiB under `prefix/` (a snapshot of them needs their full
/// size on disk, compressed or not).
pub fn noise(prefix: &str, mib: usize) -> Vec<(String, Vec<u8>)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..mib)
        .map(|i| {
            let v: Vec<u8> = (0..1 << 20)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            (format!("{prefix}/{i}"), v)
        })
        .collect()
}

/// `etcdsnap server` on `dir` as node `node` with these ports, on `cmd` (the etcdsnap binary,
/// perhaps run through a namespace), for runs that end by themselves (resets, refusals).
pub fn server_cmd(mut cmd: Command, v: Etcd, dir: &Path, node: &str, ports: Ports) -> Command {
    cmd.arg("server")
        .arg("-d")
        .arg(dir)
        .args(["--node-name", node, "--bind-address", "127.0.0.1"])
        .args(ports.args())
        .arg(format!("--etcd-binary={}", v.etcd().display()))
        .env("ETCDSNAP_CONFIG_FILE", empty_config(dir))
        .env("RUST_LOG", "info")
        .env_remove("ETCDSNAP_TOKEN");
    cmd
}

/// `etcdsnap server --cluster-reset` of node n1, on `cmd`.
pub fn reset_cmd(cmd: Command, v: Etcd, dir: &Path, ports: Ports, extra: &[&str]) -> Command {
    let mut cmd = server_cmd(cmd, v, dir, "n1", ports);
    cmd.arg("--cluster-reset").args(extra);
    cmd
}

/// Removes the AWS, Azure and Google credential variables from `cmd`'s environment, so that a
/// test's remote-store settings are the only ones the command sees.
pub fn without_aws_env(cmd: &mut Command) {
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ] {
        cmd.env_remove(k);
    }
}

/// Every file below `dir` (not the directories), as paths relative to it.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}
