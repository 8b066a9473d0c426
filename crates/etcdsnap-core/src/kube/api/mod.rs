//! The small part of the Kubernetes API that kubectl and client libraries need to read
//! ETCDSnapshotFile records and to manage the Secrets and ConfigMaps etcdsnap reads (the S3
//! configuration, extra metadata), served on the supervisor port:
//! * discovery (`/version`, `/api`, `/apis`, the group/versions) and a minimal OpenAPI;
//! * get, list (label and field selectors, `limit`/`continue` paging) and watch of every
//!   resource, with server-side Table printing;
//! * create, update (optimistic concurrency on `resourceVersion`), patch (merge, strategic,
//!   JSON patch) and delete of Secrets and ConfigMaps; delete of records (the file stays);
//!   each write verb honours `dryRun=All` (`kubectl --dry-run=server`): checked, answered as
//!   if done, nothing written;
//! * errors as Kubernetes `Status` objects (400 BadRequest for selectors and list parameters
//!   the API server refuses, 404 NotFound, 409 AlreadyExists/Conflict, 413
//!   RequestEntityTooLarge, 422 Invalid, 401 Unauthorized, 403 Forbidden, 405
//!   MethodNotAllowed).
//!
//! Authentication is the bearer token of the kubeconfig the server writes. When the etcd holds
//! a real Kubernetes cluster its Secrets and ConfigMaps belong to that cluster: they are read,
//! never written.

pub mod patch;
pub mod resources;
pub mod select;
pub mod store;
pub mod table;

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use self::resources::{BUILTIN_NAMESPACES, NAMESPACES, ResourceType, SECRETS, SNAPSHOT_FILES};
use self::select::Selector;
use self::store::{ObjectStore, Write};

