//! Kubernetes objects kept in etcd the way the API server keeps them: JSON under
//! `/registry/<resource>/[<namespace>/]<name>`, `metadata.resourceVersion` being the key's mod
//! revision (not stored, set on read), `uid`, `creationTimestamp` and `generation` set on
//! create. Writes are guarded by etcd transactions, so a stale resourceVersion is a conflict,
//! as in Kubernetes. A real API server with the same CRD reads what is written here.

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::resources::ResourceType;
use super::{ApiError, ApiResult};
use crate::etcd::{EtcdSource, Kv, Precondition};
use crate::naming::is_dns1123_subdomain;

/// A page of a list.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Value>,
    /// The store's revision when read: the list's resourceVersion.
    pub revision: i64,
    /// Where the next page starts, when there is one.
    pub next: Option<String>,
}

/// Whether a write is made or only checked (`dryRun=All`: every check runs, nothing is
/// written, the answer is what the write would have answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Commit,
    DryRun,
}

/// Objects of every served resource, over one etcd.
#[derive(Clone)]
pub struct ObjectStore {
    etcd: Arc<dyn EtcdSource>,
}

/// A new random UID in the usual 8-4-4-4-12 form (version 4).
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// etcd's default `--max-request-bytes` (1.5 MiB), the embedded etcd's limit.
pub const ETCD_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// A write etcd refused for its size, as a 413 naming the size, the limit and the fix; any
/// other failure as it is. etcd refuses a request over its `--max-request-bytes` with
/// "etcdserver: request is too large", and one over that plus 512 KiB already in gRPC
/// ("received message larger than max"). Kubernetes answers the first with a 500
/// InternalError carrying etcd's words; a 413 RequestEntityTooLarge is given here instead:
/// the object is what is wrong, and sending it again cannot succeed.
pub fn too_large_for_etcd(rt: &ResourceType, name: &str, size: usize, e: crate::Error) -> ApiError {
    let text = e.to_string();
    if !(text.contains("request is too large") || text.contains("received message larger than max"))
    {
        return e.into();
    }
    let mut err = ApiError::too_large(format!(
        "{} \"{name}\" is too large to store: {size} bytes, and etcd refuses a write over its --max-request-bytes ({ETCD_MAX_REQUEST_BYTES} bytes, 1.5 MiB, by default); keep the object under 1.5 MiB (split the data over several objects, or keep large files elsewhere)",
        rt.kind
    ));
    err.details = Some(json!({"name": name, "kind": rt.plural}));
    err
}

/// Now, as Kubernetes writes timestamps.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn decode(rt: &ResourceType, kv: &Kv) -> ApiResult<Value> {
    let mut v: Value = if kv.value.starts_with(b"k8s:enc:") {
        return Err(ApiError::internal(format!(
            "{} is encrypted at rest by a Kubernetes API server (k8s:enc:); etcdsnap cannot read it: use that cluster's kubectl, or pass the S3 settings as flags",
            kv.key
        )));
    } else if kv.value.starts_with(b"k8s\0") {
        from_protobuf(&kv.value).map_err(|why| {
            ApiError::internal(format!(
                "{} was written in protobuf by a Kubernetes API server and {why}; read it with that cluster's kubectl",
                kv.key
            ))
        })?
    } else {
        serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::internal(format!("{} in etcd is not JSON: {e}", kv.key)))?
    };
    if v.get("apiVersion").is_none() {
        v["apiVersion"] = json!(rt.api_version());
    }
    if v.get("kind").is_none() {
        v["kind"] = json!(rt.kind);
    }
    v["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
    Ok(v)
}

