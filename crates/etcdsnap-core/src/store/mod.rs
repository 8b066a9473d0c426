//! Where snapshot files live. One trait, two implementations: `local` (the snapshot directory)
//! and `s3` (a bucket and folder). Both list files as [`SnapshotRecord`]s, delete by plain file
//! name and apply count-based retention by name prefix.

pub mod growing;
pub mod local;
pub mod s3;

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;

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
    /// `file:///abs/path` or `s3://bucket/key`.
    pub location: String,
    /// The listing node for local files, `s3` for objects.
    pub node_name: String,
    /// For S3 objects: the uploading node, from `K3s-Node-Name` metadata.
    pub node_source: Option<String>,
    pub created_at: DateTime<Utc>,
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

/// Storage of snapshot files.
pub trait SnapshotStore: Send + Sync {
    /// Every snapshot file in the store, in no particular order.
    fn list(&self) -> impl Future<Output = Result<Vec<SnapshotRecord>>> + Send;
    /// Removes `name` (a plain file name) and its extra-metadata; `Ok(false)` if it was absent.
    fn delete(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Keeps the `keep` newest files whose name starts with `prefix` and deletes the rest with
    /// their metadata. `keep < 1` does nothing. Returns the deleted names.
    fn apply_retention(
        &self,
        prefix: &str,
        keep: i64,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
}
