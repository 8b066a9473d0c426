//! `etcdsnap check`: diagnoses a server's setup without starting it. Each check is one function
//! returning a [`CheckResult`] (a status, what was seen, and how to fix it when not ok).
//!
//! Rules:
//! * A check never changes the setup: the only writes are a probe file in the snapshot dir and a
//!   probe object in the S3 folder, both removed before the check returns.
//! * A failure names the problem and the flag or command that fixes it; no secret is printed.
//! * The judgements (expiry thresholds, snapshot age) are pure functions of an injected `now`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::RemoteCause;
use crate::etcd::{ClientTls, EtcdTarget};
use crate::naming::{future_name_time, parse_snapshot_time};
use crate::schedule::Schedule;
use crate::store::local::LocalStore;
use crate::store::remote::{Provider, S3Identity, S3Target};

/// A serving, peer or client certificate expiring within this many days is a warning (the
/// server renews it at its next start, as K3s does).
pub const EXPIRY_WARN_DAYS: i64 = crate::tls::RENEW_WITHIN_DAYS;
/// A CA expiring within this many days is a warning: nothing renews a CA, and replacing one
/// means new tokens and new CAs on every server, which takes planning.
pub const CA_EXPIRY_WARN_DAYS: i64 = 365;
/// S3 clocks further apart than this are a warning (SigV4 refuses requests beyond 15 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Check names, in the order they are printed.
pub const CHECKS: [&str; 7] = [
    "config",
    "etcd",
    "certificates",
    "snapshot-dir",
    "s3",
    "schedule",
    "last-snapshot",
];

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Not checked: the feature is not configured.
    Skipped,
    Warn,
    Fail,
}

impl Status {
    /// `ok`, `skipped`, `warn`, `FAIL` (upper case so that it stands out).
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skipped => "skipped",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about it; `None` when ok.
    pub fix: Option<String>,
}

impl CheckResult {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        CheckResult {
            name,
            status,
            detail: detail.into(),
            fix: None,
        }
    }
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, detail)
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Warn, detail).with_fix(fix)
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, detail).with_fix(fix)
    }
    fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Whether the server would accept its flags and config files: `refused` is the error the server
/// would stop with, so `check` never passes a configuration the server refuses.
pub fn config(refused: Option<String>) -> CheckResult {
    match refused {
        None => CheckResult::ok("config", "the server accepts these flags and config files"),
        Some(why) => CheckResult::fail(
            "config",
            format!("the server would refuse to start: {why}"),
            "correct the flag or config key the message names",
        ),
    }
}

/// Where etcd is and how to reach it.
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    pub tls: ClientTls,
    /// `--datastore-endpoint` was given (else: the embedded etcd of the data dir).
    pub external: bool,
}

impl EtcdSettings {
    /// The embedded etcd of `data_dir` on `client_port`, with the client certificate the server
    /// generated (`server/tls/etcd/client.{crt,key}`, signed by `server-ca.crt`).
    pub fn embedded(data_dir: &Path, client_port: u16) -> Self {
        let dir = data_dir.join("server").join("tls").join("etcd");
        EtcdSettings {
            endpoints: vec![format!("https://127.0.0.1:{client_port}")],
            tls: ClientTls {
                ca_file: Some(dir.join("server-ca.crt")),
                cert_file: Some(dir.join("client.crt")),
                key_file: Some(dir.join("client.key")),
            },
            external: false,
        }
    }
}

fn etcd_fix(s: &EtcdSettings) -> &'static str {
    if s.external {
        "check that etcd runs at --datastore-endpoint and that --datastore-cafile, --datastore-certfile and --datastore-keyfile are its CA and a client certificate it accepts"
    } else {
        "start the server (`etcdsnap server` with this --data-dir), or pass the --etcd-client-port it runs with"
    }
}

