//! Command-line definitions: flags, their `ETCDSNAP_*` environment variables and defaults, in
//! K3s's spelling. Parsing only; the subcommand modules turn flags into validated settings and
//! call the library.

pub mod argv;
pub mod check;
pub mod client;
pub mod cloud;
pub mod completion;
pub mod config_file;
pub mod etcd_snapshot;
pub mod inspect;
pub mod man;
pub mod member;
pub mod progress;
pub mod render;
pub mod s3;
pub mod server;

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, CommandFactory, Parser, Subcommand};

pub use cloud::CloudFlags;
pub use s3::S3Flags;

/// Default config file, as K3s's `/etc/rancher/k3s/config.yaml`.
pub const DEFAULT_CONFIG: &str = "/etc/etcdsnap/config.yaml";
/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "ETCDSNAP_CONFIG_FILE";

#[derive(Debug, Parser)]
#[command(
    name = "etcdsnap",
    version,
    about = "K3s-compatible etcd snapshots for any etcd v3 cluster: scheduled and on-demand, local and S3, with retention",
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: supervise an embedded etcd (or attach to an external one) and take
    /// scheduled snapshots
    Server(Box<ServerArgs>),
    /// Diagnose a server's setup (etcd, certificates, snapshot dir, S3, schedule, last
    /// snapshot): one line per check; takes the server's flags and config file; exits 1 when
    /// a check fails
    Check(Box<CheckArgs>),
    /// Manage etcd snapshots
    #[command(
        name = "etcd-snapshot",
        subcommand_required = true,
        arg_required_else_help = true
    )]
    EtcdSnapshot(Box<EtcdSnapshotCmd>),
    /// List or remove the etcd members of the cluster of a running server
    #[command(subcommand_required = true, arg_required_else_help = true)]
    Member(MemberCmd),
    /// Run kubectl with the kubeconfig the server wrote (KUBECONFIG, else the default
    /// --write-kubeconfig path), as `k3s kubectl` does
    #[command(disable_help_flag = true)]
    Kubectl(KubectlArgs),
    /// Print a shell completion script, e.g. `etcdsnap completion bash >
    /// /etc/bash_completion.d/etcdsnap`
    Completion(CompletionArgs),
    /// Write the man pages (etcdsnap.1 and one per subcommand) into a directory, for packaging
    #[command(hide = true)]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages to (created if missing; existing pages are replaced)
    #[arg(long = "dir", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct KubectlArgs {
    /// Arguments passed to kubectl
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<std::ffi::OsString>,
}

/// Where `server` writes its kubeconfig unless told otherwise: `/etc/etcdsnap/etcdsnap.yaml`
/// for root, `~/.kube/etcdsnap.yaml` otherwise.
pub fn default_kubeconfig() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/etc/etcdsnap/etcdsnap.yaml")
    } else {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".kube")
            .join("etcdsnap.yaml")
    }
}

#[derive(Debug, Args)]
pub struct MemberCmd {
    #[command(subcommand)]
    pub action: MemberAction,
}

#[derive(Debug, Subcommand)]
pub enum MemberAction {
    /// List the etcd members (name, id, peer and client URLs, learner or voter)
    #[command(visible_aliases = ["list", "l"])]
    Ls(MemberLsArgs),
    /// Remove etcd members for good (a server stopped for good, or one to rejoin from
    /// nothing); give member names as `member ls` prints them, or node names
    Remove(MemberRemoveArgs),
}

/// The flags every command that reads a config file takes (K3s's `--config` and `--debug`).
#[derive(Debug, Args, Clone)]
pub struct CommonFlags {
    /// Config file
    #[arg(short = 'c', long = "config", env = CONFIG_ENV, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Turn on debug logs
    #[arg(long, env = "ETCDSNAP_DEBUG", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub debug: bool,
}

