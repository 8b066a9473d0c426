//! What a snapshot request means, decided once. [`resolve`] turns a `/db/snapshot` request and
//! the server's settings into an [`Operation`] (pure: no I/O, table-tested); the handler then
//! connects the S3 store the operation names, and the engine runs it. The scheduler builds its
//! [`SavePlan`] from the same settings. K3s's merge rules (reference §7.1) live here:
//! * save and prune take the prefix from `name[0]` (default `on-demand`);
//! * `dir`, `compress` and `retention` override the server's values only when sent; unlike K3s,
//!   the server's `--etcd-snapshot-dir` is the default for CLI requests too, and a `dir` must
//!   be that one or one of `--etcd-snapshot-allowed-dirs` ([`super::confine`]);
//! * `compressFormat` and `compressLevel` (etcdsnap's) likewise; a format other than the
//!   server's starts from its own default level;
//! * S3 is the request's own `s3` object only, never the server's, and it gets the server's
//!   credentials only when it names the server's store without keys ([`super::confine`]).

use std::path::PathBuf;
use std::sync::Arc;

use super::confine::{RequestDirs, confine_remote};
use crate::api::{self, SnapshotRequest};
use crate::naming::{Compression, DEFAULT_ON_DEMAND_PREFIX, validate_plain_name, validate_prefix};
use crate::schedule::Schedule;
use crate::store::remote::{S3Config, S3Target};
use crate::store::{S3Spec, SnapshotStore};
use crate::{Error, Result};

/// Snapshot settings of the server (`--etcd-snapshot-*`, `--etcd-s3*`), validated at start.
#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    pub disabled: bool,
    /// Prefix of scheduled snapshots.
    pub name: String,
    pub schedule: Schedule,
    pub retention: i64,
    /// `None`: `<data-dir>/server/db/snapshots`.
    pub dir: Option<PathBuf>,
    pub compress: bool,
    /// Format and level of compressed snapshots.
    pub compression: Compression,
    /// The server's S3 settings, CA bundle loaded: used by scheduled snapshots only.
    pub s3: Option<S3Target>,
    /// How often the records are reconciled (`--etcd-snapshot-reconcile-interval`).
    pub reconcile_interval: std::time::Duration,
    /// A save whose etcd stream is silent this long is abandoned (`--etcd-snapshot-idle-timeout`).
    pub idle_timeout: std::time::Duration,
    /// The dirs a request may name: the snapshot dir and `--etcd-snapshot-allowed-dirs`.
    pub request_dirs: RequestDirs,
}

/// A connected remote store and the retention it applies.
#[derive(Clone, Debug)]
pub struct Remote {
    pub store: Arc<dyn SnapshotStore>,
    pub retention: i64,
    /// What records show of it (`spec.s3`).
    pub spec: Option<S3Spec>,
}

/// Where a save's copy goes besides the local directory.
#[derive(Clone, Debug)]
pub enum RemotePlan {
    None,
    Ready(Remote),
    /// The store could not be connected; the local snapshot is still taken and the failure
    /// reported and recorded (scheduled snapshots, as K3s does).
    Failed {
        message: String,
        spec: Option<S3Spec>,
    },
}

/// One save: where, how, and what to prune afterwards.
#[derive(Clone, Debug)]
pub struct SavePlan {
    /// Name prefix (`on-demand`, `etcd-snapshot`, or the user's).
    pub prefix: String,
    /// Snapshot directory; `None` is `<data-dir>/server/db/snapshots`.
    pub dir: Option<PathBuf>,
    pub compress: bool,
    /// Format and level, when `compress`.
    pub compression: Compression,
    /// Local retention after the save; below 1 keeps everything.
    pub retention: i64,
    pub remote: RemotePlan,
}

/// A request resolved against the server's settings; `s3` is still to be connected.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Save {
        prefix: String,
        dir: Option<PathBuf>,
        compress: bool,
        compression: Compression,
        retention: i64,
        s3: Option<S3Config>,
    },
    List {
        dir: Option<PathBuf>,
        s3: Option<S3Config>,
        /// Read each S3 object's node metadata (`ls -o json|yaml`).
        full: bool,
    },
    Delete {
        dir: Option<PathBuf>,
        names: Vec<String>,
        s3: Option<S3Config>,
    },
    Prune {
        dir: Option<PathBuf>,
        prefix: String,
        keep: i64,
        s3: Option<S3Config>,
    },
}

