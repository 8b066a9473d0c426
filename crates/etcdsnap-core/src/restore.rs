//! Turning a snapshot file into an etcd data dir, verified before anything changes:
//! * the snapshot comes through [`crate::source`]: the file must exist and be a regular file
//!   (K3s's messages), about twice the snapshot must be free where the data dir goes (the
//!   restored db plus etcd's 64 MB WAL, and the decompressed copy), and a `.zip` (or a `.zst`,
//!   beyond K3s) is decompressed through a `.part` file while its SHA-256 trailer is checked;
//!   a raw file's trailer is checked by the restore tool itself as it reads the file
//!   (etcdutl's `--skip-hash-check` is never used), and again by us when the tool fails, so
//!   the message names the problem;
//! * [`RestoreTool`]: the restore itself is etcd's own, `etcdutl snapshot restore` for etcd 3.5
//!   and later or `etcdctl snapshot restore` for 3.4, chosen from the version of the etcd binary
//!   in use (writing etcd's WAL and raft snapshot ourselves would need a second, untested
//!   implementation of etcd's on-disk membership; reference B2).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::etcd::process::{find_on_path, is_executable};
use crate::naming::validate_plain_name;
use crate::snapfile::verify::verify_file;
use crate::source::{self, Checked, Purpose, Raw, Unpack};
use crate::{Error, Result};

/// Which of etcd's tools restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// `etcdutl snapshot restore` (etcd 3.5 and later).
    Etcdutl,
    /// `ETCDCTL_API=3 etcdctl snapshot restore` (etcd 3.4).
    Etcdctl,
}

/// The tool that writes the restored data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreTool {
    pub kind: ToolKind,
    pub path: PathBuf,
}

/// Membership of the restored cluster.
#[derive(Debug, Clone)]
pub struct Membership {
    pub name: String,
    /// `name=url,...`; default: this member alone.
    pub initial_cluster: Option<String>,
    pub peer_urls: String,
    pub cluster_token: Option<String>,
}

fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut it = version.trim().trim_start_matches('v').split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn locate(
    given: Option<&Path>,
    flag: &str,
    name: &str,
    etcd_binary: Option<&Path>,
) -> Result<Option<PathBuf>> {
    if let Some(p) = given {
        return if is_executable(p) {
            Ok(Some(p.to_path_buf()))
        } else {
            Err(Error::InvalidInput(format!(
                "{flag} {} not found or not executable",
                p.display()
            )))
        };
    }
    let sibling = etcd_binary
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .filter(|p| is_executable(p));
    Ok(sibling.or_else(|| find_on_path(name)))
}

fn not_found(what: &str) -> Error {
    Error::InvalidInput(format!(
        "{what} not found: pass --etcdutl-binary (etcd 3.5 and later) or --etcdctl-binary (etcd 3.4), or put it next to the etcd binary or on PATH"
    ))
}

impl RestoreTool {
    /// The tool for the etcd binary in use: etcdutl for 3.5+, etcdctl for 3.4.
    pub fn for_etcd(
        etcd_binary: &Path,
        etcd_version: &str,
        etcdutl: Option<&Path>,
        etcdctl: Option<&Path>,
    ) -> Result<RestoreTool> {
        let v = major_minor(etcd_version).unwrap_or((3, 5));
        if v >= (3, 5) {
            let path = locate(etcdutl, "--etcdutl-binary", "etcdutl", Some(etcd_binary))?
                .ok_or_else(|| {
                    not_found(&format!(
                        "etcdutl (needed to restore for etcd {etcd_version})"
                    ))
                })?;
            Ok(RestoreTool {
                kind: ToolKind::Etcdutl,
                path,
            })
        } else {
            let path = locate(etcdctl, "--etcdctl-binary", "etcdctl", Some(etcd_binary))?
                .ok_or_else(|| {
                    not_found(&format!(
                        "etcdctl (needed to restore for etcd {etcd_version})"
                    ))
                })?;
            Ok(RestoreTool {
                kind: ToolKind::Etcdctl,
                path,
            })
        }
    }

