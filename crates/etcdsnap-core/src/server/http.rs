//! The supervisor API over HTTPS: the router of every path of [`crate::api::paths`], and the
//! handlers of `POST /db/snapshot` (K3s's request/response, basic auth `server:<token
//! secret>`), `GET /cacerts` (the CA the token's hash pins), `GET /healthz` and `GET /metrics`;
//! the cluster endpoints (join, members) are in [`super::cluster_api`], the status page
//! (`GET /ui`, `GET /ui.json`) in [`super::ui`]. Handlers take their credential and body
//! through `extract` and answer through `reply`; none imports this router.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::extract::{Authed, JsonBody, level};
use super::reply::{json, status};
use super::serve::PeerAddr;
use super::{ServerState, cluster_api, ui};
use crate::api::SnapshotRequest;
use crate::api::paths::{
    BOOTSTRAP_PATH, CACERTS_PATH, HEALTHZ_PATH, INFO_PATH, METRICS_PATH, PROGRESS_PATH,
    REMOVE_PATH, SNAPSHOT_PATH, UI_DATA_PATH, UI_PATH,
};
use crate::records::EtcdSnapshotFileList;
use crate::snapshot::plan::{Operation, Remote, RemotePlan, SavePlan, resolve};
use crate::store::ListDetail;
use crate::store::remote::S3Target;
use crate::{Error, Result};

/// Readiness of the datastore, flipped by the server once etcd answers, with the reason it
/// does not when it does not.
#[derive(Default)]
pub struct Ready {
    ok: AtomicBool,
    cause: std::sync::Mutex<String>,
}

impl Ready {
    pub fn set(&self, v: bool) {
        self.ok.store(v, Ordering::SeqCst)
    }
    pub fn get(&self) -> bool {
        self.ok.load(Ordering::SeqCst)
    }
    /// Why etcd is not ready (the last error seen), for 503 answers.
    pub fn set_cause(&self, why: impl Into<String>) {
        *self.cause.lock().unwrap_or_else(|p| p.into_inner()) = why.into();
    }
    pub fn cause(&self) -> String {
        self.cause.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

pub fn router(state: Arc<ServerState>) -> Router {
    let kube = state.kube.clone();
    let hook = state.after_request.clone();
    let limiter = state.clone();
    Router::new()
        .route(SNAPSHOT_PATH, post(snapshot))
        .route(PROGRESS_PATH, get(progress))
        .route(CACERTS_PATH, get(cacerts))
        .route(HEALTHZ_PATH, get(healthz))
        .route(METRICS_PATH, get(metrics))
        // Every answer of the page, refusals included, carries its security headers.
        .route(UI_PATH, get(ui::page).route_layer(map_response(ui::harden)))
        .route(
            UI_DATA_PATH,
            get(ui::data).route_layer(map_response(ui::harden)),
        )
        .route(BOOTSTRAP_PATH, get(cluster_api::bootstrap))
        .route(INFO_PATH, get(cluster_api::info))
        .route(REMOVE_PATH, post(cluster_api::remove))
        .fallback(move |req: axum::http::Request<Body>| {
            let (kube, hook, limiter) = (kube.clone(), hook.clone(), limiter.clone());
            async move {
                let peer = req
                    .extensions()
                    .get::<PeerAddr>()
                    .map(|p| p.0.ip())
                    .filter(|_| req.headers().contains_key(header::AUTHORIZATION));
                let response = kube.handle(req).await;
                // A wrong bearer token is slowed like a wrong Basic login.
                if response.status() == StatusCode::UNAUTHORIZED
                    && let Some(ip) = peer
                {
                    tokio::time::sleep(limiter.auth_guard.failed(ip)).await;
                }
                if let Some(hook) = hook {
                    (hook.0)();
                }
                response
            }
        })
        .with_state(state)
}

async fn cacerts(State(state): State<Arc<ServerState>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.ca_pem.clone(),
    )
        .into_response()
}

async fn healthz(State(state): State<Arc<ServerState>>) -> Response {
    if state.ready.get() && state.etcd_healthy().await {
        (StatusCode::OK, "ok").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("etcd is not ready: {}", state.ready.cause()),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.engine.metrics.render(),
    )
        .into_response()
}

fn error_response(e: &Error) -> Response {
    let id = {
        let mut b = [0u8; 2];
        let _ = getrandom::fill(&mut b);
        10000 + (u16::from_le_bytes(b) as u32 % 90000)
    };
    tracing::error!("etcd-snapshot error ID {id}: {e}");
    let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = crate::api::status::reason(code.as_u16());
    status(code, reason, format!("etcd-snapshot error ID {id}: {e}"))
}

/// The running (or last) save's progress, for the client's bar. Authenticated (the server or
/// viewer token): file names and the bucket are not for everyone.
async fn progress(_: Authed<level::View>, State(state): State<Arc<ServerState>>) -> Response {
    json(StatusCode::OK, &state.engine.progress.snapshot())
}

/// `POST /db/snapshot`: a cross-site request, a wrong credential and a bad body are refused
/// by the extractors, in that order, before anything runs.
async fn snapshot(
    _: Authed<level::Admin>,
    State(state): State<Arc<ServerState>>,
    JsonBody(req): JsonBody<SnapshotRequest>,
) -> Response {
    if req.operation.is_none() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "invalid snapshot operation",
        );
    }
    if !state.ready.get() {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            not_ready_message(&state),
        );
    }
    let response = run_request(&state, &req)
        .await
        .unwrap_or_else(|e| error_response(&e));
    if let Some(hook) = &state.after_request {
        (hook.0)();
    }
    response
}

