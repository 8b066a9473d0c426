//! The library's error type. Each variant says what went wrong in words an operator can act on;
//! [`Error::retryable`] tells callers whether trying again may help.

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
    /// The S3 client could not be built or the bucket could not be reached (HTTP 400 in the API).
    #[error("failed to initialize S3 client: {0}")]
    S3Init(String),
    /// An S3 operation failed after the client was built.
    #[error("{0}")]
    S3(String),
    /// etcd could not be reached or answered with an error.
    #[error("etcd: {0}")]
    Etcd(String),
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
    /// Anything else, with its explanation.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Whether the same call may succeed later without a change of input.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::SaveInProgress | Error::Etcd(_) | Error::S3(_) | Error::Io { .. }
        )
    }

    /// An I/O error with the operation and path that failed.
    pub fn io(what: &str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            context: format!("{what} {}", path.display()),
            source,
        }
    }
}
