//! Object storage of snapshot files: S3-compatible buckets, and GCS and Azure Blob through the
//! same object_store client (`cloud.rs`); the flags and types keep K3s's `s3` names. K3s's
//! object layout: `<folder>/<file>`, extra
//! metadata at `<folder>/.metadata/<file>`, and `K3s-Cluster-Id`/`K3s-Node-Name`/`K3s-Token-Hash`
//! user metadata on both.
//!
//! Rules:
//! * Every operation (bucket check, upload, download, list, delete, retention) is bounded by the
//!   configured timeout as a whole; object_store's own timeout is per request.
//! * Memory stays bounded: uploads stream from the file in 8 MiB parts, downloads stream to
//!   `<name>.part` and are verified before they get their final name.
//! * The folder is a directory (`k3s` does not match `k3s-old/`), and listing costs one request
//!   per 1000 objects: node metadata comes from a per-store cache, and one HEAD per uncached
//!   object only when asked for (K3s made one per object on every listing).
//! * Secrets never appear in errors, logs or `Debug` output.

mod client;
mod cloud;
mod config;
mod keys;
mod transport;
mod uploads;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, Attributes, GetOptions, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload,
};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use self::client::upload_integrity;
pub use self::client::{
    CredentialEnv, ProcessEnv, StaticCredentials, parse_shared_credentials, resolve_credentials,
};
pub use self::config::{
    BucketLookup, ChecksumMode, DEFAULT_ENDPOINT, DEFAULT_REGION, DEFAULT_RETENTION,
    DEFAULT_TIMEOUT, DEFAULT_UPLOAD_CONCURRENCY, MAX_UPLOAD_CONCURRENCY, NO_REQUEST_KEYS, Provider,
    S3Config, S3Target, is_remote_location,
};
pub use self::keys::METADATA_DIR;
pub use self::transport::{inline_endpoint_ca, load_endpoint_ca, pem_certificates};
use crate::duration::format_go_duration;

use self::client::describe_error;
use self::keys::{ObjectKind, check_file_name, classify};
use self::transport::scrub;
use crate::error::{RemoteCause, RemoteStage};
use crate::fsutil::{RemoveOnDrop, create_private_dir, sync_dir_async};
use crate::naming::parse_snapshot_time;
use crate::snapfile::growing::GrowingFile;
use crate::store::{
    BoxFuture, ListDetail, RemoteStores, RetentionOrder, RetentionRule, SnapshotRecord,
    SnapshotStatus, SnapshotStore,
};
use crate::{Error, Result};

/// Size of each multipart part; files up to this size go up in one PUT.
pub const UPLOAD_CHUNK_SIZE: usize = 8 * 1024 * 1024;
/// HEAD or GET requests in flight at once while listing.
const LIST_CONCURRENCY: usize = 16;
/// Connected stores kept by [`S3StoreCache`] (K3s keeps 5 clients).
const CACHE_CAPACITY: usize = 5;
/// How long an abort of a failed multipart upload may take after the operation's deadline.
const ABORT_GRACE: Duration = Duration::from_secs(30);

/// User-metadata keys, as K3s writes them (`x-amz-meta-k3s-…` on the wire).
pub const META_CLUSTER_ID: &str = "K3s-Cluster-Id";
pub const META_NODE_NAME: &str = "K3s-Node-Name";
pub const META_TOKEN_HASH: &str = "K3s-Token-Hash";

/// The node's identity, written into the user metadata of every uploaded object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct S3Identity {
    /// `K3s-Cluster-Id` (K3s: the kube-system namespace UID).
    pub cluster_id: String,
    /// `K3s-Node-Name`: the uploading node.
    pub node_name: String,
    /// `K3s-Token-Hash`: 12-hex hash of the server token.
    pub token_hash: String,
}

/// What HEAD told us about an object, remembered while its size and ETag stay the same.
#[derive(Debug, Clone)]
struct CachedMeta {
    size: u64,
    e_tag: Option<String>,
    node_name: Option<String>,
    token_hash: Option<String>,
}

impl CachedMeta {
    fn matches(&self, o: &ObjectMeta) -> bool {
        self.size == o.size
            && match (&self.e_tag, &o.e_tag) {
                (Some(a), Some(b)) => a.trim_matches('"') == b.trim_matches('"'),
                _ => true,
            }
    }
}

/// A connected bucket and folder: S3, or (beyond K3s) a GCS bucket or an Azure Blob container
/// with the same layout and metadata, through the same object_store verbs.
pub struct S3Store {
    cfg: S3Config,
    identity: S3Identity,
    store: Arc<dyn ObjectStore>,
    lister: Arc<dyn PaginatedListStore>,
    folder: String,
    endpoint_url: String,
    secrets: Vec<String>,
    meta_cache: Mutex<HashMap<String, CachedMeta>>,
    /// S3 only: its incomplete multipart uploads.
    uploads: Option<Arc<uploads::Uploads>>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("provider", &self.cfg.provider)
            .field("endpoint", &self.endpoint_url)
            .field("bucket", &self.cfg.bucket)
            .field("folder", &self.folder)
            .field("node_name", &self.identity.node_name)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Builds the client and checks that the bucket exists. A configuration that cannot work
    /// is an [`Error::Remote`] of [`RemoteStage::Init`]; an endpoint that cannot be reached or
    /// refuses us is one of [`RemoteStage::Unavailable`] (or an [`Error::Timeout`]).
    pub async fn connect(target: &S3Target, identity: S3Identity) -> Result<S3Store> {
        let store = Self::build(target, identity)?;
        store.check_bucket().await?;
        Ok(store)
    }

