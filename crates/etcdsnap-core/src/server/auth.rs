//! Who may call what on the supervisor API, and how failed logins are slowed.
//!
//! Three credentials, each HTTP Basic `<user>:<secret>`, each compared in constant time:
//! * `server`: the server token (`<data-dir>/server/token`, `--token`): everything, as before;
//! * `join`: the join token (`<data-dir>/server/join-token`, or `--join-token-file`): the
//!   bootstrap data and the member list a joining server needs, nothing else;
//! * `viewer`: the viewer token (`<data-dir>/server/viewer-token`, or `--viewer-token-file`):
//!   the status page (`/ui`, `/ui.json`) and the save progress, nothing else.
//!
//! A valid credential without the right is answered 403 and is not a failure. The join and
//! viewer files are looked at again at most once a second and a changed file is in force at
//! once (rotation without a restart); a default file that is missing is made again with a new
//! secret; a file that no longer reads as a valid token disables its credential (fail closed).
//!
//! Failures are never a lock-out: see [`AuthGuard`]. Handlers declare the access they need as
//! an argument, `Authed` (in `extract.rs`), which checks the request against these rules.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use base64::Engine as _;

use super::ServerState;
use crate::fsutil::write_private;
use crate::token::{Token, ca_hash, check_file_mode, check_strength, constant_time_eq};
use crate::{Error, Result};

/// Who a request authenticated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Join,
    Viewer,
}

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Snapshots (save, list, prune, delete) and member removal.
    Admin,
    /// Bootstrap data and the member list, for a joining server.
    Cluster,
    /// The status page and the save progress.
    View,
}

impl Role {
    /// The Basic user name of the role.
    pub fn user(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Join => "join",
            Role::Viewer => "viewer",
        }
    }

    pub fn may(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Role::Server, _) | (Role::Join, Access::Cluster) | (Role::Viewer, Access::View)
        )
    }
}

impl Access {
    /// What the access allows, for a refusal's message.
    pub fn what(self) -> &'static str {
        match self {
            Access::Admin => "take, list, prune or delete snapshots or remove etcd members",
            Access::Cluster => "fetch the cluster's bootstrap data (its CA keys) or member list",
            Access::View => "read the status page or the save progress",
        }
    }

    /// Which token the access needs, for a refusal's message.
    pub fn needs(self) -> &'static str {
        match self {
            Access::Admin => "the server token (<data-dir>/server/token)",
            Access::Cluster => "the join token (<data-dir>/server/join-token) or the server token",
            Access::View => "the viewer token (<data-dir>/server/viewer-token) or the server token",
        }
    }
}

/// How often a credential file is looked at for a change.
const RECHECK: Duration = Duration::from_secs(1);

/// What identifies one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

struct Loaded {
    stamp: Option<Stamp>,
    secret: Option<String>,
    checked: Instant,
}

/// The join or viewer credential, read from its file and read again when the file changes.
pub struct CredentialFile {
    role: Role,
    path: PathBuf,
    /// Where the file came from, for messages: the flag and path, or the path.
    source: String,
    /// Named by a flag: the operator's file, never written here.
    given: bool,
    ca_hash: String,
    state: Mutex<Loaded>,
}

impl CredentialFile {
    /// The credential of `role` from `given` (its flag `flag`), else from `default`, which is
    /// made with a new secret when missing. A file that does not hold a valid token fails here.
    pub fn open(
        role: Role,
        given: Option<&Path>,
        flag: &str,
        default: &Path,
        ca_pem: &[u8],
    ) -> Result<CredentialFile> {
        let (path, source) = match given {
            Some(p) => (p.to_path_buf(), format!("{flag} {}", p.display())),
            None => (default.to_path_buf(), default.display().to_string()),
        };
        let file = CredentialFile {
            role,
            path,
            source,
            given: given.is_some(),
            ca_hash: ca_hash(ca_pem),
            state: Mutex::new(Loaded {
                stamp: None,
                secret: None,
                checked: Instant::now(),
            }),
        };
        let secret = file.read()?;
        {
            let mut st = file.state.lock().unwrap_or_else(|p| p.into_inner());
            st.stamp = Stamp::of(&file.path);
            st.secret = Some(secret);
        }
        Ok(file)
    }

