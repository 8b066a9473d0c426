//! The supervisor API over HTTPS: `POST /db/snapshot` (K3s's request/response, basic auth
//! `server:<token secret>`), `GET /cacerts` (the CA the token's hash pins), `GET /healthz` and
//! `GET /metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;

use super::ServerState;
use crate::api::{SnapshotRequest, Status};
use crate::records::EtcdSnapshotFileList;
use crate::snapshot::plan::{Operation, Remote, RemotePlan, SavePlan, resolve};
use crate::store::ListDetail;
use crate::store::s3::S3Target;
use crate::token::constant_time_eq;
use crate::{Error, Result};

/// Readiness of the datastore, flipped by the server once etcd answers.
#[derive(Default)]
pub struct Ready(AtomicBool);

impl Ready {
    pub fn set(&self, v: bool) {
        self.0.store(v, Ordering::SeqCst)
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/db/snapshot", post(snapshot))
        .route("/cacerts", get(cacerts))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn json<T: serde::Serialize>(code: StatusCode, v: &T) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn status(code: StatusCode, reason: &str, msg: impl Into<String>) -> Response {
    json(code, &Status::failure(code.as_u16(), reason, msg))
}

fn authorized(state: &ServerState, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let Some(colon) = raw.iter().position(|b| *b == b':') else {
        return false;
    };
    let (user, pass) = (&raw[..colon], &raw[colon + 1..]);
    // Both comparisons always run, so timing says nothing about which one failed.
    let user_ok = constant_time_eq(user, b"server");
    let pass_ok = constant_time_eq(pass, state.token.password.as_bytes());
    user_ok & pass_ok
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
        (StatusCode::SERVICE_UNAVAILABLE, "etcd is not ready").into_response()
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
    let reason = match code.as_u16() {
        400 => "BadRequest",
        409 => "Conflict",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    status(code, reason, format!("etcd-snapshot error ID {id}: {e}"))
}

async fn snapshot(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&state, &headers) {
        let mut r = status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "unauthorized: the token does not match this server's token",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"etcdsnap\""),
        );
        return r;
    }
    let req: SnapshotRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("invalid snapshot request: {e}"),
            );
        }
    };
    if req.operation.is_some() && !state.ready.get() {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "etcd is not ready yet; retry in a few seconds",
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

/// Resolves the request once, connects the S3 store it names (K3s checks the client before
/// doing anything, so a bad S3 setting writes nothing), and runs it.
async fn run_request(state: &ServerState, req: &SnapshotRequest) -> Result<Response> {
    let op = resolve(req, &state.snapshots)?;
    let remote = match op.s3() {
        Some(cfg) => Some(Remote {
            store: state.engine.connect(&S3Target::new(cfg.clone())?).await?,
            retention: cfg.retention,
        }),
        None => None,
    };
    let engine = &state.engine;
    Ok(match op {
        Operation::Save {
            prefix,
            dir,
            compress,
            retention,
            ..
        } => {
            let plan = SavePlan {
                prefix,
                dir,
                compress,
                retention,
                remote: remote.map_or(RemotePlan::None, RemotePlan::Ready),
            };
            json(StatusCode::OK, &engine.save(&plan).await?)
        }
        Operation::List { dir, full, .. } => {
            let detail = if full {
                ListDetail::Full
            } else {
                ListDetail::Basic
            };
            let recs = engine
                .list(dir.as_deref(), remote.as_ref().map(|r| &r.store), detail)
                .await?;
            json(StatusCode::OK, &EtcdSnapshotFileList::from_records(&recs))
        }
        Operation::Delete { dir, names, .. } => {
            let r = engine
                .delete(dir.as_deref(), &names, remote.as_ref().map(|r| &r.store))
                .await?;
            json(StatusCode::OK, &r)
        }
        Operation::Prune {
            dir, prefix, keep, ..
        } => {
            let r = engine
                .prune(dir.as_deref(), &prefix, keep, remote.as_ref())
                .await?;
            json(StatusCode::OK, &r)
        }
    })
}