/// How the `etcd-snapshot` and `member` commands reach a server.
#[derive(Debug, Args, Clone)]
pub struct Connection {
    /// Folder to hold state (default: /var/lib/etcdsnap, or ~/.etcdsnap when not root)
    #[arg(short = 'd', long = "data-dir", env = "ETCDSNAP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Token of the server to talk to (default: <data-dir>/server/token)
    #[arg(short = 't', long = "etcd-token")]
    pub etcd_token: Option<String>,
    /// File holding the token of the server to talk to (keeps the token out of `ps`)
    #[arg(
        long = "etcd-token-file",
        visible_alias = "token-file",
        conflicts_with = "etcd_token"
    )]
    pub etcd_token_file: Option<PathBuf>,
    /// Supervisor URL of the server to talk to
    #[arg(
        short = 's',
        long = "etcd-server",
        default_value = "https://127.0.0.1:9345"
    )]
    pub etcd_server: String,
}

#[derive(Debug, Args)]
pub struct MemberLsArgs {
    #[command(flatten)]
    pub flags: Connection,
    /// Output format: table, json
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
}

#[derive(Debug, Args)]
pub struct MemberRemoveArgs {
    #[command(flatten)]
    pub flags: Connection,
    /// Members to remove
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EtcdSnapshotCmd {
    #[command(subcommand)]
    pub action: SnapshotAction,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Trigger an immediate etcd snapshot
    Save(SaveArgs),
    /// Delete given snapshot(s)
    Delete(DeleteArgs),
    /// List snapshots
    #[command(visible_aliases = ["list", "l"])]
    Ls(LsArgs),
    /// Remove snapshots that match the name prefix that exceed the configured retention count
    Prune(PruneArgs),
    /// Write a restored etcd data dir from a snapshot (local file, .zip, or S3 object), for an
    /// etcd cluster you run yourself; the embedded etcd is restored with `server --cluster-reset`
    Restore(Box<RestoreArgs>),
    /// Show a snapshot's hash, revision, total keys and size (as `etcdutl snapshot status`),
    /// its SHA-256 trailer, sizes, node and creation time; runs locally
    Status(Box<StatusArgs>),
    /// Check a snapshot: its SHA-256 trailer and the whole bbolt structure; runs locally
    Verify(Box<VerifyArgs>),
    /// List the keys of a snapshot at a revision, with Kubernetes objects decoded, or compare
    /// two snapshots (--diff); runs locally
    Inspect(Box<InspectArgs>),
    /// Restore drill: restore a snapshot into a throwaway etcd, read every key back and compare
    /// with the snapshot; nothing else is touched; runs locally
    Drill(Box<DrillArgs>),
}

/// How `status`, `verify` and `inspect` find a snapshot. They read files on this machine and
/// never talk to the server; the server's connection flags are accepted (and unused) so that
/// the flag set and config files of the other subcommands work here too.
#[derive(Debug, Args, Clone)]
pub struct ReadFlags {
    #[command(flatten)]
    pub common: CommonFlags,
    /// Folder to hold state, whose server/db/snapshots is searched for snapshot names
    /// (default: /var/lib/etcdsnap, or ~/.etcdsnap when not root)
    #[arg(short = 'd', long = "data-dir", env = "ETCDSNAP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory to look snapshot names up in (default: <data-dir>/server/db/snapshots)
    #[arg(long = "dir", alias = "etcd-snapshot-dir")]
    pub dir: Option<PathBuf>,
    /// Unused: these subcommands run locally
    #[arg(short = 's', long = "etcd-server", hide = true)]
    pub etcd_server: Option<String>,
    /// Unused: these subcommands run locally
    #[arg(short = 't', long = "etcd-token", hide = true)]
    pub etcd_token: Option<String>,
    /// Unused: these subcommands run locally
    #[arg(long = "etcd-token-file", alias = "token-file", hide = true)]
    pub etcd_token_file: Option<PathBuf>,
    /// Unused: these subcommands run locally
    #[arg(long = "node-name", env = "ETCDSNAP_NODE_NAME", hide = true)]
    pub node_name: Option<String>,
    #[command(flatten)]
    pub s3: S3Flags,
    #[command(flatten)]
    pub cloud: CloudFlags,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub flags: ReadFlags,
    /// Snapshot file (raw or .zip), a name in the snapshot dir, or with --s3 a name in the bucket
    pub snapshot: Option<String>,
    /// Output format: table or json
    #[arg(short = 'w', long = "write-out", default_value = "table")]
    pub write_out: String,
    /// Do not hash the file to check its SHA-256 trailer (etcdutl's status does not either);
    /// a .zip is still checked while it is decompressed
    #[arg(long = "skip-hash-check", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub skip_hash_check: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub flags: ReadFlags,
    /// Snapshot file (raw or .zip), a name in the snapshot dir, or with --s3 a name in the bucket
    pub snapshot: Option<String>,
    /// Check the structure only, not the SHA-256 trailer: for a raw database file
    /// (member/snap/db), which has none
    #[arg(long = "skip-hash-check", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub skip_hash_check: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub flags: ReadFlags,
    /// Snapshot file (raw or .zip), a name in the snapshot dir, or with --s3 a name in the bucket
    pub snapshot: Option<String>,
    /// Only keys starting with this prefix
    #[arg(long = "prefix")]
    pub prefix: Option<String>,
    /// The revision to show the key space at (default: the latest)
    #[arg(long = "rev")]
    pub rev: Option<i64>,
    /// Keys, revisions and leases only, no values
    #[arg(long = "keys-only", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub keys_only: bool,
    /// Output format: table, json or yaml
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
    /// Only Kubernetes objects of this kind (Secret) or resource (secrets)
    #[arg(long = "kind")]
    pub kind: Option<String>,
    /// Only Kubernetes objects in this namespace
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
    /// Compare with this snapshot instead (both at their latest revisions): keys added,
    /// removed and changed from SNAPSHOT to OTHER
    #[arg(long = "diff", value_name = "OTHER")]
    pub diff: Option<String>,
    /// Do not check the SHA-256 trailer (for a raw database file, member/snap/db, which has
    /// none); a snapshot whose trailer is absent or does not match is otherwise listed and
    /// then reported as an error (exit 1)
    #[arg(long = "skip-hash-check", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub skip_hash_check: bool,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub flags: ReadFlags,
    /// Snapshot file (raw or compressed), a name in the snapshot dir, or with --s3 a name in
    /// the bucket (default: the newest snapshot in the snapshot dir)
    pub snapshot: Option<String>,
    /// Output format: table or json
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
    #[command(flatten)]
    pub tools: EtcdTools,
}

/// The etcd binaries a local restore or drill runs.
#[derive(Debug, Args)]
pub struct EtcdTools {
    /// etcd binary (a drill serves the restored copy with it); its directory holds
    /// etcdutl/etcdctl (default: PATH)
    #[arg(long = "etcd-binary", env = "ETCDSNAP_ETCD_BINARY")]
    pub etcd_binary: Option<PathBuf>,
    /// etcdutl to restore with (etcd 3.5 and later)
    #[arg(long = "etcdutl-binary", env = "ETCDSNAP_ETCDUTL_BINARY")]
    pub etcdutl_binary: Option<PathBuf>,
    /// etcdctl to restore with (etcd 3.4)
    #[arg(long = "etcdctl-binary", env = "ETCDSNAP_ETCDCTL_BINARY")]
    pub etcdctl_binary: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub common: CommonFlags,
    /// Snapshot file (raw or .zip), or with --s3 its name in the bucket
    pub snapshot: Option<String>,
    /// Directory to write the restored data dir to (must not exist or be empty)
    #[arg(long = "output-dir")]
    pub output_dir: Option<PathBuf>,
    /// Member name of the restored member
    #[arg(long = "name", default_value = "default")]
    pub name: String,
    /// Initial cluster configuration for the restore (default: <name>=<peer URLs>)
    #[arg(long = "initial-cluster")]
    pub initial_cluster: Option<String>,
    /// Peer URLs of the restored member
    #[arg(
        long = "initial-advertise-peer-urls",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster token of the restored cluster
    #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    #[command(flatten)]
    pub tools: EtcdTools,
    #[command(flatten)]
    pub s3: S3Flags,
    #[command(flatten)]
    pub cloud: CloudFlags,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    #[command(flatten)]
    pub flags: SnapshotFlags,
    /// save takes no arguments
    #[arg(hide = true)]
    pub extra: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub flags: SnapshotFlags,
    /// Snapshot file names, as `ls` prints them
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub flags: SnapshotFlags,
    /// Output format: table, wide (adds each snapshot's revision and key count), json or yaml
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub flags: SnapshotFlags,
}

/// Flags of every `etcd-snapshot` subcommand (K3s's shared set).
#[derive(Debug, Args, Clone)]
pub struct SnapshotFlags {
    #[command(flatten)]
    pub common: CommonFlags,
    /// Node name (unused: the server names snapshots after its own node)
    #[arg(long = "node-name", env = "ETCDSNAP_NODE_NAME")]
    pub node_name: Option<String>,
    #[command(flatten)]
    pub server: Connection,
    /// Directory to save snapshots to (default: the server's --etcd-snapshot-dir)
    #[arg(long = "dir", alias = "etcd-snapshot-dir")]
    pub dir: Option<String>,
    /// Snapshot name prefix
    #[arg(long = "name", default_value = "on-demand")]
    pub name: String,
    /// Compress etcd snapshot
    #[arg(long = "snapshot-compress", alias = "etcd-snapshot-compress", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub compress: Option<bool>,
    /// Format of compressed snapshots: zip (K3s's) or zstd (faster and smaller, beyond K3s: K3s
    /// cannot read .zst files) (default: the server's)
    #[arg(long = "snapshot-compress-format", alias = "etcd-snapshot-compress-format", value_parser = ["zip", "zstd"])]
    pub compress_format: Option<String>,
    /// Compression level: zip 1 (fastest) to 9, zstd 1 to 19 (default: the server's, or 1 for
    /// zip and 3 for zstd)
    #[arg(
        long = "snapshot-compress-level",
        alias = "etcd-snapshot-compress-level",
        allow_negative_numbers = true
    )]
    pub compress_level: Option<i64>,
    /// Number of snapshots to retain (default: the server's)
    #[arg(
        long = "snapshot-retention",
        alias = "etcd-snapshot-retention",
        allow_negative_numbers = true
    )]
    pub retention: Option<i64>,
    #[command(flatten)]
    pub s3: S3Flags,
    #[command(flatten)]
    pub cloud: CloudFlags,
}

