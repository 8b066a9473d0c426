//! The snapshot engine: save, list, delete and prune, for on-demand and scheduled snapshots
//! alike. One lock admits one save at a time (a second fails at once with
//! `snapshot save already in progress`). A save streams from one etcd member into a verified
//! local file while a remote copy (S3) is uploaded from the growing file, applies local
//! retention, completes the upload only once the local file is verified, then applies remote
//! retention; a remote failure never loses the local file. The engine runs what it is given:
//! requests are resolved in [`plan`], stores are connected by the caller.

mod clock;
pub mod confine;
pub(crate) mod metrics;
pub mod plan;
pub(crate) mod s3secret;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::api::SnapshotResult;
use crate::etcd::{ChunkStream, EtcdSource, MemberStatus};
use crate::naming::{rounded_unix, snapshot_base_name, validate_plain_name, validate_prefix};
use crate::records::manager::Records;
use crate::retention::{RetentionContext, apply_retention};
use crate::snapfile::growing::{GrowthSender, growing};
use crate::snapfile::writer::{self, WriteSpec, Written, write_stream};
use crate::store::local::{LocalStore, resolve_snapshot_dir};
use crate::store::remote::{S3Identity, S3Target};
use crate::store::{ListDetail, RemoteStores, S3Spec, SnapshotRecord, SnapshotStore};
use crate::{Error, Result};
use metrics::Metrics;
use plan::{Remote, RemotePlan, SavePlan};

/// How long the record of a failure may hold up the answer; a failure caused by etcd being
/// down cannot be recorded in it, and is recorded later.
const RECORD_FAILURE_WAIT: Duration = Duration::from_secs(3);

/// Settings fixed for the life of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub node_name: String,
    pub data_dir: std::path::PathBuf,
    /// 12-hex hash of the server token, recorded in S3 metadata.
    pub token_hash: String,
    /// A snapshot stream silent this long is abandoned.
    pub idle_timeout: Duration,
    /// The datastore is this server's own etcd (embedded): its members are the nodes.
    pub owns_etcd: bool,
}

/// The `metadata.name` of a stored record.
fn record_name(obj: &serde_json::Value) -> Option<String> {
    obj["metadata"]["name"].as_str().map(str::to_string)
}

/// How long a save waits for the extra-metadata ConfigMap.
const EXTRA_METADATA_WAIT: Duration = Duration::from_secs(5);

type UploadTask = tokio::task::JoinHandle<(Result<SnapshotRecord>, Duration)>;

/// The snapshot engine over an etcd source and the remote stores it can connect.
pub struct Engine {
    etcd: Arc<dyn EtcdSource>,
    remotes: Arc<dyn RemoteStores>,
    /// ETCDSnapshotFile records, when the server keeps them.
    records: Option<Arc<Records>>,
    cfg: EngineConfig,
    save_lock: tokio::sync::Mutex<()>,
    /// Cluster identity recorded in S3 metadata (`K3s-Cluster-Id`), known once etcd answers.
    cluster_id: std::sync::OnceLock<String>,
    pub metrics: Arc<Metrics>,
    /// The running (or last) save's progress, for `GET /db/snapshot/progress`.
    pub progress: crate::progress::SaveBoard,
    /// Every snapshot dir the server allows (its own, `None` for the default, and
    /// `--etcd-snapshot-allowed-dirs`): a reconcile keeps the records of all of them, so that
    /// `ls --dir` on one does not delete and re-create the records of the others. Empty: only
    /// the dir a reconcile is given.
    record_dirs: Vec<Option<std::path::PathBuf>>,
}

impl Engine {
    pub fn new(
        etcd: Arc<dyn EtcdSource>,
        remotes: Arc<dyn RemoteStores>,
        cfg: EngineConfig,
    ) -> Self {
        Engine {
            etcd,
            remotes,
            records: None,
            cfg,
            save_lock: tokio::sync::Mutex::new(()),
            cluster_id: std::sync::OnceLock::new(),
            metrics: Arc::new(Metrics::default()),
            progress: Default::default(),
            record_dirs: Vec::new(),
        }
    }

    /// The snapshot dirs whose files every reconcile records (see `record_dirs`).
    pub fn with_record_dirs(mut self, dirs: Vec<Option<std::path::PathBuf>>) -> Self {
        self.record_dirs = dirs;
        self
    }

