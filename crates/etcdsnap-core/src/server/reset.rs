//! `etcdsnap server --cluster-reset [--cluster-reset-restore-path P]`: a one-shot run that makes
//! this server the only member of a new cluster, from its own data or from a snapshot, then
//! exits with K3s's message. Reference §8; the order of the steps is ours and safer:
//!
//! 1. the snapshot is found (downloaded from S3 for a bare name with `--etcd-s3`, verified) and
//!    the disk space checked; a `.zip` is decompressed while its SHA-256 trailer is checked;
//! 2. etcd's own tool restores it into a staging dir beside `db/etcd`, under a new member name
//!    `<node>-<8 hex>`, checking a raw file's trailer as it reads it (a failure is checked again
//!    by us and reported in our words);
//! 3. etcd is started on the staging dir, on loopback only and with `--force-new-cluster`; the
//!    member list must be this member alone, and the bootstrap data (CAs) is read and decrypted
//!    with the token; then etcd is stopped;
//! 4. the CAs of the bootstrap data, the etcd certificates issued from them and the token file
//!    with their hash are written into staging names beside `tls` and `token`;
//! 5. only now is anything of the server's changed, in one recoverable step: a journal
//!    (`server/reset-journal`) lists the renames, then `db/etcd` moves to `db/etcd-old-<unix>`
//!    (never deleted by us) and the staging dir takes its place, `tls` moves to `tls-<unix>`
//!    and the staged certificates and token take their places; `db/reset-flag` is written and
//!    the journal removed.
//!
//! A failure before step 5 leaves `server/db` and `server/tls` as they were (the staging dirs,
//! the download and the decompressed copy are removed, or by the next start if the process was
//! killed); a reset killed in step 5 is finished by the next start or reset, from the journal,
//! so `server/tls` is never left half written. K3s moved the data first and restored after; it also started etcd on the
//! data dir after the move. Without a restore path the data is kept: etcd runs once with
//! `--force-new-cluster` on `db/etcd` itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ServerConfig;
use super::local_etcd::{embedded, embedded_target, new_member_name, unique_beside};
use crate::bootstrap::{self, Bootstrap};
use crate::etcd::EtcdSource;
use crate::etcd::process::{EmbeddedEtcd, EtcdChild, binary_version};
use crate::fsutil::{RemoveOnDrop, create_private_dir, sync_dir, write_private};
use crate::naming::validate_plain_name;
use crate::restore::{Membership, RestoreTool};
use crate::source::{self, Purpose, Unpack};
use crate::store::local::resolve_snapshot_dir;
use crate::store::remote::{S3Identity, S3Target};
use crate::tls::{ensure_etcd_certs, ensure_supervisor_certs};
use crate::token::Token;
use crate::{Error, Result};

/// What `--cluster-reset` was given.
#[derive(Debug, Clone, Default)]
pub struct ResetSettings {
    /// `--cluster-reset-restore-path`: a file, or with `s3` a bare object name.
    pub restore_path: Option<String>,
    /// The S3 settings when `--etcd-s3` is on.
    pub s3: Option<S3Target>,
    pub etcdutl_binary: Option<PathBuf>,
    pub etcdctl_binary: Option<PathBuf>,
}

/// The final message (K3s's, with our program name).
pub fn reset_message(data_dir: &Path) -> String {
    format!(
        "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. Backup and delete {}/server/db on each peer etcd server and rejoin the nodes",
        data_dir.display()
    )
}

/// `<data-dir>/server/db/reset-flag`.
pub fn reset_flag(cfg: &ServerConfig) -> PathBuf {
    cfg.server_dir().join("db").join("reset-flag")
}

/// Runs the reset; returns the message to print.
pub async fn run(cfg: &ServerConfig, reset: &ResetSettings) -> Result<String> {
    if cfg.datastore.is_some() {
        return Err(Error::InvalidInput(
            "--cluster-reset resets the embedded etcd; for an etcd cluster you run yourself, write a restored data dir with `etcdsnap etcd-snapshot restore --output-dir`".into(),
        ));
    }
    let flag = reset_flag(cfg);
    if reset.restore_path.is_none() && flag.exists() {
        return Err(previously_reset(&flag));
    }
    let token = reset_token(cfg)?;
    let _lock = super::lock_data_dir(cfg)?;
    recover(&cfg.server_dir())?;
    run_locked(cfg, reset, token).await
}