/// Flags of `etcdsnap server`.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    #[command(flatten)]
    pub common: CommonFlags,
    /// Folder to hold state (default: /var/lib/etcdsnap, or ~/.etcdsnap when not root)
    #[arg(short = 'd', long = "data-dir", env = "ETCDSNAP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Node name (default: the host name)
    #[arg(long = "node-name", env = "ETCDSNAP_NODE_NAME")]
    pub node_name: Option<String>,
    /// Initialize a new cluster using embedded etcd (the default when the data dir is empty)
    #[arg(long = "cluster-init", env = "ETCDSNAP_CLUSTER_INIT", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub cluster_init: bool,
    /// Forget all peers and become sole member of a new cluster (with
    /// --cluster-reset-restore-path: from that snapshot), then exit
    #[arg(long = "cluster-reset", env = "ETCDSNAP_CLUSTER_RESET", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub cluster_reset: bool,
    /// Path to the snapshot file to restore (with --etcd-s3: its name in the bucket)
    #[arg(long = "cluster-reset-restore-path")]
    pub cluster_reset_restore_path: Option<String>,
    /// Server to join: the supervisor URL of a server of the cluster (https://<host>:9345);
    /// needs the cluster's --token
    #[arg(short = 's', long = "server", env = "ETCDSNAP_URL")]
    pub server: Option<String>,
    /// Least time a joining etcd stays a learner before the leader promotes it (for tests
    /// and for watching a join; etcd still promotes only a learner in sync)
    #[arg(
        long = "etcd-learner-promotion-delay",
        default_value = "0s",
        allow_hyphen_values = true,
        hide = true
    )]
    pub etcd_learner_promotion_delay: String,
    /// Shared secret used to authenticate to the server (default: generated, in <data-dir>/server/token)
    #[arg(
        short = 't',
        long = "token",
        env = "ETCDSNAP_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// File holding the token
    #[arg(long = "token-file", env = "ETCDSNAP_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// File holding the join token: it lets a server join (bootstrap data, member list) and
    /// nothing else; read again when it changes (default: generated, in
    /// <data-dir>/server/join-token)
    #[arg(long = "join-token-file", env = "ETCDSNAP_JOIN_TOKEN_FILE")]
    pub join_token_file: Option<PathBuf>,
    /// File holding the viewer token: it reads /ui, /ui.json and the save progress and
    /// nothing else; read again when it changes (default: generated, in
    /// <data-dir>/server/viewer-token)
    #[arg(long = "viewer-token-file", env = "ETCDSNAP_VIEWER_TOKEN_FILE")]
    pub viewer_token_file: Option<PathBuf>,
    /// Address the supervisor and etcd listen on (default: all addresses for the supervisor)
    #[arg(long = "bind-address")]
    pub bind_address: Option<String>,
    /// Address etcd advertises to clients and peers (default: 127.0.0.1)
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<String>,
    /// Supervisor API port
    #[arg(long = "https-listen-port", default_value_t = 9345)]
    pub https_listen_port: u16,
    /// Embedded etcd client port
    #[arg(long = "etcd-client-port", default_value_t = 2379)]
    pub etcd_client_port: u16,
    /// Embedded etcd peer port
    #[arg(long = "etcd-peer-port", default_value_t = 2380)]
    pub etcd_peer_port: u16,
    /// etcd binary to run (default: `etcd` on PATH)
    #[arg(long = "etcd-binary", env = "ETCDSNAP_ETCD_BINARY")]
    pub etcd_binary: Option<PathBuf>,
    /// etcdutl used to restore snapshots for etcd 3.5+ (default: next to the etcd binary, or on PATH)
    #[arg(long = "etcdutl-binary", env = "ETCDSNAP_ETCDUTL_BINARY")]
    pub etcdutl_binary: Option<PathBuf>,
    /// etcdctl used to restore snapshots for etcd 3.4 (default: next to the etcd binary, or on PATH)
    #[arg(long = "etcdctl-binary", env = "ETCDSNAP_ETCDCTL_BINARY")]
    pub etcdctl_binary: Option<PathBuf>,
    /// External etcd client URLs, comma-separated (no embedded etcd is started)
    #[arg(long = "datastore-endpoint", env = "ETCDSNAP_DATASTORE_ENDPOINT")]
    pub datastore_endpoint: Option<String>,
    /// CA of the external etcd
    #[arg(long = "datastore-cafile", env = "ETCDSNAP_DATASTORE_CAFILE")]
    pub datastore_cafile: Option<PathBuf>,
    /// Client certificate for the external etcd
    #[arg(long = "datastore-certfile", env = "ETCDSNAP_DATASTORE_CERTFILE")]
    pub datastore_certfile: Option<PathBuf>,
    /// Client key for the external etcd
    #[arg(long = "datastore-keyfile", env = "ETCDSNAP_DATASTORE_KEYFILE")]
    pub datastore_keyfile: Option<PathBuf>,
    /// Disable scheduled snapshots
    #[arg(long = "etcd-disable-snapshots", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub etcd_disable_snapshots: bool,
    /// Prefix of scheduled snapshot names
    #[arg(long = "etcd-snapshot-name", default_value = "etcd-snapshot")]
    pub etcd_snapshot_name: String,
    /// Snapshot schedule in cron syntax, e.g. every 5 hours '0 */5 * * *'
    #[arg(long = "etcd-snapshot-schedule-cron", default_value = "0 */12 * * *")]
    pub etcd_snapshot_schedule_cron: String,
    /// Restore drills in cron syntax, e.g. daily '30 3 * * *': the newest local snapshot is
    /// restored into a throwaway etcd and every key is read back and compared (default: none)
    #[arg(long = "etcd-snapshot-drill-schedule-cron", default_value = "")]
    pub etcd_snapshot_drill_schedule_cron: String,
    /// Number of snapshots to retain
    #[arg(
        long = "etcd-snapshot-retention",
        default_value_t = 5,
        allow_negative_numbers = true
    )]
    pub etcd_snapshot_retention: i64,
    /// Directory to save snapshots to (default: <data-dir>/server/db/snapshots)
    #[arg(long = "etcd-snapshot-dir")]
    pub etcd_snapshot_dir: Option<PathBuf>,
    /// Directories besides --etcd-snapshot-dir that `etcd-snapshot --dir` may name
    /// (comma-separated or repeated; absolute, existing, outside <data-dir>/server). A request
    /// naming any other directory is refused (beyond K3s, which uses any --dir it is sent)
    #[arg(long = "etcd-snapshot-allowed-dirs", value_delimiter = ',')]
    pub etcd_snapshot_allowed_dirs: Vec<PathBuf>,
    /// Compress etcd snapshots
    #[arg(long = "etcd-snapshot-compress", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = BoolishValueParser::new())]
    pub etcd_snapshot_compress: bool,
    /// Format of compressed snapshots: zip (K3s's) or zstd (faster and smaller, beyond K3s: K3s
    /// cannot read .zst files)
    #[arg(long = "etcd-snapshot-compress-format", default_value = "zip", value_parser = ["zip", "zstd"])]
    pub etcd_snapshot_compress_format: String,
    /// Compression level: zip 1 (fastest) to 9, zstd 1 to 19 (default: 1 for zip, 3 for zstd)
    #[arg(long = "etcd-snapshot-compress-level", allow_negative_numbers = true)]
    pub etcd_snapshot_compress_level: Option<i64>,
    /// How often ETCDSnapshotFile records are reconciled with the files, a Go duration
    #[arg(
        long = "etcd-snapshot-reconcile-interval",
        default_value = "10m",
        allow_hyphen_values = true
    )]
    pub etcd_snapshot_reconcile_interval: String,
    /// A save is abandoned (and reported failed) when etcd sends no snapshot data for this long,
    /// a Go duration; beyond K3s, which waits without limit on a hung etcd
    #[arg(
        long = "etcd-snapshot-idle-timeout",
        default_value = "2m",
        allow_hyphen_values = true
    )]
    pub etcd_snapshot_idle_timeout: String,
    /// Write the kubeconfig of the supervisor's Kubernetes API to this file (default:
    /// /etc/etcdsnap/etcdsnap.yaml for root, ~/.kube/etcdsnap.yaml otherwise)
    #[arg(
        short = 'o',
        long = "write-kubeconfig",
        env = "ETCDSNAP_KUBECONFIG_OUTPUT"
    )]
    pub write_kubeconfig: Option<PathBuf>,
    /// File mode of the written kubeconfig (octal)
    #[arg(
        long = "write-kubeconfig-mode",
        env = "ETCDSNAP_KUBECONFIG_MODE",
        default_value = "0600"
    )]
    pub write_kubeconfig_mode: String,
    #[command(flatten, next_help_heading = "S3")]
    pub s3: S3Flags,
    /// GCS and Azure Blob, beyond K3s: one remote store at most (S3, GCS or Azure)
    #[command(
        flatten,
        next_help_heading = "GCS and Azure Blob (beyond K3s; one remote store at most)"
    )]
    pub cloud: CloudFlags,
}