    fn build(target: &S3Target, identity: S3Identity) -> Result<S3Store> {
        let cfg = target.config();
        let secrets = cfg.secrets();
        let built = client::build_client(target, &ProcessEnv).map_err(|e| match e {
            Error::Remote {
                stage: RemoteStage::Init,
                cause,
                message,
            } => Error::Remote {
                stage: RemoteStage::Init,
                cause,
                message: scrub(&message, &secrets),
            },
            Error::InvalidInput(m) => Error::InvalidInput(scrub(&m, &secrets)),
            other => Error::remote_init(scrub(&other.to_string(), &secrets)),
        })?;
        tracing::debug!(
            provider = cfg.provider.label(),
            endpoint = %built.addressing.endpoint_url,
            bucket = %cfg.bucket,
            virtual_hosted = built.addressing.virtual_hosted,
            credentials = %built.credential_source,
            "Built object store client"
        );
        Ok(S3Store {
            folder: cfg.folder_trimmed().to_string(),
            endpoint_url: built.addressing.endpoint_url,
            store: built.store,
            lister: built.lister,
            uploads: built.uploads,
            cfg: cfg.clone(),
            identity,
            secrets,
            meta_cache: Mutex::new(HashMap::new()),
        })
    }

    /// A configuration that cannot work: K3s's S3 text for S3, the store's own name otherwise.
    fn init_error(&self, cause: RemoteCause, message: String) -> Error {
        match self.cfg.provider {
            Provider::S3 => Error::Remote {
                stage: RemoteStage::Init,
                cause,
                message,
            },
            p => Error::InvalidInput(format!(
                "failed to initialize {} client: {message}",
                p.label()
            )),
        }
    }

    /// An endpoint that cannot be reached or refuses us while the client starts.
    fn unavailable_error(&self, cause: RemoteCause, message: String) -> Error {
        let (stage, message) = match self.cfg.provider {
            Provider::S3 => (RemoteStage::Unavailable, message),
            p => (
                RemoteStage::Operation,
                format!("failed to initialize {} client: {message}", p.label()),
            ),
        };
        Error::Remote {
            stage,
            cause,
            message,
        }
    }

    async fn check_bucket(&self) -> Result<()> {
        let bucket = &self.cfg.bucket;
        let label = self.cfg.provider.label();
        let noun = self.cfg.provider.bucket_noun();
        tracing::info!("Checking if {label} {noun} {bucket} exists");
        let prefix = self.dir_prefix();
        let request = self.lister.list_paginated(
            prefix.as_deref(),
            PaginatedListOptions {
                max_keys: Some(1),
                delimiter: Some("/".into()),
                ..Default::default()
            },
        );
        let what = format!("failed to test for existence of {noun} {bucket}");
        match tokio::time::timeout(self.cfg.timeout, request).await {
            Err(_) => Err(Error::Timeout(format!(
                "failed to initialize {label} client: {what}: no answer from {} within {}",
                self.endpoint_url,
                format_go_duration(self.cfg.timeout)
            ))),
            Ok(Err(e)) => {
                let (cause, msg) = describe_error(
                    &what,
                    &e,
                    self.cfg.provider,
                    bucket,
                    &self.endpoint_url,
                    &self.cfg.proxy,
                    &self.secrets,
                );
                match cause {
                    // A 404 on the bucket URL without an S3 error body is a missing bucket too.
                    RemoteCause::NoSuchBucket | RemoteCause::NotFound => {
                        let fix = match self.cfg.provider {
                            Provider::S3 => String::new(),
                            p => format!(": create it, or fix --{}-{noun}", p.flag_prefix()),
                        };
                        Err(self.init_error(
                            RemoteCause::NoSuchBucket,
                            format!("{noun} {bucket} does not exist{fix}"),
                        ))
                    }
                    RemoteCause::Timeout => Err(Error::Timeout(format!(
                        "failed to initialize {label} client: {msg}"
                    ))),
                    cause => Err(self.unavailable_error(cause, msg)),
                }
            }
            Ok(Ok(_)) => {
                tracing::info!("{label} {noun} {bucket} exists");
                Ok(())
            }
        }
    }

    /// The configuration this store was built from.
    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    /// The identity written into uploaded objects.
    pub fn identity(&self) -> &S3Identity {
        &self.identity
    }