    /// Keeps ETCDSnapshotFile records of what the engine does.
    pub fn with_records(mut self, records: Arc<Records>) -> Self {
        self.records = Some(records);
        self
    }

    pub fn records(&self) -> Option<&Arc<Records>> {
        self.records.as_ref()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn etcd(&self) -> &dyn EtcdSource {
        self.etcd.as_ref()
    }

    /// The node this engine names its snapshots after.
    pub fn node_name(&self) -> &str {
        &self.cfg.node_name
    }

    /// The local store in `dir` (default: `<data-dir>/server/db/snapshots`, created when
    /// `create` is set).
    pub fn local(&self, dir: Option<&Path>, create: bool) -> Result<LocalStore> {
        let dir = resolve_snapshot_dir(&self.cfg.data_dir, dir, create)?;
        Ok(LocalStore::new(dir, self.cfg.node_name.clone()))
    }

    /// The cluster identity recorded with uploads (`K3s-Cluster-Id`), asked of etcd the first
    /// time it is needed: the UID of the `kube-system` namespace when the etcd holds a
    /// Kubernetes datastore, as K3s records it, else the etcd cluster ID in hex.
    pub async fn cluster_id(&self) -> Result<String> {
        if let Some(id) = self.cluster_id.get() {
            return Ok(id.clone());
        }
        let kube = match self.etcd.get(crate::kube::KUBE_SYSTEM_KEY).await? {
            Some(value) => crate::kube::object_uid(&value).unwrap_or_else(|e| {
                tracing::warn!(
                    "cannot read the kube-system namespace UID ({e}); using the etcd cluster ID as the cluster ID"
                );
                None
            }),
            None => None,
        };
        let id = match kube {
            Some(uid) => uid,
            None => format!("{:016x}", self.etcd.status().await?.cluster_id),
        };
        Ok(self.cluster_id.get_or_init(|| id).clone())
    }

    /// Connects the remote store of `target` (clients are cached by configuration); settings
    /// that name a config Secret are read from it first.
    pub async fn connect(&self, target: &S3Target) -> Result<Arc<dyn SnapshotStore>> {
        let resolved;
        let target = if target.config().uses_config_secret() {
            let cfg = s3secret::resolve(target.config(), self.records.as_ref().map(|r| r.store()))
                .await?;
            resolved = S3Target::new(cfg)?;
            &resolved
        } else {
            if !target.config().config_secret.is_empty() {
                // K3s's warning: other settings win over the Secret.
                s3secret::resolve(target.config(), None).await?;
            }
            target
        };
        let identity = S3Identity {
            cluster_id: self.cluster_id().await?,
            node_name: self.cfg.node_name.clone(),
            token_hash: self.cfg.token_hash.clone(),
        };
        self.remotes.connect(target, identity).await
    }

    /// Takes a snapshot now. Errors before the local file exists fail the save; remote problems
    /// after it are reported in `warnings` and logged, and the local file stays.
    pub async fn save(&self, plan: &SavePlan) -> Result<SnapshotResult> {
        let guard = self
            .save_lock
            .try_lock()
            .map_err(|_| Error::SaveInProgress)?;
        self.save_holding(guard, plan).await
    }

    /// Like [`Engine::save`], but a save already running is waited for (at most `max_wait`)
    /// instead of failing: scheduled snapshots are not lost to an on-demand save.
    pub async fn save_after_running(
        &self,
        plan: &SavePlan,
        max_wait: Duration,
    ) -> Result<SnapshotResult> {
        let guard = match self.save_lock.try_lock() {
            Ok(g) => g,
            Err(_) => {
                tracing::info!(
                    "a snapshot save is in progress; the scheduled snapshot waits for it (at most {}s)",
                    max_wait.as_secs()
                );
                tokio::time::timeout(max_wait, self.save_lock.lock())
                    .await
                    .map_err(|_| Error::SaveInProgress)?
            }
        };
        self.save_holding(guard, plan).await
    }

    async fn save_holding(
        &self,
        _guard: tokio::sync::MutexGuard<'_, ()>,
        plan: &SavePlan,
    ) -> Result<SnapshotResult> {
        let (started, at) = (Instant::now(), Utc::now());
        let mut file = None;
        let r = self.save_locked(plan, &mut file).await;
        let duration = started.elapsed();
        Metrics::observe(&self.metrics.save, r.is_ok(), duration);
        self.metrics.saved(metrics::SaveEntry {
            started: at,
            duration,
            file,
            error: r.as_ref().err().map(|e| e.to_string()),
        });
        r
    }

    /// Records a save that ended in a panic (caught by its caller) as a failed save: the
    /// failure metrics, the save history and the log say so, as for any other failure.
    pub fn record_crashed_save(&self, at: DateTime<Utc>, duration: Duration, message: &str) {
        Metrics::observe(&self.metrics.save, false, duration);
        self.metrics.failed("local", message);
        self.metrics.saved(metrics::SaveEntry {
            started: at,
            duration,
            file: None,
            error: Some(message.to_string()),
        });
    }

    /// Records a saved local file as an ETCDSnapshotFile (with the token hash, as K3s
    /// annotates successful saves); the names recorded. A failure is logged, not returned:
    /// the snapshot exists whether or not its record does.
    async fn record_saved(&self, local: &LocalStore, written: &Written) -> Vec<String> {
        let mut recorded = Vec::new();
        if let Some(records) = &self.records {
            match local.record_for(&written.path) {
                Ok(mut rec) => {
                    // A file does not say which token saved it; the save does (K3s annotates
                    // records of successful saves).
                    if !self.cfg.token_hash.is_empty() {
                        rec.token_hash = Some(self.cfg.token_hash.clone());
                    }
                    match records.saved(&rec).await {
                        Ok(obj) => recorded.extend(record_name(&obj)),
                        Err(e) => {
                            tracing::warn!("cannot record snapshot {}: {}", rec.name, e.message)
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot record snapshot {}: {e}", written.file_name),
            }
        }
        recorded
    }

    /// Saves as `plan` says; `file` is set to the local file's name and size once it is written.
    async fn save_locked(
        &self,
        plan: &SavePlan,
        file: &mut Option<(String, u64)>,
    ) -> Result<SnapshotResult> {
        validate_prefix(&plan.prefix)?;
        let local = self.local(plan.dir.as_deref(), true)?;
        let mut result = SnapshotResult::default();
        let remote = match &plan.remote {
            RemotePlan::None => None,
            RemotePlan::Ready(r) => Some(r),
            RemotePlan::Failed { message, .. } => {
                self.metrics.failed("s3", message);
                tracing::error!("Error received during snapshot upload to S3: {message}");
                result.warnings.push(format!("S3 upload failed: {message}"));
                None
            }
        };
        crate::naming::check_name_length(&snapshot_base_name(
            &plan.prefix,
            &self.cfg.node_name,
            Utc::now(),
        ))?;
        let spec = self.free_spec(&local, plan).await;
        let file_name = file_name_of(&writer::final_path(&spec));
        if let RemotePlan::Failed { message, spec: s3 } = &plan.remote {
            self.record_failure(
                &file_name,
                "",
                &format!("failed to initialize S3 client: {message}"),
                s3.clone(),
            )
            .await;
        }
        let sidecar = self.write_extra_metadata(&local, &file_name).await;
        let local_started = Instant::now();
        let (member, stream) = match self.open_stream(local_started).await {
            Ok(x) => x,
            Err(e) => {
                self.local_failed(&spec, &e, sidecar.as_deref()).await;
                return Err(e);
            }
        };
        let board = self.progress.start(
            &file_name,
            member.db_size.max(0) as u64,
            remote.map(|r| r.store.location(&file_name)),
        );
        let stream = count_chunks(stream, self.progress.saved_counter());
        tracing::info!(
            "Saving etcd snapshot to {} (from member {:x} at {}, etcd {})",
            writer::final_path(&spec).display(),
            member.member_id,
            member.endpoint,
            member.version
        );
        // The upload starts now and follows the file as it is written.
        let upload = remote.map(|r| self.start_upload(r, &file_name, &local));
        let (growth, task) = match upload {
            Some((g, t)) => (Some(g), Some(t)),
            None => (None, None),
        };
        let written = self
            .write_local(stream, spec.clone(), growth, local_started)
            .await;
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                if let Some(task) = task {
                    // The uploader abandons its upload when the writer fails.
                    let _ = task.await;
                }
                self.local_failed(&spec, &e, sidecar.as_deref()).await;
                return Err(e);
            }
        };
        self.progress.written(written.size);
        *file = Some((written.file_name.clone(), written.size));
        result.created.push(written.file_name.clone());
        // The records of this save, to which its status figures are added afterwards.
        let mut recorded = self.record_saved(&local, &written).await;
        self.local_retention(&local, plan, &written.file_name, &mut result)
            .await;
        if let (Some(r), Some(task)) = (remote, task) {
            self.finish_upload(r, task, &written, &mut result, &mut recorded)
                .await;
            // Retention runs even after a failed upload: a full bucket may be the cause.
            self.remote_retention(r, &plan.prefix, &written.file_name, &mut result)
                .await;
        }
        if written.size == written.raw_size {
            self.add_figures(written.path.clone(), recorded);
        }
        board.succeeded();
        Ok(result)
    }

    /// Reads the revision and key count of a raw snapshot just saved (the file is still in the
    /// page cache) and adds them to its records, after the answer: the save does not wait for
    /// it. A compressed snapshot would need a decompressed copy; `etcd-snapshot status` reads
    /// it on demand.
    fn add_figures(&self, path: PathBuf, names: Vec<String>) {
        let Some(records) = self.records.clone() else {
            return;
        };
        if names.is_empty() {
            return;
        }
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking({
                let path = path.clone();
                move || crate::bbolt::Db::open(&path)?.status()
            })
            .await;
            let st = match read {
                Ok(Ok(st)) => st,
                Ok(Err(e)) => {
                    tracing::warn!("cannot read the figures of {}: {e}", path.display());
                    return;
                }
                Err(e) => {
                    tracing::warn!("figures task of {} failed: {e}", path.display());
                    return;
                }
            };
            for n in names {
                if let Err(e) = records.set_figures(&n, st.revision, st.total_key).await {
                    tracing::warn!("cannot add the figures to record {n}: {}", e.message);
                }
            }
        });
    }

