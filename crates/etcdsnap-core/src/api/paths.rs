//! Every path of the supervisor API. The server routes them, the CLI and joining servers call
//! them; neither spells one out itself.

/// Save, list, prune and delete snapshots (K3s's; the server token).
pub const SNAPSHOT_PATH: &str = "/db/snapshot";
/// The running (or last) save's progress, read by `etcd-snapshot save` for its bar.
pub const PROGRESS_PATH: &str = "/db/snapshot/progress";
/// The CA certificate that a full token's hash pins (K3s's; no credential).
pub const CACERTS_PATH: &str = "/cacerts";
/// Readiness of the datastore (no credential).
pub const HEALTHZ_PATH: &str = "/healthz";
/// OpenMetrics (no credential).
pub const METRICS_PATH: &str = "/metrics";
/// The status page.
pub const UI_PATH: &str = "/ui";
/// The data of the status page.
pub const UI_DATA_PATH: &str = "/ui.json";
/// The bootstrap data (cluster CAs and keys) for a joining server.
pub const BOOTSTRAP_PATH: &str = "/v1-etcdsnap/server-bootstrap";
/// The etcd member list.
pub const INFO_PATH: &str = "/db/info";
/// Removes an etcd member.
pub const REMOVE_PATH: &str = "/db/member-remove";