/// An object in Kubernetes protobuf (`k8s\0` and a `runtime.Unknown`, as an API server
/// stores it and as kubectl's typed requests send it), as JSON; Secrets and ConfigMaps are
/// decoded whole, other kinds only as far as their metadata (enough for a Namespace).
pub fn from_protobuf(bytes: &[u8]) -> Result<Value, String> {
    let envelope = bytes
        .strip_prefix(b"k8s\0")
        .ok_or("it lacks the k8s\\0 prefix of Kubernetes protobuf")?;
    let obj = crate::kube::decode_protobuf(envelope).map_err(|e| e.to_string())?;
    match obj.note {
        Some(note) if obj.kind != "Namespace" => {
            Err(format!("etcdsnap cannot read all of it ({note})"))
        }
        _ => Ok(obj.object),
    }
}

fn encode(obj: &Value) -> Vec<u8> {
    let mut stored = obj.clone();
    if let Some(m) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&stored).unwrap_or_default()
}

fn resource_version(obj: &Value) -> ApiResult<Option<i64>> {
    match obj["metadata"]["resourceVersion"].as_str() {
        None | Some("") => Ok(None),
        Some(rv) => rv
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))),
    }
}

impl ObjectStore {
    pub fn new(etcd: Arc<dyn EtcdSource>) -> ObjectStore {
        ObjectStore { etcd }
    }

    pub fn etcd(&self) -> &dyn EtcdSource {
        self.etcd.as_ref()
    }

    /// The etcd key of an object (`ns` is ignored for cluster-scoped resources).
    pub fn key(rt: &ResourceType, ns: Option<&str>, name: &str) -> String {
        match (rt.namespaced, ns) {
            (true, Some(ns)) => format!("{}/{ns}/{name}", rt.prefix),
            _ => format!("{}/{name}", rt.prefix),
        }
    }

    /// The prefix of a resource's objects, or of one namespace's.
    pub fn prefix(rt: &ResourceType, ns: Option<&str>) -> String {
        match (rt.namespaced, ns) {
            (true, Some(ns)) => format!("{}/{ns}/", rt.prefix),
            _ => format!("{}/", rt.prefix),
        }
    }