/// Status of each endpoint: version, database size, leader, alarms.
pub async fn etcd(s: &EtcdSettings) -> CheckResult {
    const NAME: &str = "etcd";
    if !s.external {
        for f in [&s.tls.ca_file, &s.tls.cert_file, &s.tls.key_file]
            .into_iter()
            .flatten()
        {
            if !f.exists() {
                return CheckResult::fail(
                    NAME,
                    format!("no etcd client certificate: {} is missing", f.display()),
                    "run `etcdsnap server` once with this --data-dir to generate the certificates, or pass the --data-dir the server uses",
                );
            }
        }
    }
    let mut lines = Vec::new();
    let mut failed = 0;
    let mut alarms = Vec::new();
    for ep in &s.endpoints {
        match endpoint_status(s, ep).await {
            Ok((line, alarm)) => {
                lines.push(line);
                alarms.extend(alarm);
            }
            Err(e) => {
                failed += 1;
                lines.push(format!("{ep}: {e}"));
            }
        }
    }
    let detail = lines.join("; ");
    if !alarms.is_empty() {
        let fix = if alarms.iter().any(|a| a.contains("NOSPACE")) {
            "etcd reached its space quota and refuses writes: compact and defragment it (`etcdctl compact`, `etcdctl defrag`), then `etcdctl alarm disarm`; or raise --quota-backend-bytes"
        } else {
            "a member reports corruption: restore it from a snapshot (`etcdsnap server --cluster-reset --cluster-reset-restore-path=...`) or replace it, then `etcdctl alarm disarm`"
        };
        return CheckResult::fail(NAME, detail, fix);
    }
    if failed == s.endpoints.len() {
        CheckResult::fail(NAME, detail, etcd_fix(s))
    } else if failed > 0 || lines.iter().any(|l| l.contains("no leader")) {
        let st = if lines.iter().any(|l| l.contains("no leader")) {
            Status::Fail
        } else {
            Status::Warn
        };
        CheckResult::new(NAME, st, detail).with_fix(etcd_fix(s))
    } else {
        CheckResult::ok(NAME, detail)
    }
}

/// One endpoint's status line, and the alarms it reports.
async fn endpoint_status(s: &EtcdSettings, ep: &str) -> crate::Result<(String, Vec<String>)> {
    let timeout = Duration::from_secs(5);
    let target = EtcdTarget::new(vec![ep.to_string()], s.tls.clone(), timeout);
    let mut client = target.connect_one(ep).await?;
    let st = tokio::time::timeout(timeout, client.status())
        .await
        .map_err(|_| crate::Error::Etcd(format!("status of {ep} timed out")))?
        .map_err(|e| crate::Error::Etcd(format!("status of {ep}: {e}")))?;
    let me = st.header().map(|h| h.member_id()).unwrap_or_default();
    let leader = match st.leader() {
        0 => "no leader".to_string(),
        l if l == me => "leader (this member)".to_string(),
        l => format!("leader {l:x}"),
    };
    let learner = if st.is_learner() { ", learner" } else { "" };
    let mut alarms = Vec::new();
    let resp = tokio::time::timeout(
        timeout,
        client.alarm(
            etcd_client::AlarmAction::Get,
            etcd_client::AlarmType::None,
            None,
        ),
    )
    .await
    .map_err(|_| crate::Error::Etcd(format!("alarm list of {ep} timed out")))?
    .map_err(|e| crate::Error::Etcd(format!("alarm list of {ep}: {e}")))?;
    for a in resp.alarms() {
        let kind = match a.alarm() {
            etcd_client::AlarmType::Nospace => "NOSPACE",
            etcd_client::AlarmType::Corrupt => "CORRUPT",
            etcd_client::AlarmType::None => continue,
        };
        alarms.push(format!("{kind} on member {:x}", a.member_id()));
    }
    let alarm_text = if alarms.is_empty() {
        "no alarms".to_string()
    } else {
        format!("alarms: {}", alarms.join(", "))
    };
    let line = format!(
        "{ep}: etcd {}, db {}, {leader}{learner}, {alarm_text}",
        st.version(),
        crate::units::iec_bytes(st.db_size().max(0) as u64)
    );
    Ok((line, alarms))
}

/// The status of a certificate valid from `not_before` to `not_after`, at `now`: a warning
/// within `warn_days` of the end.
pub fn expiry_status(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    now: DateTime<Utc>,
    warn_days: i64,
) -> Status {
    if now < not_before || now >= not_after {
        Status::Fail
    } else if not_after - now < chrono::TimeDelta::days(warn_days) {
        Status::Warn
    } else {
        Status::Ok
    }
}

/// One certificate found on disk.
#[derive(Debug, Clone)]
struct Cert {
    path: PathBuf,
    is_ca: bool,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl Cert {
    fn kind(&self) -> &'static str {
        if self.is_ca { "CA" } else { "serving" }
    }
    fn warn_days(&self) -> i64 {
        if self.is_ca {
            CA_EXPIRY_WARN_DAYS
        } else {
            EXPIRY_WARN_DAYS
        }
    }
}

/// The certificates in a PEM file (none for a key file).
fn read_certs(path: &Path) -> std::result::Result<Vec<Cert>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(&data) {
        let pem = pem.map_err(|e| format!("{}: not valid PEM: {e}", path.display()))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        let cert = pem
            .parse_x509()
            .map_err(|e| format!("{}: not a valid X.509 certificate: {e}", path.display()))?;
        let v = cert.validity();
        let at = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
        out.push(Cert {
            path: path.to_path_buf(),
            is_ca: cert.is_ca(),
            not_before: at(v.not_before.timestamp()),
            not_after: at(v.not_after.timestamp()),
        });
    }
    Ok(out)
}

