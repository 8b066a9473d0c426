//! Snapshots in a local directory. Files are listed by walking the directory; `.part` files
//! (writes in progress) and hidden files are not snapshots. Extra-metadata sidecars live in the
//! sibling directory `../.metadata/<file name>`, as in K3s. The engine's writer streams new
//! snapshots straight into the directory; [`SnapshotStore::put`] copies a file in from
//! elsewhere (verified, through a `.part` file), and `get` verifies a file where it is.

use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::FutureExt;

use super::{
    BoxFuture, ListDetail, RetentionOrder, RetentionRule, SnapshotRecord, SnapshotStatus,
    SnapshotStore,
};
use crate::fsutil::{RemoveOnDrop, create_private_dir, create_private_file, publish, sync_dir};
use crate::naming::{PART_SUFFIX, is_compressed, parse_snapshot_time, validate_plain_name};
use crate::snapfile::growing::GrowingFile;
use crate::snapfile::verify::verify_file;
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
                create_private_dir(&d)?;
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
    pub fn location_of(&self, path: &Path) -> String {
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
        let key = path
            .strip_prefix(&self.dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| name.clone());
        let modified = meta
            .modified()
            .map(DateTime::<Utc>::from)
            .unwrap_or_else(|_| Utc::now());
        let created_at = parse_snapshot_time(&name).unwrap_or(modified);
        let metadata = std::fs::read(self.sidecar_path(&name))
            .ok()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
        Ok(SnapshotRecord {
            compressed: is_compressed(&name),
            location: self.location_of(path),
            name,
            key,
            modified,
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

/// A key inside the directory: relative, no `..`, no `.part` (a save in progress), not hidden.
fn check_key(key: &str) -> Result<()> {
    let path = Path::new(key);
    let plain = !key.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(n) if !n.to_string_lossy().starts_with('.')))
        && !key.ends_with(PART_SUFFIX)
        && !key.contains('\0');
    if plain {
        Ok(())
    } else {
        validate_plain_name(key)?;
        Err(Error::InvalidInput(format!(
            "invalid snapshot name {key:?}: hidden and in-progress (.part) files are not snapshots; give the file name as `ls` prints it"
        )))
    }
}

impl LocalStore {
    async fn list_blocking(&self) -> Result<Vec<SnapshotRecord>> {
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

    async fn delete_key(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        let path = self.dir.join(key);
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

    /// Copies a (possibly growing) file in as `<dir>/<name>`, through a verified `.part` file.
    async fn put_file(
        &self,
        name: &str,
        mut source: GrowingFile,
        sidecar: Option<&Path>,
    ) -> Result<SnapshotRecord> {
        validate_plain_name(name)?;
        let dest = self.dir.join(name);
        let part = self.dir.join(format!("{name}{PART_SUFFIX}"));
        let guard = RemoveOnDrop::new(part.clone());
        let mut out = create_private_file(&part)?;
        let mut offset = 0u64;
        loop {
            let (avail, fin) = source.wait(offset, 1 << 20).await?;
            if fin == Some(offset) {
                break;
            }
            let len = (avail - offset).min(8 << 20) as usize;
            let data = source.read_at(offset, len).await?;
            std::io::Write::write_all(&mut out, &data).map_err(|e| Error::io("write", &part, e))?;
            offset += len as u64;
        }
        out.sync_all().map_err(|e| Error::io("fsync", &part, e))?;
        drop(out);
        let check = part.clone();
        tokio::task::spawn_blocking(move || verify_file(&check))
            .await
            .map_err(|e| Error::Other(format!("verification task failed: {e}")))??;
        publish(&part, &dest)?;
        guard.disarm();
        if let Some(sidecar) = sidecar {
            let own = self.sidecar_path(name);
            if sidecar != own && sidecar.exists() {
                create_private_dir(&self.metadata_dir())?;
                let data = std::fs::read(sidecar).map_err(|e| Error::io("read", sidecar, e))?;
                crate::fsutil::write_private(&own, &data)?;
            }
        }
        self.record_for(&dest)
    }

    /// `name` verified where it is, or copied (verified) into `dest_dir`.
    async fn get_file(&self, name: &str, dest_dir: &Path) -> Result<PathBuf> {
        validate_plain_name(name)?;
        let src = self.dir.join(name);
        if !src.is_file() {
            return Err(Error::InvalidInput(format!(
                "snapshot {name} not found in {}",
                self.dir.display()
            )));
        }
        let same_dir =
            std::fs::canonicalize(dest_dir).ok() == std::fs::canonicalize(&self.dir).ok();
        if same_dir {
            let check = src.clone();
            tokio::task::spawn_blocking(move || verify_file(&check))
                .await
                .map_err(|e| Error::Other(format!("verification task failed: {e}")))??;
            return Ok(src);
        }
        let file = std::fs::File::open(&src)
            .and_then(GrowingFile::complete)
            .map_err(|e| Error::io("open", &src, e))?;
        let target = LocalStore::new(dest_dir.to_path_buf(), self.node_name.clone());
        let sidecar = self.sidecar_path(name);
        target.put_file(name, file, Some(&sidecar)).await?;
        Ok(dest_dir.join(name))
    }
}

impl SnapshotStore for LocalStore {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn location(&self, key: &str) -> String {
        self.location_of(&self.dir.join(key))
    }

    fn describe(&self) -> String {
        format!("local snapshots in {}", self.dir.display())
    }

    fn put<'a>(
        &'a self,
        name: &'a str,
        source: GrowingFile,
        sidecar: Option<&'a Path>,
    ) -> BoxFuture<'a, Result<SnapshotRecord>> {
        self.put_file(name, source, sidecar).boxed()
    }

    fn get<'a>(&'a self, name: &'a str, dest_dir: &'a Path) -> BoxFuture<'a, Result<PathBuf>> {
        self.get_file(name, dest_dir).boxed()
    }

    fn list(&self, _detail: ListDetail) -> BoxFuture<'_, Result<Vec<SnapshotRecord>>> {
        self.list_blocking().boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.delete_key(key).boxed()
    }

    fn retention_rule(&self) -> RetentionRule {
        RetentionRule {
            order: RetentionOrder::NameTime,
            nested: true,
        }
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

        let mut recs = store.list(ListDetail::Basic).await.unwrap();
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

        let deleted = crate::retention::apply_retention(
            &store,
            "etcd-snapshot",
            2,
            crate::retention::RetentionContext::now(),
        )
        .await
        .unwrap();
        assert_eq!(deleted, ["etcd-snapshot-n1-100"]);
        assert!(!store.sidecar_path("etcd-snapshot-n1-100").exists());
        assert!(dir.join("on-demand-n1-150").exists());

        assert!(store.delete("on-demand-n1-150").await.unwrap());
        assert!(!store.delete("on-demand-n1-150").await.unwrap());
        assert!(store.delete("../snapshots/x").await.is_err());
        assert!(store.delete("on-demand-n1-160.part").await.is_err());
        assert!(store.delete(".hidden").await.is_err());
        assert!(dir.join(".hidden").exists());
    }

    #[test]
    fn snapshot_dir_rules() {
        let root = tempfile::tempdir().unwrap();
        let d = resolve_snapshot_dir(root.path(), None, true).unwrap();
        assert_eq!(d, default_snapshot_dir(root.path()));
        assert_eq!(crate::fsutil::mode_of(&d), Some(0o700));
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