    /// The file this credential is read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and checks the file (a missing default file is made first).
    fn read(&self) -> Result<String> {
        let user = self.role.user();
        check_file_mode(&self.path)?;
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.given => {
                let secret = crate::token::random_secret();
                let text = format!("K10{}::{user}:{secret}\n", self.ca_hash);
                if let Some(dir) = self.path.parent() {
                    crate::fsutil::create_private_dir(dir)?;
                }
                write_private(&self.path, text.as_bytes())?;
                tracing::info!(
                    "wrote a new {user} token to {} (give it to those who {}; it allows nothing else)",
                    self.path.display(),
                    match self.role {
                        Role::Join => "join servers to this cluster",
                        _ => "watch the status page",
                    }
                );
                text
            }
            Err(e) => return Err(Error::io("read token file", &self.path, e)),
        };
        if text.trim().is_empty() {
            return Err(Error::InvalidInput(format!(
                "the {user} token file {} is empty: write a secret into it (`openssl rand -hex 16`)",
                self.source
            )));
        }
        let token = Token::parse(&text)?;
        check_strength(&token.password, &self.source)?;
        if let Some(h) = &token.ca_hash {
            if token.username != user {
                return Err(Error::InvalidInput(format!(
                    "{} holds a token for user {:?}, not the {user} token: write K10<CA hash>::{user}:<secret> or a bare secret into it",
                    self.source, token.username
                )));
            }
            if *h != self.ca_hash {
                if self.given {
                    return Err(Error::InvalidInput(format!(
                        "the CA hash in {} does not match this server's CA ({}): write the bare secret, or the token with this server's CA hash",
                        self.source, self.ca_hash
                    )));
                }
                // The CA changed (a restore, a join): the file keeps its secret, with the new hash.
                let fixed = format!("K10{}::{user}:{}\n", self.ca_hash, token.password);
                write_private(&self.path, fixed.as_bytes())?;
            }
        }
        Ok(token.password)
    }

    /// The secret in force, looking at the file again when [`RECHECK`] has passed.
    pub fn secret(&self) -> Option<String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.checked.elapsed() >= RECHECK {
            st.checked = Instant::now();
            let stamp = Stamp::of(&self.path);
            if stamp != st.stamp || stamp.is_none() {
                match self.read() {
                    Ok(secret) => {
                        if st.secret.as_deref() != Some(secret.as_str()) {
                            tracing::info!(
                                "the {} token in {} changed; the new one is in force, the old one is refused",
                                self.role.user(),
                                self.source
                            );
                        }
                        st.secret = Some(secret);
                    }
                    Err(e) => {
                        if st.secret.is_some() {
                            tracing::error!(
                                "{e}; the {} token is refused until the file is fixed",
                                self.role.user()
                            );
                        }
                        st.secret = None;
                    }
                }
                st.stamp = Stamp::of(&self.path);
            }
        }
        st.secret.clone()
    }
}

/// The join and viewer credentials (none in a state built without them).
#[derive(Default)]
pub struct Credentials {
    pub join: Option<CredentialFile>,
    pub viewer: Option<CredentialFile>,
}