fn cert_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            cert_files(&p, out);
        } else if p
            .extension()
            .is_some_and(|x| x == "crt" || x == "pem" || x == "cert")
        {
            out.push(p);
        }
    }
}

/// Every certificate under `tls_dir` (recursively: `server/tls` and `server/tls/etcd`) and in
/// `extra` (the external datastore's CA and client certificate) parses and is valid at `now`.
/// The detail gives each one's kind and end of validity; a CA warns within
/// [`CA_EXPIRY_WARN_DAYS`], any other certificate within [`EXPIRY_WARN_DAYS`].
pub fn certificates(tls_dir: &Path, extra: &[PathBuf], now: DateTime<Utc>) -> CheckResult {
    const NAME: &str = "certificates";
    let mut files = Vec::new();
    cert_files(tls_dir, &mut files);
    files.sort();
    files.extend(extra.iter().cloned());
    if files.is_empty() {
        return CheckResult::warn(
            NAME,
            format!("no certificates under {} yet", tls_dir.display()),
            "the server generates them on its first start; pass the --data-dir it uses",
        );
    }
    let mut certs = Vec::new();
    let mut broken = Vec::new();
    for f in &files {
        match read_certs(f) {
            Ok(c) if c.is_empty() && extra.contains(f) => {
                broken.push(format!("{}: no certificate in it", f.display()))
            }
            Ok(c) => certs.extend(c),
            Err(e) => broken.push(e),
        }
    }
    if !broken.is_empty() {
        return CheckResult::fail(
            NAME,
            broken.join("; "),
            "replace the broken files; for the generated ones, move them away and restart the server to generate new ones",
        );
    }
    if certs.is_empty() {
        return CheckResult::warn(
            NAME,
            format!("no certificates in the files under {}", tls_dir.display()),
            "the server generates them on its first start; pass the --data-dir it uses",
        );
    }
    // Paths under the TLS dir are shown relative to it: the line stays readable.
    let shown = |p: &Path| p.strip_prefix(tls_dir).unwrap_or(p).display().to_string();
    let mut lines = Vec::new();
    let mut worst = Status::Ok;
    let (mut ca_due, mut leaf_due) = (false, false);
    for c in &certs {
        let st = expiry_status(c.not_before, c.not_after, now, c.warn_days());
        let days = (c.not_after - now).num_days();
        let until = c.not_after.format("%Y-%m-%d");
        let what = if now < c.not_before {
            format!(
                "{} {}: not valid before {}",
                c.kind(),
                shown(&c.path),
                c.not_before
            )
        } else if st == Status::Fail {
            format!("{} {}: EXPIRED on {until}", c.kind(), shown(&c.path))
        } else {
            format!(
                "{} {}: until {until} ({days} days)",
                c.kind(),
                shown(&c.path)
            )
        };
        if st != Status::Ok {
            if c.is_ca {
                ca_due = true;
            } else {
                leaf_due = true;
            }
        }
        worst = worst.max(st);
        lines.push(what);
    }
    let detail = format!("{} certificates: {}", certs.len(), lines.join(", "));
    if worst == Status::Ok {
        return CheckResult::ok(NAME, detail);
    }
    let mut fix = Vec::new();
    if leaf_due {
        fix.push(format!(
            "restart the server: it renews serving, peer and client certificates from its CA when fewer than {EXPIRY_WARN_DAYS} days are left (an expired one is renewed too); certificates of an external datastore are renewed by whoever issued them"
        ));
    }
    if ca_due {
        fix.push(
            "a CA is never renewed automatically: plan new CAs (move server/tls away on every server, start the first, join the others with its new token) before it expires; every client that pins the old CA needs the new token".to_string(),
        );
    }
    CheckResult::new(NAME, worst, detail).with_fix(fix.join("; "))
}

/// Where snapshots go, as the server resolves it.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    pub path: PathBuf,
    /// Given with `--etcd-snapshot-dir` (the server does not create it).
    pub custom: bool,
}

/// A snapshot file and its time (from its name, else its mtime) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub name: String,
    pub time: DateTime<Utc>,
    pub size: u64,
    /// The name's time lies in the future; `time` is then the file's mtime (as retention
    /// orders it).
    pub future_name: bool,
}

