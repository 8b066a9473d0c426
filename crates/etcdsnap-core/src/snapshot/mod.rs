//! The snapshot engine: save, list, delete and prune, for on-demand and scheduled snapshots
//! alike. One lock admits one save at a time (a second fails at once with
//! `snapshot save already in progress`). A save streams from one etcd member into a verified
//! local file, applies local retention, then uploads to S3 and applies S3 retention; an S3
//! failure never loses the local file.

pub mod metrics;
pub mod verify;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::api::SnapshotResult;
use crate::etcd::EtcdSource;
use crate::naming::{snapshot_base_name, validate_plain_name, validate_prefix};
use crate::store::growing::growing;
use crate::store::local::{LocalStore, resolve_snapshot_dir};
use crate::store::s3::{S3Config, S3Identity, S3Store, S3StoreCache};
use crate::store::{SnapshotRecord, SnapshotStore};
use crate::{Error, Result};
use metrics::Metrics;
use writer::{WriteSpec, write_stream};

/// Deflate level of compressed snapshots: fast levels keep a compressed save near disk speed
/// while still shrinking etcd data several times.
pub const DEFAULT_COMPRESSION_LEVEL: i64 = 1;

/// Settings fixed for the life of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub node_name: String,
    pub data_dir: PathBuf,
    /// Deflate level of compressed snapshots.
    pub compression_level: i64,
    /// 12-hex hash of the server token, recorded in S3 metadata.
    pub token_hash: String,
    /// A snapshot stream silent this long is abandoned.
    pub idle_timeout: Duration,
}

/// One save: where, how, and what to prune afterwards.
#[derive(Debug, Clone)]
pub struct SaveRequest {
    /// Name prefix (`on-demand`, `etcd-snapshot`, or the user's).
    pub prefix: String,
    /// Snapshot directory; `None` is `<data-dir>/server/db/snapshots`.
    pub dir: Option<PathBuf>,
    pub compress: bool,
    /// Local retention after the save; below 1 keeps everything.
    pub retention: i64,
    pub s3: Option<S3Config>,
}

/// The snapshot engine over an etcd source.
pub struct Engine<E> {
    etcd: E,
    cfg: EngineConfig,
    save_lock: tokio::sync::Mutex<()>,
    s3_cache: S3StoreCache,
    /// Cluster identity recorded in S3 metadata (`K3s-Cluster-Id`), known once etcd answers.
    cluster_id: std::sync::OnceLock<String>,
    pub metrics: Arc<Metrics>,
}

