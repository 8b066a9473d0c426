//! The resources the supervisor serves through its Kubernetes API subset, where they live in
//! etcd (the API server's own keys), and the discovery documents kubectl reads to find them.

use serde_json::{Value, json};

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// etcd key prefix, without the trailing `/`.
    pub prefix: &'static str,
    pub short_names: &'static [&'static str],
    /// Whether the API lets clients create and change objects (records are written by the
    /// server only; clients may only delete them).
    pub writable: bool,
    /// Whether `metadata.generation` is kept (objects with a spec).
    pub has_generation: bool,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

pub const SNAPSHOT_FILES: ResourceType = ResourceType {
    group: "k3s.cattle.io",
    version: "v1",
    plural: "etcdsnapshotfiles",
    singular: "etcdsnapshotfile",
    kind: "ETCDSnapshotFile",
    namespaced: false,
    prefix: "/registry/k3s.cattle.io/etcdsnapshotfiles",
    short_names: &[],
    writable: false,
    has_generation: true,
};

pub const SECRETS: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    namespaced: true,
    prefix: "/registry/secrets",
    short_names: &[],
    writable: true,
    has_generation: false,
};

pub const CONFIGMAPS: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    namespaced: true,
    prefix: "/registry/configmaps",
    short_names: &["cm"],
    writable: true,
    has_generation: false,
};

pub const EVENTS: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "events",
    singular: "event",
    kind: "Event",
    namespaced: true,
    prefix: "/registry/events",
    short_names: &["ev"],
    writable: false,
    has_generation: false,
};

/// Namespaces, read only and served apart from [`ALL`]: kubectl reads one when an object in it
/// is not found. A plain etcd has none stored, so `default` and `kube-system` are presented.
pub const NAMESPACES: ResourceType = ResourceType {
    group: "",
    version: "v1",
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    namespaced: false,
    prefix: "/registry/namespaces",
    short_names: &["ns"],
    writable: false,
    has_generation: false,
};

/// The namespaces a plain etcd presents.
pub const BUILTIN_NAMESPACES: [&str; 2] = ["default", "kube-system"];

/// Every served resource.
pub const ALL: [&ResourceType; 4] = [&SNAPSHOT_FILES, &SECRETS, &CONFIGMAPS, &EVENTS];

/// The resource for `group`, `version` and `plural` of a request path.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    ALL.into_iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

fn verbs(rt: &ResourceType) -> Vec<&'static str> {
    if rt == &NAMESPACES {
        vec!["get", "list"]
    } else if rt.writable {
        vec![
            "create", "delete", "get", "list", "patch", "update", "watch",
        ]
    } else {
        vec!["delete", "get", "list", "watch"]
    }
}

/// `APIResourceList` of one group/version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = ALL
        .into_iter()
        .chain([&NAMESPACES])
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            let mut v = json!({
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": verbs(r),
            });
            if !r.short_names.is_empty() {
                v["shortNames"] = json!(r.short_names);
            }
            v
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

/// `GET /api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `GET /apis`.
pub fn groups() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [{
            "name": "k3s.cattle.io",
            "versions": [{"groupVersion": "k3s.cattle.io/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "k3s.cattle.io/v1", "version": "v1"},
        }],
    })
}

/// `GET /version`: a Kubernetes-shaped version, so clients that check it are satisfied.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": concat!("v1.32.0+etcdsnap-", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}
