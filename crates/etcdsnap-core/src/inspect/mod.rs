//! Reading snapshots without restoring them: `status`, `verify`, `inspect` and `diff`.
//!
//! * [`open`] makes a [`Source`] (from [`crate::source::resolve`]) a readable database through
//!   [`crate::source`]: an S3 object is downloaded (verified) into a temporary directory and a
//!   `.zip` is decompressed to a temporary file there while its SHA-256 trailer is hashed. The
//!   directory goes away with the [`Opened`] value. Memory stays bounded: files are streamed,
//!   never held whole.
//! * [`status`] is `etcdutl snapshot status` (hash, revision, total keys, total size) plus what
//!   etcdsnap knows: the trailer, sizes, node and creation time from the name.
//! * [`verify`] checks the trailer and the bbolt structure and names the first problem.
//! * [`inspect`] lists the key space at a revision with Kubernetes values decoded, streaming
//!   one entry at a time; [`diff`] compares two snapshots' latest key spaces.
//!
//! Memory: the key space is first listed without values (keys, revisions, lease: it grows
//! with the number of keys, not their values); values are then read one at a time.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::bbolt::{Db, Heads, KeyHead};
use crate::kube::{self, Encrypted, KubeObject};
use crate::naming::{
    DEFAULT_ON_DEMAND_PREFIX, DEFAULT_SCHEDULED_PREFIX, is_compressed, parse_snapshot_time,
};
use crate::source::{self, Checked, Purpose, Raw, Source, Unpack};
use crate::store::remote::S3Identity;
use crate::{Error, Result};

mod diff;
mod listing;
mod report;

pub use diff::*;
pub use listing::*;
pub use report::*;

/// The SHA-256 trailer etcd appends to a snapshot.
const TRAILER: u64 = 32;

/// What the SHA-256 trailer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trailer {
    /// The trailer equals the SHA-256 of the database bytes.
    Valid { sha256: String },
    /// It does not: the file is corrupt.
    Mismatch { stored: String, computed: String },
    /// The size is not 32 more than a multiple of 512: a raw database file (`member/snap/db`)
    /// or a truncated snapshot.
    Absent { size: u64 },
}

impl Trailer {
    fn from_parts(total: u64, computed: [u8; 32], tail: &[u8]) -> Trailer {
        if total < TRAILER || total % 512 != TRAILER {
            return Trailer::Absent { size: total };
        }
        if tail == computed {
            Trailer::Valid {
                sha256: hex::encode(computed),
            }
        } else {
            Trailer::Mismatch {
                stored: hex::encode(tail),
                computed: hex::encode(computed),
            }
        }
    }

    /// `valid`, `invalid` or `absent`.
    pub fn word(&self) -> &'static str {
        match self {
            Trailer::Valid { .. } => "valid",
            Trailer::Mismatch { .. } => "invalid",
            Trailer::Absent { .. } => "absent",
        }
    }

    /// The trailer as an error, unless it is valid.
    pub fn problem(&self) -> Option<String> {
        match self {
            Trailer::Valid { .. } => None,
            Trailer::Mismatch { stored, computed } => Some(format!(
                "snapshot checksum mismatch: the database hashes to {computed} but its SHA-256 trailer says {stored}; the snapshot is corrupt"
            )),
            Trailer::Absent { size } => Some(format!(
                "no SHA-256 trailer: {size} bytes is not 32 more than a multiple of 512, so this is a raw database file (member/snap/db) or a truncated snapshot"
            )),
        }
    }
}

/// Checks the trailer of a raw snapshot file by reading it once, 1 MiB at a time.
pub fn check_trailer(path: &Path) -> Result<Trailer> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    if len < TRAILER || len % 512 != TRAILER {
        return Ok(Trailer::Absent { size: len });
    }
    let data = len - TRAILER;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < data {
        let n = (data - off).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], off)
            .map_err(|e| Error::io("read", path, e))?;
        hasher.update(&buf[..n]);
        off += n as u64;
    }
    let mut tail = [0u8; 32];
    file.read_exact_at(&mut tail, data)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(Trailer::from_parts(len, hasher.finalize().into(), &tail))
}

/// What is known about a snapshot besides its database.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    /// The file name (or object name).
    pub name: String,
    /// `file:///abs/path` or `s3://bucket/key`.
    pub location: String,
    /// Bytes of the file as stored: the zip for a compressed snapshot.
    pub file_size: u64,
    /// Whether the snapshot is a `.zip`.
    pub compressed: bool,
    /// Bytes of the raw snapshot (database and trailer).
    pub raw_size: u64,
    /// The trailer, when already checked (a decompressed zip); `None` for a raw file, which
    /// [`status`] and [`verify`] check.
    pub trailer: Option<Trailer>,
    /// The node, from `K3s-Node-Name` (S3) or from a name with a default prefix.
    pub node: Option<String>,
    /// The time in the name.
    pub created: Option<DateTime<Utc>>,
}

/// A snapshot ready to read. Temporary files go away when it is dropped.
#[derive(Debug)]
pub struct Opened {
    /// The raw snapshot on disk (the file itself, or a temporary copy).
    pub raw: PathBuf,
    pub info: SnapshotInfo,
    /// Holds the temporary copy, removed before `_tmp`.
    _copy: Option<Raw>,
    _tmp: Option<tempfile::TempDir>,
}

