//! Keeping ETCDSnapshotFile records in etcd, as K3s keeps its CRs (reference §5):
//! * a record for every snapshot saved and uploaded, and for every failure (`readyToUse:
//!   false`, `status.error`), with the events `ETCDSnapshotCreated` / `ETCDSnapshotFailed`
//!   (source `etcdsnap-supervisor`), and `ETCDSnapshotDeleted` when a record goes;
//! * [`Records::reconcile`]: records for the files and objects that exist, none for those gone
//!   (failed records are kept for 24 h and S3 records for their first minute, K3s's grace
//!   periods; names deleted by the operation itself go at once), none for nodes that are no
//!   longer etcd members. Deleting a record never deletes a file;
//! * the legacy ConfigMap `kube-system/k3s-etcd-snapshots`, holding the records that carry
//!   extra metadata, as K3s keeps it for older consumers.
//!
//! Events live at `/registry/events/default/<record>.<reason hash>` with a one-hour lease; a
//! repeated event counts up instead of piling up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    ANNOTATION_TOKEN_HASH, EtcdSnapshotFile, LABEL_STORAGE_NODE, object_name, storage_kind,
};
use crate::kube::api::resources::{CONFIGMAPS, EVENTS, SNAPSHOT_FILES};
use crate::kube::api::store::{ObjectStore, now_rfc3339};
use crate::kube::api::{ApiError, ApiResult};
use crate::naming::legacy_key;
use crate::store::{S3Spec, SnapshotRecord, SnapshotStatus};

/// Event source component.
pub const COMPONENT: &str = "etcdsnap-supervisor";
/// The legacy ConfigMap of records with extra metadata.
pub const LEGACY_CONFIGMAP: &str = "k3s-etcd-snapshots";
/// Records created at once by a reconcile.
const CREATE_CONCURRENCY: usize = 16;
/// Records read per etcd range while reconciling.
const RECONCILE_PAGE: i64 = 500;
/// Failed records younger than this survive a reconcile that no longer sees them.
const FAILED_GRACE: chrono::Duration = chrono::Duration::hours(24);
/// S3 records younger than this survive (another node's upload may not be listed yet).
const S3_GRACE: chrono::Duration = chrono::Duration::minutes(1);
/// How long events live.
const EVENT_TTL: i64 = 3600;
/// The ConfigMap size the API server refuses beyond.
const CONFIGMAP_LIMIT: usize = 1 << 20;
/// Failures kept for later when etcd cannot take their records (oldest dropped beyond).
const PENDING_LIMIT: usize = 64;

/// A failure whose record could not be written yet (etcd was down or stalled).
#[derive(Debug, Clone)]
struct PendingFailure {
    file_name: String,
    location: String,
    message: String,
    s3: Option<S3Spec>,
    at: DateTime<Utc>,
}

/// What a reconcile did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub kept: usize,
}

/// The records of one server (node).
pub struct Records {
    store: ObjectStore,
    node: String,
    lease: Mutex<Option<(i64, Instant)>>,
    /// Failures to record once etcd answers again.
    pending: Mutex<Vec<PendingFailure>>,
}

fn obj_of(f: &EtcdSnapshotFile) -> Value {
    serde_json::to_value(f).unwrap_or_default()
}

/// The parts of a record that decide whether it needs an update.
fn essence(v: &Value) -> Value {
    json!({
        "labels": v["metadata"]["labels"],
        "annotations": v["metadata"]["annotations"],
        "spec": v["spec"],
        "status": v["status"],
    })
}

/// The status figures (revision, key count) that a file does not tell: added to a record after
/// its save, so a record rebuilt from the file keeps those of the stored one.
const FIGURES: [&str; 2] = ["revision", "totalKey"];