    /// Any tool: the one named by a flag, else etcdutl, else etcdctl (next to `etcd_binary` or
    /// on PATH).
    pub fn any(
        etcd_binary: Option<&Path>,
        etcdutl: Option<&Path>,
        etcdctl: Option<&Path>,
    ) -> Result<RestoreTool> {
        if (etcdutl.is_some() || etcdctl.is_none())
            && let Some(path) = locate(etcdutl, "--etcdutl-binary", "etcdutl", etcd_binary)?
        {
            return Ok(RestoreTool {
                kind: ToolKind::Etcdutl,
                path,
            });
        }
        let path = locate(etcdctl, "--etcdctl-binary", "etcdctl", etcd_binary)?
            .ok_or_else(|| not_found("etcdutl or etcdctl"))?;
        Ok(RestoreTool {
            kind: ToolKind::Etcdctl,
            path,
        })
    }

    /// Restores `snapshot` into `data_dir`, which must not exist yet. A raw snapshot not
    /// verified yet is verified by the tool itself: etcdutl and etcdctl check the SHA-256
    /// trailer before they write anything, and `--skip-hash-check` is never passed. When the
    /// tool fails, the file is checked here too, so a corrupt snapshot is reported in our words
    /// rather than the tool's. Whatever the tool wrote is removed on failure.
    pub async fn restore(&self, snapshot: &mut Raw, data_dir: &Path, m: &Membership) -> Result<()> {
        let r = {
            let task = std::sync::Arc::new(crate::progress::task(
                &format!(
                    "restore with {}",
                    self.path.file_name().unwrap_or_default().to_string_lossy()
                ),
                Some(snapshot.raw_size),
            ));
            // The tool writes the database first: its size is the progress.
            let watch = tokio::spawn({
                let (task, db) = (task.clone(), data_dir.join("member/snap/db"));
                async move {
                    loop {
                        if let Ok(m) = tokio::fs::metadata(&db).await {
                            task.set_position(m.len());
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            });
            let r = self.run(&snapshot.raw, data_dir, m).await;
            watch.abort();
            let _ = watch.await;
            if r.is_ok() {
                task.set_position(snapshot.raw_size);
            }
            r
        };
        match r {
            Ok(()) => {
                snapshot.checked = Checked::Verified;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(data_dir);
                if !snapshot.verified() {
                    let raw = snapshot.raw.clone();
                    let ours = tokio::task::spawn_blocking(move || verify_file(&raw))
                        .await
                        .map_err(|e| Error::Other(format!("verification task failed: {e}")))?;
                    ours?;
                }
                Err(e)
            }
        }
    }

    async fn run(&self, snapshot: &Path, data_dir: &Path, m: &Membership) -> Result<()> {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.arg("snapshot")
            .arg("restore")
            .arg(snapshot)
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!(
                "--initial-cluster={}",
                m.initial_cluster
                    .clone()
                    .unwrap_or_else(|| format!("{}={}", m.name, m.peer_urls))
            ))
            .arg(format!("--initial-advertise-peer-urls={}", m.peer_urls));
        if let Some(t) = &m.cluster_token {
            cmd.arg(format!("--initial-cluster-token={t}"));
        }
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(k);
            }
        }
        if self.kind == ToolKind::Etcdctl {
            cmd.env("ETCDCTL_API", "3");
        }
        // A killed restore must not leave the tool writing on: it dies with us.
        cmd.kill_on_drop(true);
        crate::etcd::process::die_with_parent(cmd.as_std_mut(), libc::SIGKILL);
        let started = Instant::now();
        tracing::info!(
            "Restore: {} snapshot restore into {} (member {})",
            self.path.display(),
            data_dir.display(),
            m.name
        );
        let out = cmd
            .output()
            .await
            .map_err(|e| Error::io("run", &self.path, e))?;
        if !out.status.success() {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if text
                .to_ascii_lowercase()
                .contains("no space left on device")
            {
                return Err(Error::DiskFull {
                    context: format!(
                        "{} snapshot restore into {}",
                        self.path.display(),
                        data_dir.display()
                    ),
                    source: std::io::Error::from_raw_os_error(libc::ENOSPC),
                });
            }
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            return Err(Error::Other(format!(
                "{} snapshot restore failed ({}):\n{}",
                self.path.display(),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        tracing::info!("Restore: data dir written in {:.1?}", started.elapsed());
        Ok(())
    }
}

/// `etcd-snapshot restore`: a snapshot written into a fresh etcd data dir, for an etcd that
/// etcdsnap does not run.
#[derive(Debug, Clone)]
pub struct DirRestore {
    /// A local file, or with `s3` the object's name.
    pub snapshot: String,
    pub s3: Option<crate::store::remote::S3Target>,
    pub output_dir: PathBuf,
    pub membership: Membership,
    pub tool: RestoreTool,
}

impl DirRestore {
    /// Verifies the snapshot and writes the data dir; the output dir must be absent or empty
    /// (it is left as it was on failure). A download goes to a temporary directory beside the
    /// output dir and is removed afterwards.
    pub async fn run(&self) -> Result<()> {
        let out = &self.output_dir;
        let parent = crate::fsutil::parent_dir(out).to_path_buf();
        if !parent.is_dir() {
            return Err(Error::InvalidInput(format!(
                "the parent of --output-dir, {}, does not exist",
                parent.display()
            )));
        }
        let existed_empty = match std::fs::read_dir(out) {
            Ok(mut rd) => {
                if rd.next().is_some() {
                    return Err(Error::InvalidInput(format!(
                        "--output-dir {} is not empty: give a new directory (etcd refuses to restore into existing data)",
                        out.display()
                    )));
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io("read", out, e)),
        };
        let work = tempfile::Builder::new()
            .prefix(".etcdsnap-restore-")
            .tempdir_in(&parent)
            .map_err(|e| Error::io("create a temporary directory in", &parent, e))?;
        let source = match &self.s3 {
            Some(target) => {
                validate_plain_name(&self.snapshot).map_err(|_| {
                    Error::InvalidInput(format!(
                        "with --s3 the snapshot is its name in the bucket, as `etcd-snapshot ls --s3` prints it, not {:?}",
                        self.snapshot
                    ))
                })?;
                let store = source::connect(target, Default::default()).await?;
                tracing::info!(
                    "Retrieving etcd snapshot {} from {}",
                    self.snapshot,
                    target.config().provider.label()
                );
                source::fetch(&store, &self.snapshot, work.path())
                    .await?
                    .path
            }
            None => PathBuf::from(&self.snapshot),
        };
        let unpack = Unpack::new(
            Purpose::Restore {
                data_parent: parent.clone(),
            },
            work.path(),
        );
        let mut prepared =
            tokio::task::spawn_blocking(move || source::open_local(&source, &unpack))
                .await
                .map_err(|e| Error::Other(format!("restore task failed: {e}")))??;
        if existed_empty {
            std::fs::remove_dir(out).map_err(|e| Error::io("remove", out, e))?;
        }
        let r = self
            .tool
            .restore(&mut prepared, out, &self.membership)
            .await;
        if r.is_err() {
            let _ = std::fs::remove_dir_all(out);
            if existed_empty {
                let _ = std::fs::create_dir(out);
            }
        }
        r
    }

    /// The etcd command line that serves the restored data dir.
    pub fn etcd_command(&self) -> String {
        let m = &self.membership;
        format!(
            "etcd --name {} --data-dir {} --initial-advertise-peer-urls {} --listen-peer-urls {} --advertise-client-urls http://localhost:2379 --listen-client-urls http://localhost:2379",
            m.name,
            self.output_dir.display(),
            m.peer_urls,
            m.peer_urls
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_follows_the_etcd_version() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |n: &str| {
            let p = dir.path().join(n);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let etcd = mk("etcd");
        let err = RestoreTool::for_etcd(&etcd, "3.5.1", None, None)
            .unwrap_err()
            .to_string();
        if find_on_path("etcdutl").is_none() {
            assert!(
                err.contains("--etcdutl-binary") && err.contains("--etcdctl-binary"),
                "{err}"
            );
        }
        let utl = mk("etcdutl");
        let ctl = mk("etcdctl");
        assert_eq!(
            RestoreTool::for_etcd(&etcd, "3.5.1", None, None).unwrap(),
            RestoreTool {
                kind: ToolKind::Etcdutl,
                path: utl.clone()
            }
        );
        assert_eq!(
            RestoreTool::for_etcd(&etcd, "3.4.23", None, None).unwrap(),
            RestoreTool {
                kind: ToolKind::Etcdctl,
                path: ctl.clone()
            }
        );
        assert_eq!(
            RestoreTool::any(None, None, Some(&ctl)).unwrap().kind,
            ToolKind::Etcdctl
        );
        assert!(RestoreTool::any(None, Some(&dir.path().join("x")), None).is_err());
    }
}
