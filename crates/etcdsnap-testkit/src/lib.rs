//! The test harness both of etcdsnap's test suites use (a dev-only crate): a guard for the
//! real server processes the tests start (killed on drop, and by the kernel if the test process
//! dies first), free loopback ports, the binary paths that `ci/install-deps.sh --env` exports,
//! the real S3 servers ([`s3`]), and the Azure Blob and GCS emulators ([`azure`], [`gcs`]). A
//! missing server binary fails the test; it never skips it.

pub mod azure;
pub mod gcs;
pub mod s3;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on now, below the kernel's ephemeral range (32768 and up here): a
/// port the kernel hands out for `bind(0)` or an outgoing connection could be taken by
/// another test between this check and the server's own bind, which made servers of tests
/// running side by side fail with "Address already in use". Each process starts at a
/// different place in 20000..32000 and steps through it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20000;
    const SPAN: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    etcdsnap_core::tls::install_crypto_provider();
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            ^ std::process::id().wrapping_mul(2_654_435_761);
        let _ = NEXT.compare_exchange(u32::MAX, seed % SPAN, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..SPAN {
        // 7919 is prime to SPAN's factors 2, 3, 5: the walk visits every port of the span.
        let n = NEXT.fetch_add(7919, Ordering::Relaxed) % SPAN;
        let port = (LOW + n) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// The path of a binary named by an environment variable set by `ci/install-deps.sh --env`.
pub fn env_bin(var: &str) -> PathBuf {
    let value = std::env::var_os(var).unwrap_or_else(|| {
        panic!(
            "{var} is not set: run `source <(ci/install-deps.sh --env)` (after ci/install-deps.sh test) before the tests"
        )
    });
    let path = PathBuf::from(value);
    assert!(
        path.is_file(),
        "{var}={} does not exist: run ci/install-deps.sh test",
        path.display()
    );
    path
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped, and gets SIGKILL from
/// the kernel if the test process dies first. Its output goes to a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
    _dir: Option<tempfile::TempDir>,
}

impl Proc {
    /// Starts `cmd`, its stdout and stderr in `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        etcdsnap_core::etcd::process::die_with_parent(&mut cmd, libc::SIGKILL);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            log,
            name: name.into(),
            _dir: None,
        }
    }

    /// Starts `cmd` with its log in a temporary directory of its own.
    pub fn spawn_temp(name: &str, cmd: Command) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proc::spawn(name, cmd, dir.path().join(format!("{name}.log")));
        p._dir = Some(dir);
        p
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait (at most `grace`, then SIGKILL); returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            assert!(
                start.elapsed() < limit,
                "{} did not exit within {limit:?}; log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `port` accepts connections; panics with the log otherwise.
    pub fn wait_port(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready on port {port}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate(Duration::from_secs(10));
        }
    }
}

pub mod fault;