/// Staging dirs (`db/etcd-restore-*`) are left only by a restore that was killed: it
/// restores into one and moves it into place as its last step, so one never holds the
/// server's data. Removed (with a log line) by the next reset or start, under the data-dir
/// lock, so that no restore is running.
fn remove_stale_staging(db: &Path) {
    remove_stale(db, STAGING_STEM);
}

fn remove_stale(dir: &Path, stem: &str) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(stem) {
            continue;
        }
        let p = e.path();
        let removed = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match removed {
            Ok(()) => tracing::info!(
                "Removed {}, left by a cluster reset that did not finish (the data dir was not changed by it)",
                p.display()
            ),
            Err(e) => tracing::warn!("cannot remove {}: {e}", p.display()),
        }
    }
}

/// The name of the staging dirs of restores.
const STAGING_STEM: &str = "etcd-restore-";
/// The decompressed copy of a compressed snapshot, in `db/`, while it is restored.
const SOURCE_STAGING_STEM: &str = ".etcd-restore-src-";
/// The certificates a reset writes, in `server/`, before they replace `tls`.
const TLS_STAGING_STEM: &str = ".tls-restore-";
/// The token file a reset writes, in `server/`, before it replaces `token`.
const TOKEN_STAGING: &str = ".token-restore";

fn previously_reset(flag: &Path) -> Error {
    Error::InvalidInput(format!(
        "Managed etcd cluster membership was previously reset, please remove the cluster-reset flag and start etcdsnap normally. If you need to perform another cluster reset, you must first manually delete the file at {}",
        flag.display()
    ))
}

async fn run_locked(cfg: &ServerConfig, reset: &ResetSettings, token: Token) -> Result<String> {
    let hosts = cfg.hosts();
    let tls_dir = cfg.server_dir().join("tls");
    ensure_supervisor_certs(&tls_dir, &hosts)?;
    let mut etcd = embedded(cfg, &hosts).await?;
    let version = binary_version(&etcd.binary).await?;
    etcd.check_ports_free()?;
    let started = Instant::now();
    let staged = match &reset.restore_path {
        Some(path) => restore(cfg, reset, &mut etcd, &version, &token, path).await?,
        None => {
            tracing::info!(
                "Cluster reset: resetting membership of {}",
                etcd.data_dir.display()
            );
            if !etcd.data_dir.join("member").is_dir() {
                return Err(Error::InvalidInput(format!(
                    "nothing to reset: {} holds no etcd data; to restore a snapshot add --cluster-reset-restore-path",
                    etcd.data_dir.display()
                )));
            }
            Staged {
                bootstrap: reset_in_place(&etcd, &token).await?,
                ..Default::default()
            }
        }
    };
    let server_dir = cfg.server_dir();
    let mut journal = Journal {
        moves: staged.moves.clone(),
    };
    let mut tls_staging = None;
    match &staged.bootstrap {
        Some(data) if data.is_complete() => {
            let (guard, moves) = stage_certificates(cfg, &tls_dir, data, &token)?;
            tls_staging = Some(guard);
            journal.moves.extend(moves);
        }
        Some(_) => tracing::warn!(
            "Cluster reset: the bootstrap data in etcd is incomplete; keeping the certificates in {}",
            tls_dir.display()
        ),
        None => tracing::info!(
            "Cluster reset: no bootstrap data in etcd; keeping the certificates in {}",
            tls_dir.display()
        ),
    }
    // From here on the server's own files change, as one step that the next start finishes
    // if this process dies midway.
    journal.write(&server_dir)?;
    staged.disarm();
    if let Some(g) = tls_staging {
        g.disarm();
    }
    exit_if_asked("journal");
    journal.apply(&server_dir)?;
    tracing::info!("Cluster reset finished in {:.1?}", started.elapsed());
    Ok(reset_message(&cfg.data_dir))
}