/// An API error, shaped as Kubernetes reports it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, rt: &ResourceType, name: &str) -> ApiError {
        let mut d = json!({"name": name, "kind": rt.plural});
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        self.details = Some(d);
        self
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> ApiError {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource_ref(rt)),
        )
        .with_details(rt, name)
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> ApiError {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource_ref(rt)),
        )
        .with_details(rt, name)
    }

    pub fn conflict(rt: &ResourceType, name: &str) -> ApiError {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                resource_ref(rt)
            ),
        )
        .with_details(rt, name)
    }

    pub fn invalid(rt: &ResourceType, name: &str, why: String) -> ApiError {
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {why}", rt.kind),
        )
        .with_details(rt, name)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(400, "BadRequest", message)
    }

    /// 413, as the API server answers a body over its limit.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        Self::new(413, "RequestEntityTooLarge", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        Self::new(500, "InternalError", message)
    }

    fn method_not_allowed(message: impl Into<String>) -> ApiError {
        Self::new(405, "MethodNotAllowed", message)
    }

    fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(403, "Forbidden", message)
    }

    fn status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }

    fn into_response(self) -> Response {
        json_response(
            StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &self.status(),
        )
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> ApiError {
        let code = match e.http_status() {
            400 => 400,
            504 => 504,
            503 => 503,
            _ => 500,
        };
        let reason = match code {
            400 => "BadRequest",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        ApiError::new(code, reason, e.to_string())
    }
}

fn resource_ref(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.to_string()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response()
}

/// Called when a record is deleted through the API (the file stays; K3s emits an event).
pub type DeletedHook = Arc<dyn Fn(Value) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// The API's state.
pub struct KubeApi {
    pub store: ObjectStore,
    /// The bearer token of the kubeconfig.
    token: String,
    /// The etcd holds a real Kubernetes cluster: its Secrets and ConfigMaps are read-only.
    pub kubernetes_datastore: std::sync::atomic::AtomicBool,
    pub on_snapshot_deleted: Option<DeletedHook>,
}

/// The largest request body, as the Kubernetes API server's (3 MiB): larger is a 413.
const MAX_BODY: usize = 3 << 20;

/// Longest a watch stays open.
const WATCH_MAX: Duration = Duration::from_secs(30 * 60);

impl KubeApi {
    pub fn new(store: ObjectStore, token: String) -> KubeApi {
        KubeApi {
            store,
            token,
            kubernetes_datastore: std::sync::atomic::AtomicBool::new(false),
            on_snapshot_deleted: None,
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| {
                crate::token::constant_time_eq(t.trim().as_bytes(), self.token.as_bytes())
            })
    }

    /// Answers one request whose path is not the supervisor's own.
    pub async fn handle(self: Arc<Self>, req: axum::http::Request<Body>) -> Response {
        if !self.authorized(req.headers()) {
            return ApiError::new(401, "Unauthorized", "Unauthorized").into_response();
        }
        let method = req.method().clone();
        if let Some(refused) = write_refusal(&method, req.headers()) {
            return refused.into_response();
        }
        let path = req.uri().path().to_string();
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .map(|q| {
                url_pairs(q)
                    .into_iter()
                    .collect::<HashMap<String, String>>()
            })
            .unwrap_or_default();
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        let body = match tokio::time::timeout(Duration::from_secs(30), read_body(req.into_body()))
            .await
        {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return e.into_response(),
            Err(_) => {
                return ApiError::bad_request("cannot read the request body: not sent within 30 s")
                    .into_response();
            }
        };
        let ctx = Ctx {
            method,
            query,
            accept,
            content_type,
            body,
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match self.route(&ctx, &parts).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    async fn route(&self, ctx: &Ctx, parts: &[&str]) -> ApiResult<Response> {
        let get_only = |v: Value| -> ApiResult<Response> {
            if ctx.method != Method::GET {
                return Err(ApiError::method_not_allowed("only GET is allowed here"));
            }
            Ok(json_response(StatusCode::OK, &v))
        };
        match parts {
            ["version"] => get_only(resources::version()),
            ["api"] => get_only(resources::core_versions("127.0.0.1")),
            ["apis"] => get_only(resources::groups()),
            ["api", "v1"] => get_only(resources::resource_list("", "v1").unwrap_or_default()),
            ["apis", g, v] => match resources::resource_list(g, v) {
                Some(list) => get_only(list),
                None => Err(ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )),
            },
            ["openapi", "v2"] if ctx.method == Method::GET => Ok(openapi_v2(&ctx.accept)),
            ["openapi", "v3"] => get_only(openapi_v3_root()),
            ["openapi", "v3", "api", "v1"] => get_only(openapi_v3_doc("", "v1")),
            ["openapi", "v3", "apis", g, v] => get_only(openapi_v3_doc(g, v)),
            ["api", "v1", "namespaces"] => get_only(self.namespaces(None).await?),
            ["api", "v1", "namespaces", name] => get_only(self.namespaces(Some(name)).await?),
            ["api", "v1", plural] => self.collection(ctx, &rt("", "v1", plural)?, None).await,
            ["api", "v1", "namespaces", ns, plural] => {
                self.collection(ctx, &rt("", "v1", plural)?, Some(ns)).await
            }
            ["api", "v1", "namespaces", ns, plural, name] => {
                self.item(ctx, &rt("", "v1", plural)?, Some(ns), name).await
            }
            ["apis", g, v, plural] => self.collection(ctx, &rt(g, v, plural)?, None).await,
            ["apis", g, v, plural, name] => self.item(ctx, &rt(g, v, plural)?, None, name).await,
            _ => Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        }
    }

    /// The namespace `name`, or the list of all: the stored ones, else the built-in two.
    async fn namespaces(&self, name: Option<&str>) -> ApiResult<Value> {
        let mut items = self.store.list_all(&NAMESPACES, None).await?;
        if items.is_empty() {
            items = BUILTIN_NAMESPACES
                .iter()
                .map(|n| {
                    json!({
                        "apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": n},
                        "spec": {"finalizers": ["kubernetes"]},
                        "status": {"phase": "Active"},
                    })
                })
                .collect();
        }
        let Some(name) = name else {
            return Ok(json!({
                "apiVersion": "v1", "kind": "NamespaceList", "metadata": {}, "items": items,
            }));
        };
        items
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
            .ok_or_else(|| ApiError::not_found(&NAMESPACES, name))
    }

    fn check_write(&self, rt: &ResourceType) -> ApiResult<()> {
        if !rt.writable {
            return Err(ApiError::method_not_allowed(format!(
                "{} are written by the etcdsnap server only; they can be read and deleted",
                rt.plural
            )));
        }
        if self
            .kubernetes_datastore
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(ApiError::forbidden(format!(
                "this etcd holds a Kubernetes cluster: its {} belong to that cluster's API server; change them with that cluster's kubectl",
                rt.plural
            )));
        }
        Ok(())
    }

    async fn collection(
        &self,
        ctx: &Ctx,
        rt: &ResourceType,
        ns: Option<&str>,
    ) -> ApiResult<Response> {
        if ns.is_some() && !rt.namespaced {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("{} are not namespaced", rt.plural),
            ));
        }
        match ctx.method {
            Method::GET => {
                if ctx.flag("watch") {
                    return self.watch(ctx, rt, ns).await;
                }
                self.list(ctx, rt, ns).await
            }
            Method::POST => {
                self.check_write(rt)?;
                let write = ctx.write()?;
                let Some(ns) = ns.or((!rt.namespaced).then_some("")) else {
                    return Err(ApiError::bad_request(
                        "a namespace is needed to create this",
                    ));
                };
                let obj = prepare(rt, ctx.json_body()?)?;
                let ns = (!ns.is_empty()).then_some(ns);
                if let Some(n) = ns
                    && let Some(bn) = obj["metadata"]["namespace"].as_str()
                    && bn != n
                {
                    return Err(ApiError::bad_request(format!(
                        "the namespace of the object ({bn}) does not match the namespace on the request ({n})"
                    )));
                }
                let made = self.store.create_as(rt, ns, obj, None, write).await?;
                Ok(json_response(StatusCode::CREATED, &made))
            }
            _ => Err(ApiError::method_not_allowed(format!(
                "{} on a collection is not supported",
                ctx.method
            ))),
        }
    }

    async fn list(&self, ctx: &Ctx, rt: &ResourceType, ns: Option<&str>) -> ApiResult<Response> {
        let ListOptions {
            labels,
            fields,
            limit,
            mut after,
            ..
        } = ListOptions::of(ctx, rt, ns)?;
        if limit == 0 {
            return Ok(self.stream_all(
                *rt,
                ns.map(str::to_string),
                after,
                labels,
                fields,
                table::wants_table(&ctx.accept),
            ));
        }
        // Selectors filter after reading, so pages are read until `limit` objects match; the
        // continue token is the key of the last object returned.
        let mut items = Vec::new();
        let mut revision = 0;
        let mut next: Option<String> = None;
        'pages: loop {
            let page = self.store.list(rt, ns, after.as_deref(), 500).await?;
            if revision == 0 {
                revision = page.revision;
            }
            for obj in page.items {
                let key = ObjectStore::key(
                    rt,
                    obj["metadata"]["namespace"].as_str(),
                    obj["metadata"]["name"].as_str().unwrap_or(""),
                );
                if labels.matches_labels(&obj) && fields.matches_fields(&obj) {
                    items.push(obj);
                    if limit > 0 && items.len() as i64 >= limit {
                        next = Some(key);
                        break 'pages;
                    }
                }
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        // A continue token only when something follows.
        if let Some(k) = &next {
            let more = self.store.list(rt, ns, Some(k), 1).await?;
            if more.items.is_empty() {
                next = None;
            }
        }
        let token = next.as_deref().map(encode_continue);
        let rv = revision.to_string();
        if table::wants_table(&ctx.accept) {
            return Ok(json_response(
                StatusCode::OK,
                &table::table(rt, &items, &rv, token.as_deref()),
            ));
        }
        let mut meta = json!({"resourceVersion": rv});
        if let Some(t) = token {
            meta["continue"] = json!(t);
        }
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": rt.list_kind(),
                "apiVersion": rt.api_version(),
                "metadata": meta,
                "items": items,
            }),
        ))
    }

    /// A whole collection (no `limit`), sent as it is read, one etcd page of 500 at a time, so
    /// that memory follows the page and not the number of objects. The status is sent before
    /// the objects are read: a failure of etcd midway ends the body early (the client sees a
    /// broken response, never a short list that looks complete). A List or a Table.
    fn stream_all(
        &self,
        rt: ResourceType,
        ns: Option<String>,
        after: Option<String>,
        labels: Selector,
        fields: Selector,
        as_table: bool,
    ) -> Response {
        use futures::StreamExt;
        let head = if as_table {
            table::head(&rt)
        } else {
            format!(
                r#"{{"kind":{},"apiVersion":{},"items":["#,
                Value::String(rt.list_kind()),
                Value::String(rt.api_version())
            )
        };
        let (mut revision, mut first_item) = (0, true);
        let pages = self.store.pages(rt, ns, after, 500).map(move |page| {
            let page = page.map_err(|e| {
                tracing::warn!("listing {} failed midway: {}", rt.plural, e.message);
                std::io::Error::other(e.message)
            })?;
            if revision == 0 {
                revision = page.revision;
            }
            let mut out = Vec::with_capacity(page.items.len() * 640);
            for obj in &page.items {
                if !(labels.matches_labels(obj) && fields.matches_fields(obj)) {
                    continue;
                }
                if !first_item {
                    out.push(b',');
                }
                first_item = false;
                let v = if as_table {
                    table::row(&rt, obj)
                } else {
                    obj.clone()
                };
                let _ = serde_json::to_writer(&mut out, &v);
            }
            if page.next.is_none() {
                let _ = write!(out, r#"],"metadata":{{"resourceVersion":"{revision}"}}}}"#);
            }
            Ok::<_, std::io::Error>(bytes::Bytes::from(out))
        });
        let body = futures::stream::once(async move { Ok(bytes::Bytes::from(head)) }).chain(pages);
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(body),
        )
            .into_response()
    }

    async fn watch(&self, ctx: &Ctx, rt: &ResourceType, ns: Option<&str>) -> ApiResult<Response> {
        use futures::StreamExt;
        let ListOptions {
            labels,
            fields,
            resource_version,
            ..
        } = ListOptions::of(ctx, rt, ns)?;
        let as_table = table::wants_table(&ctx.accept);
        let timeout = match ctx.query.get("timeoutSeconds").filter(|t| !t.is_empty()) {
            Some(t) => Duration::from_secs(t.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "timeoutSeconds: Invalid value: {t:?}: must be a whole number of seconds"
                ))
            })?),
            None => WATCH_MAX,
        }
        .min(WATCH_MAX);
        let rt = *rt;
        let prefix = ObjectStore::prefix(&rt, ns);
        // Without a resourceVersion, the current objects come first as ADDED events.
        let start_rv = resource_version.filter(|r| *r > 0);
        let mut initial = Vec::new();
        let from = match start_rv {
            Some(rv) => rv + 1,
            None => {
                let page = self.store.list(&rt, ns, None, 0).await?;
                initial = page.items;
                page.revision + 1
            }
        };
        let events = self.store.etcd().watch(&prefix, from).await?;
        let render = move |kind: &str, obj: Value| -> Option<bytes::Bytes> {
            if !(labels.matches_labels(&obj) && fields.matches_fields(&obj)) {
                return None;
            }
            let object = if as_table {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                table::table(&rt, &[obj], &rv, None)
            } else {
                obj
            };
            let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).ok()?;
            line.push(b'\n');
            Some(bytes::Bytes::from(line))
        };
        let render = Arc::new(render);
        let r1 = render.clone();
        let first = futures::stream::iter(initial.into_iter().filter_map(move |o| r1("ADDED", o)))
            .map(Ok::<_, std::io::Error>);
        let rest = events
            .flat_map(move |batch| {
                let render = render.clone();
                let lines: Vec<bytes::Bytes> = match batch {
                    Ok(evs) => evs
                        .into_iter()
                        .filter_map(|ev| {
                            let (kind, kv) = match ev.kind {
                                crate::etcd::WatchKind::Put if ev.prev.is_none() => {
                                    ("ADDED", ev.kv)
                                }
                                crate::etcd::WatchKind::Put => ("MODIFIED", ev.kv),
                                crate::etcd::WatchKind::Delete => {
                                    let mut prev = ev.prev?;
                                    prev.mod_revision = ev.kv.mod_revision;
                                    ("DELETED", prev)
                                }
                            };
                            let mut obj: Value = serde_json::from_slice(&kv.value).ok()?;
                            obj["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
                            render(kind, obj)
                        })
                        .collect(),
                    Err(e) => vec![bytes::Bytes::from(format!(
                        "{}\n",
                        json!({"type": "ERROR", "object": ApiError::from(e).status()})
                    ))],
                };
                futures::stream::iter(lines)
            })
            .map(Ok::<_, std::io::Error>);
        let stream = first.chain(rest).take_until(tokio::time::sleep(timeout));
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response())
    }

    async fn item(
        &self,
        ctx: &Ctx,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<Response> {
        if rt.namespaced && ns.is_none() {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("{} are namespaced", rt.plural),
            ));
        }
        match ctx.method {
            Method::GET => {
                let obj = self
                    .store
                    .get(rt, ns, name)
                    .await?
                    .ok_or_else(|| ApiError::not_found(rt, name))?;
                if table::wants_table(&ctx.accept) {
                    let rv = obj["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    return Ok(json_response(
                        StatusCode::OK,
                        &table::table(rt, &[obj], &rv, None),
                    ));
                }
                Ok(json_response(StatusCode::OK, &obj))
            }
            Method::PUT => {
                self.check_write(rt)?;
                let write = ctx.write()?;
                let obj = prepare(rt, ctx.json_body()?)?;
                if obj["metadata"]["name"].as_str() != Some(name) {
                    return Err(ApiError::bad_request(
                        "the name of the object does not match the name on the URL",
                    ));
                }
                let updated = self.store.update_as(rt, ns, obj, write).await?;
                Ok(json_response(StatusCode::OK, &updated))
            }
            Method::PATCH => self.patch_item(ctx, rt, ns, name).await,
            Method::DELETE => self.delete_item(ctx, rt, ns, name).await,
            _ => Err(ApiError::method_not_allowed(format!(
                "{} is not supported",
                ctx.method
            ))),
        }
    }

    /// PATCH of one object: merge, strategic-merge (read as merge) or JSON patch; server-side
    /// apply is refused with 415.
    async fn patch_item(
        &self,
        ctx: &Ctx,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<Response> {
        self.check_write(rt)?;
        let write = ctx.write()?;
        let mut obj = self
            .store
            .get(rt, ns, name)
            .await?
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let patch = ctx.json_body()?;
        let ct = ctx.content_type.split(';').next().unwrap_or("").trim();
        match ct {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                patch::merge(&mut obj, &patch)
            }
            "application/json-patch+json" => {
                patch::json_patch(&mut obj, &patch).map_err(|e| ApiError::invalid(rt, name, e))?;
            }
            "application/apply-patch+yaml" => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "server-side apply is not supported: use kubectl apply without --server-side",
                ));
            }
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("unsupported patch type {other:?}"),
                ));
            }
        }
        obj["metadata"]["name"] = json!(name);
        let obj = prepare(rt, obj)?;
        let updated = self.store.update_as(rt, ns, obj, write).await?;
        Ok(json_response(StatusCode::OK, &updated))
    }

    /// DELETE of one object, with the dry run and resourceVersion precondition of its
    /// DeleteOptions body; a committed delete of an ETCDSnapshotFile runs the deletion hook.
    async fn delete_item(
        &self,
        ctx: &Ctx,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<Response> {
        if rt.writable {
            self.check_write(rt)?;
        }
        let options = ctx.json_body().ok();
        // kubectl puts the dry run of a delete in its DeleteOptions body.
        let write = match (ctx.write()?, &options) {
            (Write::Commit, Some(o)) => dry_run_option(&o["dryRun"])?,
            (w, _) => w,
        };
        let rv = options
            .as_ref()
            .and_then(|b| {
                b["preconditions"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string)
            })
            .and_then(|r| r.parse().ok());
        let gone = self.store.delete_as(rt, ns, name, rv, write).await?;
        if rt == &SNAPSHOT_FILES
            && write == Write::Commit
            && let Some(hook) = &self.on_snapshot_deleted
        {
            hook(gone.clone()).await;
        }
        Ok(json_response(StatusCode::OK, &gone))
    }
}