/// `want`, with the figures of `cur` where `want` has none.
fn with_figures_of(cur: &Value, want: &Value) -> Value {
    let mut out = want.clone();
    for f in FIGURES {
        if out["status"].get(f).is_none()
            && let Some(v) = cur["status"].get(f)
        {
            out["status"][f] = v.clone();
        }
    }
    out
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl Records {
    pub fn new(store: ObjectStore, node: impl Into<String>) -> Records {
        Records {
            store,
            node: node.into(),
            lease: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
        }
    }

    pub fn store(&self) -> &ObjectStore {
        &self.store
    }

    /// Creates or updates the record of `rec`; `Some(true)` when it was created.
    async fn upsert(&self, rec: &SnapshotRecord) -> ApiResult<(Value, bool)> {
        let name = object_name(rec);
        let want = obj_of(&EtcdSnapshotFile::from_record(rec, name.clone()));
        for _ in 0..5 {
            match self.store.get(&SNAPSHOT_FILES, None, &name).await? {
                None => match self
                    .store
                    .create(&SNAPSHOT_FILES, None, want.clone(), None)
                    .await
                {
                    Ok(made) => return Ok((made, true)),
                    Err(e) if e.code == 409 => continue,
                    Err(e) => return Err(e),
                },
                Some(cur) if essence(&cur) == essence(&with_figures_of(&cur, &want)) => {
                    return Ok((cur, false));
                }
                Some(cur) => {
                    let mut next = with_figures_of(&cur, &want);
                    next["metadata"]["resourceVersion"] =
                        cur["metadata"]["resourceVersion"].clone();
                    match self.store.update(&SNAPSHOT_FILES, None, next).await {
                        Ok(v) => return Ok((v, false)),
                        Err(e) if e.code == 409 => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(ApiError::internal(format!(
            "record {name} kept changing while it was written"
        )))
    }

    /// Records a snapshot file or object that now exists (K3s: "Snapshot X saved on N").
    pub async fn saved(&self, rec: &SnapshotRecord) -> ApiResult<Value> {
        let (obj, created) = self.upsert(rec).await?;
        // etcd answers again: the failures it could not take before go in now.
        self.flush_pending().await;
        if created {
            let node = obj["spec"]["nodeName"].as_str().unwrap_or("").to_string();
            let shown = if storage_kind(rec) == "s3" {
                "S3".to_string()
            } else {
                node
            };
            self.event(
                &obj,
                "Normal",
                "ETCDSnapshotCreated",
                &format!("Snapshot {} saved on {shown}", rec.name),
            )
            .await;
        }
        Ok(obj)
    }

    /// Adds a saved snapshot's status figures to its record `name` (retried when the record
    /// changes meanwhile).
    pub async fn set_figures(&self, name: &str, revision: i64, total_key: u64) -> ApiResult<()> {
        for _ in 0..5 {
            let Some(mut cur) = self.store.get(&SNAPSHOT_FILES, None, name).await? else {
                return Ok(());
            };
            cur["status"]["revision"] = json!(revision);
            cur["status"]["totalKey"] = json!(total_key);
            match self.store.update(&SNAPSHOT_FILES, None, cur).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::internal(format!(
            "record {name} kept changing while its figures were written"
        )))
    }

    /// Records a failure: a local save (`s3: None`, no location) or an upload (`location` of
    /// the object that should have been written).
    pub async fn failed(
        &self,
        file_name: &str,
        location: &str,
        message: &str,
        s3: Option<S3Spec>,
    ) -> ApiResult<Value> {
        self.failed_at(file_name, location, message, s3, Utc::now())
            .await
    }

    /// Records a failure as [`Records::failed`] does, but waits at most `limit` for etcd: a
    /// failure caused by etcd being down must not also hold up the answer. What cannot be
    /// written now is kept and written by the next successful save or reconcile.
    pub async fn failed_or_later(
        &self,
        file_name: &str,
        location: &str,
        message: &str,
        s3: Option<S3Spec>,
        limit: Duration,
    ) {
        let at = Utc::now();
        let why = match tokio::time::timeout(
            limit,
            self.failed_at(file_name, location, message, s3.clone(), at),
        )
        .await
        {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => e.message,
            Err(_) => format!("etcd did not answer within {limit:?}"),
        };
        tracing::warn!(
            "cannot record the failure of snapshot {file_name} now ({why}); it is recorded when etcd answers again"
        );
        let mut p = self.pending.lock().unwrap();
        if p.len() >= PENDING_LIMIT {
            let gone = p.remove(0);
            tracing::warn!(
                "too many failures wait to be recorded; the failure of snapshot {} is left out of the records (it is in this log)",
                gone.file_name
            );
        }
        p.push(PendingFailure {
            file_name: file_name.to_string(),
            location: location.to_string(),
            message: message.to_string(),
            s3,
            at,
        });
    }

    /// Writes the failures kept by [`Records::failed_or_later`]; those that still cannot be
    /// written stay for the next time.
    pub async fn flush_pending(&self) {
        let todo = std::mem::take(&mut *self.pending.lock().unwrap());
        if todo.is_empty() {
            return;
        }
        let mut left = Vec::new();
        for f in todo {
            match self
                .failed_at(&f.file_name, &f.location, &f.message, f.s3.clone(), f.at)
                .await
            {
                Ok(_) => tracing::info!("recorded the earlier failure of snapshot {}", f.file_name),
                Err(_) => left.push(f),
            }
        }
        if !left.is_empty() {
            let mut p = self.pending.lock().unwrap();
            left.append(&mut p);
            *p = left;
        }
    }

    async fn failed_at(
        &self,
        file_name: &str,
        location: &str,
        message: &str,
        s3: Option<S3Spec>,
        now: DateTime<Utc>,
    ) -> ApiResult<Value> {
        let rec = SnapshotRecord {
            name: file_name.to_string(),
            key: file_name.to_string(),
            location: location.to_string(),
            node_name: if s3.is_some() {
                "s3".into()
            } else {
                self.node.clone()
            },
            node_source: s3.as_ref().map(|_| self.node.clone()),
            created_at: now,
            modified: now,
            size: 0,
            status: SnapshotStatus::Failed,
            message: Some(message.to_string()),
            compressed: crate::naming::is_compressed(file_name),
            metadata: None,
            token_hash: None,
            s3,
        };
        let (obj, _) = self.upsert(&rec).await?;
        self.event(
            &obj,
            "Warning",
            "ETCDSnapshotFailed",
            &format!(
                "Failed to save snapshot {file_name} on {}: {message}",
                obj["spec"]["nodeName"].as_str().unwrap_or("")
            ),
        )
        .await;
        Ok(obj)
    }

    /// A record was removed (by reconcile, or by a client): K3s's event.
    pub async fn removed(&self, obj: &Value) {
        let name = obj["spec"]["snapshotName"].as_str().unwrap_or("");
        self.event(
            obj,
            "Normal",
            "ETCDSnapshotDeleted",
            &format!("Snapshot {name} deleted"),
        )
        .await;
    }

    /// A lease for events, shared for ten minutes.
    async fn event_lease(&self) -> Option<i64> {
        if let Some((id, at)) = *self.lease.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < Duration::from_secs(600)
        {
            return Some(id);
        }
        let id = self
            .store
            .etcd()
            .grant_lease(EVENT_TTL + 600)
            .await
            .map_err(|e| tracing::warn!("cannot grant a lease for events: {e}"))
            .ok()?;
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some((id, Instant::now()));
        Some(id)
    }

    /// Writes an event about a record; a repeat of the same reason counts up. Failures are only
    /// logged: an event is never worth failing an operation for.
    async fn event(&self, obj: &Value, kind: &str, reason: &str, message: &str) {
        let name = format!(
            "{}.{}",
            obj["metadata"]["name"].as_str().unwrap_or(""),
            &hex::encode(Sha256::digest(reason.as_bytes()))[..16]
        );
        let now = now_rfc3339();
        let result: ApiResult<()> = async {
            match self.store.get(&EVENTS, Some("default"), &name).await? {
                Some(mut ev) => {
                    let count = ev["count"].as_i64().unwrap_or(1) + 1;
                    ev["count"] = json!(count);
                    ev["lastTimestamp"] = json!(now);
                    ev["message"] = json!(message);
                    self.store.update(&EVENTS, Some("default"), ev).await?;
                }
                None => {
                    let ev = json!({
                        "metadata": {"name": name, "namespace": "default"},
                        "involvedObject": {
                            "kind": "ETCDSnapshotFile",
                            "apiVersion": "k3s.cattle.io/v1",
                            "name": obj["metadata"]["name"],
                            "uid": obj["metadata"]["uid"],
                            "resourceVersion": obj["metadata"]["resourceVersion"],
                        },
                        "reason": reason,
                        "message": message,
                        "source": {"component": COMPONENT, "host": self.node},
                        "firstTimestamp": now,
                        "lastTimestamp": now,
                        "count": 1,
                        "type": kind,
                        "reportingComponent": COMPONENT,
                        "reportingInstance": self.node,
                    });
                    let lease = self.event_lease().await;
                    self.store
                        .create(&EVENTS, Some("default"), ev, lease)
                        .await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!("cannot record event {reason} for {}: {}", name, e.message);
        }
    }

    /// Brings the records of this node (and, when `s3` is given, of S3) in line with what
    /// exists. `members`: the node names of current etcd members (`None`: unknown, keep every
    /// node's records). `deleted`: names deleted by the operation (their records go at once).
    pub async fn reconcile(
        &self,
        local: &[SnapshotRecord],
        s3: Option<&[SnapshotRecord]>,
        members: Option<&BTreeSet<String>>,
        deleted: &[String],
    ) -> ApiResult<Reconciled> {
        self.flush_pending().await;
        let mut desired: BTreeMap<String, &SnapshotRecord> = BTreeMap::new();
        for r in local.iter().chain(s3.into_iter().flatten()) {
            desired.insert(object_name(r), r);
        }
        let mut owned = BTreeSet::from([self.node.clone()]);
        if s3.is_some() {
            owned.insert("s3".to_string());
        }
        let now = Utc::now();
        let mut out = Reconciled::default();
        // Page by page, so that memory follows the page, not the number of records.
        let mut pages = std::pin::pin!(self.record_pages());
        while let Some(page) = pages.next().await {
            for cr in page?.items {
                self.reconcile_one(cr, &mut desired, &owned, members, deleted, now, &mut out)
                    .await?;
            }
        }
        // Creations are independent: a few at a time, so that 10,000 new files do not wait on
        // 10,000 sequential etcd round trips.
        // Only the creations in flight exist at any time (10,000 futures made up front took
        // tens of MiB).
        let mut todo = desired.into_values();
        let mut inflight = futures::stream::FuturesUnordered::new();
        loop {
            while inflight.len() < CREATE_CONCURRENCY {
                let Some(rec) = todo.next() else { break };
                tracing::info!("Creating ETCDSnapshotFile for {}", rec.name);
                inflight.push(self.upsert(rec));
            }
            match inflight.next().await {
                Some(r) => {
                    r?;
                    out.created += 1;
                }
                None => break,
            }
        }
        if let Err(e) = self.sync_legacy_configmap().await {
            tracing::warn!(
                "cannot update the legacy ConfigMap {LEGACY_CONFIGMAP}: {}",
                e.message
            );
        }
        Ok(out)
    }

    /// One stored record against the wanted ones: kept, updated or deleted.
    #[allow(clippy::too_many_arguments)]
    async fn reconcile_one(
        &self,
        cr: Value,
        desired: &mut BTreeMap<String, &SnapshotRecord>,
        owned: &BTreeSet<String>,
        members: Option<&BTreeSet<String>>,
        deleted: &[String],
        now: DateTime<Utc>,
        out: &mut Reconciled,
    ) -> ApiResult<()> {
        let name = cr["metadata"]["name"].as_str().unwrap_or("").to_string();
        let label = cr["metadata"]["labels"][LABEL_STORAGE_NODE]
            .as_str()
            .unwrap_or("")
            .to_string();
        let snapshot = cr["spec"]["snapshotName"].as_str().unwrap_or("");
        let orphan = label != "s3" && members.is_some_and(|m| !m.is_empty() && !m.contains(&label));
        if !owned.contains(&label) && !orphan {
            return Ok(());
        }
        if !orphan && let Some(rec) = desired.remove(&name) {
            // A file listed from disk does not know the token that saved it; the record
            // written at the save does, and keeps it.
            let mut rec = rec.clone();
            if rec.token_hash.is_none() {
                rec.token_hash = cr["metadata"]["annotations"][ANNOTATION_TOKEN_HASH]
                    .as_str()
                    .map(str::to_string);
            }
            let want = with_figures_of(
                &cr,
                &obj_of(&EtcdSnapshotFile::from_record(&rec, name.clone())),
            );
            if essence(&want) != essence(&cr) {
                self.upsert(&rec).await?;
                out.updated += 1;
            } else {
                out.kept += 1;
            }
            return Ok(());
        }
        let failed_recently = cr["status"]["readyToUse"] == json!(false)
            && parse_time(&cr["status"]["error"]["time"]).is_some_and(|t| now - t < FAILED_GRACE);
        let s3_young = label == "s3"
            && parse_time(&cr["metadata"]["creationTimestamp"]).is_some_and(|t| now - t < S3_GRACE);
        let explicit = deleted.iter().any(|d| d == snapshot);
        if !orphan && !explicit && (failed_recently || s3_young) {
            out.kept += 1;
            return Ok(());
        }
        tracing::info!("Deleting ETCDSnapshotFile for {snapshot}");
        match self.store.delete(&SNAPSHOT_FILES, None, &name, None).await {
            Ok(gone) => {
                self.removed(&gone).await;
                out.deleted += 1;
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Every stored record, [`RECONCILE_PAGE`] at a time.
    fn record_pages(
        &self,
    ) -> impl futures::Stream<Item = ApiResult<crate::kube::api::store::Page>> + use<> {
        self.store.pages(SNAPSHOT_FILES, None, None, RECONCILE_PAGE)
    }

    /// K3s's legacy ConfigMap: the records that carry extra metadata, by legacy key.
    async fn sync_legacy_configmap(&self) -> ApiResult<()> {
        let mut entries: Vec<(DateTime<Utc>, String, String)> = Vec::new();
        // Page by page: only the records with extra metadata are kept.
        let mut pages = std::pin::pin!(self.record_pages());
        while let Some(page) = pages.next().await {
            for cr in &page?.items {
                self.legacy_entry(cr, &mut entries);
            }
        }
        self.write_legacy_configmap(entries).await
    }

    /// The legacy ConfigMap's entry of one record, when it carries extra metadata.
    fn legacy_entry(&self, cr: &Value, entries: &mut Vec<(DateTime<Utc>, String, String)>) {
        let meta = &cr["spec"]["metadata"];
        if meta.as_object().is_none_or(|m| m.is_empty()) {
            return;
        }
        let file = cr["spec"]["snapshotName"].as_str().unwrap_or("");
        let s3 = cr["metadata"]["labels"][LABEL_STORAGE_NODE] == "s3";
        let key = legacy_key(if s3 { "s3" } else { "local" }, file);
        let created = parse_time(&cr["status"]["creationTime"]).unwrap_or_else(Utc::now);
        let b64 =
            |v: &Value| base64::engine::general_purpose::STANDARD.encode(v.to_string().as_bytes());
        let mut rec = json!({
            "name": file,
            "location": cr["spec"]["location"],
            "metadata": b64(meta),
            "nodeName": cr["spec"]["nodeName"],
            "createdAt": cr["status"]["creationTime"],
            "size": cr["status"]["size"].as_str().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0),
            "status": if cr["status"]["readyToUse"] == json!(true) { "successful" } else { "failed" },
            "compressed": crate::naming::is_compressed(file),
        });
        if let Some(msg) = cr["status"]["error"]["message"].as_str() {
            rec["message"] = json!(base64::engine::general_purpose::STANDARD.encode(msg));
        }
        if !cr["spec"]["s3"].is_null() {
            rec["s3Config"] = cr["spec"]["s3"].clone();
        }
        entries.push((created, key, rec.to_string()));
    }

    /// Writes the entries, oldest dropped first (in steps of 4, K3s's rule for "Too long")
    /// until they fit.
    async fn write_legacy_configmap(
        &self,
        mut entries: Vec<(DateTime<Utc>, String, String)>,
    ) -> ApiResult<()> {
        entries.sort();
        let mut drop = 0;
        loop {
            let data: BTreeMap<&str, &str> = entries[drop.min(entries.len())..]
                .iter()
                .map(|(_, k, v)| (k.as_str(), v.as_str()))
                .collect();
            let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
            if size <= CONFIGMAP_LIMIT || data.is_empty() {
                return self.write_legacy(&data).await;
            }
            drop += 4;
        }
    }

    async fn write_legacy(&self, data: &BTreeMap<&str, &str>) -> ApiResult<()> {
        let ns = Some("kube-system");
        let cur = self.store.get(&CONFIGMAPS, ns, LEGACY_CONFIGMAP).await?;
        let want = json!(data);
        match cur {
            None if data.is_empty() => Ok(()),
            None => {
                let cm = json!({"metadata": {"name": LEGACY_CONFIGMAP, "namespace": "kube-system"}, "data": want});
                self.store
                    .create(&CONFIGMAPS, ns, cm, None)
                    .await
                    .map(|_| ())
            }
            Some(cm) if cm["data"] == want || (cm["data"].is_null() && data.is_empty()) => Ok(()),
            Some(mut cm) => {
                cm["data"] = want;
                self.store.update(&CONFIGMAPS, ns, cm).await.map(|_| ())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::FakeEtcd;

    fn rec(name: &str, s3: bool) -> SnapshotRecord {
        let t = crate::naming::parse_snapshot_time(name).unwrap_or_else(Utc::now);
        SnapshotRecord {
            name: name.into(),
            key: name.into(),
            location: if s3 {
                format!("s3://b/f/{name}")
            } else {
                format!("file:///snaps/{name}")
            },
            node_name: if s3 { "s3".into() } else { "n1".into() },
            node_source: s3.then(|| "n1".into()),
            created_at: t,
            modified: t,
            size: 10,
            status: SnapshotStatus::Successful,
            message: None,
            compressed: false,
            metadata: None,
            token_hash: Some("b4b83cda3099".into()),
            s3: None,
        }
    }

    fn records() -> (Arc<FakeEtcd>, Records) {
        let etcd = Arc::new(FakeEtcd::new(1));
        (etcd.clone(), Records::new(ObjectStore::new(etcd), "n1"))
    }

    async fn names(r: &Records) -> Vec<String> {
        r.store()
            .list_all(&SNAPSHOT_FILES, None)
            .await
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn saved_records_have_k3s_names_and_events() {
        let (_, r) = records();
        let obj = r
            .saved(&rec("on-demand-n1-1730308816", false))
            .await
            .unwrap();
        assert_eq!(
            obj["metadata"]["name"],
            crate::naming::record_object_name(
                "local",
                "on-demand-n1-1730308816",
                "n1",
                "file:///snaps/on-demand-n1-1730308816",
                DateTime::from_timestamp(1730308816, 0).unwrap()
            )
        );
        assert_eq!(obj["metadata"]["finalizers"][0], super::super::FINALIZER);
        assert_eq!(obj["metadata"]["generation"], 1);
        assert!(obj["metadata"]["uid"].is_string());
        // Saving the same again changes nothing and emits no second event.
        let again = r
            .saved(&rec("on-demand-n1-1730308816", false))
            .await
            .unwrap();
        assert_eq!(
            again["metadata"]["resourceVersion"],
            obj["metadata"]["resourceVersion"]
        );
        let events = r.store().list_all(&EVENTS, Some("default")).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["reason"], "ETCDSnapshotCreated");
        assert_eq!(
            events[0]["message"],
            "Snapshot on-demand-n1-1730308816 saved on n1"
        );
        assert_eq!(events[0]["source"]["component"], COMPONENT);
        let s3 = r
            .saved(&rec("on-demand-n1-1730308816", true))
            .await
            .unwrap();
        assert_eq!(s3["metadata"]["labels"][LABEL_STORAGE_NODE], "s3");
        assert_eq!(s3["spec"]["nodeName"], "n1");
        let f = r
            .failed("on-demand-n1-1730308817", "", "boom", None)
            .await
            .unwrap();
        assert_eq!(f["status"]["readyToUse"], false);
        assert_eq!(f["status"]["error"]["message"], "boom");
        let events = r.store().list_all(&EVENTS, Some("default")).await.unwrap();
        assert!(events.iter().any(|e| e["reason"] == "ETCDSnapshotFailed"
            && e["message"] == "Failed to save snapshot on-demand-n1-1730308817 on n1: boom"));
    }

    #[tokio::test]
    async fn reconcile_follows_the_files_with_k3s_grace_periods() {
        let (_, r) = records();
        let a = rec("etcd-snapshot-n1-100", false);
        let b = rec("etcd-snapshot-n1-200", false);
        let up = rec("etcd-snapshot-n1-200", true);
        let st = r
            .reconcile(
                &[a.clone(), b.clone()],
                Some(std::slice::from_ref(&up)),
                None,
                &[],
            )
            .await
            .unwrap();
        assert_eq!(st.created, 3);
        assert_eq!(
            r.reconcile(
                &[a.clone(), b.clone()],
                Some(std::slice::from_ref(&up)),
                None,
                &[]
            )
            .await
            .unwrap()
            .kept,
            3
        );
        // A file removed by hand: its record goes; the young S3 record stays a minute.
        let st = r
            .reconcile(std::slice::from_ref(&b), Some(&[]), None, &[])
            .await
            .unwrap();
        assert_eq!((st.deleted, st.kept), (1, 2), "{st:?}");
        // Explicitly deleted by the operation: gone at once.
        let st = r
            .reconcile(
                std::slice::from_ref(&b),
                Some(&[]),
                None,
                &["etcd-snapshot-n1-200".into()],
            )
            .await
            .unwrap();
        assert_eq!(st.deleted, 1);
        // Without S3 configured, S3 records are left alone.
        r.saved(&up).await.unwrap();
        let before = names(&r).await;
        r.reconcile(std::slice::from_ref(&b), None, None, &[])
            .await
            .unwrap();
        assert_eq!(names(&r).await, before);
        // A failed record younger than 24 h survives a reconcile that does not see it.
        r.failed("etcd-snapshot-n1-300", "", "disk full", None)
            .await
            .unwrap();
        r.reconcile(std::slice::from_ref(&b), None, None, &[])
            .await
            .unwrap();
        assert!(
            names(&r)
                .await
                .iter()
                .any(|n| n.contains("etcd-snapshot-n1-300"))
        );
        // Records of a node that is no longer a member go; S3 records stay.
        let mut gone = rec("etcd-snapshot-n9-1", false);
        gone.node_name = "n9".into();
        r.saved(&gone).await.unwrap();
        let members = BTreeSet::from(["n1".to_string()]);
        r.reconcile(std::slice::from_ref(&b), None, Some(&members), &[])
            .await
            .unwrap();
        let now = names(&r).await;
        assert!(!now.iter().any(|n| n.contains("n9")), "{now:?}");
        assert!(now.iter().any(|n| n.starts_with("s3-")), "{now:?}");
        let events = r.store().list_all(&EVENTS, Some("default")).await.unwrap();
        assert!(events.iter().any(|e| e["reason"] == "ETCDSnapshotDeleted"));
    }

    #[tokio::test]
    async fn records_with_extra_metadata_reach_the_legacy_configmap() {
        let (_, r) = records();
        let mut a = rec("on-demand-n1-5", false);
        a.metadata = Some(base64::engine::general_purpose::STANDARD.encode(r#"{"team":"db"}"#));
        let b = rec("on-demand-n1-6", false);
        r.reconcile(&[a.clone(), b], None, None, &[]).await.unwrap();
        let cm = r
            .store()
            .get(&CONFIGMAPS, Some("kube-system"), LEGACY_CONFIGMAP)
            .await
            .unwrap()
            .unwrap();
        let data = cm["data"].as_object().unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["local-on-demand-n1-5"]);
        let entry: Value =
            serde_json::from_str(data["local-on-demand-n1-5"].as_str().unwrap()).unwrap();
        assert_eq!(entry["status"], "successful");
        assert_eq!(entry["nodeName"], "n1");
        let md = base64::engine::general_purpose::STANDARD
            .decode(entry["metadata"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&md).unwrap(),
            json!({"team": "db"})
        );
    }

    #[tokio::test]
    async fn a_failure_etcd_cannot_take_is_recorded_when_it_answers_again() {
        let (etcd, r) = records();
        etcd.set_down(true);
        r.failed_or_later(
            "on-demand-n1-1730308816",
            "",
            "etcd: stalled",
            None,
            Duration::from_secs(1),
        )
        .await;
        etcd.set_down(false);
        assert!(names(&r).await.is_empty());
        // The next successful save writes it, with the time of the failure.
        r.saved(&rec("on-demand-n1-1730308900", false))
            .await
            .unwrap();
        let all = r.store().list_all(&SNAPSHOT_FILES, None).await.unwrap();
        let failed: Vec<&Value> = all
            .iter()
            .filter(|o| o["status"]["readyToUse"] == false)
            .collect();
        assert_eq!(failed.len(), 1, "{all:#?}");
        assert_eq!(failed[0]["spec"]["snapshotName"], "on-demand-n1-1730308816");
        assert_eq!(failed[0]["status"]["error"]["message"], "etcd: stalled");
        // Written once: a later flush finds nothing left.
        r.flush_pending().await;
        assert_eq!(names(&r).await.len(), 2);
    }

    #[tokio::test]
    async fn status_figures_survive_reconcile_and_updates() {
        let (_, r) = records();
        let a = rec("on-demand-n1-1730308816", false);
        let obj = r.saved(&a).await.unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        r.set_figures(&name, 1152, 1157).await.unwrap();
        r.reconcile(std::slice::from_ref(&a), None, None, &[])
            .await
            .unwrap();
        let got = r
            .store()
            .get(&SNAPSHOT_FILES, None, &name)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got["status"]["revision"], 1152);
        assert_eq!(got["status"]["totalKey"], 1157);
        // A change the file shows (its size) rewrites the record and keeps the figures.
        let mut bigger = a.clone();
        bigger.size = 20;
        r.saved(&bigger).await.unwrap();
        let got = r
            .store()
            .get(&SNAPSHOT_FILES, None, &name)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got["status"]["size"], "20");
        assert_eq!(got["status"]["revision"], 1152);
    }
}