/// What a reset prepared before changing anything of the server: the bootstrap data read
/// from etcd, and for a restore the moves that put the staging dir in place of `db/etcd`.
#[derive(Default)]
struct Staged {
    bootstrap: Option<Bootstrap>,
    moves: Vec<Move>,
    /// Removed if the reset fails before its journal is written.
    guards: Vec<RemoveDirOnDrop>,
    downloaded: Vec<RemoveOnDrop>,
}

impl Staged {
    fn disarm(self) {
        for g in self.guards {
            g.disarm();
        }
        // The restored snapshot stays where it was (a download stays in the snapshot dir).
        for d in self.downloaded {
            d.disarm();
        }
    }
}

/// `server/reset-journal`: the renames that put a reset's result in place, written (fsynced)
/// once everything they move is complete, so a reset killed midway is finished by the next
/// start or reset, never half applied. Every move either sets a live path aside under a new
/// name (done once that name exists) or puts a staged path in place (done once the staged
/// name is gone), so each is done exactly once however often the journal is replayed. The
/// flag `db/reset-flag` is written and the journal removed last.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Journal {
    /// In order.
    moves: Vec<Move>,
}

/// One rename, paths relative to `server/`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Move {
    from: PathBuf,
    to: PathBuf,
    /// `to` is a new name (a backup); otherwise `from` is (a staging name).
    aside: bool,
}

impl Move {
    fn aside(from: PathBuf, to: PathBuf) -> Move {
        Move {
            from,
            to,
            aside: true,
        }
    }

    fn into_place(from: PathBuf, to: PathBuf) -> Move {
        Move {
            from,
            to,
            aside: false,
        }
    }
}

const JOURNAL: &str = "reset-journal";

impl Journal {
    fn write(&self, server_dir: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Other(format!("cannot encode the reset journal: {e}")))?;
        write_private(&server_dir.join(JOURNAL), &text)
    }

    fn read(server_dir: &Path) -> Result<Option<Journal>> {
        let path = server_dir.join(JOURNAL);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        serde_json::from_slice(&text).map(Some).map_err(|e| {
            Error::InvalidInput(format!(
                "{} (the steps left of an interrupted cluster reset) cannot be read: {e}; finish the moves it lists by hand, then delete it",
                path.display()
            ))
        })
    }

    /// Does the moves not yet done, writes `db/reset-flag`, removes the journal.
    fn apply(&self, server_dir: &Path) -> Result<()> {
        let journal = server_dir.join(JOURNAL);
        for (i, m) in self.moves.iter().enumerate() {
            let (src, dst) = (server_dir.join(&m.from), server_dir.join(&m.to));
            let exists = |p: &Path| p.symlink_metadata().is_ok();
            let done = if m.aside { exists(&dst) } else { !exists(&src) };
            if !done {
                // Only a file replaces what it lands on (the token file); a directory that
                // would land on one means someone else changed the data dir meanwhile.
                if src.is_dir() && exists(&dst) {
                    return Err(Error::Other(format!(
                        "cannot finish the cluster reset: both {} and {} exist; move one of them away, and the next start finishes the steps listed in {}",
                        src.display(),
                        dst.display(),
                        journal.display()
                    )));
                }
                std::fs::rename(&src, &dst).map_err(|e| {
                    Error::Other(format!(
                        "cannot move {} to {}: {e}; the next start finishes the steps listed in {}",
                        src.display(),
                        dst.display(),
                        journal.display()
                    ))
                })?;
                sync_dir(crate::fsutil::parent_dir(&dst))?;
                log_move(&m.from, &dst);
            }
            exit_if_asked(&format!("move-{}", i + 1));
        }
        write_private(&server_dir.join("db").join("reset-flag"), b"")?;
        std::fs::remove_file(&journal).map_err(|e| Error::io("remove", &journal, e))?;
        sync_dir(server_dir)
    }
}

