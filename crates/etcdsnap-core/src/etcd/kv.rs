//! The key-value side of etcd that records and the Kubernetes API subset need: ranges with
//! revisions and paging, writes guarded by a precondition (create-if-absent,
//! update-if-unchanged: Kubernetes' optimistic concurrency), leases, and watches.

use std::pin::Pin;

/// One key as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    pub create_revision: i64,
}

/// A page of a range.
#[derive(Debug, Clone, Default)]
pub struct Range {
    pub kvs: Vec<Kv>,
    /// More keys follow the last one returned.
    pub more: bool,
    /// The store's revision when the range was read.
    pub revision: i64,
}

/// When a write or delete may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Only if the key does not exist (create).
    Absent,
    /// Only if the key exists at this mod revision (update, delete with a resourceVersion).
    ModRevision(i64),
    /// Only if the key exists.
    Exists,
    /// Whatever the key's state.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    Put,
    Delete,
}

/// One change seen by a watch. For a delete, `kv` has the key and `prev` the last value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: WatchKind,
    pub kv: Kv,
    pub prev: Option<Kv>,
}

/// Batches of watch events in revision order.
pub type WatchStream = Pin<Box<dyn futures::Stream<Item = crate::Result<Vec<WatchEvent>>> + Send>>;

/// The end of the range of keys starting with `prefix` (etcd's "prefix + 1").
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/registry/a/"), b"/registry/a0");
        assert_eq!(prefix_end("ab"), b"ac");
        assert_eq!(prefix_end(""), vec![0]);
    }
}