    async fn open_stream(&self, started: Instant) -> Result<(MemberStatus, ChunkStream)> {
        self.etcd.snapshot().await.inspect_err(|e| {
            Metrics::observe(&self.metrics.save_local, false, started.elapsed());
            self.metrics.failed("local", &e.to_string());
            tracing::error!("Failed to take etcd snapshot: {e}");
        })
    }

    /// The spec of a name not taken yet: names carry the second they were taken, so a second
    /// save within the same second waits for the next one (K3s overwrote the first).
    async fn free_spec(&self, local: &LocalStore, plan: &SavePlan) -> WriteSpec {
        loop {
            let now = clock::name_time();
            let spec = self.write_spec(local, plan, now);
            if !writer::final_path(&spec).exists() {
                return spec;
            }
            let next_ms = (rounded_unix(now) + 1) * 1000 - 500;
            let wait = (next_ms - now.timestamp_millis()).clamp(1, 1000) as u64;
            tracing::info!(
                "{} exists; waiting {wait} ms for the next second's name",
                writer::final_path(&spec).display()
            );
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    fn write_spec(&self, local: &LocalStore, plan: &SavePlan, now: DateTime<Utc>) -> WriteSpec {
        WriteSpec {
            dir: local.dir().to_path_buf(),
            base_name: snapshot_base_name(&plan.prefix, &self.cfg.node_name, now),
            compress: plan.compress,
            format: plan.compression.format,
            compression_level: plan.compression.level,
            created: now,
            idle_timeout: self.cfg.idle_timeout,
        }
    }

    fn start_upload(
        &self,
        remote: &Remote,
        file_name: &str,
        local: &LocalStore,
    ) -> (GrowthSender, UploadTask) {
        let (tx, rx) = growing();
        let rx = rx.counting(self.progress.uploaded_counter());
        let store = remote.store.clone();
        let name = file_name.to_string();
        let sidecar = local.sidecar_path(file_name);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let r = store.put(&name, rx, Some(&sidecar)).await;
            (r, started.elapsed())
        });
        (tx, task)
    }

