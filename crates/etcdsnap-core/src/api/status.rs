//! How the supervisor API answers a failure: the Kubernetes `Status` body K3s returns, and the
//! HTTP status of each [`Error`] (the library's errors know nothing of HTTP; the mapping is
//! part of the wire protocol and lives here).

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::error::RemoteStage;

/// The Kubernetes `Status` object K3s returns for errors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub kind: String,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub status: String,
    pub message: String,
    pub reason: String,
    pub code: u16,
}

impl Status {
    pub fn failure(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Status {
            kind: "Status".into(),
            api_version: "v1".into(),
            status: "Failure".into(),
            message: message.into(),
            reason: reason.into(),
            code,
        }
    }
}

impl Error {
    /// The HTTP status the supervisor API answers this error with: 400 for requests that must
    /// change, 409 for a save already running, 502/503/504 for trouble upstream (S3, etcd),
    /// 507 for a full disk, 500 for the server's own failures (disk, bugs).
    pub fn http_status(&self) -> u16 {
        match self {
            Error::InvalidInput(_) | Error::ConfigSecret(_) => 400,
            Error::Remote { stage, .. } => match stage {
                RemoteStage::Init => 400,
                RemoteStage::Unavailable | RemoteStage::Operation => 502,
            },
            Error::SaveInProgress => 409,
            Error::Integrity(_) => 502,
            Error::Etcd(_) => 503,
            Error::Timeout(_) => 504,
            Error::DiskFull { .. } => 507,
            Error::Io { .. } | Error::Other(_) => 500,
        }
    }
}

/// The `reason` of a snapshot request's failure answered with `code`.
pub fn reason(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        409 => "Conflict",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}