impl<E: EtcdSource> Engine<E> {
    pub fn new(etcd: E, cfg: EngineConfig) -> Self {
        Engine {
            etcd,
            cfg,
            save_lock: tokio::sync::Mutex::new(()),
            s3_cache: S3StoreCache::default(),
            cluster_id: std::sync::OnceLock::new(),
            metrics: Arc::new(Metrics::default()),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn etcd(&self) -> &E {
        &self.etcd
    }

    fn local(&self, dir: Option<&Path>, create: bool) -> Result<LocalStore> {
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

    /// Connects to S3 (cached by configuration). Failures are `Error::S3Init`.
    pub async fn s3(&self, cfg: &S3Config) -> Result<Arc<S3Store>> {
        let identity = S3Identity {
            cluster_id: self.cluster_id().await?,
            node_name: self.cfg.node_name.clone(),
            token_hash: self.cfg.token_hash.clone(),
        };
        self.s3_cache.get(cfg, identity).await
    }

    /// Takes a snapshot now. Errors before the local file exists fail the save; S3 problems
    /// after it are reported in `warnings` and logged, and the local file stays.
    pub async fn save(&self, req: &SaveRequest) -> Result<SnapshotResult> {
        let _guard = self
            .save_lock
            .try_lock()
            .map_err(|_| Error::SaveInProgress)?;
        let started = Instant::now();
        let r = self.save_locked(req).await;
        Metrics::observe(&self.metrics.save, r.is_ok(), started.elapsed());
        r
    }

    async fn save_locked(&self, req: &SaveRequest) -> Result<SnapshotResult> {
        validate_prefix(&req.prefix)?;
        let local = self.local(req.dir.as_deref(), true)?;
        let mut result = SnapshotResult::default();
        // The S3 client first, so the upload can run while the snapshot streams; if it cannot
        // be built, the local snapshot is still taken.
        let s3 = match &req.s3 {
            Some(cfg) => match self.s3(cfg).await {
                Ok(store) => Some((cfg, store)),
                Err(e) => {
                    tracing::error!("Error received during snapshot upload to S3: {e}");
                    result.warnings.push(format!("S3 upload failed: {e}"));
                    None
                }
            },
            None => None,
        };
        let local_started = Instant::now();
        let opened = self.etcd.snapshot().await;
        let (member, stream) = opened.inspect_err(|e| {
            Metrics::observe(&self.metrics.save_local, false, local_started.elapsed());
            tracing::error!("Failed to take etcd snapshot: {e}");
        })?;
        let now = Utc::now();
        let spec = WriteSpec {
            dir: local.dir().to_path_buf(),
            base_name: snapshot_base_name(&req.prefix, &self.cfg.node_name, now),
            compress: req.compress,
            compression_level: self.cfg.compression_level,
            created: now,
            idle_timeout: self.cfg.idle_timeout,
        };
        let final_path = writer::final_path(&spec);
        let file_name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        tracing::info!(
            "Saving etcd snapshot to {} (from member {:x} at {}, etcd {})",
            final_path.display(),
            member.member_id,
            member.endpoint,
            member.version
        );
        let (growth, upload) = match &s3 {
            Some((_, store)) => {
                let (tx, rx) = growing();
                let store = store.clone();
                let name = file_name.clone();
                let sidecar = local.sidecar_path(&file_name);
                let task = tokio::spawn(async move {
                    let started = Instant::now();
                    let r = store.upload_growing(&name, rx, Some(&sidecar)).await;
                    (r, started.elapsed())
                });
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        let written = write_stream(stream, spec, growth).await;
        Metrics::observe(
            &self.metrics.save_local,
            written.is_ok(),
            local_started.elapsed(),
        );
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                tracing::error!("Failed to take etcd snapshot: {e}");
                if let Some(task) = upload {
                    // The uploader aborts its multipart upload when the writer fails.
                    let _ = task.await;
                }
                return Err(e);
            }
        };
        tracing::info!(
            "Snapshot {} saved ({} bytes on disk, {} bytes of database)",
            written.path.display(),
            written.size,
            written.raw_size
        );
        result.created.push(written.file_name.clone());
        if req.retention > 0 {
            match local.apply_retention(&req.prefix, req.retention).await {
                Ok(deleted) => result.deleted.extend(deleted),
                Err(e) => {
                    tracing::warn!("Failed to apply local snapshot retention: {e}");
                    result.warnings.push(format!("local retention failed: {e}"));
                }
            }
        }
        if let (Some((cfg, store)), Some(task)) = (s3, upload) {
            let (up, took) = match task.await {
                Ok(x) => x,
                Err(e) => (
                    Err(Error::Other(format!("upload task failed: {e}"))),
                    Duration::ZERO,
                ),
            };
            Metrics::observe(&self.metrics.save_s3, up.is_ok(), took);
            match up {
                Ok(rec) => {
                    tracing::info!("Uploaded snapshot to {}", rec.location);
                    result.created.push(written.file_name.clone());
                }
                Err(e) => {
                    tracing::error!("Error received during snapshot upload to S3: {e}");
                    result.warnings.push(format!("S3 upload failed: {e}"));
                }
            }
            // Retention runs even after a failed upload: a full bucket may be the cause.
            match store.apply_retention(&req.prefix, cfg.retention).await {
                Ok(deleted) => result.deleted.extend(deleted),
                Err(e) => {
                    tracing::warn!("Failed to apply s3 snapshot retention policy: {e}");
                    result.warnings.push(format!("S3 retention failed: {e}"));
                }
            }
        }
        Ok(result)
    }

    /// Local records, plus S3 records when `s3` is given, sorted by time then name.
    pub async fn list(
        &self,
        dir: Option<&Path>,
        s3: Option<&S3Config>,
        s3_node_metadata: bool,
    ) -> Result<Vec<SnapshotRecord>> {
        let started = Instant::now();
        let local = self.local(dir, true)?;
        let mut records = local.list().await;
        Metrics::observe(
            &self.metrics.reconcile_local,
            records.is_ok(),
            started.elapsed(),
        );
        if let (Ok(recs), Some(cfg)) = (&mut records, s3) {
            let started = Instant::now();
            let store = self.s3(cfg).await?;
            let s3recs = store.list_records(s3_node_metadata).await;
            Metrics::observe(
                &self.metrics.reconcile_s3,
                s3recs.is_ok(),
                started.elapsed(),
            );
            recs.extend(s3recs?);
        }
        let mut records = records?;
        records.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(records)
    }

    /// Deletes each named snapshot locally and, with `s3`, from S3. `deleted` lists a name once
    /// per storage it was removed from.
    pub async fn delete(
        &self,
        dir: Option<&Path>,
        names: &[String],
        s3: Option<&S3Config>,
    ) -> Result<SnapshotResult> {
        if names.is_empty() {
            return Err(Error::InvalidInput("no snapshots given for removal".into()));
        }
        for n in names {
            validate_plain_name(n)?;
        }
        let local = self.local(dir, false)?;
        let store = match s3 {
            Some(cfg) => Some(self.s3(cfg).await?),
            None => None,
        };
        let mut result = SnapshotResult::default();
        for name in names {
            if local.delete(name).await? {
                tracing::info!("Snapshot {name} deleted locally");
                result.deleted.push(name.clone());
            } else {
                tracing::info!("Snapshot {name} not found locally");
            }
            if let Some(store) = &store {
                if store.delete(name).await? {
                    tracing::info!("Snapshot {name} deleted from S3");
                    result.deleted.push(name.clone());
                } else {
                    tracing::info!("Snapshot {name} not found in S3");
                }
            }
        }
        Ok(result)
    }

    /// Applies retention `keep` to snapshots named `prefix*`, locally and with `s3` in S3 (with
    /// S3's own retention).
    pub async fn prune(
        &self,
        dir: Option<&Path>,
        prefix: &str,
        keep: i64,
        s3: Option<&S3Config>,
    ) -> Result<SnapshotResult> {
        validate_prefix(prefix)?;
        let local = self.local(dir, false)?;
        let mut result = SnapshotResult {
            deleted: local.apply_retention(prefix, keep).await?,
            ..Default::default()
        };
        if let Some(cfg) = s3 {
            let store = self.s3(cfg).await?;
            result
                .deleted
                .extend(store.apply_retention(prefix, cfg.retention).await?);
        }
        Ok(result)
    }
}

impl<E> Engine<E> {
    /// Resolves once no save is running.
    pub async fn wait_idle(&self) {
        drop(self.save_lock.lock().await);
    }
}