impl Operation {
    /// The S3 configuration the operation needs connected, if any.
    pub fn s3(&self) -> Option<&S3Config> {
        match self {
            Operation::Save { s3, .. }
            | Operation::List { s3, .. }
            | Operation::Delete { s3, .. }
            | Operation::Prune { s3, .. } => s3.as_ref(),
        }
    }
}

/// Resolves a request; every failure is bad input (HTTP 400).
pub fn resolve(req: &SnapshotRequest, settings: &SnapshotSettings) -> Result<Operation> {
    let op = req
        .operation
        .ok_or_else(|| Error::InvalidInput("invalid snapshot operation".into()))?;
    for (what, n) in [
        ("retention", req.retention),
        ("s3.retention", req.s3.as_ref().map(|c| c.retention)),
    ] {
        if let Some(n) = n
            && n < 0
        {
            return Err(Error::InvalidInput(format!(
                "invalid {what} {n}: give the number of snapshots to keep, or 0 to keep every snapshot (no pruning)"
            )));
        }
    }
    let dir = match req.dir.as_deref() {
        Some(d) if !d.is_empty() => settings.request_dirs.resolve(d)?,
        _ => settings.dir.clone(),
    };
    let prefix = || -> Result<String> {
        let p = req
            .name
            .first()
            .cloned()
            .unwrap_or_else(|| DEFAULT_ON_DEMAND_PREFIX.to_string());
        validate_prefix(&p)?;
        Ok(p)
    };
    let s3 = match &req.s3 {
        Some(cfg) => {
            // The settings' own checks first (pure: nothing is read), so that a bad endpoint
            // is named as such rather than as a store without keys.
            if cfg.provider == crate::store::remote::Provider::S3 && !cfg.uses_config_secret() {
                S3Target::new(S3Config {
                    endpoint_ca: String::new(),
                    ..cfg.clone()
                })?;
            }
            let cfg = confine_remote(cfg, settings.s3.as_ref().map(S3Target::config))?;
            // Fails here, before anything is connected or written.
            S3Target::new(cfg.clone())?;
            Some(cfg)
        }
        None => None,
    };
    Ok(match op {
        api::Operation::Save => Operation::Save {
            prefix: prefix()?,
            dir,
            compress: req.compress.unwrap_or(settings.compress),
            compression: settings
                .compression
                .overridden(req.compress_format.as_deref(), req.compress_level)?,
            retention: req.retention.unwrap_or(settings.retention),
            s3,
        },
        api::Operation::List => Operation::List {
            dir,
            s3,
            full: req.s3_node_metadata.unwrap_or(true),
        },
        api::Operation::Delete => {
            if req.name.is_empty() {
                return Err(Error::InvalidInput("no snapshots given for removal".into()));
            }
            for n in &req.name {
                validate_plain_name(n)?;
            }
            Operation::Delete {
                dir,
                names: req.name.clone(),
                s3,
            }
        }
        api::Operation::Prune => Operation::Prune {
            prefix: prefix()?,
            dir,
            keep: req.retention.unwrap_or(settings.retention),
            s3,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SnapshotSettings {
        SnapshotSettings {
            disabled: false,
            name: "etcd-snapshot".into(),
            schedule: Schedule::parse("@every 1h").unwrap(),
            retention: 7,
            dir: Some("/srv/snaps".into()),
            compress: true,
            compression: Compression::default(),
            s3: None,
            reconcile_interval: std::time::Duration::from_secs(600),
            idle_timeout: std::time::Duration::from_secs(120),
            request_dirs: RequestDirs::new(
                std::path::Path::new("/nonexistent-data-dir"),
                Some(std::path::Path::new("/srv/snaps")),
                &[],
            )
            .unwrap(),
        }
    }

    fn req(json: &str) -> SnapshotRequest {
        serde_json::from_str(json).unwrap()
    }

    fn s3(bucket: &str) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            ..S3Config::default()
        }
    }

    #[test]
    fn requests_resolve_against_server_settings() {
        let srv = Some(PathBuf::from("/srv/snaps"));
        let cases: Vec<(&str, Operation)> = vec![
            (
                r#"{"operation":"save"}"#,
                Operation::Save {
                    prefix: "on-demand".into(),
                    dir: srv.clone(),
                    compress: true,
                    compression: Compression::default(),
                    retention: 7,
                    s3: None,
                },
            ),
            (
                r#"{"operation":"save","name":["nightly"],"dir":"/srv//snaps/","compress":false,"retention":0}"#,
                Operation::Save {
                    prefix: "nightly".into(),
                    dir: Some("/srv/snaps".into()),
                    compress: false,
                    compression: Compression::default(),
                    retention: 0,
                    s3: None,
                },
            ),
            (
                r#"{"operation":"save","dir":"","s3":{"bucket":"bkt","retention":2,"timeout":"1m","accessKey":"AK","secretKey":"SK"}}"#,
                Operation::Save {
                    prefix: "on-demand".into(),
                    dir: srv.clone(),
                    compress: true,
                    compression: Compression::default(),
                    retention: 7,
                    s3: Some(S3Config {
                        endpoint: String::new(),
                        region: String::new(),
                        retention: 2,
                        timeout: std::time::Duration::from_secs(60),
                        access_key: "AK".into(),
                        secret_key: "SK".into(),
                        ambient_identity: false,
                        ..s3("bkt")
                    }),
                },
            ),
            (
                r#"{"operation":"save","compressFormat":"zstd","compressLevel":7}"#,
                Operation::Save {
                    prefix: "on-demand".into(),
                    dir: srv.clone(),
                    compress: true,
                    compression: Compression {
                        format: crate::naming::CompressFormat::Zstd,
                        level: 7,
                    },
                    retention: 7,
                    s3: None,
                },
            ),
            (
                r#"{"operation":"list","s3NodeMetadata":false}"#,
                Operation::List {
                    dir: srv.clone(),
                    s3: None,
                    full: false,
                },
            ),
            (
                r#"{"operation":"list"}"#,
                Operation::List {
                    dir: srv.clone(),
                    s3: None,
                    full: true,
                },
            ),
            (
                r#"{"operation":"delete","name":["a","b.zip"]}"#,
                Operation::Delete {
                    dir: srv.clone(),
                    names: vec!["a".into(), "b.zip".into()],
                    s3: None,
                },
            ),
            (
                r#"{"operation":"prune","name":["etcd-snapshot"]}"#,
                Operation::Prune {
                    dir: srv.clone(),
                    prefix: "etcd-snapshot".into(),
                    keep: 7,
                    s3: None,
                },
            ),
            (
                r#"{"operation":"prune","retention":2}"#,
                Operation::Prune {
                    dir: srv,
                    prefix: "on-demand".into(),
                    keep: 2,
                    s3: None,
                },
            ),
        ];
        for (json, want) in cases {
            assert_eq!(resolve(&req(json), &settings()).unwrap(), want, "{json}");
        }
    }

    #[test]
    fn bad_requests_are_invalid_input() {
        let cases = [
            (r#"{}"#, "invalid snapshot operation"),
            (
                r#"{"operation":"delete"}"#,
                "no snapshots given for removal",
            ),
            (
                r#"{"operation":"delete","name":["../etc/passwd"]}"#,
                "path traversal not allowed",
            ),
            (
                r#"{"operation":"save","name":["a/b"]}"#,
                "invalid snapshot name prefix",
            ),
            (
                r#"{"operation":"save","s3":{"timeout":"5m","accessKey":"AK","secretKey":"SK"}}"#,
                "s3 bucket name was not set",
            ),
            (
                r#"{"operation":"save","compressFormat":"gzip"}"#,
                "invalid snapshot compression format \"gzip\"",
            ),
            (
                r#"{"operation":"save","compressFormat":"zstd","compressLevel":23}"#,
                "invalid compression level 23 for zstd",
            ),
            (
                r#"{"operation":"list","s3":{"bucket":"bkt","timeout":"0s","accessKey":"AK","secretKey":"SK"}}"#,
                "etcd-s3-timeout must be greater than 0s",
            ),
            (
                r#"{"operation":"prune","retention":-1}"#,
                "invalid retention -1: give the number of snapshots to keep, or 0",
            ),
            (
                r#"{"operation":"list","dir":"/etc/ssh"}"#,
                "snapshot dir \"/etc/ssh\" is not one this server allows",
            ),
            (
                r#"{"operation":"delete","dir":"/srv/snaps/../tls","name":["server-ca.key"]}"#,
                "is not one this server allows",
            ),
            (
                r#"{"operation":"list","s3":{"bucket":"bkt","endpoint":"127.0.0.1:9","timeout":"5s"}}"#,
                "carries no keys of its own",
            ),
        ];
        for (json, want) in cases {
            let err = resolve(&req(json), &settings()).unwrap_err();
            assert_eq!(err.http_status(), 400, "{json}: {err:?}");
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
    }
}