fn not_ready_message(state: &ServerState) -> String {
    let cause = state.ready.cause();
    if cause.is_empty() {
        "etcd is not ready yet; retry in a few seconds".into()
    } else {
        format!("etcd is not ready yet; retry in a few seconds (last error: {cause})")
    }
}

/// Resolves the request once, connects the S3 store it names (K3s checks the client before
/// doing anything, so a bad S3 setting writes nothing), and runs it. A save whose settings
/// come from the config Secret is the exception: the Secret can change under a running
/// server, so a store that cannot be connected makes a recorded S3 failure beside the local
/// snapshot, as scheduled saves do.
async fn run_request(state: &Arc<ServerState>, req: &SnapshotRequest) -> Result<Response> {
    let op = resolve(req, &state.snapshots)?;
    let secret_save =
        matches!(op, Operation::Save { .. }) && op.s3().is_some_and(|c| c.uses_config_secret());
    let (remote, save_remote) = match op.s3() {
        Some(cfg) if secret_save => {
            let target = S3Target::new(cfg.clone())?;
            let plan = super::scheduler::remote_plan(&state.engine, &target, false).await;
            let ready = match &plan {
                RemotePlan::Ready(r) => Some(r.clone()),
                _ => None,
            };
            (ready, plan)
        }
        Some(cfg) => {
            let r = Remote {
                store: state.engine.connect(&S3Target::new(cfg.clone())?).await?,
                retention: cfg.retention,
                spec: cfg.record_spec(),
            };
            (Some(r.clone()), RemotePlan::Ready(r))
        }
        None => (None, RemotePlan::None),
    };
    let engine = &state.engine;
    let store = remote.as_ref().map(|r| &r.store);
    let reconcile = |dir: Option<std::path::PathBuf>, deleted: Vec<String>| {
        reconcile_after(state.clone(), dir, store.cloned(), deleted)
    };
    Ok(match op {
        Operation::Save {
            prefix,
            dir,
            compress,
            compression,
            retention,
            ..
        } => {
            let plan = SavePlan {
                prefix,
                dir: dir.clone(),
                compress,
                compression,
                retention,
                remote: save_remote,
            };
            let r = engine.save(&plan).await;
            reconcile(
                dir,
                r.as_ref().map(|r| r.deleted.clone()).unwrap_or_default(),
            )
            .await;
            json(StatusCode::OK, &r?)
        }
        Operation::List { dir, full, .. } => {
            let detail = if full {
                ListDetail::Full
            } else {
                ListDetail::Basic
            };
            let recs = engine.list(dir.as_deref(), store, detail).await?;
            // The answer comes from the listing; the records follow it in the background.
            let answer = json(StatusCode::OK, &stored_list(engine, &recs).await);
            reconcile_after_list(state.clone(), dir, store.cloned());
            answer
        }
        Operation::Delete { dir, names, .. } => {
            let r = engine.delete(dir.as_deref(), &names, store).await?;
            reconcile(dir, r.deleted.clone()).await;
            json(StatusCode::OK, &r)
        }
        Operation::Prune {
            dir, prefix, keep, ..
        } => {
            let r = engine
                .prune(dir.as_deref(), &prefix, keep, remote.as_ref())
                .await?;
            reconcile(dir, r.deleted.clone()).await;
            json(StatusCode::OK, &r)
        }
    })
}

