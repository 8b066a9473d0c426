//! What the fuzz targets share.

use std::path::{Path, PathBuf};

/// A scratch directory for one fuzzing process, named `etcdsnap-fuzz-<what>-*`: in `$TMPDIR`
/// when that is set, else on tmpfs (`/dev/shm`) when there is one, since targets write files
/// on every run. It is not removed when libFuzzer exits (statics are never dropped), so
/// ci/fuzz.sh sets `TMPDIR` to a directory of its own that it removes.
pub fn scratch_dir(what: &str) -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let base = match std::env::var_os("TMPDIR") {
        Some(dir) => PathBuf::from(dir),
        None if shm.is_dir() => shm.to_path_buf(),
        None => std::env::temp_dir(),
    };
    tempfile::Builder::new()
        .prefix(&format!("etcdsnap-fuzz-{what}-"))
        .tempdir_in(base)
        .expect("a scratch directory")
}