fn log_move(from: &Path, dst: &Path) {
    if from == Path::new("db/etcd") {
        tracing::info!("Pre-restore etcd database moved to {}", dst.display());
    } else if from == Path::new("tls") {
        tracing::info!(
            "Cluster reset: backing up certificates directory to {}",
            dst.display()
        );
    } else {
        tracing::info!(
            "Cluster reset: moved {} to {}",
            from.display(),
            dst.display()
        );
    }
}

/// Test hook: `ETCDSNAP_TEST_EXIT_AT=<point>` makes a reset exit at once (no clean-up, as a
/// kill would) at that point of its last step, so tests can check that the next start
/// finishes it.
fn exit_if_asked(point: &str) {
    if std::env::var_os("ETCDSNAP_TEST_EXIT_AT").is_some_and(|v| v == point) {
        eprintln!("ETCDSNAP_TEST_EXIT_AT={point}: exiting");
        std::process::exit(99);
    }
}

/// At the start of a server or a reset, under the data-dir lock: finishes a reset whose
/// journal was written (its staging dirs hold the result), then removes the staging dirs of
/// resets that died before they wrote one (they hold nothing of the server's).
pub fn recover(server_dir: &Path) -> Result<()> {
    if let Some(journal) = Journal::read(server_dir)? {
        tracing::warn!(
            "A cluster reset was interrupted after it had prepared everything; finishing it ({} moves)",
            journal.moves.len()
        );
        journal.apply(server_dir)?;
        tracing::info!(
            "Finished the interrupted cluster reset; {} now hold its result",
            server_dir.display()
        );
    }
    remove_stale_staging(&server_dir.join("db"));
    remove_stale(&server_dir.join("db"), SOURCE_STAGING_STEM);
    remove_stale(server_dir, TLS_STAGING_STEM);
    remove_stale(server_dir, TOKEN_STAGING);
    Ok(())
}

/// The token whose secret decrypts the bootstrap data: `--token`, else the token file. Its CA
/// hash is not checked against this machine's CA, which a restore may be about to replace.
fn reset_token(cfg: &ServerConfig) -> Result<Token> {
    if let Some(t) = &cfg.token {
        return Token::parse(t);
    }
    let file = cfg.server_dir().join("token");
    match std::fs::read_to_string(&file) {
        Ok(t) => Token::parse(&t),
        Err(_) => Err(Error::InvalidInput(format!(
            "{} does not exist, please pass --token to complete the restoration",
            file.display()
        ))),
    }
}

/// Restores the snapshot at `path` into a staging dir beside `db/etcd` and reads its bootstrap
/// data; returns the moves that put it in place. Nothing of the server changes here.
async fn restore(
    cfg: &ServerConfig,
    reset: &ResetSettings,
    etcd: &mut EmbeddedEtcd,
    version: &str,
    token: &Token,
    path: &str,
) -> Result<Staged> {
    let db = cfg.server_dir().join("db");
    // A download is ours to remove if the restore fails before anything changed.
    let (source, downloaded) = locate(cfg, reset, path).await?;
    // A compressed snapshot is decompressed into a staging dir of its own beside `db/etcd`,
    // never into the snapshot dir, where a killed restore would leave it listed as a
    // snapshot; the next start removes it with the other staging dirs.
    let work = unique_beside(&db, SOURCE_STAGING_STEM.trim_end_matches('-'));
    create_private_dir(&work)?;
    let _work_guard = RemoveDirOnDrop(Some(work.clone()));
    let unpack = Unpack::new(
        Purpose::Restore {
            data_parent: db.clone(),
        },
        &work,
    );
    let mut prepared = tokio::task::spawn_blocking(move || source::open_local(&source, &unpack))
        .await
        .map_err(|e| Error::Other(format!("restore task failed: {e}")))??;
    let tool = RestoreTool::for_etcd(
        &etcd.binary,
        version,
        reset.etcdutl_binary.as_deref(),
        reset.etcdctl_binary.as_deref(),
    )?;

    // Staging: nothing of the server changes until it has run.
    let staging = unique_beside(&db, STAGING_STEM.trim_end_matches('-'));
    let staging_guard = RemoveDirOnDrop(Some(staging.clone()));
    let name = new_member_name(&cfg.node_name)?;
    tool.restore(
        &mut prepared,
        &staging,
        &Membership {
            name: name.clone(),
            initial_cluster: None,
            peer_urls: etcd.peer_url(),
            cluster_token: None,
        },
    )
    .await?;
    write_private(&staging.join("name"), name.as_bytes())?;
    let live_dir = std::mem::replace(&mut etcd.data_dir, staging.clone());
    etcd.member_name = name.clone();
    let data = run_once(etcd, token).await;
    etcd.data_dir = live_dir.clone();
    let data = data?;
    tracing::info!(
        "Restore: {} holds the snapshot's data as member {name}; it replaces {}",
        staging.display(),
        live_dir.display()
    );
    Ok(Staged {
        bootstrap: data,
        moves: restore_moves(cfg, &live_dir, &staging)?,
        guards: vec![staging_guard],
        downloaded,
    })
}

