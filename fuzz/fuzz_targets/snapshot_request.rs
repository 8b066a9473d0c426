//! The `/db/snapshot` request body: JSON into a `SnapshotRequest`, resolved against fixed
//! server settings. What resolves uses only names and prefixes the validators accept, takes
//! the server's values exactly where the request leaves them out, and carries an S3 config that
//! validates (or names the config Secret alone, checked when it is read); what does not resolve
//! is a 400. A request re-encoded and decoded resolves the same.

#![no_main]

use std::path::{Path, PathBuf};

use etcdsnap_core::api::{self, SnapshotRequest};
use etcdsnap_core::naming::{Compression, validate_plain_name, validate_prefix};
use etcdsnap_core::schedule::Schedule;
use etcdsnap_core::snapshot::confine::RequestDirs;
use etcdsnap_core::snapshot::plan::{Operation, SnapshotSettings, resolve};
use etcdsnap_core::store::remote::S3Target;
use libfuzzer_sys::fuzz_target;

const SERVER_DIR: &str = "/srv/snaps";
const SERVER_RETENTION: i64 = 7;
const SERVER_COMPRESS: bool = true;

fn settings() -> SnapshotSettings {
    SnapshotSettings {
        disabled: false,
        name: "etcd-snapshot".into(),
        schedule: Schedule::parse("@every 1h").unwrap(),
        retention: SERVER_RETENTION,
        dir: Some(SERVER_DIR.into()),
        compress: SERVER_COMPRESS,
        compression: Compression::default(),
        s3: None,
        reconcile_interval: std::time::Duration::from_secs(600),
        idle_timeout: std::time::Duration::from_secs(120),
        request_dirs: RequestDirs::new(
            Path::new("/nonexistent-data-dir"),
            Some(Path::new(SERVER_DIR)),
            &[],
        )
        .unwrap(),
    }
}

/// `endpointCA` names files to read as well as base64 bundles. The loader refuses anything but
/// a regular file of at most a few MiB, devices unopened (fuzz/corpus/snapshot_request/
/// endpoint-ca-dev-zero once made it read `/dev/zero` until memory ran out). The harness still
/// keeps away from `/proc` and `/sys`, whose regular files are not this machine's to poke at.
fn reads_no_kernel_files(req: &SnapshotRequest) -> bool {
    let Some(s3) = &req.s3 else { return true };
    s3.endpoint_ca.split_whitespace().all(|token| {
        // A name that is no file is decoded as base64 or reported as unreadable.
        let Ok(path) = Path::new(token).canonicalize() else {
            return true;
        };
        !["/proc", "/sys"].iter().any(|d| path.starts_with(d))
    })
}

/// Whatever the request's `dir`, a resolved operation works in the server's dir: it is the only
/// dir these settings allow (issue 23).
fn expected_dir(_req: &SnapshotRequest) -> Option<PathBuf> {
    Some(PathBuf::from(SERVER_DIR))
}

fn check_resolved(req: &SnapshotRequest, op: &Operation) {
    if let Some(cfg) = op.s3() {
        assert_eq!(Some(cfg), req.s3.as_ref());
        // What came in a request never gets the server's own identity.
        assert!(
            !cfg.ambient_identity,
            "a request's store may use the server's identity"
        );
        // Settings taken from the config Secret are checked when it is read, at each operation.
        assert!(
            cfg.uses_config_secret() || cfg.validate().is_ok(),
            "{cfg:?} resolved but does not validate"
        );
        assert!(S3Target::new(cfg.clone()).is_ok());
    } else {
        assert!(req.s3.is_none(), "the request's s3 config was dropped");
    }
    let prefix_from_request = || req.name.first().map_or("on-demand", String::as_str);
    match op {
        Operation::Save {
            prefix,
            dir,
            compress,
            compression,
            retention,
            ..
        } => {
            assert_eq!(req.operation, Some(api::Operation::Save));
            assert!(validate_prefix(prefix).is_ok(), "save prefix {prefix:?}");
            assert_eq!(prefix, prefix_from_request());
            assert_eq!(*dir, expected_dir(req));
            assert_eq!(*compress, req.compress.unwrap_or(SERVER_COMPRESS));
            let format = req.compress_format.as_deref().unwrap_or("zip");
            assert_eq!(compression.format.name(), format);
            assert!(compression.format.levels().contains(&compression.level));
            if let Some(level) = req.compress_level {
                assert_eq!(compression.level, level);
            }
            assert_eq!(*retention, req.retention.unwrap_or(SERVER_RETENTION));
        }
        Operation::Prune {
            prefix, dir, keep, ..
        } => {
            assert_eq!(req.operation, Some(api::Operation::Prune));
            assert!(validate_prefix(prefix).is_ok(), "prune prefix {prefix:?}");
            assert_eq!(prefix, prefix_from_request());
            assert_eq!(*dir, expected_dir(req));
            assert_eq!(*keep, req.retention.unwrap_or(SERVER_RETENTION));
        }
        Operation::Delete { dir, names, .. } => {
            assert_eq!(req.operation, Some(api::Operation::Delete));
            assert!(!names.is_empty(), "a delete of nothing");
            assert_eq!(names, &req.name);
            for n in names {
                assert!(validate_plain_name(n).is_ok(), "delete name {n:?}");
            }
            assert_eq!(*dir, expected_dir(req));
        }
        Operation::List { dir, full, .. } => {
            assert_eq!(req.operation, Some(api::Operation::List));
            assert_eq!(*dir, expected_dir(req));
            assert_eq!(*full, req.s3_node_metadata.unwrap_or(true));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<SnapshotRequest>(data) else {
        return;
    };
    if !reads_no_kernel_files(&req) {
        return;
    }
    let settings = settings();
    let resolved = resolve(&req, &settings);
    match &resolved {
        Ok(op) => check_resolved(&req, op),
        Err(e) => assert_eq!(e.http_status(), 400, "{e:?}"),
    }
    // What the CLI sends is the request re-encoded: it must mean the same.
    let json = serde_json::to_vec(&req).expect("a decoded request encodes");
    let again: SnapshotRequest = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", String::from_utf8_lossy(&json)));
    match (&resolved, &resolve(&again, &settings)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(&json)),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!(
            "{} resolves to {a:?}, re-encoded to {b:?}",
            String::from_utf8_lossy(&json)
        ),
    }
});
