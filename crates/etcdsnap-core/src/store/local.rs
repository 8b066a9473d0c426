//! Snapshots in a local directory. Files are listed by walking the directory; `.part` files
//! (writes in progress) and hidden files are not snapshots. Extra-metadata sidecars live in the
//! sibling directory `../.metadata/<file name>`, as in K3s.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::{SnapshotRecord, SnapshotStatus, SnapshotStore};
use crate::naming::{PART_SUFFIX, is_compressed, parse_snapshot_time, validate_plain_name};
use crate::retention::{Candidate, select_for_deletion};
use crate::{Error, Result};

/// The default snapshot directory under a data dir.
pub fn default_snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("snapshots")
}

/// Resolves the snapshot directory. The default one is created (0700) when `create` is set; a
/// directory given by the user must already exist, so that a typo does not scatter snapshots.
pub fn resolve_snapshot_dir(
    data_dir: &Path,
    custom: Option<&Path>,
    create: bool,
) -> Result<PathBuf> {
    let dir = match custom {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => {
            let d = default_snapshot_dir(data_dir);
            if !create && !d.exists() {
                // Nothing was ever saved here: an empty store, not an error.
                return Ok(d);
            }
            if create && !d.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&d)
                    .map_err(|e| Error::io("create snapshot dir", &d, e))?;
            }
            d
        }
    };
    let meta = std::fs::metadata(&dir).map_err(|e| {
        Error::InvalidInput(format!(
            "failed to get etcd-snapshot-dir: {}: {e}; create it or pass an existing --etcd-snapshot-dir",
            dir.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(Error::InvalidInput(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    Ok(dir)
}

/// fsyncs a directory so that a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// A snapshot directory as a store.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
    node_name: String,
}

impl LocalStore {
    pub fn new(dir: PathBuf, node_name: impl Into<String>) -> Self {
        LocalStore {
            dir,
            node_name: node_name.into(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/../.metadata`.
    pub fn metadata_dir(&self) -> PathBuf {
        self.dir
            .parent()
            .map(|p| p.join(".metadata"))
            .unwrap_or_else(|| self.dir.join(".metadata"))
    }

    /// The sidecar of a snapshot file.
    pub fn sidecar_path(&self, file_name: &str) -> PathBuf {
        self.metadata_dir().join(file_name)
    }

    /// `file://<dir>/<name>`.
    pub fn location(&self, path: &Path) -> String {
        format!("file://{}", path.display())
    }

    /// The record of one file in the store.
    pub fn record_for(&self, path: &Path) -> Result<SnapshotRecord> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("stat", path, e))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let created_at = parse_snapshot_time(&name).unwrap_or_else(|| {
            meta.modified()
                .map(DateTime::<Utc>::from)
                .unwrap_or_else(|_| Utc::now())
        });
        let metadata = std::fs::read(self.sidecar_path(&name))
            .ok()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
        Ok(SnapshotRecord {
            compressed: is_compressed(&name),
            location: self.location(path),
            name,
            node_name: self.node_name.clone(),
            node_source: None,
            created_at,
            size: meta.len(),
            status: SnapshotStatus::Successful,
            message: None,
            metadata,
            token_hash: None,
            s3: None,
        })
    }

    /// Snapshot files below the directory (recursively, as K3s), skipping `.part` and hidden
    /// files.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            let rd = match std::fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read snapshot dir", &d, e)),
            };
            for entry in rd {
                let entry = entry.map_err(|e| Error::io("read snapshot dir", &d, e))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') || name.ends_with(PART_SUFFIX) {
                    continue;
                }
                let ft = entry
                    .file_type()
                    .map_err(|e| Error::io("stat", &entry.path(), e))?;
                if ft.is_dir() {
                    stack.push(entry.path());
                } else if ft.is_file() {
                    out.push(entry.path());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove_with_sidecar(&self, path: &Path) -> Result<()> {
        std::fs::remove_file(path).map_err(|e| Error::io("remove snapshot", path, e))?;
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            match std::fs::remove_file(self.sidecar_path(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("failed to remove snapshot metadata for {name}: {e}"),
            }
        }
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

/// Mode bits of a path, for checks and tests.
pub fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

impl SnapshotStore for LocalStore {
    async fn list(&self) -> Result<Vec<SnapshotRecord>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.files()?
                .iter()
                .filter_map(|p| match this.record_for(p) {
                    Ok(r) => Some(Ok(r)),
                    // A file removed while listing is simply gone.
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        None
                    }
                    Err(e) => Some(Err(e)),
                })
                .collect()
        })
        .await
        .map_err(|e| Error::Other(format!("listing task failed: {e}")))?
    }

    async fn delete(&self, name: &str) -> Result<bool> {
        validate_plain_name(name)?;
        let path = self.dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(Error::InvalidInput(format!(
                    "{} is not a snapshot file",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("stat", &path, e)),
        }
        self.remove_with_sidecar(&path)?;
        Ok(true)
    }

    async fn apply_retention(&self, prefix: &str, keep: i64) -> Result<Vec<String>> {
        if keep < 1 {
            return Ok(Vec::new());
        }
        tracing::info!(
            "Applying snapshot retention={keep} to local snapshots with prefix {prefix} in {}",
            self.dir.display()
        );
        let files = self.files()?;
        let mut candidates = Vec::new();
        for p in &files {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !name.starts_with(prefix) {
                continue;
            }
            let time = match parse_snapshot_time(name) {
                Some(t) => t,
                None => match std::fs::metadata(p).and_then(|m| m.modified()) {
                    Ok(t) => t.into(),
                    Err(_) => continue,
                },
            };
            candidates.push(Candidate {
                name: p.to_string_lossy().into_owned(),
                time,
            });
        }
        // Candidates carry full paths so nested files are deleted where they are; the prefix
        // test was made on the file name above.
        let doomed = select_for_deletion(&candidates, "", keep);
        let mut deleted = Vec::new();
        for path in doomed {
            let path = PathBuf::from(path);
            tracing::info!("Removing local snapshot {}", path.display());
            self.remove_with_sidecar(&path)?;
            deleted.push(
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_deletes_and_prunes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("snapshots");
        std::fs::create_dir(&dir).unwrap();
        let store = LocalStore::new(dir.clone(), "n1");
        for (name, body) in [
            ("etcd-snapshot-n1-100", "a"),
            ("etcd-snapshot-n1-300.zip", "bb"),
            ("etcd-snapshot-n2-200", "ccc"),
            ("on-demand-n1-150", "d"),
            ("on-demand-n1-160.part", "e"),
            (".hidden", "f"),
        ] {
            std::fs::write(dir.join(name), body).unwrap();
        }
        std::fs::create_dir(store.metadata_dir()).unwrap();
        std::fs::write(store.sidecar_path("etcd-snapshot-n1-100"), "{\"a\":\"b\"}").unwrap();

        let mut recs = store.list().await.unwrap();
        recs.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<_> = recs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "etcd-snapshot-n1-100",
                "etcd-snapshot-n1-300.zip",
                "etcd-snapshot-n2-200",
                "on-demand-n1-150"
            ]
        );
        assert_eq!(recs[0].created_at.timestamp(), 100);
        assert!(recs[0].metadata.is_some());
        assert!(recs[1].compressed);
        assert_eq!(recs[2].size, 3);
        assert_eq!(
            recs[0].location,
            format!("file://{}/etcd-snapshot-n1-100", dir.display())
        );

        let deleted = store.apply_retention("etcd-snapshot", 2).await.unwrap();
        assert_eq!(deleted, ["etcd-snapshot-n1-100"]);
        assert!(!store.sidecar_path("etcd-snapshot-n1-100").exists());
        assert!(dir.join("on-demand-n1-150").exists());

        assert!(store.delete("on-demand-n1-150").await.unwrap());
        assert!(!store.delete("on-demand-n1-150").await.unwrap());
        assert!(store.delete("../snapshots/x").await.is_err());
    }

    #[test]
    fn snapshot_dir_rules() {
        let root = tempfile::tempdir().unwrap();
        let d = resolve_snapshot_dir(root.path(), None, true).unwrap();
        assert_eq!(d, default_snapshot_dir(root.path()));
        assert_eq!(mode_of(&d), Some(0o700));
        let missing = root.path().join("nope");
        let err = resolve_snapshot_dir(root.path(), Some(&missing), true).unwrap_err();
        assert!(
            err.to_string().contains("failed to get etcd-snapshot-dir"),
            "{err}"
        );
        assert!(!missing.exists());
        let file = root.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let err = resolve_snapshot_dir(root.path(), Some(&file), true).unwrap_err();
        assert!(err.to_string().contains("is not a directory"));
    }
}
