//! The supervisor protocol, shared by the server and the CLI (and joining servers): every path
//! ([`paths`]), request and response body ([`snapshot`], [`members`]), the error body and the
//! HTTP status of each error ([`status`]), and the header checks a request passes before its
//! body is read ([`request`]). The server and the CLI import the protocol from here and nothing
//! of each other.

pub mod members;
pub mod paths;
pub mod request;
pub mod snapshot;
pub mod status;

pub use request::{cross_site, not_json};
pub use snapshot::{Operation, SnapshotRequest, SnapshotResult};
pub use status::Status;
