//! ETCDSnapshotFile objects (`k3s.cattle.io/v1`), the cluster-wide record of a snapshot, and the
//! `List` that `ls -o json|yaml` prints. The schema, labels, annotations, finalizer and name
//! rule are K3s's. [`manager`] keeps them in etcd: a record for every snapshot file and object
//! and for every failure, events, the reconcile, and the legacy ConfigMap.

pub(crate) mod manager;

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::naming::legacy_key;
use crate::store::{S3Spec, SnapshotRecord, SnapshotStatus};

pub const API_VERSION: &str = "k3s.cattle.io/v1";
pub const KIND: &str = "ETCDSnapshotFile";
pub const LABEL_STORAGE_NODE: &str = "etcd.k3s.cattle.io/snapshot-storage-node";
pub const ANNOTATION_TOKEN_HASH: &str = "etcd.k3s.cattle.io/snapshot-token-hash";
/// The finalizer K3s's snapshot controller puts on records.
pub const FINALIZER: &str = "wrangler.cattle.io/managed-etcd-snapshots-controller";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub snapshot_name: String,
    pub node_name: String,
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Bytes as a decimal string, as Kubernetes quantities are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorStatus>,
    /// etcdsnap extension: the newest revision in the snapshot (`etcd-snapshot status`),
    /// added after the save for raw snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// etcdsnap extension: the number of keys of all buckets (etcdutl's `totalKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_key: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSnapshotFile {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: Spec,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSnapshotFileList {
    pub api_version: String,
    pub kind: String,
    pub items: Vec<EtcdSnapshotFile>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Storage kind of a record: `s3` (any remote store: S3, and GCS or Azure Blob beyond K3s) or
/// `local`.
pub fn storage_kind(r: &SnapshotRecord) -> &'static str {
    if crate::store::remote::is_remote_location(&r.location)
        || (r.location.is_empty() && r.node_name == "s3")
    {
        "s3"
    } else {
        "local"
    }
}

impl EtcdSnapshotFile {
    /// The object for a record, named `name`.
    pub fn from_record(r: &SnapshotRecord, name: String) -> Self {
        let s3 = storage_kind(r) == "s3";
        let node = r.node_source.clone().unwrap_or_else(|| r.node_name.clone());
        let mut labels = BTreeMap::new();
        labels.insert(
            LABEL_STORAGE_NODE.to_string(),
            if s3 { "s3".to_string() } else { node.clone() },
        );
        let mut annotations = BTreeMap::new();
        if let Some(h) = &r.token_hash {
            annotations.insert(ANNOTATION_TOKEN_HASH.to_string(), h.clone());
        }
        let metadata = r.metadata.as_ref().and_then(|b64| {
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            serde_json::from_slice::<BTreeMap<String, String>>(&raw).ok()
        });
        let ok = r.status == SnapshotStatus::Successful;
        EtcdSnapshotFile {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            metadata: ObjectMeta {
                name,
                labels,
                annotations,
                finalizers: vec![FINALIZER.to_string()],
                ..Default::default()
            },
            spec: Spec {
                snapshot_name: r.name.clone(),
                node_name: node,
                location: r.location.clone(),
                metadata,
                s3: r.s3.clone(),
            },
            status: Status {
                size: Some(if ok { r.size } else { 0 }.to_string()),
                creation_time: Some(rfc3339(r.created_at)),
                ready_to_use: Some(ok),
                error: (!ok).then(|| ErrorStatus {
                    time: Some(rfc3339(r.created_at)),
                    message: Some(
                        r.message
                            .clone()
                            .unwrap_or_else(|| "etcd snapshot failed".into()),
                    ),
                }),
                revision: None,
                total_key: None,
            },
        }
    }
}

/// The record's object name (K3s's rule: `local-`/`s3-`, the lower-cased file name, 6 hex of
/// sha256(node + location)).
pub fn object_name(r: &SnapshotRecord) -> String {
    let node = r.node_source.as_deref().unwrap_or(&r.node_name);
    crate::naming::record_object_name(storage_kind(r), &r.name, node, &r.location, r.created_at)
}

impl EtcdSnapshotFileList {
    /// The list `ls -o json|yaml` prints: items named by their legacy keys, as K3s does.
    pub fn from_records(records: &[SnapshotRecord]) -> Self {
        EtcdSnapshotFileList {
            api_version: "v1".into(),
            kind: "List".into(),
            items: records
                .iter()
                .map(|r| EtcdSnapshotFile::from_record(r, legacy_key(storage_kind(r), &r.name)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_items_use_legacy_keys_and_k3s_fields() {
        let rec = SnapshotRecord {
            name: "on-demand-n1-1730308816".into(),
            key: "on-demand-n1-1730308816".into(),
            modified: DateTime::from_timestamp(1730308816, 0).unwrap(),
            location: "file:///d/on-demand-n1-1730308816".into(),
            node_name: "n1".into(),
            node_source: None,
            created_at: DateTime::from_timestamp(1730308816, 0).unwrap(),
            size: 4096 + 32,
            status: SnapshotStatus::Successful,
            message: None,
            compressed: false,
            metadata: None,
            token_hash: Some("b4b83cda3099".into()),
            s3: None,
        };
        let list = EtcdSnapshotFileList::from_records(&[rec]);
        let v = serde_json::to_value(&list).unwrap();
        assert_eq!(v["kind"], "List");
        let item = &v["items"][0];
        assert_eq!(item["apiVersion"], "k3s.cattle.io/v1");
        assert_eq!(item["kind"], "ETCDSnapshotFile");
        assert_eq!(item["metadata"]["name"], "local-on-demand-n1-1730308816");
        assert_eq!(item["metadata"]["labels"][LABEL_STORAGE_NODE], "n1");
        assert_eq!(
            item["metadata"]["annotations"][ANNOTATION_TOKEN_HASH],
            "b4b83cda3099"
        );
        assert_eq!(item["spec"]["snapshotName"], "on-demand-n1-1730308816");
        assert_eq!(item["status"]["size"], "4128");
        assert_eq!(item["status"]["creationTime"], "2024-10-30T17:20:16Z");
        assert_eq!(item["status"]["readyToUse"], true);
    }
}