    /// `scheme://host[:port]` of the endpoint, for messages.
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint_url
    }

    /// `<folder>/<file>` (folder slashes trimmed), or `<file>` when the folder is empty.
    pub fn key(&self, file_name: &str) -> String {
        keys::object_key(&self.folder, file_name)
    }

    /// The node that uploaded `file_name` (its `K3s-Node-Name` metadata), as far as this store
    /// has seen the object: after a download or a listing with node metadata.
    pub fn uploaded_by(&self, file_name: &str) -> Option<String> {
        let cache = self.meta_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&self.key(file_name))
            .and_then(|c| c.node_name.clone())
    }

    /// `s3://<bucket>/<key>` (`gs://`, `azure://` for the other stores).
    pub fn location(&self, file_name: &str) -> String {
        self.key_location(&self.key(file_name))
    }

    fn key_location(&self, key: &str) -> String {
        keys::location(self.cfg.provider.scheme(), &self.cfg.bucket, key)
    }

    fn metadata_key(&self, file_name: &str) -> String {
        keys::metadata_key(&self.folder, file_name)
    }

    /// `<folder>/` for listing, `None` for the whole bucket.
    fn dir_prefix(&self) -> Option<String> {
        (!self.folder.is_empty()).then(|| format!("{}/", self.folder))
    }

    fn obj_path(&self, key: &str) -> Result<ObjPath> {
        ObjPath::parse(key)
            .map_err(|e| Error::InvalidInput(format!("invalid object key {key:?}: {e}")))
    }

    fn err(&self, what: &str, e: &object_store::Error) -> Error {
        let (cause, msg) = describe_error(
            what,
            e,
            self.cfg.provider,
            &self.cfg.bucket,
            &self.endpoint_url,
            &self.cfg.proxy,
            &self.secrets,
        );
        match cause {
            RemoteCause::Timeout => Error::Timeout(msg),
            cause => Error::Remote {
                stage: RemoteStage::Operation,
                cause,
                message: msg,
            },
        }
    }

    /// A failed request of ours outside object_store (`e` already says what the server said).
    fn operation_error(&self, what: &str, e: String) -> Error {
        Error::remote(
            RemoteStage::Operation,
            scrub(
                &format!(
                    "{} {what} in {}: {e}",
                    self.cfg.provider.label(),
                    self.cfg.bucket
                ),
                &self.secrets,
            ),
        )
    }

    fn timed_out(&self, op: &str) -> Error {
        Error::Timeout(format!(
            "{} {op} timed out after {}",
            self.cfg.provider.label(),
            format_go_duration(self.cfg.timeout)
        ))
    }

    /// Runs `fut` under the configured timeout.
    async fn bounded<T>(
        &self,
        op: &str,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::time::timeout(self.cfg.timeout, fut)
            .await
            .unwrap_or_else(|_| Err(self.timed_out(op)))
    }

    fn attributes(&self, content_type: &'static str) -> Attributes {
        let mut attrs = Attributes::new();
        attrs.insert(Attribute::ContentType, content_type.into());
        for (k, v) in [
            (META_CLUSTER_ID, &self.identity.cluster_id),
            (META_NODE_NAME, &self.identity.node_name),
            (META_TOKEN_HASH, &self.identity.token_hash),
        ] {
            if !v.is_empty() {
                let k = match self.cfg.provider {
                    // Azure metadata names are C# identifiers: no `-` (K3s_Node_Name).
                    Provider::Azure => k.replace('-', "_"),
                    _ => k.to_string(),
                };
                attrs.insert(Attribute::Metadata(k.into()), v.clone().into());
            }
        }
        attrs
    }

    fn cache_put(&self, key: &str, meta: CachedMeta) {
        self.meta_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), meta);
    }

    fn cache_get(&self, o: &ObjectMeta) -> Option<CachedMeta> {
        let cache = self.meta_cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(o.location.as_ref())
            .filter(|c| c.matches(o))
            .cloned()
    }

    fn cache_remove(&self, key: &str) {
        self.meta_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Uploads a finished snapshot file (and its extra-metadata sidecar, if any) and returns the
    /// record of the S3 copy. A failed sidecar upload is only logged.
    pub async fn upload(
        &self,
        local_path: &FsPath,
        sidecar: Option<&FsPath>,
    ) -> Result<SnapshotRecord> {
        let file_name = local_path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                Error::InvalidInput(format!("not a snapshot file: {}", local_path.display()))
            })?
            .to_string();
        let file = std::fs::File::open(local_path)
            .and_then(GrowingFile::complete)
            .map_err(|e| Error::io("open", local_path, e))?;
        self.upload_growing(&file_name, file, sidecar).await
    }

    /// Uploads a snapshot file that may still be being written: parts go up as the bytes reach
    /// the file, and the object is completed only when the writer reports the file verified and
    /// published (it is aborted if the writer fails). Memory stays within a few parts.
    pub async fn upload_growing(
        &self,
        file_name: &str,
        source: GrowingFile,
        sidecar: Option<&FsPath>,
    ) -> Result<SnapshotRecord> {
        let file_name = file_name.to_string();
        check_file_name(&file_name).map_err(Error::InvalidInput)?;
        let key = self.key(&file_name);
        let location = self.location(&file_name);
        let content_type = match crate::naming::CompressFormat::of_name(&file_name) {
            Some(crate::naming::CompressFormat::Zip) => "application/zip",
            Some(crate::naming::CompressFormat::Zstd) => "application/zstd",
            None => "application/octet-stream",
        };
        tracing::info!(
            "Uploading snapshot to {location} ({} parts in flight, {})",
            self.cfg.effective_upload_concurrency(),
            match upload_integrity(&self.cfg) {
                _ if self.cfg.provider != Provider::S3 => "store's own checksum".to_string(),
                Ok((Some(c), unsigned)) => format!(
                    "{c} checksum, {} payload",
                    if unsigned { "unsigned" } else { "signed" }
                ),
                _ => "no checksum".to_string(),
            }
        );
        let (size, e_tag) = self
            .upload_file(source, &key, self.attributes(content_type))
            .await?;
        tracing::info!("Uploaded snapshot {location} ({size} bytes)");
        self.cache_put(
            &key,
            CachedMeta {
                size,
                e_tag,
                node_name: Some(self.identity.node_name.clone()).filter(|n| !n.is_empty()),
                token_hash: Some(self.identity.token_hash.clone()).filter(|t| !t.is_empty()),
            },
        );

        let mut metadata = None;
        if let Some(sidecar) = sidecar {
            match tokio::fs::read(sidecar).await {
                Ok(json) => {
                    let meta_key = self.metadata_key(&file_name);
                    let meta_loc = self.key_location(&meta_key);
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&json);
                    match self
                        .put_small(&meta_key, json, self.attributes("application/json"))
                        .await
                    {
                        Ok(_) => {
                            tracing::info!("Uploaded snapshot metadata {meta_loc}");
                            metadata = Some(b64);
                        }
                        Err(e) => {
                            tracing::warn!("Failed to upload snapshot metadata to {meta_loc}: {e}")
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    "Failed to read snapshot metadata {}: {e}",
                    sidecar.display()
                ),
            }
        }

        let now = Utc::now();
        Ok(SnapshotRecord {
            created_at: parse_snapshot_time(&file_name).unwrap_or(now),
            modified: now,
            compressed: crate::naming::is_compressed(&file_name),
            key: file_name.clone(),
            name: file_name,
            location,
            node_name: "s3".into(),
            node_source: Some(self.identity.node_name.clone()).filter(|n| !n.is_empty()),
            size,
            status: SnapshotStatus::Successful,
            message: None,
            metadata,
            token_hash: Some(self.identity.token_hash.clone()).filter(|t| !t.is_empty()),
            s3: self.cfg.record_spec(),
        })
    }

    async fn put_small(
        &self,
        key: &str,
        data: Vec<u8>,
        attributes: Attributes,
    ) -> Result<Option<String>> {
        let path = self.obj_path(key)?;
        let what = format!("upload of {}", self.key_location(key));
        self.bounded("upload", async {
            let opts = PutOptions {
                attributes,
                ..Default::default()
            };
            self.store
                .put_opts(&path, PutPayload::from(Bytes::from(data)), opts)
                .await
                .map(|r| r.e_tag)
                .map_err(|e| self.err(&what, &e))
        })
        .await
    }

    /// Streams the file up as it grows; returns its size and the object's ETag. Each request is
    /// bounded by the S3 timeout; once the file is complete, so is all the remaining work.
    async fn upload_file(
        &self,
        mut source: GrowingFile,
        key: &str,
        attributes: Attributes,
    ) -> Result<(u64, Option<String>)> {
        let timeout = self.cfg.timeout;
        let timed_out = || self.timed_out("upload");
        let path = self.obj_path(key)?;
        let what = format!("upload of {}", self.key_location(key));
        let chunk = UPLOAD_CHUNK_SIZE as u64;

        // A snapshot that fits in one part goes up in one request.
        let (_, fin) = source.wait(0, chunk + 1).await?;
        if let Some(size) = fin.filter(|s| *s <= chunk) {
            let data = source.read_at(0, size as usize).await?;
            let put = self.store.put_opts(
                &path,
                PutPayload::from(Bytes::from(data)),
                PutOptions {
                    attributes,
                    ..Default::default()
                },
            );
            let res = tokio::time::timeout(timeout, put)
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| self.err(&what, &e))?;
            return Ok((size, res.e_tag));
        }

        let start = self.store.put_multipart_opts(
            &path,
            PutMultipartOptions {
                attributes,
                ..Default::default()
            },
        );
        let upload = tokio::time::timeout(timeout, start)
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| self.err(&what, &e))?;
        let mut upload = AbortOnDrop(Some(upload), self.key_location(key), self.secrets.clone());

        let mut parts: JoinSet<object_store::Result<()>> = JoinSet::new();
        // While the writer runs, only each part is bounded; once the file is complete, the rest
        // of the upload must finish within the timeout.
        let mut deadline = Instant::now() + timeout;
        let sent: Result<u64> = async {
            let mut offset = 0u64;
            loop {
                while parts.len() >= self.cfg.effective_upload_concurrency() {
                    Self::join_part(&mut parts, deadline, &timed_out, |e| self.err(&what, &e))
                        .await?;
                }
                let (avail, fin) = source.wait(offset, chunk).await?;
                if fin.is_none() {
                    deadline = Instant::now() + timeout;
                }
                let len = match fin {
                    Some(size) if size == offset => break,
                    Some(size) => (size - offset).min(chunk),
                    None => chunk.min(avail - offset),
                };
                let data = source.read_at(offset, len as usize).await?;
                offset += len;
                parts.spawn(upload.get().put_part(PutPayload::from(Bytes::from(data))));
            }
            while !parts.is_empty() {
                Self::join_part(&mut parts, deadline, &timed_out, |e| self.err(&what, &e)).await?;
            }
            Ok(offset)
        }
        .await;

        let completed = match sent {
            Ok(sent) => tokio::time::timeout_at(deadline, upload.get().complete())
                .await
                .map_err(|_| timed_out())
                .and_then(|r| r.map_err(|e| self.err(&what, &e)))
                .map(|r| (sent, r.e_tag)),
            Err(e) => Err(e),
        };
        match completed {
            Ok(done) => {
                upload.0 = None;
                Ok(done)
            }
            Err(e) => {
                parts.shutdown().await;
                if let Some(upload) = upload.0.take() {
                    self.abort_multipart(upload, key).await;
                }
                Err(e)
            }
        }
    }

    /// Aborts a multipart upload that failed, waiting at most `ABORT_GRACE`; a failure to
    /// abort is logged (the bucket's lifecycle rule for incomplete uploads is the backstop).
    async fn abort_multipart(&self, mut upload: Box<dyn MultipartUpload>, key: &str) {
        match tokio::time::timeout(ABORT_GRACE, upload.abort()).await {
            Ok(Ok(())) => {}
            Ok(Err(ae)) => tracing::warn!(
                "Failed to abort multipart upload of {}: {}",
                self.key_location(key),
                self.err("abort", &ae)
            ),
            Err(_) => tracing::warn!(
                "Abort of multipart upload of {} timed out",
                self.key_location(key)
            ),
        }
    }

    async fn join_part(
        parts: &mut JoinSet<object_store::Result<()>>,
        deadline: Instant,
        timed_out: &impl Fn() -> Error,
        map: impl Fn(object_store::Error) -> Error,
    ) -> Result<()> {
        match tokio::time::timeout_at(deadline, parts.join_next()).await {
            Err(_) => Err(timed_out()),
            Ok(None) => Ok(()),
            Ok(Some(Err(join))) => Err(Error::Other(format!("upload task failed: {join}"))),
            Ok(Some(Ok(res))) => res.map_err(map),
        }
    }

    /// Downloads `<folder>/<file_name>` to `<dest_dir>/<file_name>` through a verified `.part`
    /// file, plus its extra metadata to `<dest_dir>/../.metadata/<file_name>` when present.
    pub async fn download(&self, file_name: &str, dest_dir: &FsPath) -> Result<PathBuf> {
        check_file_name(file_name).map_err(Error::InvalidInput)?;
        let key = self.key(file_name);
        let path = self.obj_path(&key)?;
        let dest = dest_dir.join(file_name);
        let part = dest_dir.join(format!("{file_name}.part"));
        let _ = std::fs::remove_file(&part);
        let guard = RemoveOnDrop::new(part.clone());
        let what = format!("download of {}", self.key_location(&key));
        tracing::info!("Downloading snapshot {}", self.key_location(&key));

        self.bounded("download", async {
            let got = match self.store.get(&path).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(Error::Remote {
                        stage: RemoteStage::Operation,
                        cause: RemoteCause::NotFound,
                        message: format!("snapshot {key} not found in bucket {}", self.cfg.bucket),
                    });
                }
                Err(e) => return Err(self.err(&what, &e)),
            };
            self.remember_attributes(&got.meta, &got.attributes);
            let mut out = tokio::fs::File::from_std(crate::fsutil::create_private_file(&part)?);
            let task = crate::progress::task(&format!("download {file_name}"), Some(got.meta.size));
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.err(&what, &e))?;
                task.advance(chunk.len() as u64);
                out.write_all(&chunk)
                    .await
                    .map_err(|e| Error::io("write", &part, e))?;
            }
            out.flush()
                .await
                .map_err(|e| Error::io("write", &part, e))?;
            out.sync_all()
                .await
                .map_err(|e| Error::io("fsync", &part, e))?;
            Ok(())
        })
        .await?;

        let check = part.clone();
        tokio::task::spawn_blocking(move || crate::snapfile::verify::verify_file(&check))
            .await
            .map_err(|e| Error::Other(format!("verification task failed: {e}")))??;
        tokio::fs::rename(&part, &dest)
            .await
            .map_err(|e| Error::io("rename", &part, e))?;
        guard.disarm();
        sync_dir_async(dest_dir).await?;
        tracing::info!("Downloaded snapshot to {}", dest.display());

        if let Err(e) = self.download_metadata(file_name, dest_dir).await {
            tracing::warn!("Failed to download metadata of snapshot {file_name}: {e}");
        }
        Ok(dest)
    }

    async fn download_metadata(&self, file_name: &str, dest_dir: &FsPath) -> Result<()> {
        let key = self.metadata_key(file_name);
        let path = self.obj_path(&key)?;
        let what = format!("download of {}", self.key_location(&key));
        let data = self
            .bounded("download", async {
                match self.store.get(&path).await {
                    Ok(g) => g.bytes().await.map(Some).map_err(|e| self.err(&what, &e)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(self.err(&what, &e)),
                }
            })
            .await?;
        let Some(data) = data else {
            return Ok(());
        };
        let parent = match dest_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => dest_dir.join(".."),
        };
        let meta_dir = parent.join(METADATA_DIR);
        let dest = meta_dir.join(file_name);
        tokio::task::spawn_blocking(move || {
            create_private_dir(&meta_dir)?;
            crate::fsutil::write_private(&dest, &data)
        })
        .await
        .map_err(|e| Error::Other(format!("metadata write task failed: {e}")))?
    }

    fn remember_attributes(&self, meta: &ObjectMeta, attrs: &Attributes) {
        let find = |name: &str| {
            attrs.iter().find_map(|(k, v)| match k {
                Attribute::Metadata(k) if k.replace('_', "-").eq_ignore_ascii_case(name) => {
                    Some(v.as_ref().to_string()).filter(|s| !s.is_empty())
                }
                _ => None,
            })
        };
        self.cache_put(
            meta.location.as_ref(),
            CachedMeta {
                size: meta.size,
                e_tag: meta.e_tag.clone(),
                node_name: find(META_NODE_NAME),
                token_hash: find(META_TOKEN_HASH),
            },
        );
    }

    /// Every object under the folder, one list request per 1000 objects.
    async fn list_objects(&self) -> Result<Vec<ObjectMeta>> {
        let prefix = self.dir_prefix();
        let what = format!(
            "listing of {}://{}/{}",
            self.cfg.provider.scheme(),
            self.cfg.bucket,
            prefix.as_deref().unwrap_or("")
        );
        let mut out = Vec::new();
        let mut page_token = None;
        loop {
            let page = self
                .lister
                .list_paginated(
                    prefix.as_deref(),
                    PaginatedListOptions {
                        page_token: page_token.take(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| self.err(&what, &e))?;
            out.extend(page.result.objects);
            match page.page_token {
                Some(t) if !t.is_empty() => page_token = Some(t),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The snapshots in the folder. Node name and token hash come from this store's cache;
    /// with `with_node_metadata`, objects not in the cache get one HEAD each.
    pub async fn list_records(&self, with_node_metadata: bool) -> Result<Vec<SnapshotRecord>> {
        self.bounded("list", self.list_records_inner(with_node_metadata))
            .await
    }

    /// The extra metadata of each snapshot, base64, by the snapshot's key: one GET for each
    /// `.metadata/<file>` in `wanted` (snapshot key, metadata path). One that cannot be read is
    /// logged and left out.
    async fn read_extra_metadata(&self, wanted: Vec<(String, ObjPath)>) -> HashMap<String, String> {
        futures::stream::iter(wanted)
            .map(|(snap_key, meta_path)| async move {
                match self.store.get(&meta_path).await {
                    Ok(g) => match g.bytes().await {
                        Ok(b) => Some((
                            snap_key,
                            base64::engine::general_purpose::STANDARD.encode(&b),
                        )),
                        Err(e) => {
                            tracing::warn!("{}", self.err(&format!("read of {meta_path}"), &e));
                            None
                        }
                    },
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => {
                        tracing::warn!("{}", self.err(&format!("read of {meta_path}"), &e));
                        None
                    }
                }
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .filter_map(|x| async move { x })
            .collect()
            .await
    }

    /// Reads the node name and token hash of each snapshot not in the cache, one HEAD each.
    async fn head_uncached(&self, snapshots: &[(&ObjectMeta, &str, &str)]) {
        let missing: Vec<ObjectMeta> = snapshots
            .iter()
            .filter(|(o, _, _)| self.cache_get(o).is_none())
            .map(|(o, _, _)| (*o).clone())
            .collect();
        futures::stream::iter(missing)
            .map(|o: ObjectMeta| async move {
                let opts = GetOptions {
                    head: true,
                    ..Default::default()
                };
                match self.store.get_opts(&o.location, opts).await {
                    Ok(r) => self.remember_attributes(&r.meta, &r.attributes),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        tracing::warn!("{}", self.err(&format!("HEAD of {}", o.location), &e))
                    }
                }
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
    }

    async fn list_records_inner(&self, with_node_metadata: bool) -> Result<Vec<SnapshotRecord>> {
        let objects = self.list_objects().await?;
        let mut snapshots: Vec<(&ObjectMeta, &str, &str)> = Vec::new();
        let mut metadata_objects: HashMap<(&str, &str), &ObjectMeta> = HashMap::new();
        for o in &objects {
            if o.size == 0 {
                continue;
            }
            match classify(&self.folder, o.location.as_ref()) {
                ObjectKind::Snapshot { dir, name } => snapshots.push((o, dir, name)),
                ObjectKind::Metadata { dir, name } => {
                    metadata_objects.insert((dir, name), o);
                }
                ObjectKind::Ignored => {}
            }
        }

        // Extra metadata: one GET for each `.metadata/<file>` that belongs to a snapshot.
        let wanted: Vec<(String, ObjPath)> = snapshots
            .iter()
            .filter_map(|(o, dir, name)| {
                metadata_objects
                    .get(&(*dir, *name))
                    .map(|m| (o.location.to_string(), m.location.clone()))
            })
            .collect();
        let extra = self.read_extra_metadata(wanted).await;
        if with_node_metadata {
            self.head_uncached(&snapshots).await;
        }

        // Forget objects that are gone.
        {
            let present: HashSet<&str> = objects.iter().map(|o| o.location.as_ref()).collect();
            self.meta_cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|k, _| present.contains(k.as_str()));
        }

        let spec = self.cfg.record_spec();
        let top = self.dir_prefix().unwrap_or_default();
        Ok(snapshots
            .into_iter()
            .map(|(o, _, name)| {
                let cached = self.cache_get(o);
                let key = o.location.as_ref();
                SnapshotRecord {
                    name: name.to_string(),
                    key: key.strip_prefix(top.as_str()).unwrap_or(key).to_string(),
                    location: self.key_location(key),
                    node_name: "s3".into(),
                    node_source: cached.as_ref().and_then(|c| c.node_name.clone()),
                    created_at: parse_snapshot_time(name).unwrap_or(o.last_modified),
                    modified: o.last_modified,
                    size: o.size,
                    status: SnapshotStatus::Successful,
                    message: None,
                    compressed: crate::naming::is_compressed(name),
                    metadata: extra.get(key).cloned(),
                    token_hash: cached.and_then(|c| c.token_hash),
                    s3: spec.clone(),
                }
            })
            .collect())
    }

    /// Deletes one object; a missing object is not an error.
    /// Writes a small object `<folder>/<name>`, reads it back, compares, and deletes it (also
    /// when the comparison fails), all under the configured timeout: what `etcdsnap check`
    /// asks of a bucket. Returns the object's `Last-Modified` as the server gave it.
    pub async fn probe(&self, name: &str) -> Result<chrono::DateTime<Utc>> {
        let key = self.key(name);
        let path = self.obj_path(&key)?;
        let location = self.key_location(&key);
        let body = Bytes::from(format!("etcdsnap check probe {name}\n"));
        let written = self
            .bounded("probe write", async {
                self.store
                    .put_opts(&path, PutPayload::from(body.clone()), PutOptions::default())
                    .await
                    .map_err(|e| self.err(&format!("write of {location}"), &e))
            })
            .await;
        if let Err(e) = written {
            // A write that timed out may still land: do not leave it behind.
            let _ = self.bounded("probe delete", self.delete_key(&key)).await;
            return Err(e);
        }
        let read = self
            .bounded("probe read", async {
                let got = self
                    .store
                    .get(&path)
                    .await
                    .map_err(|e| self.err(&format!("read of {location}"), &e))?;
                let modified = got.meta.last_modified;
                let data = got
                    .bytes()
                    .await
                    .map_err(|e| self.err(&format!("read of {location}"), &e))?;
                Ok((data, modified))
            })
            .await;
        let deleted = self.bounded("probe delete", self.delete_key(&key)).await;
        let (data, modified) = read?;
        if data != body {
            return Err(Error::remote(
                RemoteStage::Operation,
                format!(
                    "{location} read back {} bytes that differ from the {} bytes written",
                    data.len(),
                    body.len()
                ),
            ));
        }
        deleted?;
        Ok(modified)
    }

    async fn delete_key(&self, key: &str) -> Result<()> {
        let path = self.obj_path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                self.cache_remove(key);
                Ok(())
            }
            Err(e) => Err(self.err(&format!("delete of {}", self.key_location(key)), &e)),
        }
    }

    /// Deletes a snapshot and its extra metadata. Whether it existed comes from a LIST of its
    /// key, not a HEAD: deleting needs only the LIST and DELETE rights, as in K3s (a bucket
    /// may let anonymous requests list and delete but not read, as K3s's own tests use it).
    async fn delete_inner(&self, name: &str) -> Result<bool> {
        let key = self.key(name);
        let exists = if self.cfg.provider == Provider::S3 {
            self.listed(&key).await?
        } else {
            // object_store lists GCS and Azure by directory (a prefix `k` lists `k/...`), so
            // a key cannot be listed by itself there; their rights come as read-write anyway.
            let path = self.obj_path(&key)?;
            let head = GetOptions {
                head: true,
                ..Default::default()
            };
            match self.store.get_opts(&path, head).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => {
                    return Err(self.err(&format!("HEAD of {}", self.key_location(&key)), &e));
                }
            }
        };
        if exists {
            tracing::info!(
                "Removing {} snapshot: {}",
                self.cfg.provider.label(),
                self.key_location(&key)
            );
            self.delete_key(&key).await?;
        }
        let meta_key = self.metadata_key(name);
        if let Err(e) = self.delete_key(&meta_key).await {
            if exists {
                tracing::warn!("{e}");
            } else {
                return Err(e);
            }
        }
        Ok(exists)
    }

    /// Whether the object `key` exists, by listing with the key as prefix (longer names that
    /// start with it are skipped page by page).
    async fn listed(&self, key: &str) -> Result<bool> {
        let what = format!("listing of {}", self.key_location(key));
        let mut page_token = None;
        loop {
            let page = self
                .lister
                .list_paginated(
                    Some(key),
                    PaginatedListOptions {
                        page_token: page_token.take(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| self.err(&what, &e))?;
            if page
                .result
                .objects
                .iter()
                .any(|o| o.location.as_ref() == key)
            {
                return Ok(true);
            }
            match page.page_token {
                Some(t) if !t.is_empty() => page_token = Some(t),
                _ => return Ok(false),
            }
        }
    }
}

/// A multipart upload that is aborted if it is dropped unfinished: when the operation's future
/// is dropped (a request cancelled, a server shutting down), the abort goes on in a task of
/// its own, bounded by [`ABORT_GRACE`]. Completing or aborting takes the upload out first.
/// A process killed mid-upload leaves the upload to the bucket's lifecycle rule: object_store
/// cannot list the incomplete uploads of a folder (no ListMultipartUploads), so they cannot
/// be found and aborted at the next start.
struct AbortOnDrop(Option<Box<dyn MultipartUpload>>, String, Vec<String>);

impl AbortOnDrop {
    fn get(&mut self) -> &mut Box<dyn MultipartUpload> {
        self.0
            .as_mut()
            .expect("the upload is taken out only when it ends")
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(mut upload) = self.0.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let location = std::mem::take(&mut self.1);
        let secrets = std::mem::take(&mut self.2);
        rt.spawn(async move {
            match tokio::time::timeout(ABORT_GRACE, upload.abort()).await {
                Ok(Ok(())) => {
                    tracing::info!("Aborted the multipart upload of {location}, cut short")
                }
                Ok(Err(e)) => tracing::warn!(
                    "Failed to abort the multipart upload of {location}, cut short: {}",
                    scrub(&e.to_string(), &secrets)
                ),
                Err(_) => {
                    tracing::warn!("Abort of the multipart upload of {location} timed out")
                }
            }
        });
    }
}

impl S3Store {
    /// Aborts the incomplete multipart uploads of `node`'s snapshot files directly in the
    /// folder that began before `before`: what a process killed mid-upload left (its parts are
    /// stored, and billed, until aborted). Other nodes' uploads, and uploads begun since, may
    /// be saves in progress and are left alone. S3 only; bounded by the timeout.
    async fn abort_stale_uploads_of(&self, node: &str, before: DateTime<Utc>) -> Result<usize> {
        let Some(uploads) = &self.uploads else {
            return Ok(0);
        };
        let prefix = self.dir_prefix().unwrap_or_default();
        let mark = format!("-{node}-");
        let work = async {
            let Some(pending) = uploads
                .list(&prefix)
                .await
                .map_err(|e| self.operation_error("list of incomplete uploads", e))?
            else {
                tracing::debug!("the S3 server cannot list incomplete uploads (HTTP 501)");
                return Ok(0);
            };
            let mut aborted = 0;
            for u in pending {
                if !u.is_stale_of(&prefix, &mark, before) {
                    continue;
                }
                uploads
                    .abort(&u)
                    .await
                    .map_err(|e| self.operation_error("abort of an incomplete upload", e))?;
                tracing::info!(
                    "aborted the incomplete multipart upload of {} begun {} (left by an earlier process)",
                    self.key_location(&u.key),
                    u.initiated.map(|t| t.to_rfc3339()).unwrap_or_default()
                );
                aborted += 1;
            }
            Ok(aborted)
        };
        tokio::time::timeout(self.cfg.timeout, work)
            .await
            .map_err(|_| self.timed_out("abort of incomplete uploads"))?
    }
}

impl SnapshotStore for S3Store {
    fn kind(&self) -> &'static str {
        // Every remote store is the `s3` storage node of records, as K3s labels them.
        "s3"
    }

    fn location(&self, key: &str) -> String {
        self.location(key)
    }

    fn describe(&self) -> String {
        format!(
            "snapshots stored in {}://{}/{}",
            self.cfg.provider.scheme(),
            self.cfg.bucket,
            self.folder
        )
    }

    fn put<'a>(
        &'a self,
        name: &'a str,
        source: GrowingFile,
        sidecar: Option<&'a FsPath>,
    ) -> BoxFuture<'a, Result<SnapshotRecord>> {
        Box::pin(self.upload_growing(name, source, sidecar))
    }

    fn get<'a>(&'a self, name: &'a str, dest_dir: &'a FsPath) -> BoxFuture<'a, Result<PathBuf>> {
        Box::pin(self.download(name, dest_dir))
    }

    fn uploaded_by(&self, name: &str) -> Option<String> {
        S3Store::uploaded_by(self, name)
    }

    fn list(&self, detail: ListDetail) -> BoxFuture<'_, Result<Vec<SnapshotRecord>>> {
        Box::pin(self.list_records(detail == ListDetail::Full))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            check_file_name(key).map_err(Error::InvalidInput)?;
            self.bounded("delete", self.delete_inner(key)).await
        })
    }

    fn retention_rule(&self) -> RetentionRule {
        RetentionRule {
            order: RetentionOrder::Modified,
            nested: false,
        }
    }

    fn abort_stale_uploads<'a>(
        &'a self,
        node: &'a str,
        before: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<usize>> {
        Box::pin(self.abort_stale_uploads_of(node, before))
    }
}