fn rt(group: &str, version: &str, plural: &str) -> ApiResult<ResourceType> {
    resources::find(group, version, plural)
        .copied()
        .ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!("the server doesn't have a resource type \"{plural}\""),
            )
        })
}

/// The body types a write may carry: JSON, the patch types, and the protobuf kubectl sends.
pub const WRITE_TYPES: &[&str] = &[
    "application/json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
];

/// Why a write (POST, PUT, PATCH, DELETE) must be refused before it is read: it comes from a
/// page of another site, or its body names a type not of [`WRITE_TYPES`]. A body without a
/// type is read as JSON, as the Kubernetes API server reads it (the Python client sends some
/// writes so); no browser holds this API's bearer token to send one with.
fn write_refusal(method: &Method, headers: &HeaderMap) -> Option<ApiError> {
    if !matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return None;
    }
    if let Some(why) = crate::api::cross_site(headers) {
        return Some(ApiError::new(403, "Forbidden", why));
    }
    if !headers.contains_key(header::CONTENT_TYPE) {
        return None;
    }
    crate::api::not_json(headers, WRITE_TYPES)
        .map(|why| ApiError::new(415, "UnsupportedMediaType", why))
}

/// The query parameters of a list or watch, checked as the API server checks them: each one
/// that does not parse is a 400 naming the parameter, never ignored.
struct ListOptions {
    labels: Selector,
    fields: Selector,
    /// At most this many objects (0: all).
    limit: i64,
    /// The key after which the list continues (`continue`).
    after: Option<String>,
    /// `resourceVersion`, when given (a watch starts after it).
    resource_version: Option<i64>,
}