    async fn write_local(
        &self,
        stream: ChunkStream,
        spec: WriteSpec,
        growth: Option<GrowthSender>,
        started: Instant,
    ) -> Result<Written> {
        let written = write_stream(stream, spec, growth).await;
        Metrics::observe(&self.metrics.save_local, written.is_ok(), started.elapsed());
        match &written {
            Ok(w) => self.metrics.succeeded("local", w.size),
            Err(e) => self.metrics.failed("local", &e.to_string()),
        }
        match &written {
            Ok(w) => tracing::info!(
                "Snapshot {} saved ({} bytes on disk, {} bytes of database)",
                w.path.display(),
                w.size,
                w.raw_size
            ),
            Err(e) => tracing::error!("Failed to take etcd snapshot: {e}"),
        }
        written
    }

    async fn local_retention(
        &self,
        local: &LocalStore,
        plan: &SavePlan,
        just_taken: &str,
        out: &mut SnapshotResult,
    ) {
        if plan.retention < 1 {
            return;
        }
        let ctx = RetentionContext {
            now: Utc::now(),
            just_taken: Some(just_taken),
        };
        match apply_retention(local, &plan.prefix, plan.retention, ctx).await {
            Ok(deleted) => out.deleted.extend(deleted),
            Err(e) => {
                tracing::warn!("Failed to apply local snapshot retention: {e}");
                out.warnings.push(format!("local retention failed: {e}"));
            }
        }
    }