impl Opened {
    /// Opens the database; a truncated or unreadable file is an [`Error::Integrity`].
    pub fn db(&self) -> Result<Db> {
        Db::open(&self.raw).map_err(|e| match e {
            Error::Integrity(m) if !m.contains(&self.info.name) => {
                Error::Integrity(format!("{}: {m}", self.info.name))
            }
            other => other,
        })
    }
}

/// The node in a name `<prefix>-<node>-<unix>[.zip]`, when the prefix is one of the defaults
/// (`on-demand`, `etcd-snapshot`): prefixes and node names may both hold `-`, so with another
/// prefix the two cannot be told apart.
pub fn node_from_name(name: &str) -> Option<String> {
    parse_snapshot_time(name)?;
    let base = crate::naming::strip_compressed_suffix(name);
    let (rest, _) = base.rsplit_once('-')?;
    [DEFAULT_ON_DEMAND_PREFIX, DEFAULT_SCHEDULED_PREFIX]
        .iter()
        .find_map(|p| rest.strip_prefix(p)?.strip_prefix('-'))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// A temporary directory in `$TMPDIR` (default `/tmp`) for downloads and decompressed copies.
fn temp_dir() -> Result<tempfile::TempDir> {
    let base = std::env::temp_dir();
    tempfile::Builder::new()
        .prefix(".etcdsnap-inspect-")
        .tempdir_in(&base)
        .map_err(|e| {
            Error::io(
                "create a temporary directory (set TMPDIR to change where) in",
                &base,
                e,
            )
        })
}

/// Makes `source` readable: downloads an S3 object, decompresses a `.zip`.
pub async fn open(source: &Source) -> Result<Opened> {
    match source {
        Source::Path(p) => {
            let p = p.clone();
            tokio::task::spawn_blocking(move || open_local(&p, None, None))
                .await
                .map_err(|e| Error::Other(format!("open task failed: {e}")))?
        }
        Source::S3 { target, name } => {
            let tmp = temp_dir()?;
            // The download's extra metadata lands in `../.metadata`: keep it inside `tmp`.
            let dl = tmp.path().join("s3");
            crate::fsutil::create_private_dir(&dl)?;
            let store = source::connect(target, S3Identity::default()).await?;
            let got = source::fetch(&store, name, &dl).await?;
            let node = got.node.or_else(|| node_from_name(name));
            tokio::task::spawn_blocking(move || {
                let mut o = open_local(&got.path, Some(tmp), Some(got.location))?;
                o.info.node = node;
                Ok(o)
            })
            .await
            .map_err(|e| Error::Other(format!("open task failed: {e}")))?
        }
    }
}

/// [`open`] of a local file, decompressing (when it is compressed) into `scratch`, which goes
/// with the returned value.
pub fn open_path_in(path: &Path, scratch: tempfile::TempDir) -> Result<Opened> {
    open_local(path, Some(scratch), None)
}

fn open_local(
    path: &Path,
    tmp: Option<tempfile::TempDir>,
    location: Option<String>,
) -> Result<Opened> {
    let file_size = source::check_file(path, &Purpose::Read)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let location = location.unwrap_or_else(|| {
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        format!("file://{}", abs.display())
    });
    let mut info = SnapshotInfo {
        node: node_from_name(&name),
        created: parse_snapshot_time(&name),
        compressed: is_compressed(&name),
        name,
        location,
        file_size,
        raw_size: file_size,
        trailer: None,
    };
    if !info.compressed {
        return Ok(Opened {
            raw: path.to_path_buf(),
            info,
            _copy: None,
            _tmp: tmp,
        });
    }
    let tmp = match tmp {
        Some(t) => t,
        None => temp_dir()?,
    };
    let copy = source::open_checked(path, file_size, &Unpack::new(Purpose::Read, tmp.path()))?;
    info.raw_size = copy.raw_size;
    if let Checked::Hashed {
        total,
        computed,
        tail,
    } = &copy.checked
    {
        info.trailer = Some(Trailer::from_parts(*total, *computed, tail));
    }
    Ok(Opened {
        raw: copy.raw.clone(),
        info,
        _copy: Some(copy),
        _tmp: Some(tmp),
    })
}

/// Runs `a` here and `b` on a second thread, for a trailer check beside a database pass.
fn both<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    std::thread::scope(|s| {
        let hb = s.spawn(b);
        let ra = a();
        let rb = match hb.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        };
        (ra, rb)
    })
}

/// The trailer: known already (a decompressed zip), checked beside `work` (a raw file), or
/// skipped.
pub fn with_trailer<T: Send>(
    o: &Opened,
    check: bool,
    work: impl FnOnce() -> T + Send,
) -> (T, Option<Result<Trailer>>) {
    match (&o.info.trailer, check) {
        (Some(t), _) => (work(), Some(Ok(t.clone()))),
        (None, false) => (work(), None),
        (None, true) => {
            let raw = o.raw.clone();
            let (r, t) = both(work, move || check_trailer(&raw));
            (r, Some(t))
        }
    }
}

#[cfg(test)]
mod tests;