impl ListOptions {
    fn of(ctx: &Ctx, rt: &ResourceType, ns: Option<&str>) -> ApiResult<ListOptions> {
        let param = |name: &str| {
            ctx.query
                .get(name)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let labels = Selector::labels(param("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let fields = Selector::fields(param("fieldSelector").unwrap_or(""), rt)
            .map_err(ApiError::bad_request)?;
        // Kubernetes reads a negative limit as no limit; no client sends one, so it is refused
        // here as the mistake it is rather than answered with the whole list.
        let limit = match param("limit") {
            None => 0,
            Some(l) => l.parse::<i64>().ok().filter(|l| *l >= 0).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit: Invalid value: {l:?}: must be a whole number of objects, 0 or more (0 or none: no limit)"
                ))
            })?,
        };
        let resource_version = match param("resourceVersion") {
            None => None,
            Some(r) => Some(r.parse::<i64>().ok().filter(|r| *r >= 0).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: {r:?}: must be a resourceVersion this server answered (a number), or empty"
                ))
            })?),
        };
        let after = match param("continue") {
            None => None,
            Some(token) => {
                if resource_version.is_some_and(|r| r > 0) {
                    return Err(ApiError::bad_request(
                        "specifying resource version is not allowed when using continue: send the continue token alone",
                    ));
                }
                Some(decode_continue(token, &ObjectStore::prefix(rt, ns))?)
            }
        };
        Ok(ListOptions {
            labels,
            fields,
            limit,
            after,
            resource_version,
        })
    }
}