    async fn finish_upload(
        &self,
        remote: &Remote,
        task: UploadTask,
        written: &Written,
        out: &mut SnapshotResult,
        recorded: &mut Vec<String>,
    ) {
        let (up, took) = match task.await {
            Ok(x) => x,
            Err(e) => (
                Err(Error::Other(format!("upload task failed: {e}"))),
                Duration::ZERO,
            ),
        };
        Metrics::observe(&self.metrics.save_s3, up.is_ok(), took);
        match &up {
            Ok(rec) => self.metrics.succeeded("s3", rec.size),
            Err(e) => self.metrics.failed("s3", &e.to_string()),
        }
        match up {
            Ok(rec) => {
                tracing::info!("Uploaded snapshot to {}", rec.location);
                out.created.push(written.file_name.clone());
                if let Some(records) = &self.records {
                    match records.saved(&rec).await {
                        Ok(obj) => recorded.extend(record_name(&obj)),
                        Err(e) => {
                            tracing::warn!("cannot record snapshot {}: {}", rec.location, e.message)
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!("Error received during snapshot upload to S3: {e}");
                out.warnings.push(format!("S3 upload failed: {e}"));
                let location = remote.store.location(&written.file_name);
                self.record_failure(
                    &written.file_name,
                    &location,
                    &e.to_string(),
                    remote.spec.clone(),
                )
                .await;
            }
        }
    }

    async fn remote_retention(
        &self,
        remote: &Remote,
        prefix: &str,
        just_taken: &str,
        out: &mut SnapshotResult,
    ) {
        let ctx = RetentionContext {
            now: Utc::now(),
            just_taken: Some(just_taken),
        };
        match apply_retention(remote.store.as_ref(), prefix, remote.retention, ctx).await {
            Ok(deleted) => out.deleted.extend(deleted),
            Err(e) => {
                tracing::warn!("Failed to apply s3 snapshot retention policy: {e}");
                out.warnings.push(format!("S3 retention failed: {e}"));
            }
        }
    }

    async fn record_failure(&self, name: &str, location: &str, message: &str, s3: Option<S3Spec>) {
        if let Some(records) = &self.records {
            let s3 = s3.or_else(|| {
                crate::store::remote::is_remote_location(location).then(S3Spec::default)
            });
            records
                .failed_or_later(name, location, message, s3, RECORD_FAILURE_WAIT)
                .await;
        }
    }

    /// A failed local save: its record (K3s: the base name, no location) and no sidecar.
    async fn local_failed(&self, spec: &WriteSpec, e: &Error, sidecar: Option<&Path>) {
        if let Some(p) = sidecar {
            let _ = std::fs::remove_file(p);
        }
        self.record_failure(&spec.base_name, "", &e.to_string(), None)
            .await;
    }

    /// Extra metadata for a new snapshot: the data of ConfigMap
    /// `kube-system/k3s-etcd-snapshot-extra-metadata`, written as the snapshot's sidecar
    /// (`../.metadata/<file>`, 0600) before the snapshot, so the upload takes it along.
    async fn write_extra_metadata(
        &self,
        local: &LocalStore,
        file_name: &str,
    ) -> Option<std::path::PathBuf> {
        let records = self.records.as_ref()?;
        // Optional data: an etcd that does not answer is found by the stream next, and must
        // not hold the save up for a connection's keep-alive timeout first.
        let read = tokio::time::timeout(
            EXTRA_METADATA_WAIT,
            records.store().get(
                &crate::kube::api::resources::CONFIGMAPS,
                Some("kube-system"),
                EXTRA_METADATA,
            ),
        )
        .await;
        let Ok(read) = read else {
            tracing::warn!(
                "cannot read ConfigMap kube-system/{EXTRA_METADATA}: etcd did not answer within {EXTRA_METADATA_WAIT:?}"
            );
            return None;
        };
        let cm = match read {
            Ok(Some(cm)) => cm,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(
                    "cannot read ConfigMap kube-system/{EXTRA_METADATA}: {}",
                    e.message
                );
                return None;
            }
        };
        let data = cm["data"].as_object().filter(|d| !d.is_empty())?;
        let json = serde_json::to_vec(data).ok()?;
        let path = local.sidecar_path(file_name);
        let written = crate::fsutil::create_private_dir(&local.metadata_dir())
            .and_then(|()| crate::fsutil::write_private(&path, &json));
        match written {
            Ok(()) => {
                tracing::info!("Saving snapshot metadata to {}", path.display());
                Some(path)
            }
            Err(e) => {
                tracing::warn!("cannot write snapshot metadata {}: {e}", path.display());
                None
            }
        }
    }

    /// Brings the records in line with the files of `dir` (and the objects of `remote`).
    pub async fn reconcile(
        &self,
        dir: Option<&Path>,
        remote: Option<&Arc<dyn SnapshotStore>>,
        deleted: &[String],
    ) -> Result<()> {
        let Some(records) = &self.records else {
            return Ok(());
        };
        let started = Instant::now();
        let local = if self.record_dirs.is_empty() {
            self.local(dir, true)?.list(ListDetail::Basic).await?
        } else {
            let mut all = Vec::new();
            for d in &self.record_dirs {
                // The server's own dir is created; an allowed dir that vanished lists nothing.
                match self.local(d.as_deref(), d.is_none()) {
                    Ok(store) => all.extend(store.list(ListDetail::Basic).await?),
                    Err(e) => tracing::warn!("snapshot records: {e}"),
                }
            }
            all
        };
        self.metrics.listed("local", &local);
        let s3 = match remote {
            Some(store) => match store.list(ListDetail::Full).await {
                Ok(recs) => {
                    self.metrics.listed("s3", &recs);
                    Some(recs)
                }
                Err(e) => {
                    // K3s leaves S3 records alone when the listing fails.
                    tracing::error!("cannot list S3 for the snapshot records: {e}");
                    None
                }
            },
            None => None,
        };
        let members = self.member_nodes().await;
        let r = records
            .reconcile(&local, s3.as_deref(), members.as_ref(), deleted)
            .await
            .map_err(|e| Error::Other(format!("reconcile of snapshot records: {}", e.message)));
        Metrics::observe(&self.metrics.reconcile, r.is_ok(), started.elapsed());
        let done = r?;
        tracing::debug!(
            "snapshot records reconciled in {:.1?}: {done:?}",
            started.elapsed()
        );
        Ok(())
    }

    /// The node names of the etcd members (member names are `<node>-<8 hex>`), when this
    /// server's own cluster is the datastore.
    async fn member_nodes(&self) -> Option<std::collections::BTreeSet<String>> {
        if !self.cfg.owns_etcd {
            return None;
        }
        let members = self.etcd.members().await.ok()?;
        Some(
            members
                .iter()
                .map(|m| node_of_member(&m.name).to_string())
                .filter(|n| !n.is_empty())
                .collect(),
        )
    }

    /// Local records, plus the remote store's when given, sorted by time then name.
    pub async fn list(
        &self,
        dir: Option<&Path>,
        remote: Option<&Arc<dyn SnapshotStore>>,
        detail: ListDetail,
    ) -> Result<Vec<SnapshotRecord>> {
        let started = Instant::now();
        let local = self.local(dir, true)?;
        let mut records = local.list(detail).await;
        Metrics::observe(
            &self.metrics.reconcile_local,
            records.is_ok(),
            started.elapsed(),
        );
        if let (Ok(recs), Some(store)) = (&mut records, remote) {
            let started = Instant::now();
            let remote_recs = store.list(detail).await;
            Metrics::observe(
                &self.metrics.reconcile_s3,
                remote_recs.is_ok(),
                started.elapsed(),
            );
            recs.extend(remote_recs?);
        }
        let mut records = records?;
        records.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(records)
    }

    /// Deletes each named snapshot locally and, with `remote`, remotely. `deleted` lists a name
    /// once per store it was removed from.
    pub async fn delete(
        &self,
        dir: Option<&Path>,
        names: &[String],
        remote: Option<&Arc<dyn SnapshotStore>>,
    ) -> Result<SnapshotResult> {
        if names.is_empty() {
            return Err(Error::InvalidInput("no snapshots given for removal".into()));
        }
        for n in names {
            validate_plain_name(n)?;
        }
        let local = self.local(dir, false)?;
        let mut result = SnapshotResult::default();
        let stores: Vec<&dyn SnapshotStore> = std::iter::once(&local as &dyn SnapshotStore)
            .chain(remote.map(|r| r.as_ref()))
            .collect();
        for name in names {
            for store in &stores {
                if store.delete(name).await? {
                    tracing::info!("Snapshot {name} deleted from {}", store.describe());
                    result.deleted.push(name.clone());
                } else {
                    tracing::info!("Snapshot {name} not found in {}", store.describe());
                }
            }
        }
        Ok(result)
    }

    /// Applies retention `keep` to snapshots named `prefix*` locally and, with `remote`, there
    /// with the remote's own retention.
    pub async fn prune(
        &self,
        dir: Option<&Path>,
        prefix: &str,
        keep: i64,
        remote: Option<&Remote>,
    ) -> Result<SnapshotResult> {
        validate_prefix(prefix)?;
        let local = self.local(dir, false)?;
        let mut result = SnapshotResult {
            deleted: apply_retention(&local, prefix, keep, RetentionContext::now()).await?,
            ..Default::default()
        };
        if let Some(r) = remote {
            result.deleted.extend(
                apply_retention(
                    r.store.as_ref(),
                    prefix,
                    r.retention,
                    RetentionContext::now(),
                )
                .await?,
            );
        }
        Ok(result)
    }

    /// Removes `.part` files left in the snapshot dir by a save that was killed (they are never
    /// listed, so nothing else would ever remove them). Done only while no save runs; returns
    /// the files removed.
    pub fn remove_stale_parts(&self, dir: Option<&Path>) -> Result<Vec<std::path::PathBuf>> {
        let _guard = self
            .save_lock
            .try_lock()
            .map_err(|_| Error::SaveInProgress)?;
        let local = self.local(dir, false)?;
        let mut removed = Vec::new();
        let mut stack = vec![local.dir().to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file() && p.extension().is_some_and(|x| x == "part") {
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                    match std::fs::remove_file(&p) {
                        Ok(()) => {
                            tracing::info!(
                                "Removed {} ({size} bytes), left by a snapshot save that did not finish",
                                p.display()
                            );
                            removed.push(p);
                        }
                        Err(e) => tracing::warn!("cannot remove stale {}: {e}", p.display()),
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Resolves once no save is running.
    pub async fn wait_idle(&self) {
        drop(self.save_lock.lock().await);
    }
}

/// ConfigMap whose data becomes each new snapshot's extra metadata (K3s's name).
pub const EXTRA_METADATA: &str = "k3s-etcd-snapshot-extra-metadata";

/// The node of an etcd member named `<node>-<8 hex>` (K3s's naming), else the whole name.
/// Adds the size of each chunk of `stream` to `counter` as it passes.
fn count_chunks(stream: ChunkStream, counter: Arc<std::sync::atomic::AtomicU64>) -> ChunkStream {
    use futures::StreamExt;
    Box::pin(stream.inspect(move |c| {
        if let Ok(c) = c {
            counter.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }))
}

pub fn node_of_member(member: &str) -> &str {
    match member.rsplit_once('-') {
        Some((node, tail)) if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_hexdigit()) => {
            node
        }
        _ => member,
    }
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