/// The role whose credential the request's `Authorization` carries. Every comparison runs,
/// whichever matches, so timing tells nothing about which one failed.
pub fn role(state: &ServerState, headers: &HeaderMap) -> Option<Role> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    let b64 = value.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let colon = raw.iter().position(|b| *b == b':')?;
    let (user, pass) = (&raw[..colon], &raw[colon + 1..]);
    let check = |role: Role, secret: Option<&str>| -> bool {
        // A missing credential still costs a comparison, against nothing it can equal.
        let user_ok = constant_time_eq(user, role.user().as_bytes());
        let pass_ok = match secret {
            Some(s) => constant_time_eq(pass, s.as_bytes()),
            None => {
                let _ = constant_time_eq(pass, pass);
                false
            }
        };
        user_ok & pass_ok
    };
    let join = state.credentials.join.as_ref().and_then(|c| c.secret());
    let viewer = state.credentials.viewer.as_ref().and_then(|c| c.secret());
    let server = check(Role::Server, Some(&state.token.password));
    let join = check(Role::Join, join.as_deref());
    let viewer = check(Role::Viewer, viewer.as_deref());
    if server {
        Some(Role::Server)
    } else if join {
        Some(Role::Join)
    } else if viewer {
        Some(Role::Viewer)
    } else {
        None
    }
}

/// Failed authentications per client address. The right credential is answered at once,
/// whatever the failures from its address; a wrong one is answered after a delay that grows
/// with that address's recent failures ([`AuthGuard::delay`]), and the wrong answers to one
/// address go out one after another, so a client that waits for its answers (every HTTP
/// client does, per connection) gets at most one wrong guess per [`AuthGuard::CAP`] once it
/// has failed a few times. Nothing is ever refused for having failed before.
#[derive(Default)]
pub struct AuthGuard {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

struct Failures {
    count: u32,
    last: Instant,
    /// When the latest wrong answer to this address goes out.
    next_answer: Instant,
}

impl AuthGuard {
    /// Delay of the first failure; it doubles with each failure up to [`AuthGuard::CAP`].
    pub const BASE: Duration = Duration::from_millis(50);
    /// Longest delay of one failure: the steady rate is one wrong answer per `CAP`.
    pub const CAP: Duration = Duration::from_secs(1);
    /// Longest any wrong answer waits, so a flood cannot hold connections for long.
    pub const MAX_WAIT: Duration = Duration::from_secs(30);
    /// Failures are forgotten after this long without one.
    pub const FORGET: Duration = Duration::from_secs(600);
    /// Failure counts at which a warning is logged.
    const WARN_AT: u32 = 10;

    /// The delay of the `n`th recent failure (from 1).
    pub fn delay(n: u32) -> Duration {
        let doubled = Self::BASE.saturating_mul(1u32 << n.saturating_sub(1).min(16));
        doubled.min(Self::CAP)
    }

