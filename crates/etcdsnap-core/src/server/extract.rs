//! What a handler takes from a request before it runs, declared as its arguments:
//! * [`Authed<A>`]: the credential, for the access level `A` (see [`super::auth`]): 401 for
//!   none that matches (a wrong one after the failure's delay, see [`super::auth::AuthGuard`]), 403 for one
//!   without the right. A level that changes something ([`level::Admin`]) first refuses a
//!   cross-site request (403), before the credential is looked at.
//! * [`JsonBody<T>`]: the body, declared JSON (else 415), read within [`BODY_TIMEOUT`] and
//!   [`BODY_LIMIT`] (else 408, 400), parsed with errors that name the field (400).
//!
//! Axum runs extractors in argument order and the body last, so a handler taking both checks
//! the site, then the credential, then the body.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::Response;

use super::ServerState;
use super::auth::{Access, role};
use super::reply::status;
use super::serve::PeerAddr;
use crate::api::members::RemoveRequest;
use crate::api::{SnapshotRequest, cross_site, not_json};

/// An access level, as a type for [`Authed`].
pub trait AccessLevel: Send + Sync + 'static {
    const ACCESS: Access;
    /// Whether requests at this level change something and must not come from another site.
    const CHANGES: bool = false;
}

/// The levels of [`Access`] as types.
pub mod level {
    use super::{Access, AccessLevel};

    /// Snapshots and member removal (the server token); refuses cross-site requests.
    pub struct Admin;
    /// Bootstrap data and the member list (the join or server token).
    pub struct Cluster;
    /// The status page and the save progress (the viewer or server token).
    pub struct View;

    impl AccessLevel for Admin {
        const ACCESS: Access = Access::Admin;
        const CHANGES: bool = true;
    }
    impl AccessLevel for Cluster {
        const ACCESS: Access = Access::Cluster;
    }
    impl AccessLevel for View {
        const ACCESS: Access = Access::View;
    }
}

/// A request whose credential may reach level `A`; the handler runs only then.
pub struct Authed<A: AccessLevel>(PhantomData<A>);

impl<A: AccessLevel> FromRequestParts<Arc<ServerState>> for Authed<A> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ServerState>,
    ) -> Result<Self, Response> {
        let headers = &parts.headers;
        if A::CHANGES
            && let Some(why) = cross_site(headers)
        {
            return Err(status(StatusCode::FORBIDDEN, "Forbidden", why));
        }
        let access = A::ACCESS;
        match role(state, headers) {
            Some(r) if r.may(access) => Ok(Authed(PhantomData)),
            Some(r) => Err(status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "the {} token may not {}: that needs {}",
                    r.user(),
                    access.what(),
                    access.needs()
                ),
            )),
            None => {
                // No credential at all is no guess (a browser's first load of /ui): not counted.
                if headers.contains_key(header::AUTHORIZATION)
                    && let Some(PeerAddr(a)) = parts.extensions.get::<PeerAddr>()
                {
                    let wait = state.auth_guard.failed(a.ip());
                    tokio::time::sleep(wait).await;
                }
                let mut r = status(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "unauthorized: the credentials match none of this server's tokens (server, join, viewer)",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic realm=\"etcdsnap\""),
                );
                Err(r)
            }
        }
    }
}

/// A request body the API takes as JSON, and how its parse errors name it.
pub trait JsonRequest: serde::de::DeserializeOwned + Send {
    /// What the body is, in `invalid <WHAT>: <why>`.
    const WHAT: &'static str;
    /// Appended to a parse error: how a right body looks.
    const HINT: &'static str = "";
}

impl JsonRequest for SnapshotRequest {
    const WHAT: &'static str = "snapshot request";
}

impl JsonRequest for RemoveRequest {
    const WHAT: &'static str = "member removal request";
    const HINT: &'static str = "; send {\"name\": \"<member or node name>\"}";
}

/// A request's JSON body of type `T`.
pub struct JsonBody<T>(pub T);

/// Bound on reading a request body, and its size.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
const BODY_LIMIT: usize = 1 << 20;

impl<T: JsonRequest, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, _: &S) -> Result<Self, Response> {
        if let Some(why) = not_json(req.headers(), &["application/json"]) {
            return Err(status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                why,
            ));
        }
        let body = read_request_body(req.into_body()).await?;
        parse_json(&body).map(JsonBody).map_err(|e| {
            status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("invalid {}: {e}{}", T::WHAT, T::HINT),
            )
        })
    }
}

/// The body of an authenticated request, bounded in size and time.
async fn read_request_body(body: Body) -> std::result::Result<Vec<u8>, Response> {
    match tokio::time::timeout(BODY_TIMEOUT, read_body(body)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(why)) => Err(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("cannot read the request body: {why}"),
        )),
        Err(_) => Err(status(
            StatusCode::REQUEST_TIMEOUT,
            "Timeout",
            format!("the request body did not arrive within {BODY_TIMEOUT:?}"),
        )),
    }
}

/// A JSON body whose errors name the field they are about (`field s3.insecure: invalid type:
/// string "yes", expected a boolean`), which serde_json alone leaves to a line and column.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        // Rust's type names mean nothing to a caller writing JSON.
        let mut inner = e.into_inner().to_string();
        for ty in ["i64", "u64", "i32", "u32", "u16", "u8", "usize"] {
            inner = inner.replace(&format!("expected {ty}"), "expected a whole number");
        }
        if path == "." {
            inner
        } else {
            format!("field {path}: {inner}")
        }
    })?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// Reads a body of at most [`BODY_LIMIT`] bytes. A larger one is read on (up to 16 MiB, and
/// not kept) so that the client, still sending, gets the answer rather than a broken pipe.
async fn read_body(body: Body) -> std::result::Result<Vec<u8>, String> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        seen += chunk.len();
        if seen <= BODY_LIMIT {
            out.extend_from_slice(&chunk);
        } else if seen > 16 * BODY_LIMIT {
            break;
        }
    }
    if seen > BODY_LIMIT {
        return Err(format!(
            "it is larger than {BODY_LIMIT} bytes; a snapshot request is a small JSON object"
        ));
    }
    Ok(out)
}