/// The snapshot file to restore: `path` itself, or with `--etcd-s3` the object of that name
/// downloaded (verified) into the snapshot dir. A download that was not there before comes
/// with a guard that removes it unless the reset gets as far as its journal.
async fn locate(
    cfg: &ServerConfig,
    reset: &ResetSettings,
    path: &str,
) -> Result<(PathBuf, Vec<RemoveOnDrop>)> {
    let snapdir = resolve_snapshot_dir(&cfg.data_dir, cfg.snapshots.dir.as_deref(), true)?;
    let Some(target) = &reset.s3 else {
        return Ok((PathBuf::from(path), Vec::new()));
    };
    if target.config().config_secret.trim() != "" {
        return Err(Error::InvalidInput(
            "cannot use S3 config secret when restoring snapshot; configuration must be set in CLI or config file".into(),
        ));
    }
    validate_plain_name(path).map_err(|_| {
        Error::InvalidInput(format!(
            "with --etcd-s3 the restore path is the snapshot's name in the bucket, as `etcd-snapshot ls --s3` prints it, not {path:?}; to restore a local file pass --etcd-s3=false"
        ))
    })?;
    let existed = snapdir.join(path).exists();
    let label = target.config().provider.label();
    tracing::info!("Retrieving etcd snapshot {path} from {label}");
    let started = Instant::now();
    let store = source::connect(
        target,
        S3Identity {
            node_name: cfg.node_name.clone(),
            ..Default::default()
        },
    )
    .await?;
    let file = source::fetch(&store, path, &snapdir).await?.path;
    let mut downloaded = Vec::new();
    if !existed {
        downloaded.push(RemoveOnDrop::new(file.clone()));
    }
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    tracing::info!(
        "{label} download complete for {} ({} bytes in {:.1?})",
        file.display(),
        size,
        started.elapsed()
    );
    Ok((file, downloaded))
}

/// The moves that put a restored `staging` dir in place of `live_dir` (`db/etcd`), which goes
/// aside to `db/etcd-old-<unix>` when it exists; paths relative to `server/`.
fn restore_moves(cfg: &ServerConfig, live_dir: &Path, staging: &Path) -> Result<Vec<Move>> {
    let server_dir = cfg.server_dir();
    let db = server_dir.join("db");
    let rel = |p: &Path| p.strip_prefix(&server_dir).map(Path::to_path_buf);
    let (Ok(live_rel), Ok(staging_rel)) = (rel(live_dir), rel(staging)) else {
        return Err(Error::Other(format!(
            "{} is not below {}",
            staging.display(),
            server_dir.display()
        )));
    };
    let mut moves = Vec::new();
    if live_dir.exists() {
        let old = unique_beside(&db, "etcd-old");
        moves.push(Move::aside(
            live_rel.clone(),
            Path::new("db").join(old.file_name().unwrap_or_default()),
        ));
    }
    moves.push(Move::into_place(staging_rel, live_rel));
    Ok(moves)
}

/// Resets membership on the data dir as it is.
async fn reset_in_place(etcd: &EmbeddedEtcd, token: &Token) -> Result<Option<Bootstrap>> {
    run_once(etcd, token).await
}

