//! The library's error type. Each variant says what went wrong in words an operator can act on;
//! [`Error::retryable`] tells callers whether trying again may help. The HTTP status of each
//! belongs to the supervisor protocol: `http_status` is defined beside its wire format, in
//! `api/status.rs`.

use std::path::Path;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user: a flag, a name, a path. Fix the input; retrying will not help.
    #[error("{0}")]
    InvalidInput(String),
    /// Another snapshot save holds the snapshot lock.
    #[error("snapshot save already in progress")]
    SaveInProgress,
    /// The S3 configuration is unusable: no bucket, a bad CA bundle, a missing bucket
    /// (HTTP 400 in the API: the request must change).
    #[error("failed to initialize S3 client: {0}")]
    S3Init(String),
    /// The S3 endpoint could not be reached or refused us while the client started: DNS, TCP,
    /// TLS, credentials (HTTP 502 in the API: the endpoint or the credentials must change).
    #[error("failed to initialize S3 client: {0}")]
    S3Unavailable(String),
    /// An S3 operation failed after the client was built (HTTP 502).
    #[error("{0}")]
    S3(String),
    /// etcd could not be reached or answered with an error (HTTP 503).
    #[error("etcd: {0}")]
    Etcd(String),
    /// An S3 or etcd operation did not finish in time (HTTP 504).
    #[error("{0}")]
    Timeout(String),
    /// A snapshot failed an integrity check (checksum, size, format).
    #[error("{0}")]
    Integrity(String),
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A write found the disk full (ENOSPC, or EDQUOT for a quota); HTTP 507.
    #[error(
        "{context}: the disk is full ({source}): free space on it, or use a larger disk, and retry"
    )]
    DiskFull {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Anything else, with its explanation.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Whether the same call may succeed later without a change of input.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::SaveInProgress
                | Error::Etcd(_)
                | Error::S3(_)
                | Error::S3Unavailable(_)
                | Error::Timeout(_)
                | Error::Io { .. }
        )
    }

    /// An I/O error with the operation and path that failed.
    pub fn io(what: &str, path: &Path, source: std::io::Error) -> Self {
        let context = format!("{what} {}", path.display());
        let full = source.kind() == std::io::ErrorKind::StorageFull
            || source.kind() == std::io::ErrorKind::QuotaExceeded
            || matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
        if full {
            Error::DiskFull { context, source }
        } else {
            Error::Io { context, source }
        }
    }
}

/// Every message in an error's source chain, joined with `: `, skipping repeats.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let msg = e.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = e.source();
    }
    parts.join(": ")
}