/// How long an answer waits for the reconcile that follows its operation.
const RECONCILE_WAIT: Duration = Duration::from_secs(5);

/// Reconciles the records after an operation, as K3s does. The answer waits for it, but at
/// most [`RECONCILE_WAIT`]: when etcd is stalled (the likely cause of a failed save) the
/// reconcile goes on in the background, bounded by its own etcd timeouts.
async fn reconcile_after(
    state: Arc<ServerState>,
    dir: Option<std::path::PathBuf>,
    store: Option<Arc<dyn crate::store::SnapshotStore>>,
    deleted: Vec<String>,
) {
    let task = tokio::spawn(async move {
        if let Err(e) = state
            .engine
            .reconcile(dir.as_deref(), store.as_ref(), &deleted)
            .await
        {
            tracing::warn!("{e}");
        }
    });
    if tokio::time::timeout(RECONCILE_WAIT, task).await.is_err() {
        tracing::warn!(
            "the reconcile of the snapshot records after this request takes longer than {}s (is etcd slow?); the answer does not wait for it",
            RECONCILE_WAIT.as_secs()
        );
    }
}

/// Reconciles in the background after a listing, so that `ls` answers as fast as the listing
/// (K3s's `ls` never waited for records). Bounded: per server, one reconcile runs and at most
/// one waits; a listing that finds one waiting leaves it to that one, which starts after it.
fn reconcile_after_list(
    state: Arc<ServerState>,
    dir: Option<std::path::PathBuf>,
    store: Option<Arc<dyn crate::store::SnapshotStore>>,
) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    type Turn = Arc<tokio::sync::Mutex<()>>;
    /// Per server state (its address, held by every task of the entry): the reconciles
    /// started or waiting, and the turn they take one after the other.
    static PENDING: Mutex<Option<HashMap<usize, (usize, Turn)>>> = Mutex::new(None);
    let key = Arc::as_ptr(&state) as usize;
    let turn = {
        let mut map = PENDING.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.get_or_insert_with(HashMap::new).entry(key).or_default();
        if entry.0 >= 2 {
            return;
        }
        entry.0 += 1;
        entry.1.clone()
    };
    /// Counts the reconcile out when it ends, however it ends.
    struct Done(usize);
    impl Drop for Done {
        fn drop(&mut self) {
            let mut map = PENDING.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(map) = map.as_mut()
                && let Some(entry) = map.get_mut(&self.0)
            {
                entry.0 -= 1;
                if entry.0 == 0 {
                    map.remove(&self.0);
                }
            }
        }
    }
    let done = Done(key);
    tokio::spawn(async move {
        let _done = done;
        let _turn = turn.lock().await;
        if let Err(e) = state
            .engine
            .reconcile(dir.as_deref(), store.as_ref(), &[])
            .await
        {
            tracing::warn!("{e}");
        }
    });
}

