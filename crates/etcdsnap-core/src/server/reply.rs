//! How handlers answer: a JSON body, or the Kubernetes `Status` of a failure. A leaf: handlers
//! use it without importing the router.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::Status;

/// `v` as JSON with status `code`.
pub fn json<T: serde::Serialize>(code: StatusCode, v: &T) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A failure: the `Status` body with `reason` and `msg`, and status `code`.
pub fn status(code: StatusCode, reason: &str, msg: impl Into<String>) -> Response {
    json(code, &Status::failure(code.as_u16(), reason, msg))
}