/// The snapshot files in `dir`, oldest first.
pub fn snapshot_files(dir: &Path) -> Vec<SnapshotFile> {
    let now = Utc::now();
    let files = LocalStore::new(dir.to_path_buf(), "")
        .files()
        .unwrap_or_default();
    let mut out: Vec<SnapshotFile> = files
        .iter()
        .filter_map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            let name = p.file_name()?.to_string_lossy().into_owned();
            let future_name = future_name_time(&name, now).is_some();
            let mtime = meta.modified().ok().map(DateTime::<Utc>::from);
            let time = match parse_snapshot_time(&name) {
                Some(t) if !future_name => Some(t),
                _ => mtime,
            }?;
            Some(SnapshotFile {
                name,
                time,
                size: meta.len(),
                future_name,
            })
        })
        .collect();
    out.sort_by_key(|f| f.time);
    out
}

/// A warning, added to an `ok` or `warn` result, naming the files whose name's time lies in
/// the future: retention orders them by mtime, but they look newer than they are to anyone
/// reading the names.
fn with_future_names(mut r: CheckResult, files: &[SnapshotFile]) -> CheckResult {
    let future: Vec<&str> = files
        .iter()
        .filter(|f| f.future_name)
        .map(|f| f.name.as_str())
        .collect();
    if future.is_empty() || r.status == Status::Fail {
        return r;
    }
    let shown = future
        .iter()
        .take(3)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let more = match future.len() {
        n if n > 3 => format!(" and {} more", n - 3),
        _ => String::new(),
    };
    r.detail.push_str(&format!(
        "; {} snapshot name(s) carry a time in the future ({shown}{more}): retention orders them by when they were written",
        future.len()
    ));
    let fix = "rename or remove the snapshots named for the future (the digits after a name's last - are its unix time)";
    r.fix = Some(match r.fix.take() {
        Some(f) if r.status == Status::Warn => format!("{f}; {fix}"),
        _ => fix.to_string(),
    });
    r.status = Status::Warn;
    r
}

fn dir_fix(d: &SnapshotDir) -> String {
    if d.custom {
        format!(
            "create it (`mkdir -p -m 700 {}`) as the user the server runs as, or pass another --etcd-snapshot-dir",
            d.path.display()
        )
    } else {
        "pass a --data-dir (or --etcd-snapshot-dir) where the server's user can create directories"
            .into()
    }
}

