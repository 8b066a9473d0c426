//! The JSON of `POST /db/snapshot` ([`super::paths::SNAPSHOT_PATH`]). Field names and omission
//! rules are K3s's, so a K3s CLI can talk to an etcdsnap server and the other way round.

use serde::{Deserialize, Serialize};

use crate::store::remote::S3Config;

/// What the CLI asks the server to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Save,
    List,
    Prune,
    Delete,
}

/// Body of `POST /db/snapshot`. Optional fields are sent only when the user set them (on the
/// command line or in the config file); the server keeps its own value otherwise.
///
/// An unknown field is refused (serde names it and lists the known ones): a misspelt
/// `retenton` must not be ignored while the server prunes with its own value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    pub operation: Option<Operation>,
    /// For save and prune: one name prefix. For delete: the snapshot file names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    /// etcdsnap extension for `save`: `zip` (K3s's) or `zstd`; the server's when absent.
    #[serde(
        rename = "compressFormat",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub compress_format: Option<String>,
    /// etcdsnap extension for `save`: the level of the format.
    #[serde(
        rename = "compressLevel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub compress_level: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
    /// etcdsnap extension for `list`: read each S3 object's node metadata (one HEAD per object
    /// not yet known). The table output does not need it; JSON and YAML do.
    #[serde(
        rename = "s3NodeMetadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_node_metadata: Option<bool>,
}

/// Answer to save, prune and delete: the names created and deleted, once per storage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// etcdsnap extension: a failed S3 upload or retention, reported instead of only logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}
