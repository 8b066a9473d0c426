//! The supervisor's cluster endpoints, token-protected like `/db/snapshot` and, like the whole
//! supervisor, served over TLS only:
//! * `GET /v1-etcdsnap/server-bootstrap`: the CA certificates and keys a joining server needs
//!   (K3s's bootstrap JSON); the only way they leave the server, and only to the holder of the
//!   join token or the server token;
//! * `GET /db/info`: the etcd member list (`{"members": [...]}`, etcd's field names); join or
//!   server token;
//! * `POST /db/member-remove` `{"name": N}` (server token only): removes the member named N (a member name, the
//!   hex id of a member not started yet, or a node name with exactly one member); this
//!   server's own member is refused.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::ServerState;
use super::extract::{Authed, JsonBody, level};
use super::join::is_member_of_node;
use super::reply::{json, status};
use super::serve::PeerAddr;
use crate::api::members::{ClusterInfo, MemberInfo, RemoveRequest, Removed};
use crate::bootstrap::Bootstrap;
use crate::etcd::{EtcdTarget, Member};

/// An error of a cluster request, logged and answered with its status.
fn error_response(e: &crate::Error) -> Response {
    tracing::error!("cluster request failed: {e}");
    let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    status(code, "ClusterError", e.to_string())
}

fn no_cluster() -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "this server attaches to an etcd cluster it does not run (--datastore-endpoint): it has no embedded etcd cluster to join or change",
    )
}

fn cluster_of(state: &ServerState) -> Option<&EtcdTarget> {
    state.cluster.as_ref()
}

/// The member list from this server's etcd; a learner cannot give it.
async fn members(state: &ServerState, cluster: &EtcdTarget) -> Result<Vec<Member>, Response> {
    if state.is_learner().await {
        return Err(status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "this server's etcd is still a learner and cannot answer for the cluster; ask another server, or retry once it is promoted",
        ));
    }
    cluster
        .voting_members()
        .await
        .map_err(|e| error_response(&e))
}

pub async fn bootstrap(
    _: Authed<level::Cluster>,
    State(state): State<Arc<ServerState>>,
    peer: Option<Extension<PeerAddr>>,
) -> Response {
    let who = peer
        .as_ref()
        .map(|Extension(PeerAddr(a))| a.to_string())
        .unwrap_or_default();
    let Some(dir) = &state.owned_server_dir else {
        return no_cluster();
    };
    match Bootstrap::read(&dir.join("tls")) {
        Ok(data) if data.is_complete() => {
            tracing::info!("sent the bootstrap data (cluster CAs) to a joining server at {who}");
            json(StatusCode::OK, &data)
        }
        Ok(_) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!(
                "the CA files in {} are incomplete; this server cannot let others join",
                dir.join("tls").display()
            ),
        ),
        Err(e) => error_response(&e),
    }
}

pub async fn info(_: Authed<level::Cluster>, State(state): State<Arc<ServerState>>) -> Response {
    let Some(cluster) = cluster_of(&state) else {
        return no_cluster();
    };
    match members(&state, cluster).await {
        Ok(list) => json(
            StatusCode::OK,
            &ClusterInfo {
                members: list.iter().map(MemberInfo::from).collect(),
            },
        ),
        Err(r) => r,
    }
}

pub async fn remove(
    _: Authed<level::Admin>,
    State(state): State<Arc<ServerState>>,
    JsonBody(req): JsonBody<RemoveRequest>,
) -> Response {
    if req.name.trim().is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the member name is empty: give a name that `etcdsnap member ls` prints",
        );
    }
    let Some(cluster) = cluster_of(&state) else {
        return no_cluster();
    };
    let list = match members(&state, cluster).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let names = || {
        list.iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    // A member name, else a hex member id (a member not started has no name), else a node.
    let id = u64::from_str_radix(&req.name, 16).ok();
    let exact: Vec<&Member> = list
        .iter()
        .filter(|m| m.name == req.name || (m.name.is_empty() && Some(m.id) == id))
        .collect();
    let found: Vec<&Member> = if exact.is_empty() {
        list.iter()
            .filter(|m| is_member_of_node(&m.name, &req.name))
            .collect()
    } else {
        exact
    };
    let m = match found.as_slice() {
        [m] => *m,
        [] => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!(
                    "no etcd member named {:?}: the members are {}",
                    req.name,
                    names()
                ),
            );
        }
        _ => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "node {:?} has several etcd members ({}): give the member name",
                    req.name,
                    found
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    };
    let own = state.engine.etcd().status().await.map(|s| s.member_id);
    if own.as_ref().is_ok_and(|id| *id == m.id) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "{} is the etcd member of this server: run `etcdsnap member remove {}` against another server of the cluster (--etcd-server)",
                m.name, m.name
            ),
        );
    }
    match cluster.remove_member(m.id).await {
        Ok(()) => {
            tracing::info!(
                "removed etcd member {} ({:x}) from the cluster",
                m.name,
                m.id
            );
            json(
                StatusCode::OK,
                &Removed {
                    removed: m.name.clone(),
                    id: m.id,
                },
            )
        }
        Err(e) => error_response(&e),
    }
}
