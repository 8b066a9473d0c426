//! Where snapshot files live. One trait, [`SnapshotStore`], with four verbs (put, get, list,
//! delete) and two implementations: `local` (the snapshot directory) and `remote` (a folder of
//! an S3, GCS or Azure Blob bucket). Both list files as [`SnapshotRecord`]s; retention over
//! them is written once in [`crate::retention`].

pub mod local;
pub mod remote;

use std::path::{Path, PathBuf};

pub use futures::future::BoxFuture;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::snapfile::growing::GrowingFile;

/// Whether a snapshot file is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotStatus {
    Successful,
    Failed,
}

/// The non-secret part of an S3 configuration, as recorded in ETCDSnapshotFile `spec.s3`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(
        rename = "endpointCA",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub endpoint_ca: String,
    #[serde(
        rename = "skipSSLVerify",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub skip_ssl_verify: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket_lookup: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// The folder.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// One snapshot file in one storage (K3s's internal `snapshotFile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// File name (basename), e.g. `on-demand-n1-1730308816.zip`.
    pub name: String,
    /// Path relative to the store (the name, for files at its top).
    pub key: String,
    /// `file:///abs/path` or `s3://bucket/key`.
    pub location: String,
    /// The listing node for local files, `s3` for objects.
    pub node_name: String,
    /// For S3 objects: the uploading node, from `K3s-Node-Name` metadata.
    pub node_source: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the file or object was last written (mtime, LastModified).
    pub modified: DateTime<Utc>,
    /// Bytes on disk (zip or raw); 0 for failures.
    pub size: u64,
    pub status: SnapshotStatus,
    /// Error text of a failed snapshot.
    pub message: Option<String>,
    pub compressed: bool,
    /// Base64 of the extra-metadata JSON (sidecar file or `.metadata/` object).
    pub metadata: Option<String>,
    /// 12-hex token hash (`K3s-Token-Hash`).
    pub token_hash: Option<String>,
    pub s3: Option<S3Spec>,
}

/// How much a listing must tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListDetail {
    /// Names, sizes, times, extra metadata: what `ls` prints as a table and what retention needs.
    Basic,
    /// Also the uploading node and token hash of each S3 object (one HEAD per object not seen
    /// before), as `ls -o json|yaml` prints them.
    Full,
}

/// Which time orders snapshots for retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionOrder {
    /// The time in the name (falling back to the file's mtime): local files, as K3s.
    NameTime,
    /// When the object was written: S3, as K3s (LastModified).
    Modified,
}

/// How retention treats a store's files (K3s's rules differ per store, and we keep them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRule {
    pub order: RetentionOrder,
    /// Whether files below sub-directories count (K3s walks the local directory recursively but
    /// lists only the folder's own objects in S3).
    pub nested: bool,
}

/// Storage of snapshot files: one shape for the local directory, S3 and the stores to come.
/// Names are plain file names as `ls` prints them; `key`s are paths relative to the store
/// (equal to the name for files at its top). Retention is written once, above the stores, in
/// [`crate::retention`].
pub trait SnapshotStore: Send + Sync + std::fmt::Debug {
    /// The record kind: `local` or `s3`.
    fn kind(&self) -> &'static str;
    /// Where `key` is, as records show it (`file://…`, `s3://…`).
    fn location(&self, key: &str) -> String;
    /// What the store is, for log lines (`local snapshots in /dir`, `snapshots stored in s3://b/f`).
    fn describe(&self) -> String;
    /// Stores `name` from a file that may still be growing; completes only once the writer
    /// reports it complete and verified, and is abandoned if the writer fails. An
    /// extra-metadata sidecar goes along when one exists.
    fn put<'a>(
        &'a self,
        name: &'a str,
        source: GrowingFile,
        sidecar: Option<&'a Path>,
    ) -> BoxFuture<'a, Result<SnapshotRecord>>;
    /// Fetches `name` into `dest_dir` (its extra metadata beside it, in `../.metadata/`),
    /// verified before it gets its final name; returns the local path.
    fn get<'a>(&'a self, name: &'a str, dest_dir: &'a Path) -> BoxFuture<'a, Result<PathBuf>>;
    /// The node that uploaded `name`, when the store has seen it say so (after a `get` or a
    /// full listing); `None` by default.
    fn uploaded_by(&self, _name: &str) -> Option<String> {
        None
    }
    /// Every snapshot file in the store, in no particular order.
    fn list(&self, detail: ListDetail) -> BoxFuture<'_, Result<Vec<SnapshotRecord>>>;
    /// Removes `key` and its extra metadata; `Ok(false)` if it was absent.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// How retention orders and selects this store's files.
    fn retention_rule(&self) -> RetentionRule;
    /// Aborts the incomplete uploads of `node`'s snapshots begun before `before` (a killed
    /// process leaves them); how many. Stores without such uploads have none.
    fn abort_stale_uploads<'a>(
        &'a self,
        node: &'a str,
        before: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'a, Result<usize>> {
        let _ = (node, before);
        Box::pin(async { Ok(0) })
    }
}

/// Connects to remote stores (S3 today) by configuration, reusing connected clients. A trait so
/// that the engine can run against in-memory stores in tests.
pub trait RemoteStores: Send + Sync {
    fn connect<'a>(
        &'a self,
        target: &'a remote::S3Target,
        identity: remote::S3Identity,
    ) -> BoxFuture<'a, Result<std::sync::Arc<dyn SnapshotStore>>>;
}
