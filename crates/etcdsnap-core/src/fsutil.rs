//! Private files and directories, written so that a crash never leaves half a file under its
//! final name. Every file etcdsnap writes (snapshots, keys, tokens, sidecars, downloads) is
//! created 0600 and every directory 0700; a file is published by renaming a complete, fsynced
//! temporary file and then fsyncing its directory, so the rename survives a power cut.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Creates `dir` and its missing parents with mode 0700 (existing ones are left as they are).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))
}

/// Creates a new file (it must not exist) with mode 0600, open for reading and writing.
pub fn create_private_file(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("create", path, e))
}

/// fsyncs a directory so that a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// [`sync_dir`] off the async runtime's threads.
pub async fn sync_dir_async(dir: &Path) -> Result<()> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || sync_dir(&d))
        .await
        .map_err(|e| Error::Other(format!("fsync task failed: {e}")))?
}

/// The directory a path lives in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Renames a complete, fsynced `tmp` to `dest` and fsyncs the directory.
pub fn publish(tmp: &Path, dest: &Path) -> Result<()> {
    std::fs::rename(tmp, dest).map_err(|e| Error::io("rename", tmp, e))?;
    sync_dir(parent_dir(dest))
}

/// Writes `data` to `path` (mode 0600) through a temporary file in the same directory, so the
/// file is either the old one or the whole new one.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    let _ = std::fs::remove_file(&tmp);
    let guard = RemoveOnDrop::new(tmp.clone());
    let mut f = create_private_file(&tmp)?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    drop(f);
    publish(&tmp, path)?;
    guard.disarm();
    Ok(())
}

/// `<dir>/.<name>.tmp`: hidden, so listings skip it.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(path).join(format!(".{name}.tmp"))
}

/// Mode bits of a path (`None` if it cannot be read); for the tests of file modes.
#[cfg(test)]
pub fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Removes a file when dropped unless disarmed: temporary files of a failed or cancelled write
/// (a future dropped on timeout included) do not outlive it.
#[derive(Debug)]
pub struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    pub fn new(path: PathBuf) -> Self {
        RemoveOnDrop(Some(path))
    }

    /// Keeps the file.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Bytes free for an unprivileged writer on the file system holding `path`.
pub fn free_space(path: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidInput(format!("path with a NUL byte: {}", path.display())))?;
    // SAFETY: statvfs fills the struct we pass; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(Error::io("statvfs", path, std::io::Error::last_os_error()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Lowers the calling thread's CPU priority by `nice` steps (Linux: niceness is per thread).
/// Compression threads use it so that, on a machine with few cores, the etcd that streams the
/// snapshot (whose speed bounds the save) gets the CPU first and compression takes what is left.
/// Failure only means the thread keeps its priority.
pub fn lower_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + nice).min(19));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_and_dirs() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode_of(&dir), Some(0o700));
        let f = dir.join("secret");
        write_private(&f, b"one").unwrap();
        write_private(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(mode_of(&f), Some(0o600));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(create_private_file(&f).is_err(), "must not reuse a file");
        assert!(free_space(&dir).unwrap() > 0);
    }

    #[test]
    fn remove_on_drop_unless_disarmed() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        std::fs::write(&a, "x").unwrap();
        drop(RemoveOnDrop::new(a.clone()));
        assert!(!a.exists());
        std::fs::write(&a, "x").unwrap();
        RemoveOnDrop::new(a.clone()).disarm();
        assert!(a.exists());
    }
}
