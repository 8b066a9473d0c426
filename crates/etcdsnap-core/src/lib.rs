//! etcdsnap's engine: etcd snapshots taken through the etcd v3 API, written atomically to local disk
//! and S3-compatible storage, pruned by retention, scheduled by cron, and served to the CLI by the
//! supervisor API. The `etcdsnap` binary parses flags and renders; everything else lives here.

pub mod api;
pub mod bbolt;
pub mod bootstrap;
pub mod check;
pub mod drill;
pub mod duration;
pub mod error;
pub mod etcd;
pub(crate) mod fsutil;
pub mod inspect;
pub mod kube;
pub mod naming;
pub mod progress;
pub mod records;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod server;
pub mod snapfile;
pub mod snapshot;
pub mod source;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod token;
pub mod units;

pub use error::{Error, Result};