/// The snapshot dir exists (or can be created), takes a probe file, and has room for a
/// snapshot as large as the newest one.
pub fn snapshot_dir(d: &SnapshotDir) -> CheckResult {
    const NAME: &str = "snapshot-dir";
    let shown = d.path.display();
    let target = match std::fs::metadata(&d.path) {
        Ok(m) if m.is_dir() => d.path.clone(),
        Ok(_) => {
            return CheckResult::fail(NAME, format!("{shown} is not a directory"), dir_fix(d));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !d.custom => {
            // The server creates the default dir: its nearest existing ancestor must take it.
            let Some(parent) = d.path.ancestors().skip(1).find(|a| a.exists()) else {
                return CheckResult::fail(NAME, format!("{shown}: no parent exists"), dir_fix(d));
            };
            if !parent.is_dir() {
                return CheckResult::fail(
                    NAME,
                    format!(
                        "{shown} cannot be created: {} is not a directory",
                        parent.display()
                    ),
                    dir_fix(d),
                );
            }
            parent.to_path_buf()
        }
        Err(e) => {
            return CheckResult::fail(NAME, format!("{shown}: {e}"), dir_fix(d));
        }
    };
    let probe = target.join(format!(".etcdsnap-check-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"etcdsnap check\n"));
    let _ = std::fs::remove_file(&probe);
    if let Err(e) = written {
        return CheckResult::fail(
            NAME,
            format!("cannot write to {}: {e}", target.display()),
            format!(
                "make {} writable by the user the server runs as, or pass another --etcd-snapshot-dir",
                target.display()
            ),
        );
    }
    let free = match crate::fsutil::free_space(&target) {
        Ok(f) => f,
        Err(e) => return CheckResult::fail(NAME, e.to_string(), dir_fix(d)),
    };
    let state = if target == d.path {
        format!("{shown} is writable")
    } else {
        format!("{shown} does not exist yet (the server creates it)")
    };
    let files = snapshot_files(&d.path);
    let r = match files.last() {
        None => CheckResult::warn(
            NAME,
            format!(
                "{state}, {} free; no snapshot yet to compare the free space with",
                crate::units::iec_bytes(free)
            ),
            "take one with `etcdsnap etcd-snapshot save` and check again",
        ),
        Some(newest) if free < newest.size => CheckResult::fail(
            NAME,
            format!(
                "{state} but has {} free, less than the newest snapshot {} ({})",
                crate::units::iec_bytes(free),
                newest.name,
                crate::units::iec_bytes(newest.size)
            ),
            "free space on that file system (lower --etcd-snapshot-retention, or enable --etcd-snapshot-compress), or pass an --etcd-snapshot-dir on a larger one",
        ),
        Some(newest) => CheckResult::ok(
            NAME,
            format!(
                "{state}, {} free, newest snapshot {} is {}",
                crate::units::iec_bytes(free),
                newest.name,
                crate::units::iec_bytes(newest.size)
            ),
        ),
    };
    with_future_names(r, &files)
}

/// The schedule parses; the next three run times after `now`.
pub fn schedule(spec: &str, disabled: bool, now: DateTime<Utc>) -> CheckResult {
    const NAME: &str = "schedule";
    if disabled {
        return CheckResult::ok(NAME, "disabled (--etcd-disable-snapshots)");
    }
    let s = match Schedule::parse(spec) {
        Ok(s) => s,
        Err(e) => {
            return CheckResult::fail(
                NAME,
                e.to_string(),
                "fix --etcd-snapshot-schedule-cron: five cron fields (minute hour day month weekday), e.g. '0 */12 * * *', or @every 6h",
            );
        }
    };
    let mut runs = Vec::new();
    let mut t = now;
    for _ in 0..3 {
        match s.next_after(t) {
            Some(n) => {
                runs.push(n.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                t = n;
            }
            None => break,
        }
    }
    if runs.is_empty() {
        return CheckResult::fail(
            NAME,
            format!("{spec:?} never runs"),
            "fix --etcd-snapshot-schedule-cron: give a schedule that has run times",
        );
    }
    CheckResult::ok(NAME, format!("{spec:?}, next runs {}", runs.join(", ")))
}

/// The newest snapshot's age against twice the schedule's longest gap (`gap`: `None` when
/// scheduled snapshots are off or the schedule does not parse).
pub fn last_snapshot(
    newest: Option<&SnapshotFile>,
    gap: Option<Duration>,
    now: DateTime<Utc>,
) -> CheckResult {
    const NAME: &str = "last-snapshot";
    let Some(newest) = newest else {
        return CheckResult::warn(
            NAME,
            "none yet",
            "take one with `etcdsnap etcd-snapshot save` (or wait for the schedule)",
        );
    };
    let age = (now - newest.time).to_std().unwrap_or_default();
    let age_text = crate::duration::format_go_duration(Duration::from_secs(age.as_secs()));
    let detail = format!("{} taken {age_text} ago", newest.name);
    match gap {
        Some(gap) if !gap.is_zero() && age > gap * 2 => CheckResult::warn(
            NAME,
            format!(
                "{detail}, more than twice the schedule's longest gap ({})",
                crate::duration::format_go_duration(gap)
            ),
            "scheduled snapshots are not being written: check the server is running and its log for failed snapshots",
        ),
        _ => CheckResult::ok(NAME, detail),
    }
}

/// The check of `--etcd-s3` being off.
pub fn s3_skipped() -> CheckResult {
    CheckResult::new("s3", Status::Skipped, "--etcd-s3 is not set")
}

/// The check of S3 settings that did not validate.
pub fn s3_invalid(problem: &str) -> CheckResult {
    CheckResult::fail(
        "s3",
        problem,
        "fix the --etcd-s3-* flag it names (or the same key in the config file)",
    )
}

/// The fix for an S3 failure, from its cause.
pub fn s3_fix(e: &crate::Error) -> &'static str {
    match (e, e.remote_cause()) {
        (_, Some(RemoteCause::NoSuchBucket)) => {
            "create the bucket, or fix --etcd-s3-bucket (and --etcd-s3-region)"
        }
        (_, Some(RemoteCause::AccessDenied)) => {
            "check --etcd-s3-access-key and --etcd-s3-secret-key (and --etcd-s3-session-token), and that they may write, read and delete in the bucket"
        }
        (_, Some(RemoteCause::Tls)) => {
            "set --etcd-s3-endpoint-ca to the CA that signed the endpoint's certificate, or --etcd-s3-insecure for plain HTTP"
        }
        (crate::Error::Timeout(_), _) | (_, Some(RemoteCause::Timeout)) => {
            "check that --etcd-s3-endpoint (and --etcd-s3-proxy) is reachable from here, or raise --etcd-s3-timeout"
        }
        _ => {
            "check --etcd-s3-endpoint, --etcd-s3-insecure and --etcd-s3-proxy, and that the S3 server is up"
        }
    }
}

/// The S3 target: reachable, bucket present, a probe object written, read back and deleted;
/// the server's clock against ours from the probe's Last-Modified.
pub async fn s3(target: &S3Target, now: impl Fn() -> DateTime<Utc>) -> CheckResult {
    const NAME: &str = "s3";
    let cfg = target.config();
    if cfg.uses_config_secret() {
        return CheckResult::warn(
            NAME,
            format!(
                "settings come from the Secret {:?} in the datastore, not checked here",
                cfg.config_secret
            ),
            "pass the S3 settings as --etcd-s3-* flags to check them",
        );
    }
    let secrets = cfg.secrets();
    let scrub = |s: String| {
        secrets
            .iter()
            .filter(|x| !x.is_empty())
            .fold(s, |acc, x| acc.replace(x.as_str(), "<redacted>"))
    };
    let fix_for = |e: &crate::Error| match cfg.provider {
        Provider::S3 => s3_fix(e),
        // Their messages name the flag to fix.
        Provider::Gcs => {
            "fix the --etcd-gcs-* setting the message names, and check that the endpoint is up"
        }
        Provider::Azure => {
            "fix the --etcd-azure-* setting the message names, and check that the endpoint is up"
        }
    };
    let store = match crate::source::connect(target, S3Identity::default()).await {
        Ok(s) => s,
        Err(e) => {
            return CheckResult::fail(NAME, scrub(e.to_string()), fix_for(&e));
        }
    };
    let name = format!(".etcdsnap-check-{}", now().timestamp());
    let before = now();
    let modified = match store.probe(&name).await {
        Ok(m) => m,
        Err(e) => {
            return CheckResult::fail(NAME, scrub(e.to_string()), fix_for(&e));
        }
    };
    let after = now();
    let place = store.location("");
    let detail = format!(
        "{} reachable, {} {} exists, probe object written, read back and deleted in {place}",
        store.endpoint_url(),
        cfg.provider.bucket_noun(),
        cfg.bucket
    );
    match clock_skew(before, after, modified) {
        Some(skew) => CheckResult::warn(
            NAME,
            format!(
                "{detail}; the {} server's clock is {}s off ours",
                cfg.provider.label(),
                skew.num_seconds()
            ),
            "synchronize this machine's clock (NTP); S3 refuses signed requests more than 15 minutes off",
        ),
        None => CheckResult::ok(NAME, format!("{detail}, clocks agree")),
    }
}

/// How far `modified` (whole seconds) lies outside `[before, after]`, when that is more than
/// [`MAX_CLOCK_SKEW`].
pub fn clock_skew(
    before: DateTime<Utc>,
    after: DateTime<Utc>,
    modified: DateTime<Utc>,
) -> Option<chrono::TimeDelta> {
    let slack = chrono::TimeDelta::from_std(MAX_CLOCK_SKEW).ok()?;
    // Last-Modified is truncated to the second.
    let lo = before - chrono::TimeDelta::seconds(1);
    if modified < lo - slack {
        Some(modified - lo)
    } else if modified > after + slack {
        Some(modified - after)
    } else {
        None
    }
}

/// True when any result failed.
pub fn any_failed(results: &[CheckResult]) -> bool {
    results.iter().any(|r| r.status == Status::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RemoteStage;
    use chrono::TimeZone;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn check_expiry_thresholds() {
        let now = t("2026-06-01T00:00:00Z");
        let from = t("2025-01-01T00:00:00Z");
        // (end of validity, status of a serving certificate, status of a CA)
        let cases = [
            ("2036-01-01T00:00:00Z", Status::Ok, Status::Ok),
            ("2027-06-01T00:00:00Z", Status::Ok, Status::Ok), // 365 days left
            ("2027-05-31T23:59:59Z", Status::Ok, Status::Warn),
            ("2026-08-30T00:00:00Z", Status::Ok, Status::Warn), // 90 days left
            ("2026-08-29T23:59:59Z", Status::Warn, Status::Warn),
            ("2026-06-01T00:00:01Z", Status::Warn, Status::Warn),
            ("2026-06-01T00:00:00Z", Status::Fail, Status::Fail), // expires now
            ("2026-01-01T00:00:00Z", Status::Fail, Status::Fail),
        ];
        for (until, leaf, ca) in cases {
            let got = expiry_status(from, t(until), now, EXPIRY_WARN_DAYS);
            assert_eq!(got, leaf, "serving until {until}");
            let got = expiry_status(from, t(until), now, CA_EXPIRY_WARN_DAYS);
            assert_eq!(got, ca, "CA until {until}");
        }
        // Not valid yet.
        assert_eq!(
            expiry_status(
                t("2026-06-02T00:00:00Z"),
                t("2036-01-01T00:00:00Z"),
                now,
                EXPIRY_WARN_DAYS
            ),
            Status::Fail
        );
    }

    #[test]
    fn check_certificates_of_generated_tls_dir() {
        let dir = tempfile::tempdir().unwrap();
        crate::tls::ensure_etcd_certs(dir.path(), &crate::tls::default_hosts(&[])).unwrap();
        let r = certificates(dir.path(), &[], Utc::now());
        assert_eq!(r.status, Status::Ok, "{r:?}");
        // Each certificate with its kind and end of validity.
        assert!(r.detail.starts_with("5 certificates: "), "{r:?}");
        for (kind, file) in [
            ("CA", "etcd/server-ca.crt"),
            ("CA", "etcd/peer-ca.crt"),
            ("serving", "etcd/server-client.crt"),
            ("serving", "etcd/client.crt"),
        ] {
            assert!(
                r.detail.contains(&format!("{kind} {file}: until ")),
                "{r:?}"
            );
        }
        // 300 days on, the one-year certificates are within 90 days of their end: a warning
        // that says a restart renews them.
        let r = certificates(dir.path(), &[], Utc::now() + chrono::TimeDelta::days(300));
        assert_eq!(r.status, Status::Warn, "{r:?}");
        let fix = r.fix.clone().unwrap();
        assert!(fix.contains("restart the server"), "{r:?}");
        assert!(!fix.contains("CA is never renewed"), "{r:?}");
        // A year and more on they are expired; the CAs are not yet.
        let r = certificates(dir.path(), &[], Utc::now() + chrono::TimeDelta::days(370));
        assert_eq!(r.status, Status::Fail, "{r:?}");
        assert!(
            r.detail.contains("serving etcd/client.crt: EXPIRED on"),
            "{r:?}"
        );
        assert!(r.detail.contains("CA etcd/server-ca.crt: until"), "{r:?}");
        // Nine years on, the CAs have less than a year left: the CA part of the fix.
        let ca_only = tempfile::tempdir().unwrap();
        std::fs::copy(
            dir.path().join("etcd/server-ca.crt"),
            ca_only.path().join("server-ca.crt"),
        )
        .unwrap();
        let r = certificates(
            ca_only.path(),
            &[],
            Utc::now() + chrono::TimeDelta::days(365 * 9 + 10),
        );
        assert_eq!(r.status, Status::Warn, "{r:?}");
        assert!(r.fix.unwrap().contains("CA is never renewed"));
        // A file that is not PEM fails, naming it.
        std::fs::write(
            dir.path().join("etcd/broken.crt"),
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let r = certificates(dir.path(), &[], Utc::now());
        assert_eq!(r.status, Status::Fail, "{r:?}");
        assert!(r.detail.contains("broken.crt"), "{r:?}");
        // No certificates at all: a warning.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            certificates(empty.path(), &[], Utc::now()).status,
            Status::Warn
        );
    }

    fn snap(name: &str) -> SnapshotFile {
        SnapshotFile {
            name: name.into(),
            time: parse_snapshot_time(name).unwrap(),
            size: 1,
            future_name: false,
        }
    }

    #[test]
    fn check_last_snapshot_age() {
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        let gap = Some(Duration::from_secs(12 * 3600));
        assert_eq!(last_snapshot(None, gap, now).status, Status::Warn);
        assert_eq!(last_snapshot(None, gap, now).detail, "none yet");
        let cases = [
            (1_800_000_000 - 3600, Status::Ok),
            (1_800_000_000 - 24 * 3600, Status::Ok), // exactly twice the gap
            (1_800_000_000 - 24 * 3600 - 1, Status::Warn),
            (1_800_000_000 - 30 * 24 * 3600, Status::Warn),
        ];
        for (at, want) in cases {
            let s = snap(&format!("etcd-snapshot-n1-{at}"));
            let r = last_snapshot(Some(&s), gap, now);
            assert_eq!(r.status, want, "{r:?}");
            assert_eq!(r.fix.is_some(), want != Status::Ok);
        }
        // Scheduled snapshots off: any age is fine.
        let old = snap("on-demand-n1-1700000000");
        assert_eq!(last_snapshot(Some(&old), None, now).status, Status::Ok);
    }

    #[test]
    fn check_schedule_next_runs_and_errors() {
        let now = t("2026-06-01T10:30:00Z");
        let r = schedule("TZ=UTC 0 */12 * * *", false, now);
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(
            r.detail
                .contains("2026-06-01T12:00:00Z, 2026-06-02T00:00:00Z, 2026-06-02T12:00:00Z"),
            "{r:?}"
        );
        let r = schedule("61 * * * *", false, now);
        assert_eq!(r.status, Status::Fail);
        assert!(r.fix.unwrap().contains("--etcd-snapshot-schedule-cron"));
        let r = schedule("61 * * * *", true, now);
        assert_eq!(
            (r.status, r.detail.starts_with("disabled")),
            (Status::Ok, true)
        );
    }

    #[test]
    fn check_snapshot_dir_probe_and_free_space() {
        let root = tempfile::tempdir().unwrap();
        let d = SnapshotDir {
            path: root.path().join("snaps"),
            custom: false,
        };
        // The default dir that does not exist yet: its parent takes the probe.
        let r = snapshot_dir(&d);
        assert_eq!(r.status, Status::Warn, "{r:?}");
        assert!(r.detail.contains("does not exist yet"), "{r:?}");
        assert!(!d.path.exists(), "the check must not create the dir");
        std::fs::create_dir(&d.path).unwrap();
        std::fs::write(d.path.join("etcd-snapshot-n1-1700000000"), vec![0u8; 4096]).unwrap();
        let r = snapshot_dir(&d);
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(r.detail.contains("etcd-snapshot-n1-1700000000"), "{r:?}");
        // No probe file is left.
        assert_eq!(std::fs::read_dir(&d.path).unwrap().count(), 1);
        // A custom dir must exist; one under a regular file cannot.
        let missing = SnapshotDir {
            path: root.path().join("nope"),
            custom: true,
        };
        let r = snapshot_dir(&missing);
        assert_eq!(r.status, Status::Fail, "{r:?}");
        assert!(r.fix.unwrap().contains("--etcd-snapshot-dir"));
        let file = root.path().join("file");
        std::fs::write(&file, "x").unwrap();
        for custom in [true, false] {
            let under = SnapshotDir {
                path: file.join("snaps"),
                custom,
            };
            assert_eq!(snapshot_dir(&under).status, Status::Fail, "custom={custom}");
        }
    }

    #[test]
    fn check_warns_about_names_from_the_future_and_orders_them_by_mtime() {
        let root = tempfile::tempdir().unwrap();
        let d = SnapshotDir {
            path: root.path().to_path_buf(),
            custom: true,
        };
        let recent = format!("etcd-snapshot-n1-{}", Utc::now().timestamp() - 60);
        std::fs::write(d.path.join(&recent), vec![0u8; 4096]).unwrap();
        let r = snapshot_dir(&d);
        assert_eq!(r.status, Status::Ok, "{r:?}");
        // A copy named for 2100, written an hour ago.
        let future = d.path.join("etcd-snapshot-x-4102444800");
        std::fs::write(&future, vec![0u8; 4096]).unwrap();
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&future)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        let files = snapshot_files(&d.path);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].name, "etcd-snapshot-x-4102444800");
        assert!(files[0].future_name && !files[1].future_name);
        assert_eq!(files.last().unwrap().name, recent, "newest by mtime");
        let r = snapshot_dir(&d);
        assert_eq!(r.status, Status::Warn, "{r:?}");
        assert!(
            r.detail
                .contains("carry a time in the future (etcd-snapshot-x-4102444800)"),
            "{r:?}"
        );
        assert!(r.fix.unwrap().contains("rename or remove"));
    }

    #[test]
    fn check_clock_skew_and_statuses() {
        let before = t("2026-06-01T00:00:00.500Z");
        let after = t("2026-06-01T00:00:01.200Z");
        assert_eq!(clock_skew(before, after, t("2026-06-01T00:00:00Z")), None);
        assert_eq!(clock_skew(before, after, t("2026-06-01T00:01:01Z")), None);
        assert_eq!(
            clock_skew(before, after, t("2026-06-01T00:05:00Z")).map(|d| d.num_seconds()),
            Some(298)
        );
        assert!(
            clock_skew(before, after, t("2026-05-31T23:50:00Z")).unwrap()
                < chrono::TimeDelta::zero()
        );
        let remote = |cause| crate::Error::Remote {
            stage: RemoteStage::Unavailable,
            cause,
            message: "m".into(),
        };
        assert!(s3_fix(&remote(RemoteCause::AccessDenied)).contains("--etcd-s3-secret-key"));
        assert!(s3_fix(&remote(RemoteCause::NoSuchBucket)).contains("--etcd-s3-bucket"));
        assert!(s3_fix(&remote(RemoteCause::Tls)).contains("--etcd-s3-endpoint-ca"));
        assert!(s3_fix(&crate::Error::Timeout("t".into())).contains("--etcd-s3-timeout"));
        assert!(s3_fix(&remote(RemoteCause::Network)).contains("the S3 server is up"));
        let results = [
            CheckResult::ok("a", "x"),
            CheckResult::warn("b", "y", "z"),
            s3_skipped(),
        ];
        assert!(!any_failed(&results));
        assert!(any_failed(&[CheckResult::fail("c", "x", "y")]));
        assert_eq!(Status::Fail.label(), "FAIL");
        let json = serde_json::to_value(CheckResult::warn("b", "y", "z")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "b", "status": "warn", "detail": "y", "fix": "z"})
        );
    }
}