    pub async fn get(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<Option<Value>> {
        match self.etcd.get_kv(&Self::key(rt, ns, name)).await? {
            Some(kv) => Ok(Some(decode(rt, &kv)?)),
            None => Ok(None),
        }
    }

    /// Objects decoded from a page of etcd keys; `after` is the key the page starts after.
    pub async fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> ApiResult<Page> {
        let prefix = Self::prefix(rt, ns);
        let range = self.etcd.range(&prefix, after, limit).await?;
        let next = if range.more {
            range.kvs.last().map(|kv| kv.key.clone())
        } else {
            None
        };
        let mut items = Vec::with_capacity(range.kvs.len());
        for kv in &range.kvs {
            match decode(rt, kv) {
                Ok(v) => items.push(v),
                Err(e) => tracing::warn!("skipping {}: {}", kv.key, e.message),
            }
        }
        Ok(Page {
            items,
            revision: range.revision,
            next,
        })
    }

    /// The pages of `size` objects after `after` (the start when `None`), read one at a time
    /// as the stream is polled, so that memory follows the page and not the collection.
    pub fn pages(
        &self,
        rt: ResourceType,
        ns: Option<String>,
        after: Option<String>,
        size: i64,
    ) -> impl futures::Stream<Item = ApiResult<Page>> + Send + use<> {
        let store = self.clone();
        // `None`: the last page has been read.
        futures::stream::try_unfold(Some(after), move |state| {
            let (store, ns) = (store.clone(), ns.clone());
            async move {
                let Some(after) = state else {
                    return Ok(None);
                };
                let page = store
                    .list(&rt, ns.as_deref(), after.as_deref(), size)
                    .await?;
                let next = page.next.clone().map(Some);
                Ok(Some((page, next)))
            }
        })
    }

    /// Every object (all pages).
    pub async fn list_all(&self, rt: &ResourceType, ns: Option<&str>) -> ApiResult<Vec<Value>> {
        use futures::TryStreamExt;
        self.pages(*rt, ns.map(str::to_string), None, 1000)
            .try_fold(Vec::new(), |mut out, page| async move {
                out.extend(page.items);
                Ok(out)
            })
            .await
    }

    /// Creates `obj` (its `metadata.name` and, for namespaced resources, `ns`), setting uid,
    /// creationTimestamp and generation. `AlreadyExists` when the name is taken.
    pub async fn create(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        obj: Value,
        lease: Option<i64>,
    ) -> ApiResult<Value> {
        self.create_as(rt, ns, obj, lease, Write::Commit).await
    }

    /// [`ObjectStore::create`] with `write`: a dry run checks everything a create checks and
    /// answers the object it would store (without a resourceVersion), writing nothing.
    pub async fn create_as(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        lease: Option<i64>,
        write: Write,
    ) -> ApiResult<Value> {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        if !is_dns1123_subdomain(&name) {
            return Err(ApiError::invalid(
                rt,
                &name,
                format!(
                    "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            ));
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let meta = &mut obj["metadata"];
        meta["uid"] = json!(new_uid());
        meta["creationTimestamp"] = json!(now_rfc3339());
        if rt.has_generation {
            meta["generation"] = json!(1);
        }
        if let (true, Some(ns)) = (rt.namespaced, ns) {
            meta["namespace"] = json!(ns);
        }
        if let Some(m) = meta.as_object_mut() {
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
        }
        let key = Self::key(rt, ns, &name);
        if write == Write::DryRun {
            return match self.etcd.get_kv(&key).await? {
                Some(_) => Err(ApiError::already_exists(rt, &name)),
                None => Ok(obj),
            };
        }
        let bytes = encode(&obj);
        let size = bytes.len();
        match self
            .etcd
            .put_if(&key, bytes, Precondition::Absent, lease)
            .await
            .map_err(|e| too_large_for_etcd(rt, &name, size, e))?
        {
            Some(rev) => {
                obj["metadata"]["resourceVersion"] = json!(rev.to_string());
                Ok(obj)
            }
            None => Err(ApiError::already_exists(rt, &name)),
        }
    }

    /// Replaces the object named in `obj`. A resourceVersion in `obj` must be the current one
    /// (else `Conflict`); without one the write is unconditional, as `kubectl replace --force`
    /// is not. uid and creationTimestamp are kept; generation grows when `spec` (or, for
    /// Secrets and ConfigMaps, the data) changes.
    pub async fn update(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        obj: Value,
    ) -> ApiResult<Value> {
        self.update_as(rt, ns, obj, Write::Commit).await
    }

    /// [`ObjectStore::update`] with `write`: a dry run answers the object as it would be
    /// stored, at the current resourceVersion, writing nothing.
    pub async fn update_as(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        write: Write,
    ) -> ApiResult<Value> {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let key = Self::key(rt, ns, &name);
        let Some(cur_kv) = self.etcd.get_kv(&key).await? else {
            return Err(ApiError::not_found(rt, &name));
        };
        let cur = decode(rt, &cur_kv)?;
        let wanted = resource_version(&obj)?;
        if let Some(rv) = wanted
            && rv != cur_kv.mod_revision
        {
            return Err(ApiError::conflict(rt, &name));
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        for field in ["uid", "creationTimestamp"] {
            obj["metadata"][field] = cur["metadata"][field].clone();
        }
        if let (true, Some(ns)) = (rt.namespaced, ns) {
            obj["metadata"]["namespace"] = json!(ns);
        }
        if rt.has_generation {
            let gen_now = cur["metadata"]["generation"].as_i64().unwrap_or(1);
            let changed = obj.get("spec") != cur.get("spec");
            obj["metadata"]["generation"] = json!(if changed { gen_now + 1 } else { gen_now });
        }
        if write == Write::DryRun {
            obj["metadata"]["resourceVersion"] = json!(cur_kv.mod_revision.to_string());
            return Ok(obj);
        }
        let bytes = encode(&obj);
        let size = bytes.len();
        match self
            .etcd
            .put_if(
                &key,
                bytes,
                Precondition::ModRevision(cur_kv.mod_revision),
                None,
            )
            .await
            .map_err(|e| too_large_for_etcd(rt, &name, size, e))?
        {
            Some(rev) => {
                obj["metadata"]["resourceVersion"] = json!(rev.to_string());
                Ok(obj)
            }
            None => Err(ApiError::conflict(rt, &name)),
        }
    }

    /// Deletes the object; with `rv`, only at that resourceVersion. Returns what was deleted.
    pub async fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        rv: Option<i64>,
    ) -> ApiResult<Value> {
        self.delete_as(rt, ns, name, rv, Write::Commit).await
    }

    /// [`ObjectStore::delete`] with `write`: a dry run answers what would be deleted and
    /// deletes nothing.
    pub async fn delete_as(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        rv: Option<i64>,
        write: Write,
    ) -> ApiResult<Value> {
        let key = Self::key(rt, ns, name);
        let Some(cur) = self.etcd.get_kv(&key).await? else {
            return Err(ApiError::not_found(rt, name));
        };
        if rv.is_some_and(|rv| rv != cur.mod_revision) {
            return Err(ApiError::conflict(rt, name));
        }
        let obj = decode(rt, &cur)?;
        if write == Write::DryRun {
            return Ok(obj);
        }
        match self
            .etcd
            .delete_if(&key, Precondition::ModRevision(cur.mod_revision))
            .await?
        {
            Some(_) => Ok(obj),
            None => Err(ApiError::conflict(rt, name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::api::resources::{CONFIGMAPS, SNAPSHOT_FILES};
    use crate::testing::FakeEtcd;

    #[tokio::test]
    async fn create_get_update_conflict_delete() {
        let store = ObjectStore::new(Arc::new(FakeEtcd::new(1)));
        let rt = &CONFIGMAPS;
        let made = store
            .create(
                rt,
                Some("kube-system"),
                json!({"metadata": {"name": "cm1"}, "data": {"a": "1"}}),
                None,
            )
            .await
            .unwrap();
        let uid = made["metadata"]["uid"].as_str().unwrap().to_string();
        assert_eq!(uid.len(), 36);
        assert_eq!(made["metadata"]["namespace"], "kube-system");
        let rv1 = made["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let err = store
            .create(
                rt,
                Some("kube-system"),
                json!({"metadata": {"name": "cm1"}}),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!((err.code, err.reason), (409, "AlreadyExists"));

        let mut upd = made.clone();
        upd["data"]["a"] = json!("2");
        let after = store
            .update(rt, Some("kube-system"), upd.clone())
            .await
            .unwrap();
        assert_eq!(after["metadata"]["uid"], uid.as_str());
        assert_ne!(after["metadata"]["resourceVersion"], rv1.as_str());
        // A stale resourceVersion is a conflict.
        let err = store
            .update(rt, Some("kube-system"), upd)
            .await
            .unwrap_err();
        assert_eq!((err.code, err.reason), (409, "Conflict"));

        let got = store
            .get(rt, Some("kube-system"), "cm1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got["data"]["a"], "2");
        assert_eq!(got["kind"], "ConfigMap");
        let page = store.list(rt, Some("kube-system"), None, 10).await.unwrap();
        assert_eq!(page.items.len(), 1);
        store
            .delete(rt, Some("kube-system"), "cm1", None)
            .await
            .unwrap();
        let err = store
            .delete(rt, Some("kube-system"), "cm1", None)
            .await
            .unwrap_err();
        assert_eq!(err.code, 404);
    }

    #[tokio::test]
    async fn dry_runs_check_and_answer_but_write_nothing() {
        let store = ObjectStore::new(Arc::new(FakeEtcd::new(1)));
        let (rt, ns) = (&CONFIGMAPS, Some("kube-system"));
        let cm = json!({"metadata": {"name": "cm1"}, "data": {"a": "1"}});
        let would = store
            .create_as(rt, ns, cm.clone(), None, Write::DryRun)
            .await
            .unwrap();
        assert_eq!(would["metadata"]["namespace"], "kube-system");
        assert!(
            would["metadata"].get("resourceVersion").is_none(),
            "{would}"
        );
        assert!(store.get(rt, ns, "cm1").await.unwrap().is_none());
        let bad = json!({"metadata": {"name": "Bad_Name"}});
        let err = store
            .create_as(rt, ns, bad, None, Write::DryRun)
            .await
            .unwrap_err();
        assert_eq!(err.code, 422);

        let made = store.create(rt, ns, cm.clone(), None).await.unwrap();
        let rv = made["metadata"]["resourceVersion"].clone();
        let err = store
            .create_as(rt, ns, cm, None, Write::DryRun)
            .await
            .unwrap_err();
        assert_eq!((err.code, err.reason), (409, "AlreadyExists"));
        let mut upd = made.clone();
        upd["data"]["a"] = json!("2");
        let would = store
            .update_as(rt, ns, upd.clone(), Write::DryRun)
            .await
            .unwrap();
        assert_eq!(would["data"]["a"], "2");
        assert_eq!(would["metadata"]["resourceVersion"], rv);
        let got = store.get(rt, ns, "cm1").await.unwrap().unwrap();
        assert_eq!(
            (&got["data"]["a"], &got["metadata"]["resourceVersion"]),
            (&json!("1"), &rv)
        );
        upd["metadata"]["resourceVersion"] = json!("999999");
        let err = store
            .update_as(rt, ns, upd, Write::DryRun)
            .await
            .unwrap_err();
        assert_eq!(err.reason, "Conflict");

        let would = store
            .delete_as(rt, ns, "cm1", None, Write::DryRun)
            .await
            .unwrap();
        assert_eq!(would["metadata"]["name"], "cm1");
        assert!(store.get(rt, ns, "cm1").await.unwrap().is_some());
        let err = store
            .delete_as(rt, ns, "nope", None, Write::DryRun)
            .await
            .unwrap_err();
        assert_eq!(err.code, 404);
    }

    #[tokio::test]
    async fn names_and_generation() {
        let store = ObjectStore::new(Arc::new(FakeEtcd::new(1)));
        let rt = &SNAPSHOT_FILES;
        let err = store
            .create(rt, None, json!({"metadata": {"name": "Bad_Name"}}), None)
            .await
            .unwrap_err();
        assert_eq!((err.code, err.reason), (422, "Invalid"));
        let made = store
            .create(
                rt,
                None,
                json!({"metadata": {"name": "a"}, "spec": {"x": 1}}),
                None,
            )
            .await
            .unwrap();
        assert_eq!(made["metadata"]["generation"], 1);
        let mut same = made.clone();
        same["metadata"]["labels"] = json!({"l": "v"});
        let same = store.update(rt, None, same).await.unwrap();
        assert_eq!(
            same["metadata"]["generation"], 1,
            "metadata changes keep the generation"
        );
        let mut changed = same.clone();
        changed["spec"]["x"] = json!(2);
        assert_eq!(
            store.update(rt, None, changed).await.unwrap()["metadata"]["generation"],
            2
        );
        // Paging.
        for i in 0..5 {
            store
                .create(
                    rt,
                    None,
                    json!({"metadata": {"name": format!("p{i}")}}),
                    None,
                )
                .await
                .unwrap();
        }
        let first = store.list(rt, None, None, 4).await.unwrap();
        assert_eq!(first.items.len(), 4);
        let rest = store
            .list(rt, None, first.next.as_deref(), 4)
            .await
            .unwrap();
        assert_eq!(rest.items.len(), 2);
        assert!(rest.next.is_none());
    }
}