/// How much more of a body over [`MAX_BODY`] is read (and dropped) before the 413 goes out: a
/// client still sending when the connection closes sees a broken pipe instead of the answer.
const DRAIN_BEYOND: usize = 16 << 20;

/// The request body, at most [`MAX_BODY`] bytes: larger is the API server's 413, answered
/// once the client has sent the rest (up to [`DRAIN_BEYOND`] more; the body deadline bounds
/// the time).
async fn read_body(body: Body) -> ApiResult<Vec<u8>> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    let mut dropped = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        if dropped > 0 || out.len() + chunk.len() > MAX_BODY {
            dropped += chunk.len();
            if dropped > DRAIN_BEYOND {
                break;
            }
            continue;
        }
        out.extend_from_slice(&chunk);
    }
    if dropped > 0 {
        return Err(ApiError::too_large(format!(
            "Request entity too large: limit is {MAX_BODY}"
        )));
    }
    Ok(out)
}

/// A request's parts the handlers need.
struct Ctx {
    method: Method,
    query: HashMap<String, String>,
    accept: String,
    content_type: String,
    body: Vec<u8>,
}

impl Ctx {
    fn flag(&self, name: &str) -> bool {
        self.query
            .get(name)
            .is_some_and(|v| v == "true" || v == "1")
    }