/// The list `ls -o json|yaml` prints: the stored ETCDSnapshotFile of each file (with uid and
/// resourceVersion), or one built from the file when it has no record yet. Items keep K3s's
/// legacy-key names (`local-<name>`), not the record names. Stored records are read by pages
/// (one etcd range per 500), not one request per file.
async fn stored_list(
    engine: &crate::snapshot::Engine,
    recs: &[crate::store::SnapshotRecord],
) -> EtcdSnapshotFileList {
    let mut list = EtcdSnapshotFileList::from_records(recs);
    let Some(records) = engine.records() else {
        return list;
    };
    let mut wanted: std::collections::HashMap<String, usize> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| (crate::records::object_name(r), i))
        .collect();
    let files = &crate::kube::api::resources::SNAPSHOT_FILES;
    let mut after: Option<String> = None;
    while !wanted.is_empty() {
        let Ok(page) = records
            .store()
            .list(files, None, after.as_deref(), 500)
            .await
        else {
            break;
        };
        for obj in page.items {
            let Some(i) = obj["metadata"]["name"]
                .as_str()
                .and_then(|n| wanted.remove(n))
            else {
                continue;
            };
            if let Ok(mut stored) = serde_json::from_value::<crate::records::EtcdSnapshotFile>(obj)
            {
                let item = &mut list.items[i];
                stored.metadata.name = std::mem::take(&mut item.metadata.name);
                *item = stored;
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    list
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use base64::Engine as _;
    use tower::ServiceExt;

    use super::*;
    use crate::schedule::Schedule;
    use crate::server::SnapshotSettings;
    use crate::server::auth::{CredentialFile, Role};
    use crate::snapshot::{Engine, EngineConfig};
    use crate::testing::{FakeEtcd, MemRemotes};
    use crate::token::Token;

    pub(crate) const SECRET: &str = "s3cr3t-token-value";

    /// A server state over a fake etcd and in-memory remote stores (also used by `ui`'s tests).
    pub(crate) struct Api {
        pub(crate) _dir: tempfile::TempDir,
        pub(crate) etcd: Arc<FakeEtcd>,
        pub(crate) remotes: Arc<MemRemotes>,
        pub(crate) state: Arc<ServerState>,
    }

    pub(crate) fn api() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Arc::new(FakeEtcd::new(4));
        let remotes = Arc::new(MemRemotes::default());
        let engine = Engine::new(
            etcd.clone(),
            remotes.clone(),
            EngineConfig {
                node_name: "n1".into(),
                data_dir: dir.path().to_path_buf(),
                token_hash: "0123456789ab".into(),
                idle_timeout: Duration::from_secs(5),
                owns_etcd: false,
            },
        );
        let state = Arc::new(ServerState::new(
            engine,
            Token::parse(SECRET).unwrap(),
            "-----BEGIN CERTIFICATE-----\n".into(),
            SnapshotSettings {
                disabled: false,
                name: "etcd-snapshot".into(),
                schedule: Schedule::parse("@every 1h").unwrap(),
                retention: 5,
                dir: None,
                compress: false,
                compression: Default::default(),
                s3: None,
                reconcile_interval: Duration::from_secs(600),
                idle_timeout: Duration::from_secs(5),
                request_dirs: crate::snapshot::confine::RequestDirs::new(dir.path(), None, &[])
                    .unwrap(),
            },
            crate::server::auth::Credentials {
                join: Some(credential(Role::Join, dir.path())),
                viewer: Some(credential(Role::Viewer, dir.path())),
            },
            Arc::new(crate::kube::api::KubeApi::new(
                crate::kube::api::store::ObjectStore::new(etcd.clone()),
                "kube-token".into(),
            )),
        ));
        state.ready.set(true);
        Api {
            _dir: dir,
            etcd,
            remotes,
            state,
        }
    }

    fn credential(role: Role, dir: &std::path::Path) -> CredentialFile {
        let file = dir.join(format!("server/{}-token", role.user()));
        CredentialFile::open(role, None, "--x-token-file", &file, b"CA").unwrap()
    }

    /// The Basic header of the state's `role` credential.
    pub(crate) fn login(state: &ServerState, role: Role) -> String {
        let c = &state.credentials;
        let secret = match role {
            Role::Server => state.token.password.clone(),
            Role::Join => c.join.as_ref().unwrap().secret().unwrap(),
            Role::Viewer => c.viewer.as_ref().unwrap().secret().unwrap(),
        };
        basic(role.user(), &secret)
    }

    pub(crate) fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    impl Api {
        async fn call(&self, auth: Option<&str>, body: &str) -> (u16, serde_json::Value) {
            self.send(
                Request::post(SNAPSHOT_PATH).header(header::CONTENT_TYPE, "application/json"),
                auth,
                Body::from(body.to_string()),
            )
            .await
        }

        /// `req` through the router, with `auth` when given; the status and the JSON answer.
        async fn send(
            &self,
            mut req: axum::http::request::Builder,
            auth: Option<&str>,
            body: Body,
        ) -> (u16, serde_json::Value) {
            if let Some(a) = auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            let resp = router(self.state.clone())
                .oneshot(req.body(body).unwrap())
                .await
                .unwrap();
            let code = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (code, serde_json::from_slice(&bytes).unwrap_or_default())
        }

        pub(crate) async fn post(&self, body: &str) -> (u16, serde_json::Value) {
            self.call(Some(&basic("server", SECRET)), body).await
        }
    }

    #[tokio::test]
    async fn progress_needs_the_token_and_follows_the_last_save() {
        let a = api();
        let get = |auth: Option<String>| {
            let a = &a;
            async move {
                a.send(Request::get(PROGRESS_PATH), auth.as_deref(), Body::empty())
                    .await
            }
        };
        let (code, body) = get(None).await;
        assert_eq!(code, 401);
        assert!(body.get("seq").is_none(), "{body}");
        let (code, body) = get(Some(basic("server", SECRET))).await;
        assert_eq!(code, 200);
        assert_eq!(
            (body["seq"].as_u64(), body["active"].as_bool()),
            (Some(0), Some(false))
        );
        let (code, saved) = a.post(r#"{"operation":"save"}"#).await;
        assert_eq!(code, 200, "{saved}");
        let (_, body) = get(Some(basic("server", SECRET))).await;
        let name = saved["created"][0].as_str().unwrap();
        assert_eq!(body["seq"], 1);
        assert_eq!(body["name"], name);
        assert_eq!(
            (body["active"].as_bool(), body["ok"].as_bool()),
            (Some(false), Some(true))
        );
        let file = a._dir.path().join("server/db/snapshots").join(name);
        let size = std::fs::metadata(&file).unwrap().len();
        assert_eq!(body["fileBytes"], size);
        // An uncompressed save's file is the database etcd sent, byte for byte.
        assert_eq!(body["savedBytes"], size);
        assert!(body["expectedBytes"].as_u64().unwrap() > 0, "{body}");
    }

    #[tokio::test]
    async fn authentication_is_required_and_exact() {
        let a = api();
        for auth in [
            None,
            Some(basic("server", "wrong").as_str()),
            Some(basic("admin", SECRET).as_str()),
            Some("Bearer x"),
            Some("Basic !!!notbase64"),
        ] {
            let (code, body) = a.call(auth, r#"{"operation":"save"}"#).await;
            assert_eq!(code, 401, "{auth:?}");
            assert_eq!(body["kind"], "Status");
        }
        assert_eq!(a.etcd.snapshots_taken(), 0);
    }

    #[tokio::test]
    async fn status_codes_and_error_bodies() {
        let a = api();
        let (code, body) = a.post("not json").await;
        assert_eq!(code, 400);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("invalid snapshot request")
        );
        let (code, body) = a.post(r#"{"operation":"nap"}"#).await;
        assert_eq!(code, 400, "{body}");
        let (code, body) = a.post("{}").await;
        assert_eq!(
            (code, body["message"].as_str()),
            (400, Some("invalid snapshot operation"))
        );
        let (code, body) = a.post(r#"{"operation":"delete","name":["../x"]}"#).await;
        assert_eq!(code, 400);
        let msg = body["message"].as_str().unwrap();
        assert!(msg.contains("etcd-snapshot error ID"), "{msg}");
        assert!(msg.contains("path traversal not allowed"), "{msg}");
        assert_eq!(body["reason"], "BadRequest");

        let (code, body) = a.post(r#"{"operation":"save"}"#).await;
        assert_eq!(code, 200, "{body}");
        assert!(
            body["created"][0]
                .as_str()
                .unwrap()
                .starts_with("on-demand-n1-")
        );

        a.etcd.set_down(true);
        let (code, body) = a.post(r#"{"operation":"save"}"#).await;
        assert_eq!(code, 503, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("connection refused"),
            "{body}"
        );
        a.etcd.set_down(false);

        a.state.ready.set(false);
        let (code, _) = a.post(r#"{"operation":"list"}"#).await;
        assert_eq!(code, 503);
    }

    #[tokio::test]
    async fn s3_failures_map_to_their_status() {
        let a = api();
        let req = r#"{"operation":"save","s3":{"bucket":"bkt","timeout":"5m","retention":5,"accessKey":"AK","secretKey":"SK"}}"#;
        *a.remotes.fail_connect.lock().unwrap() =
            Some(|b| Error::remote_unavailable(format!("cannot connect to S3 endpoint for {b}")));
        let (code, body) = a.post(req).await;
        assert_eq!(code, 502, "{body}");
        *a.remotes.fail_connect.lock().unwrap() =
            Some(|b| Error::remote_init(format!("bucket {b} does not exist")));
        let (code, body) = a.post(req).await;
        assert_eq!(code, 400, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("bucket bkt does not exist")
        );
        *a.remotes.fail_connect.lock().unwrap() = Some(|_| Error::Timeout("too slow".into()));
        assert_eq!(a.post(req).await.0, 504);
        // Nothing was saved: the store is checked before anything is written.
        assert_eq!(a.etcd.snapshots_taken(), 0);
        *a.remotes.fail_connect.lock().unwrap() = None;
        let (code, body) = a.post(req).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["created"].as_array().unwrap().len(), 2);
        assert_eq!(a.remotes.bucket("bkt").names().len(), 1);
        let (code, body) = a
            .post(r#"{"operation":"list","s3":{"bucket":"bkt","timeout":"5m","accessKey":"AK","secretKey":"SK"}}"#)
            .await;
        assert_eq!(code, 200);
        assert_eq!(body["kind"], "List");
        assert_eq!(body["items"].as_array().unwrap().len(), 2);
        assert!(a.remotes.connects.load(Ordering::SeqCst) >= 5);
    }

    #[tokio::test]
    async fn concurrent_saves_get_one_409() {
        let a = Arc::new(api());
        a.etcd.set_delay(Duration::from_millis(30));
        let first = {
            let a = a.clone();
            tokio::spawn(async move { a.post(r#"{"operation":"save"}"#).await })
        };
        while a.etcd.snapshots_taken() == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (code, body) = a.post(r#"{"operation":"save"}"#).await;
        assert_eq!(code, 409);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("snapshot save already in progress")
        );
        assert_eq!(first.await.unwrap().0, 200);
        // Listing and pruning are not held up by the save lock.
        let (code, body) = a.post(r#"{"operation":"prune","retention":1}"#).await;
        assert_eq!(code, 200, "{body}");
    }

    #[tokio::test]
    async fn each_credential_reaches_only_its_endpoints() {
        let a = api();
        let post = |path: &'static str, body: &'static str| {
            move || {
                Request::post(path)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap()
            }
        };
        let get = |path: &'static str| move || Request::get(path).body(Body::empty()).unwrap();
        type Make = Box<dyn Fn() -> Request<Body>>;
        // (request, what it is, server, join, viewer): whether the role passes the gate.
        let cases: Vec<(Make, &str, bool, bool, bool)> = vec![
            (
                Box::new(post(SNAPSHOT_PATH, r#"{"operation":"save"}"#)),
                "save",
                true,
                false,
                false,
            ),
            (
                Box::new(post(SNAPSHOT_PATH, r#"{"operation":"list"}"#)),
                "list",
                true,
                false,
                false,
            ),
            (
                Box::new(post(
                    SNAPSHOT_PATH,
                    r#"{"operation":"delete","name":["x"]}"#,
                )),
                "delete",
                true,
                false,
                false,
            ),
            (
                Box::new(post(REMOVE_PATH, r#"{"name":"n2"}"#)),
                "member remove",
                true,
                false,
                false,
            ),
            (
                Box::new(get(BOOTSTRAP_PATH)),
                "bootstrap",
                true,
                true,
                false,
            ),
            (Box::new(get(INFO_PATH)), "member list", true, true, false),
            (Box::new(get(UI_PATH)), "page", true, false, true),
            (Box::new(get(UI_DATA_PATH)), "page data", true, false, true),
            (Box::new(get(PROGRESS_PATH)), "progress", true, false, true),
        ];
        for (make, what, server, join, viewer) in &cases {
            for (role, may) in [
                (Role::Server, server),
                (Role::Join, join),
                (Role::Viewer, viewer),
            ] {
                let mut req = make();
                req.headers_mut().insert(
                    header::AUTHORIZATION,
                    login(&a.state, role).parse().unwrap(),
                );
                let resp = router(a.state.clone()).oneshot(req).await.unwrap();
                let code = resp.status().as_u16();
                let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let body = String::from_utf8_lossy(&body);
                if *may {
                    assert!(code != 401 && code != 403, "{role:?} {what}: {code} {body}");
                } else {
                    assert_eq!(code, 403, "{role:?} {what}: {body}");
                    assert!(
                        body.contains(&format!("the {} token may not", role.user())),
                        "{body}"
                    );
                }
            }
        }
        // Only the server token's save went through; nothing else reached the engine.
        assert_eq!(a.etcd.snapshots_taken(), 1);
        // A viewer's or join token's secret under another user name is no login at all.
        let viewer = login(&a.state, Role::Viewer);
        let secret = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(viewer.strip_prefix("Basic ").unwrap())
                .unwrap(),
        )
        .unwrap();
        let as_server = basic("server", secret.split_once(':').unwrap().1);
        assert_eq!(
            a.call(Some(&as_server), r#"{"operation":"list"}"#).await.0,
            401
        );
    }

    #[tokio::test]
    async fn cross_site_and_non_json_posts_are_refused_before_anything_runs() {
        let a = api();
        let (code, body) = a.post(r#"{"operation":"save"}"#).await;
        assert_eq!(code, 200, "{body}");
        let name = body["created"][0].as_str().unwrap().to_string();
        let delete = format!(r#"{{"operation":"delete","name":["{name}"]}}"#);
        let auth = basic("server", SECRET);
        for (headers, code, says) in [
            (
                vec![("content-type", "text/plain")],
                415,
                "Content-Type \"text/plain\" is not accepted",
            ),
            (vec![], 415, "no Content-Type"),
            (
                vec![
                    ("content-type", "application/json"),
                    ("origin", "https://evil.example"),
                    ("host", "127.0.0.1:9345"),
                ],
                403,
                "cross-site request refused",
            ),
            (
                vec![
                    ("content-type", "text/plain"),
                    ("sec-fetch-site", "cross-site"),
                ],
                403,
                "cross-site request refused",
            ),
        ] {
            let mut req = Request::post(SNAPSHOT_PATH);
            for (k, v) in &headers {
                req = req.header(*k, *v);
            }
            let (got, body) = a.send(req, Some(&auth), Body::from(delete.clone())).await;
            assert_eq!(got, code, "{headers:?}: {body}");
            assert!(body["message"].as_str().unwrap().contains(says), "{body}");
        }
        let (_, list) = a.post(r#"{"operation":"list"}"#).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
        // The server's own origin is not cross-site.
        let req = Request::post(SNAPSHOT_PATH)
            .header("content-type", "application/json")
            .header("host", "127.0.0.1:9345")
            .header("origin", "https://127.0.0.1:9345");
        let (got, body) = a.send(req, Some(&auth), Body::from(delete)).await;
        assert_eq!(got, 200, "{body}");
    }
}