type CacheEntry = ((S3Config, S3Identity), Arc<S3Store>);

/// A few connected stores, keyed by the whole configuration and identity, so repeated
/// operations skip building a client and checking the bucket.
#[derive(Default)]
pub struct S3StoreCache {
    entries: Mutex<VecDeque<CacheEntry>>,
}

impl fmt::Debug for S3StoreCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("S3StoreCache").field("entries", &n).finish()
    }
}

impl S3StoreCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The store for this configuration and identity: a cached one, or a newly connected one.
    pub async fn get(&self, target: &S3Target, identity: S3Identity) -> Result<Arc<S3Store>> {
        let cfg = target.config();
        let wanted = (cfg.clone(), identity);
        let endpoint = match cfg.provider {
            Provider::S3 => format!(
                "{}://{}",
                if cfg.insecure { "http" } else { "https" },
                cfg.effective_endpoint()
            ),
            _ => cfg.endpoint.clone(),
        };
        {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = entries.iter().position(|(k, _)| *k == wanted) {
                let entry = entries.remove(i).expect("index in range");
                let store = Arc::clone(&entry.1);
                entries.push_front(entry);
                tracing::info!(
                    "Reusing cached {} client for endpoint={endpoint:?} bucket={:?} folder={:?}",
                    cfg.provider.label(),
                    cfg.bucket,
                    cfg.folder
                );
                return Ok(store);
            }
        }
        tracing::info!(
            "Attempting to create new {} client for endpoint={endpoint:?} bucket={:?} folder={:?}",
            cfg.provider.label(),
            cfg.bucket,
            cfg.folder
        );
        let store = Arc::new(S3Store::connect(target, wanted.1.clone()).await?);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|(k, _)| *k != wanted);
        entries.push_front((wanted, Arc::clone(&store)));
        entries.truncate(CACHE_CAPACITY);
        Ok(store)
    }

    /// Number of cached stores.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RemoteStores for S3StoreCache {
    fn connect<'a>(
        &'a self,
        target: &'a S3Target,
        identity: S3Identity,
    ) -> BoxFuture<'a, Result<Arc<dyn SnapshotStore>>> {
        Box::pin(async move {
            let store: Arc<dyn SnapshotStore> = self.get(target, identity).await?;
            Ok(store)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(c: &S3Config) -> Result<S3Store> {
        S3Store::build(&S3Target::new(c.clone())?, S3Identity::default())
    }

    fn cfg() -> S3Config {
        S3Config {
            bucket: "bkx".into(),
            folder: "/k3s/snaps/".into(),
            endpoint: "127.0.0.1:9".into(),
            insecure: true,
            access_key: "AKIDLEAKCHECK".into(),
            secret_key: "SECRETLEAKCHECK".into(),
            session_token: "TOKENLEAKCHECK".into(),
            ..S3Config::default()
        }
    }

    #[test]
    fn key_location_config() {
        let s = build(&cfg()).unwrap();
        assert_eq!(s.key("snap-1"), "k3s/snaps/snap-1");
        assert_eq!(s.location("snap-1"), "s3://bkx/k3s/snaps/snap-1");
        assert_eq!(s.metadata_key("snap-1"), "k3s/snaps/.metadata/snap-1");
        assert_eq!(s.config().bucket, "bkx");
        assert_eq!(s.endpoint_url(), "http://127.0.0.1:9");
        let root = build(&S3Config {
            folder: String::new(),
            ..cfg()
        })
        .unwrap();
        assert_eq!(root.key("snap-1"), "snap-1");
        assert_eq!(root.location("snap-1"), "s3://bkx/snap-1");
        assert_eq!(root.dir_prefix(), None);
    }

    #[test]
    fn build_errors_are_init_errors() {
        let e = build(&S3Config {
            bucket: String::new(),
            ..cfg()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to initialize S3 client: s3 bucket name was not set"
        );
        let e = build(&S3Config {
            insecure: false,
            endpoint_ca: "/definitely/missing/ca.pem".into(),
            ..cfg()
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Remote {
                    stage: RemoteStage::Init,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("/definitely/missing/ca.pem"));
    }

    #[tokio::test]
    async fn secrets_never_in_errors_or_debug() {
        let c = cfg();
        let secrets = ["AKIDLEAKCHECK", "SECRETLEAKCHECK", "TOKENLEAKCHECK"];
        let store = build(&c).unwrap();
        let mut texts = vec![format!("{c:?}"), format!("{store:?}")];
        // Port 9 on loopback refuses connections: a real error from the client stack.
        let short = S3Config {
            timeout: Duration::from_secs(20),
            ..c.clone()
        };
        let err = S3Store::connect(&S3Target::new(short).unwrap(), S3Identity::default())
            .await
            .unwrap_err();
        texts.push(err.to_string());
        texts.push(format!("{err:?}"));
        assert!(
            err.to_string()
                .contains("cannot connect to S3 endpoint http://127.0.0.1:9"),
            "{err}"
        );
        let bad_ca = S3Config {
            insecure: false,
            endpoint_ca: "SECRETLEAKCHECK".into(),
            ..c.clone()
        };
        let err = build(&bad_ca).unwrap_err();
        texts.push(err.to_string());
        let scrubbed = scrub("x AKIDLEAKCHECK y", &c.secrets());
        texts.push(scrubbed);
        for t in &texts {
            for s in secrets {
                assert!(!t.contains(s), "{s} leaked in {t}");
            }
        }
    }

    #[tokio::test]
    async fn cache_is_lru_of_five() {
        // Entries are inserted directly: connecting needs a server (covered by tests/s3.rs).
        let cache = S3StoreCache::new();
        for i in 0..7 {
            let c = S3Config {
                folder: format!("f{i}"),
                ..cfg()
            };
            let s = Arc::new(build(&c).unwrap());
            let mut e = cache.entries.lock().unwrap();
            e.push_front(((c, S3Identity::default()), s));
            e.truncate(CACHE_CAPACITY);
        }
        assert_eq!(cache.len(), 5);
        let hit = S3Config {
            folder: "f3".into(),
            ..cfg()
        };
        let got = cache
            .get(&S3Target::new(hit).unwrap(), S3Identity::default())
            .await
            .unwrap();
        assert_eq!(got.key("x"), "f3/x");
        assert_eq!(
            cache.entries.lock().unwrap().front().unwrap().0.0.folder,
            "f3"
        );
    }
}