    /// `dryRun=All` (kubectl's `--dry-run=server`) makes a write a dry run.
    fn write(&self) -> ApiResult<Write> {
        dry_run_value(self.query.get("dryRun").map_or("", String::as_str))
    }

    fn json_body(&self) -> ApiResult<Value> {
        if self
            .content_type
            .starts_with("application/vnd.kubernetes.protobuf")
        {
            return store::from_protobuf(&self.body).map_err(|why| {
                ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the protobuf request body cannot be read: {why}; send JSON"),
                )
            });
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not a JSON object: {e}"))
        })
    }
}

/// One `dryRun` value: empty, or `All`; Kubernetes knows no other and refuses them.
fn dry_run_value(v: &str) -> ApiResult<Write> {
    match v {
        "" => Ok(Write::Commit),
        "All" => Ok(Write::DryRun),
        other => Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: {other:?}: supported values: \"All\" (kubectl --dry-run=server)"
        ))),
    }
}

/// The `dryRun` list of a DeleteOptions body (absent: a real delete).
fn dry_run_option(v: &Value) -> ApiResult<Write> {
    let mut write = Write::Commit;
    if let Some(list) = v.as_array() {
        for item in list {
            if dry_run_value(item.as_str().unwrap_or("?"))? == Write::DryRun {
                write = Write::DryRun;
            }
        }
    }
    Ok(write)
}