/// Starts etcd once on `etcd.data_dir` (loopback only, `--force-new-cluster`), checks that it
/// is the only member, reads the bootstrap data, and stops it.
async fn run_once(etcd: &EmbeddedEtcd, token: &Token) -> Result<Option<Bootstrap>> {
    let mut e = etcd.clone();
    e.force_new_cluster = true;
    e.loopback_only = true;
    let started = Instant::now();
    let mut child = EtcdChild::spawn(&e)?;
    let target: Arc<dyn EtcdSource> = Arc::new(embedded_target(&e));
    let result = async {
        wait_healthy(target.as_ref(), &mut child).await?;
        tracing::info!(
            "Cluster reset: etcd is up on loopback with --force-new-cluster ({:.1?})",
            started.elapsed()
        );
        let members = target.members().await?;
        if members.len() != 1 {
            return Err(Error::Etcd(format!(
                "after the reset etcd still lists {} members ({}); expected this member alone",
                members.len(),
                members
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        tracing::info!(
            "Cluster reset: the member list is this member alone ({})",
            members[0].name
        );
        bootstrap::fetch(target.as_ref(), &token.password).await
    }
    .await;
    child.stop(Duration::from_secs(15)).await;
    result
}

async fn wait_healthy(etcd: &dyn EtcdSource, child: &mut EtcdChild) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if tokio::time::timeout(Duration::from_secs(3), etcd.status())
            .await
            .is_ok_and(|r| r.is_ok())
        {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(crate::etcd::process::exit_error(
                "during the reset",
                &st.to_string(),
                &child.log_tail(30),
            ));
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!(
                "etcd did not answer within 2 minutes of the reset; last lines of its log:\n{}",
                child.log_tail(30)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes the CAs of the bootstrap data into a staging dir beside `tls`, issues the etcd leaf
/// certificates from them (so that a failure shows now, not at the next start), and writes
/// the token file with the restored CA's hash beside `token`, so the full token
/// (`K10<hash>::server:<secret>`) of the old cluster works. Returns the staging guard and
/// the moves that put them in place (`tls` goes to `tls-<unix>`).
fn stage_certificates(
    cfg: &ServerConfig,
    tls_dir: &Path,
    data: &Bootstrap,
    token: &Token,
) -> Result<(RemoveDirOnDrop, Vec<Move>)> {
    let server_dir = cfg.server_dir();
    let staging = unique_beside(&server_dir, TLS_STAGING_STEM.trim_end_matches('-'));
    let guard = RemoveDirOnDrop(Some(staging.clone()));
    let token_staging = server_dir.join(TOKEN_STAGING);
    let written = data.write(&staging)?;
    tracing::info!(
        "Cluster reset: wrote {} CA files from the datastore into {}",
        written.len(),
        staging.display()
    );
    ensure_etcd_certs(&staging, &cfg.hosts())?;
    let ca_pem = std::fs::read(staging.join("server-ca.crt"))
        .map_err(|e| Error::io("read", &staging.join("server-ca.crt"), e))?;
    let hash = crate::token::ca_hash(&ca_pem);
    if let Some(h) = &token.ca_hash
        && *h != hash
    {
        tracing::warn!(
            "the token's CA hash {h} is not the restored CA's ({hash}); the server token file gets the restored CA's hash"
        );
    }
    let full = Token {
        ca_hash: Some(hash),
        username: "server".into(),
        password: token.password.clone(),
    };
    write_private(&token_staging, format!("{}\n", full.to_full()).as_bytes())?;
    let name = |p: &Path| PathBuf::from(p.file_name().unwrap_or_default());
    let mut moves = Vec::new();
    if tls_dir.exists() {
        let backup = unique_beside(&server_dir, "tls");
        moves.push(Move::aside(name(tls_dir), name(&backup)));
    }
    moves.push(Move::into_place(name(&staging), name(tls_dir)));
    moves.push(Move::into_place(
        name(&token_staging),
        PathBuf::from("token"),
    ));
    Ok((guard, moves))
}

/// Removes a directory tree when dropped unless disarmed.
struct RemoveDirOnDrop(Option<PathBuf>);

impl RemoveDirOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}
