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
    /// A remote object store (S3, GCS, Azure) failed us. `stage` says when, which decides the
    /// message prefix and the HTTP status; `cause` says why, as far as the answer told, so
    /// callers branch on it instead of on the message. A request that ran out of time is an
    /// [`Error::Timeout`] instead (HTTP 504).
    #[error("{}{message}", .stage.prefix())]
    Remote {
        stage: RemoteStage,
        cause: RemoteCause,
        message: String,
    },
    /// The S3 config Secret (`--etcd-s3-config-secret`) could not be read (HTTP 400); scheduled
    /// saves then go on without S3, as K3s's do.
    #[error("failed to initialize S3 client: failed to get etcd S3 config secret: {0}")]
    ConfigSecret(String),
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

/// When a remote-store operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteStage {
    /// The configuration cannot work: no bucket, a bad CA bundle, a missing bucket (HTTP 400:
    /// the request must change). Said as `failed to initialize S3 client: ...` (K3s's words;
    /// GCS and Azure say theirs as [`Error::InvalidInput`]).
    Init,
    /// The endpoint could not be reached or refused us while the client started: DNS, TCP,
    /// TLS, credentials (HTTP 502: the endpoint or the credentials must change). Said as
    /// `failed to initialize S3 client: ...`.
    Unavailable,
    /// An operation failed after the client was built (HTTP 502); the message says which.
    Operation,
}

impl RemoteStage {
    fn prefix(self) -> &'static str {
        match self {
            RemoteStage::Init | RemoteStage::Unavailable => "failed to initialize S3 client: ",
            RemoteStage::Operation => "",
        }
    }
}

/// Why a request to a remote store failed, from the store's answer or the transport's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteCause {
    /// The bucket (container) does not exist.
    NoSuchBucket,
    /// The object does not exist.
    NotFound,
    /// The store refused the credentials or their rights.
    AccessDenied,
    /// The TLS handshake failed: an unknown CA, or an endpoint that does not speak TLS.
    Tls,
    /// The endpoint (or the proxy) could not be reached.
    Network,
    /// No answer in time (the stores report it as [`Error::Timeout`]).
    Timeout,
    /// Anything else, including settings refused before any request.
    Other,
}

impl Error {
    /// Whether the same call may succeed later without a change of input.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::SaveInProgress
                | Error::Etcd(_)
                | Error::Remote {
                    stage: RemoteStage::Unavailable | RemoteStage::Operation,
                    ..
                }
                | Error::Timeout(_)
                | Error::Io { .. }
        )
    }

    /// A remote-store error whose cause is not known (fakes, the client builder).
    pub fn remote(stage: RemoteStage, message: impl Into<String>) -> Self {
        Error::Remote {
            stage,
            cause: RemoteCause::Other,
            message: message.into(),
        }
    }

    /// A remote-store configuration that cannot work, cause unknown (HTTP 400).
    pub fn remote_init(message: impl Into<String>) -> Self {
        Self::remote(RemoteStage::Init, message)
    }

    /// A remote store unreachable at start-up, cause unknown (HTTP 502).
    pub fn remote_unavailable(message: impl Into<String>) -> Self {
        Self::remote(RemoteStage::Unavailable, message)
    }

    /// Why a remote store failed, when this is a remote-store error.
    pub fn remote_cause(&self) -> Option<RemoteCause> {
        match self {
            Error::Remote { cause, .. } => Some(*cause),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The remote-store and config-Secret errors say what the string variants they replaced
    /// said, with the same statuses and retry advice.
    #[test]
    fn remote_errors_keep_their_words_and_statuses() {
        let cases = [
            (
                Error::remote_init("s3 bucket name was not set"),
                "failed to initialize S3 client: s3 bucket name was not set",
                400,
                false,
            ),
            (
                Error::Remote {
                    stage: RemoteStage::Unavailable,
                    cause: RemoteCause::AccessDenied,
                    message: "access denied to bucket b".into(),
                },
                "failed to initialize S3 client: access denied to bucket b",
                502,
                true,
            ),
            (
                Error::remote(RemoteStage::Operation, "upload of s3://b/k: 503"),
                "upload of s3://b/k: 503",
                502,
                true,
            ),
            (
                Error::ConfigSecret("secrets \"s\" not found in namespace kube-system".into()),
                "failed to initialize S3 client: failed to get etcd S3 config secret: secrets \"s\" not found in namespace kube-system",
                400,
                false,
            ),
        ];
        for (e, text, status, retry) in cases {
            assert_eq!(e.to_string(), text);
            assert_eq!(e.http_status(), status, "{e}");
            assert_eq!(e.retryable(), retry, "{e}");
        }
        assert_eq!(
            Error::remote_unavailable("x").remote_cause(),
            Some(RemoteCause::Other)
        );
        assert_eq!(Error::Other("x".into()).remote_cause(), None);
    }
}