/// Checks and normalises an object sent by a client: a Secret's `stringData` becomes base64
/// `data` (as the API server does), and `data` must be base64.
fn prepare(rt: &ResourceType, mut obj: Value) -> ApiResult<Value> {
    if !obj.is_object() || !obj["metadata"].is_object() {
        return Err(ApiError::bad_request("the object needs metadata"));
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    if rt == &SECRETS {
        if obj["type"].as_str().is_none_or(str::is_empty) {
            obj["type"] = json!("Opaque");
        }
        if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData"))
            && let Some(map) = sd.as_object()
        {
            for (k, v) in map {
                let text = v.as_str().unwrap_or("");
                obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
            }
        }
        if let Some(data) = obj["data"].as_object() {
            for (k, v) in data {
                let ok = v
                    .as_str()
                    .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                if !ok {
                    return Err(ApiError::invalid(
                        rt,
                        &name,
                        format!("data[{k}]: Invalid value: the value must be base64"),
                    ));
                }
            }
        }
    }
    for field in ["data", "stringData", "binaryData"] {
        if let Some(map) = obj[field].as_object()
            && map.values().any(|v| !v.is_string())
        {
            return Err(ApiError::invalid(
                rt,
                &name,
                format!("{field}: Invalid value: every value must be a string"),
            ));
        }
    }
    Ok(obj)
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(v)) => {
                out.push(v);
                i += 2;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode_continue(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

/// The key a `continue` token of a list under `prefix` stands for. A token this server did not
/// give for that list is a 400 (Kubernetes answers 400 to a token it cannot read too). Tokens
/// hold no revision, so the 410 "continue parameter is too old" of Kubernetes never applies:
/// a list continues at the current state.
fn decode_continue(token: &str, prefix: &str) -> ApiResult<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|k| k.starts_with(prefix) && !k.contains("/../"))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid continue token: continue key is not valid: {token:?} is not a continue token of this list; send the metadata.continue of the previous page, or list again without continue"
            ))
        })
}

