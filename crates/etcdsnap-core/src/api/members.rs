//! The bodies of the cluster endpoints: the member list a joining server and `etcdsnap member
//! ls` read, and a member removal. Field names are etcd's own.

use serde::{Deserialize, Serialize};

use crate::etcd::Member;

/// One etcd member as [`INFO_PATH`](super::paths::INFO_PATH) lists it (etcd's own JSON names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    #[serde(rename = "ID")]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

impl From<&Member> for MemberInfo {
    fn from(m: &Member) -> Self {
        MemberInfo {
            id: m.id,
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
            is_learner: m.is_learner,
        }
    }
}

/// The [`INFO_PATH`](super::paths::INFO_PATH) answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub members: Vec<MemberInfo>,
}

/// The body of `POST` [`REMOVE_PATH`](super::paths::REMOVE_PATH).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    pub name: String,
}

/// The answer to a removal.
#[derive(Debug, Serialize, Deserialize)]
pub struct Removed {
    pub removed: String,
    #[serde(rename = "ID")]
    pub id: u64,
}