    /// Records a failure from `ip`; returns how long to wait before answering it.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() > 10_000 {
            f.retain(|_, e| now.duration_since(e.last) <= Self::FORGET || e.next_answer > now);
        }
        let e = f.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            next_answer: now,
        });
        if now.duration_since(e.last) > Self::FORGET {
            e.count = 0;
        }
        e.count = e.count.saturating_add(1);
        e.last = now;
        let at = (e.next_answer.max(now) + Self::delay(e.count)).min(now + Self::MAX_WAIT);
        e.next_answer = at;
        if e.count == Self::WARN_AT || e.count.is_multiple_of(1000) {
            tracing::warn!(
                "{ip}: {} failed authentications in a row (none more than {}s apart); each further wrong answer to it is delayed by {:?}",
                e.count,
                Self::FORGET.as_secs(),
                Self::delay(e.count)
            );
        }
        at - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As if [`RECHECK`] had passed since `c` last looked at its file, without waiting for it.
    fn recheck_is_due(c: &CredentialFile) {
        let mut st = c.state.lock().unwrap();
        st.checked = Instant::now().checked_sub(RECHECK).unwrap();
    }

    #[test]
    fn delays_grow_and_are_capped() {
        assert_eq!(AuthGuard::delay(1), Duration::from_millis(50));
        assert_eq!(AuthGuard::delay(2), Duration::from_millis(100));
        assert_eq!(AuthGuard::delay(5), Duration::from_millis(800));
        assert_eq!(AuthGuard::delay(6), AuthGuard::CAP);
        assert_eq!(AuthGuard::delay(u32::MAX), AuthGuard::CAP);
    }

    #[test]
    fn wrong_answers_to_one_address_go_out_one_after_another() {
        let g = AuthGuard::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let waits: Vec<Duration> = (0..8).map(|_| g.failed(a)).collect();
        // Concurrent failures queue: each waits for the ones before it.
        for w in waits.windows(2) {
            assert!(w[1] > w[0], "{waits:?}");
        }
        let total: Duration = (1..=8).map(AuthGuard::delay).sum();
        assert!(waits[7] <= total && waits[7] + Duration::from_millis(50) > total);
        // Another address is not slowed by them.
        assert_eq!(g.failed(b), AuthGuard::delay(1));
        // However long the queue, no answer waits more than MAX_WAIT.
        for _ in 0..100 {
            assert!(g.failed(a) <= AuthGuard::MAX_WAIT);
        }
    }

    #[test]
    fn roles_reach_only_their_endpoints() {
        use Access::*;
        for (role, admin, cluster, view) in [
            (Role::Server, true, true, true),
            (Role::Join, false, true, false),
            (Role::Viewer, false, false, true),
        ] {
            assert_eq!(
                (role.may(Admin), role.may(Cluster), role.may(View)),
                (admin, cluster, view),
                "{role:?}"
            );
        }
    }

    #[test]
    fn credential_files_are_made_checked_and_read_again() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("server/viewer-token");
        let c = CredentialFile::open(Role::Viewer, None, "--viewer-token-file", &default, b"CA")
            .unwrap();
        let text = std::fs::read_to_string(&default).unwrap();
        let first = Token::parse(&text).unwrap();
        assert_eq!(first.username, "viewer");
        assert_eq!(first.ca_hash.as_deref(), Some(ca_hash(b"CA").as_str()));
        assert_eq!(first.password.len(), 32);
        let mode = std::fs::metadata(&default).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(c.secret().as_deref(), Some(first.password.as_str()));

        // A rotated file is in force within RECHECK; a weak one disables the credential.
        let rotated = "0123456789abcdef0123456789abcdef";
        std::fs::write(&default, rotated).unwrap();
        recheck_is_due(&c);
        assert_eq!(c.secret().as_deref(), Some(rotated));
        std::fs::write(&default, "short").unwrap();
        recheck_is_due(&c);
        assert_eq!(c.secret(), None);
        // A deleted default file is made again, with a new secret.
        std::fs::remove_file(&default).unwrap();
        recheck_is_due(&c);
        let again = c.secret().unwrap();
        assert!(again != first.password && again != rotated && again.len() == 32);

        // A file named by its flag must exist, hold a strong secret, and is never rewritten.
        let given = dir.path().join("given");
        let e = CredentialFile::open(
            Role::Join,
            Some(&given),
            "--join-token-file",
            &default,
            b"CA",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("given"), "{e}");
        std::fs::write(&given, "abc").unwrap();
        std::fs::set_permissions(&given, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = CredentialFile::open(
            Role::Join,
            Some(&given),
            "--join-token-file",
            &default,
            b"CA",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("--join-token-file"), "{e}");
        assert!(e.contains("openssl rand -hex 16"), "{e}");
        let other = format!("K10{}::join:{rotated}", ca_hash(b"OTHER"));
        std::fs::write(&given, &other).unwrap();
        let e = CredentialFile::open(
            Role::Join,
            Some(&given),
            "--join-token-file",
            &default,
            b"CA",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("does not match this server's CA"), "{e}");
        std::fs::write(&given, format!("K10{}::viewer:{rotated}", ca_hash(b"CA"))).unwrap();
        let e = CredentialFile::open(
            Role::Join,
            Some(&given),
            "--join-token-file",
            &default,
            b"CA",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("not the join token"), "{e}");
        std::fs::write(&given, rotated).unwrap();
        let c = CredentialFile::open(
            Role::Join,
            Some(&given),
            "--join-token-file",
            &default,
            b"CA",
        )
        .unwrap();
        assert_eq!(c.secret().as_deref(), Some(rotated));
        assert_eq!(std::fs::read_to_string(&given).unwrap(), rotated);
    }
}