/// `GET /openapi/v2`: an OpenAPI v2 document with no definitions, for kubectl's client-side
/// validation, which asks for v2 when OpenAPI v3 does not say the server validates a kind
/// (a kind the file names that is not served here): with no definition for it, kubectl skips
/// the check, and the create then fails on the kind, not on a missing document. kubectl asks
/// for protobuf (gnostic's `openapi_v2.Document`: swagger = 1, info = 2 with title = 1 and
/// version = 2) and reads nothing else; JSON for everyone else.
fn openapi_v2(accept: &str) -> Response {
    const TITLE: &str = "etcdsnap";
    const VERSION: &str = env!("CARGO_PKG_VERSION");
    if accept.contains("protobuf") {
        let field = |tag: u8, bytes: &[u8]| -> Vec<u8> {
            let mut f = vec![tag, bytes.len() as u8];
            f.extend_from_slice(bytes);
            f
        };
        let info = [
            field(0x0a, TITLE.as_bytes()),
            field(0x12, VERSION.as_bytes()),
        ]
        .concat();
        let doc = [field(0x0a, b"2.0"), field(0x12, &info)].concat();
        return (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            )],
            doc,
        )
            .into_response();
    }
    json_response(
        StatusCode::OK,
        &json!({
            "swagger": "2.0",
            "info": {"title": TITLE, "version": VERSION},
            "paths": {},
            "definitions": {},
        }),
    )
}

/// `GET /openapi/v3`: where each group/version's document is.
fn openapi_v3_root() -> Value {
    json!({"paths": {
        "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1"},
        "apis/k3s.cattle.io/v1": {"serverRelativeURL": "/openapi/v3/apis/k3s.cattle.io/v1"},
    }})
}

/// The OpenAPI v3 document of one group/version: a loose schema per kind and the write
/// operations with their `fieldValidation` parameter, so kubectl's validation (strict by
/// default) finds that the server validates fields itself.
fn openapi_v3_doc(group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for rt in resources::ALL
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let schema_name = if group.is_empty() {
            format!("io.k8s.api.core.v1.{}", rt.kind)
        } else {
            format!("io.cattle.k3s.v1.{}", rt.kind)
        };
        let gvk = json!({"group": group, "version": version, "kind": rt.kind});
        schemas.insert(
            schema_name.clone(),
            json!({
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "x-kubernetes-group-version-kind": [gvk],
            }),
        );
        let body = json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema_name}")}}}});
        let params = json!([{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}]);
        let op = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", rt.kind),
                "parameters": params,
                "requestBody": body,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        let base = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let (coll, item) = if rt.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", rt.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", rt.plural),
            )
        } else {
            (
                format!("{base}/{}", rt.plural),
                format!("{base}/{}/{{name}}", rt.plural),
            )
        };
        // Records too: kubectl then leaves the checking to the server (which answers that
        // records are written by etcdsnap only) instead of asking for OpenAPI v2.
        paths.insert(coll, json!({"post": op("create")}));
        paths.insert(item, json!({"put": op("replace"), "patch": op("patch")}));
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "etcdsnap", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = url_pairs(
            "labelSelector=etcd.k3s.cattle.io%2Fsnapshot-storage-node%3Ds3&limit=500&x=a+b&bad=%zz&end=%4",
        );
        let m: HashMap<_, _> = q.into_iter().collect();
        assert_eq!(
            m["labelSelector"],
            "etcd.k3s.cattle.io/snapshot-storage-node=s3"
        );
        assert_eq!(m["limit"], "500");
        assert_eq!(m["x"], "a b");
        assert_eq!(m["bad"], "%zz");
        assert_eq!(m["end"], "%4");
        assert_eq!(
            decode_continue(&encode_continue("/registry/x/y"), "/registry/x/").unwrap(),
            "/registry/x/y"
        );
        assert!(decode_continue("bm90LWEta2V5", "/registry/").is_err());
        assert!(decode_continue(&encode_continue("/registry/x/y"), "/registry/z/").is_err());
        assert!(decode_continue("!!", "/registry/").is_err());
    }

    #[test]
    fn secrets_get_their_string_data_encoded() {
        let s = prepare(
            &SECRETS,
            json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
        )
        .unwrap();
        assert_eq!(s["data"]["k"], "dg==");
        assert!(s.get("stringData").is_none());
        let err = prepare(
            &SECRETS,
            json!({"metadata": {"name": "s"}, "data": {"k": "!!"}}),
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
    }
}