/// Flags of `etcdsnap check`: the server's own, so that its config file and command line work
/// unchanged, plus the output format. (`-o` is the output format here; the server's
/// `-o/--write-kubeconfig` is accepted in its long spelling only.)
#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Output format: text (one line per check) or json (an array of {name, status, detail,
    /// fix})
    #[arg(long = "output", default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
}

/// The command line as parsed: the derived definition, with the server's S3 flags renamed to
/// their `--etcd-s3-*` spelling (the `etcd-snapshot` subcommands spell them `--s3-*`, with the
/// `--etcd-` spelling as an alias, as K3s does).
pub fn command() -> clap::Command {
    Cli::command()
        .mut_subcommand("server", s3::server_spelling)
        .mut_subcommand("check", |c| {
            s3::server_spelling(c)
                .mut_arg("write_kubeconfig", |a| a.short(None).hide(true))
                .mut_arg("output", |a| a.short('o'))
        })
}

/// The default data dir: `/var/lib/etcdsnap` for root, `~/.etcdsnap` otherwise.
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/lib/etcdsnap")
    } else {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".etcdsnap")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        command().debug_assert();
    }

    fn parse<const N: usize>(args: [&str; N]) -> Result<Cli, clap::Error> {
        use clap::FromArgMatches;
        Cli::from_arg_matches(&command().try_get_matches_from(args)?)
    }

    fn action(cli: Cli) -> SnapshotAction {
        match cli.command {
            Command::EtcdSnapshot(c) => c.action,
            _ => panic!("not etcd-snapshot"),
        }
    }

    #[test]
    fn later_flags_override_earlier_ones_in_subcommands() {
        let cli = parse([
            "etcdsnap",
            "etcd-snapshot",
            "save",
            "--name=a",
            "--name=b",
            "--snapshot-compress=true",
            "--snapshot-compress=false",
        ])
        .unwrap();
        let SnapshotAction::Save(a) = action(cli) else {
            panic!()
        };
        assert_eq!(a.flags.name, "b");
        assert_eq!(a.flags.compress, Some(false));
        let cli = parse([
            "etcdsnap",
            "server",
            "--etcd-snapshot-retention=1",
            "--etcd-snapshot-retention=7",
        ])
        .unwrap();
        let Command::Server(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.etcd_snapshot_retention, 7);
    }

    #[test]
    fn k3s_flag_spellings_parse() {
        let cli = parse([
            "etcdsnap",
            "etcd-snapshot",
            "save",
            "--etcd-s3",
            "--etcd-s3-bucket=b",
            "--etcd-snapshot-compress",
            "--etcd-snapshot-retention",
            "3",
            "--name",
            "x",
            "--dir",
            "/tmp",
        ])
        .unwrap();
        let SnapshotAction::Save(a) = action(cli) else {
            panic!()
        };
        assert_eq!(a.flags.s3.s3, Some(true));
        assert_eq!(a.flags.s3.bucket.as_deref(), Some("b"));
        assert_eq!(a.flags.compress, Some(true));
        assert_eq!(a.flags.retention, Some(3));
        let cli = parse(["etcdsnap", "etcd-snapshot", "list", "--s3=false"]).unwrap();
        let SnapshotAction::Ls(a) = action(cli) else {
            panic!()
        };
        assert_eq!(a.flags.s3.s3, Some(false));
        let cli = parse(["etcdsnap", "etcd-snapshot", "delete", "--s3", "snap-1"]).unwrap();
        let SnapshotAction::Delete(a) = action(cli) else {
            panic!()
        };
        assert_eq!(a.names, ["snap-1"]);
        assert!(
            parse([
                "etcdsnap",
                "etcd-snapshot",
                "ls",
                "--etcd-snapshot-name",
                "x"
            ])
            .is_err()
        );
    }
}
