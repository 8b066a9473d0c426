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

/// `etcd-snapshot status`: etcdutl's four figures and what etcdsnap knows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// CRC-32C of the buckets' names, keys and values (etcdutl's hash).
    pub hash: u32,
    /// The newest revision stored.
    pub revision: i64,
    /// The number of entries in all buckets (etcd 3.4/3.5's count).
    pub total_key: u64,
    /// The database size in bytes.
    pub total_size: u64,
    pub name: String,
    pub location: String,
    /// Bytes of the file as stored.
    pub file_size: u64,
    /// Bytes of the zip, for a compressed snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compressed_size: Option<u64>,
    /// Bytes of the raw snapshot, for a compressed snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncompressed_size: Option<u64>,
    /// `valid`, `invalid`, `absent`, or `unchecked`.
    pub trailer: String,
    /// The SHA-256 of the database, when the trailer is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The revision below which history is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compacted_revision: Option<i64>,
    pub page_size: u32,
    /// What is wrong with the trailer, when it is not valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trailer_problem: Option<String>,
}

/// `status` of an opened snapshot. With `check_trailer` the trailer of a raw file is hashed on
/// a second thread while the database is read.
pub fn status(o: &Opened, check_trailer: bool) -> Result<StatusReport> {
    let (st, trailer) = with_trailer(o, check_trailer, || -> Result<_> {
        let db = o.db()?;
        let st = db.status()?;
        Ok((st, db.compacted_revision()?, db.page_size()))
    });
    let (st, compacted, page_size) = st?;
    let trailer = trailer.transpose()?;
    let info = &o.info;
    Ok(StatusReport {
        hash: st.hash,
        revision: st.revision,
        total_key: st.total_key,
        total_size: st.total_size,
        name: info.name.clone(),
        location: info.location.clone(),
        file_size: info.file_size,
        compressed_size: info.compressed.then_some(info.file_size),
        uncompressed_size: info.compressed.then_some(info.raw_size),
        trailer: trailer
            .as_ref()
            .map_or("unchecked", Trailer::word)
            .to_string(),
        sha256: match &trailer {
            Some(Trailer::Valid { sha256 }) => Some(sha256.clone()),
            _ => None,
        },
        node: info.node.clone(),
        created_at: info
            .created
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        compacted_revision: compacted,
        page_size,
        trailer_problem: trailer.as_ref().and_then(Trailer::problem),
    })
}

/// What `verify` checked.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub trailer: Trailer,
    pub pages: u64,
    pub page_size: u32,
    pub revision: i64,
    pub txid: u64,
}

/// `verify`: the trailer, then the whole bbolt structure and etcd's revision keys. The first
/// problem is an [`Error::Integrity`]; a structural problem is named before a trailer mismatch
/// (it says where the damage is). A file without a trailer is refused (a snapshot cut at a page
/// boundary may look whole otherwise) unless `skip_hash_check`, which checks the structure
/// alone, for a raw `member/snap/db`.
pub fn verify(o: &Opened, skip_hash_check: bool) -> Result<VerifyReport> {
    let (checked, trailer) = with_trailer(o, !skip_hash_check, || -> Result<_> {
        let db = o.db()?;
        db.verify()?;
        let revision = db.status()?.revision;
        Ok((
            db.size() / u64::from(db.page_size()),
            db.page_size(),
            revision,
            db.txid(),
        ))
    });
    let unchecked = Ok(Trailer::Absent { size: 0 });
    let trailer = trailer.unwrap_or(unchecked);
    let name = &o.info.name;
    let (pages, page_size, revision, txid) = match checked {
        Ok(c) => c,
        Err(Error::Integrity(m)) => {
            let also = match &trailer {
                Ok(Trailer::Mismatch { .. }) => "; its SHA-256 trailer does not match either",
                Ok(Trailer::Valid { .. }) => {
                    "; its SHA-256 trailer matches, so the file was written this way (not damaged after the snapshot)"
                }
                _ => "",
            };
            let m = if m.contains(name.as_str()) {
                m
            } else {
                format!("{name}: {m}")
            };
            return Err(Error::Integrity(format!("{m}{also}")));
        }
        Err(e) => return Err(e),
    };
    let trailer = trailer?;
    match &trailer {
        Trailer::Mismatch { .. } => {
            return Err(Error::Integrity(format!(
                "{name}: {}",
                trailer.problem().unwrap_or_default()
            )));
        }
        Trailer::Absent { .. } if !skip_hash_check => {
            return Err(Error::Integrity(format!(
                "{name}: {}; its structure is intact. For a raw database file pass --skip-hash-check to check the structure alone",
                trailer.problem().unwrap_or_default()
            )));
        }
        _ => {}
    }
    Ok(VerifyReport {
        trailer,
        pages,
        page_size,
        revision,
        txid,
    })
}

/// A stored value, classified for display.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueView {
    Empty,
    /// UTF-8 text.
    Text(String),
    /// Anything else, shown as base64.
    Binary(Vec<u8>),
    /// A JSON object or array that is not a Kubernetes object.
    Json(Value),
    Kube(KubeObject),
    /// Encrypted at rest by the Kubernetes API server: the header only.
    Encrypted(Encrypted),
    /// `k8s\0` followed by something that is not a `runtime.Unknown`.
    BadProtobuf {
        error: String,
        bytes: Vec<u8>,
    },
}

/// Whether `v` starts like a JSON object or array (after white space).
fn looks_like_json(v: &[u8]) -> bool {
    matches!(
        v.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// The table line of a Kubernetes object: `v1/Secret ns/name (protobuf, N bytes) type=...
/// keys=a,b` (the keys of Secrets and ConfigMaps, never their values).
fn kube_summary(id: &kube::Ident, size: usize) -> String {
    let mut s = format!("{}/{}", id.api_version, id.kind);
    let name = match (id.namespace.as_str(), id.name.as_str()) {
        ("", n) => n.to_string(),
        (ns, n) => format!("{ns}/{n}"),
    };
    if !name.is_empty() {
        s.push(' ');
        s.push_str(&name);
    }
    let enc = match id.encoding {
        Some(kube::Encoding::Protobuf) => "protobuf, ",
        Some(kube::Encoding::Json) => "json, ",
        None => "",
    };
    s.push_str(&format!(" ({enc}{size} bytes)"));
    if let Some(t) = &id.secret_type {
        s.push_str(&format!(" type={t}"));
    }
    if !id.data_keys.is_empty() && matches!(id.kind.as_str(), "Secret" | "ConfigMap") {
        s.push_str(&format!(" keys={}", id.data_keys.join(",")));
    }
    s
}

/// A value read only as far as a listing needs: its type, who it is if it is a Kubernetes
/// object, and its table line. JSON is scanned, not built, and only Secret and ConfigMap
/// bodies are decoded, so that a table of a large database costs little more than reading it.
#[derive(Debug, Clone, PartialEq)]
pub struct Glance {
    pub type_name: &'static str,
    pub ident: Option<kube::Ident>,
    pub summary: String,
}

/// Classifies `v` like [`ValueView::of`], cheaply.
pub fn glance(v: &[u8]) -> Glance {
    let size = v.len();
    let simple = |view: ValueView| Glance {
        type_name: view.type_name(),
        ident: None,
        summary: view.summary(size),
    };
    if v.is_empty() {
        return simple(ValueView::Empty);
    }
    if let Some(e) = kube::encrypted(v) {
        return simple(ValueView::Encrypted(e));
    }
    if let Some(env) = v.strip_prefix(kube::PROTO_PREFIX) {
        return match kube::peek_protobuf(env) {
            Ok(id) => Glance {
                type_name: "kubernetes",
                summary: kube_summary(&id, size),
                ident: Some(id),
            },
            Err(e) => simple(ValueView::BadProtobuf {
                error: e.to_string(),
                bytes: Vec::new(),
            }),
        };
    }
    if looks_like_json(v) {
        match kube::peek_json(v) {
            Ok(Some(id)) => {
                return Glance {
                    type_name: "kubernetes",
                    summary: kube_summary(&id, size),
                    ident: Some(id),
                };
            }
            Ok(None) => return simple(ValueView::Json(Value::Null)),
            Err(_) => {}
        }
    }
    // Text or binary: cheap to classify in full (the text is cut to 60 characters).
    match std::str::from_utf8(v) {
        Ok(t) => simple(ValueView::Text(t.chars().take(61).collect())),
        Err(_) => simple(ValueView::Binary(Vec::new())),
    }
}

impl ValueView {
    /// Classifies `v`.
    pub fn of(v: &[u8]) -> ValueView {
        if v.is_empty() {
            return ValueView::Empty;
        }
        if let Some(e) = kube::encrypted(v) {
            return ValueView::Encrypted(e);
        }
        if let Some(env) = v.strip_prefix(kube::PROTO_PREFIX) {
            return match kube::decode_protobuf(env) {
                Ok(o) => ValueView::Kube(o),
                Err(e) => ValueView::BadProtobuf {
                    error: e.to_string(),
                    bytes: v.to_vec(),
                },
            };
        }
        if looks_like_json(v)
            && let Ok(j) = serde_json::from_slice::<Value>(v)
        {
            return match kube::from_json(j) {
                Ok(o) => ValueView::Kube(o),
                Err(j) => ValueView::Json(j),
            };
        }
        match std::str::from_utf8(v) {
            Ok(s) => ValueView::Text(s.to_string()),
            Err(_) => ValueView::Binary(v.to_vec()),
        }
    }

    /// `empty`, `text`, `binary`, `json`, `kubernetes` or `encrypted`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ValueView::Empty => "empty",
            ValueView::Text(_) => "text",
            ValueView::Binary(_) | ValueView::BadProtobuf { .. } => "binary",
            ValueView::Json(_) => "json",
            ValueView::Kube(_) => "kubernetes",
            ValueView::Encrypted(_) => "encrypted",
        }
    }

    /// One line for a table, at most about 100 characters; never a secret's data.
    pub fn summary(&self, size: usize) -> String {
        match self {
            ValueView::Empty => "(empty)".into(),
            ValueView::Text(t) => {
                let shown: String = t.chars().take(60).flat_map(char::escape_debug).collect();
                if t.chars().count() > 60 {
                    format!("\"{shown}…\" ({size} bytes)")
                } else {
                    format!("\"{shown}\"")
                }
            }
            ValueView::Binary(_) => format!("binary, {size} bytes"),
            ValueView::BadProtobuf { .. } => {
                format!("binary, {size} bytes (k8s\\0 prefix, not a valid protobuf object)")
            }
            ValueView::Json(_) => format!("json, {size} bytes"),
            ValueView::Encrypted(e) => {
                let mut what = e.provider.clone();
                if !e.version.is_empty() {
                    what.push(' ');
                    what.push_str(&e.version);
                }
                if !e.key.is_empty() {
                    what.push_str(", key ");
                    what.push_str(&e.key);
                }
                format!("encrypted at rest ({what}), {size} bytes")
            }
            ValueView::Kube(o) => kube_summary(&o.ident(), size),
        }
    }

    /// The fields a JSON entry gets for this value: `value_type`, `value` and more.
    fn put_json(&self, e: &mut Map<String, Value>) {
        e.insert("value_type".into(), json!(self.type_name()));
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match self {
            ValueView::Empty => {
                e.insert("value".into(), json!(""));
            }
            ValueView::Text(t) => {
                e.insert("value".into(), json!(t));
            }
            ValueView::Binary(b) => {
                e.insert("value".into(), json!(b64(b)));
            }
            ValueView::BadProtobuf { error, bytes } => {
                e.insert("value".into(), json!(b64(bytes)));
                e.insert("note".into(), json!(error));
            }
            ValueView::Json(j) => {
                e.insert("value".into(), j.clone());
            }
            ValueView::Encrypted(x) => {
                e.insert(
                    "encryption".into(),
                    serde_json::to_value(x).unwrap_or(Value::Null),
                );
                e.insert(
                    "note".into(),
                    json!(
                        "encrypted at rest by the Kubernetes API server; etcdsnap cannot decrypt it"
                    ),
                );
            }
            ValueView::Kube(o) => {
                e.insert(
                    "encoding".into(),
                    serde_json::to_value(o.encoding).unwrap_or(Value::Null),
                );
                e.insert("value".into(), o.object.clone());
                if let Some(n) = &o.note {
                    e.insert("note".into(), json!(n));
                }
            }
        }
    }
}

/// What `inspect` lists.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    /// Only keys starting with these bytes.
    pub prefix: Option<Vec<u8>>,
    /// The revision (latest when `None`).
    pub rev: Option<i64>,
    /// Keys without values.
    pub keys_only: bool,
    /// Only Kubernetes objects of this kind (`Secret`) or resource (`secrets`).
    pub kind: Option<String>,
    /// Only Kubernetes objects in this namespace.
    pub namespace: Option<String>,
}

/// One key of the listing.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Vec<u8>,
    pub head: KeyHead,
    /// The value, unless `keys_only`.
    pub value: Option<Vec<u8>>,
}

impl Entry {
    /// The value decoded in full, unless `keys_only`.
    pub fn view(&self) -> Option<ValueView> {
        self.value.as_deref().map(ValueView::of)
    }

    /// The value's table line, unless `keys_only`.
    pub fn summary(&self) -> Option<String> {
        self.value.as_deref().map(|v| glance(v).summary)
    }

    /// The entry as JSON, with etcd's field names for the revisions and the lease, and the
    /// value decoded.
    pub fn to_json(&self) -> Value {
        let mut e = Map::new();
        match std::str::from_utf8(&self.key) {
            Ok(k) => {
                e.insert("key".into(), json!(k));
            }
            Err(_) => {
                e.insert("key".into(), json!(String::from_utf8_lossy(&self.key)));
                e.insert(
                    "key_base64".into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(&self.key)),
                );
            }
        }
        e.insert("create_revision".into(), json!(self.head.create_revision));
        e.insert("mod_revision".into(), json!(self.head.mod_revision));
        e.insert("version".into(), json!(self.head.version));
        e.insert("lease".into(), json!(self.head.lease));
        if let Some(v) = &self.value {
            e.insert("value_size".into(), json!(v.len()));
            ValueView::of(v).put_json(&mut e);
        }
        Value::Object(e)
    }
}

/// The revision listed and how many keys were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InspectSummary {
    pub revision: i64,
    pub compacted_revision: Option<i64>,
    pub count: u64,
}

/// The key-layout part of a Kubernetes key: `/registry/<resource>/[<namespace>/]<name>`, with
/// `<group>/<resource>` for API groups with a dot (custom resources), and the API server's
/// historical exceptions (`minions` for nodes, `services/specs`, `services/endpoints`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryKey {
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl RegistryKey {
    pub fn parse(key: &[u8]) -> Option<RegistryKey> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix("/registry/")?;
        let segs: Vec<&str> = rest.split('/').collect();
        let (resource, skip) = match segs.as_slice() {
            ["services", "specs", ..] => ("services".to_string(), 2),
            ["services", "endpoints", ..] => ("endpoints".to_string(), 2),
            ["minions", ..] => ("nodes".to_string(), 1),
            [group, res, ..] if group.contains('.') => (format!("{res}.{group}"), 2),
            [res, ..] => (res.to_string(), 1),
            [] => return None,
        };
        match &segs[skip..] {
            [name] => Some(RegistryKey {
                resource,
                namespace: None,
                name: name.to_string(),
            }),
            [ns, name] => Some(RegistryKey {
                resource,
                namespace: Some(ns.to_string()),
                name: name.to_string(),
            }),
            _ => None,
        }
    }
}

/// The resource name of a kind, as the API server forms it: lower case, plural.
fn plural(kind: &str) -> String {
    let k = kind.to_ascii_lowercase();
    if k == "endpoints" || k.ends_with("ses") {
        return k;
    }
    if k.ends_with('s') || k.ends_with('x') || k.ends_with("ch") || k.ends_with("sh") {
        return format!("{k}es");
    }
    if let Some(stem) = k.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    format!("{k}s")
}

/// Whether `wanted` (a kind such as `Secret` or a resource such as `secrets`) names `kind` or
/// `resource`.
fn kind_matches(wanted: &str, kind: Option<&str>, resource: Option<&str>) -> bool {
    let w = wanted.to_ascii_lowercase();
    if let Some(k) = kind.filter(|k| !k.is_empty()) {
        return k.eq_ignore_ascii_case(&w) || plural(k) == w;
    }
    match resource {
        Some(r) => {
            let base = r.split('.').next().unwrap_or(r);
            r == w || base == w || base == plural(&w)
        }
        None => false,
    }
}

impl InspectOptions {
    fn filters_kube(&self) -> bool {
        self.kind.is_some() || self.namespace.is_some()
    }

    fn keep_key(&self, key: &[u8]) -> bool {
        if let Some(p) = &self.prefix
            && !key.starts_with(p)
        {
            return false;
        }
        !self.filters_kube() || key.starts_with(b"/registry/")
    }

    /// The kind and namespace filters, on the decoded object when there is one and on the key
    /// layout otherwise (an encrypted Secret has only its key to go by).
    fn keep_value(&self, key: &[u8], value: &[u8]) -> bool {
        if !self.filters_kube() {
            return true;
        }
        let layout = RegistryKey::parse(key);
        let g = glance(value);
        let obj = g.ident.as_ref();
        if let Some(k) = &self.kind {
            let kind = obj.map(|o| o.kind.as_str());
            if !kind_matches(k, kind, layout.as_ref().map(|l| l.resource.as_str())) {
                return false;
            }
        }
        if let Some(ns) = &self.namespace {
            let have = match obj {
                Some(o) if !o.name.is_empty() => Some(o.namespace.as_str()),
                _ => layout.as_ref().and_then(|l| l.namespace.as_deref()),
            };
            if have != Some(ns.as_str()) {
                return false;
            }
        }
        true
    }
}

/// The keys `inspect` lists, found but not yet read: the revision is known before any entry
/// is produced, so that output can start with it.
pub struct Listing<'db> {
    db: &'db Db,
    opts: InspectOptions,
    heads: Heads,
}

/// The key space of `db` at `opts.rev`, under the prefix and (for kind and namespace) on
/// Kubernetes keys only: [`Listing::for_each`] reads the values.
pub fn listing<'db>(db: &'db Db, opts: &InspectOptions) -> Result<Listing<'db>> {
    let heads = db.heads_at(opts.rev, |k| opts.keep_key(k))?;
    Ok(Listing {
        db,
        opts: opts.clone(),
        heads,
    })
}

impl Listing<'_> {
    /// The revision listed.
    pub fn revision(&self) -> i64 {
        self.heads.revision
    }

    /// The revision below which the database has no history.
    pub fn compacted_revision(&self) -> Option<i64> {
        self.heads.compacted
    }

    /// Passes each entry to `emit` in key order, reading values one at a time; returns the
    /// number of entries (those the kind and namespace filters kept).
    pub fn for_each(&self, mut emit: impl FnMut(&Entry) -> Result<()>) -> Result<u64> {
        let opts = &self.opts;
        let mut count = 0u64;
        let need_value = !opts.keys_only || opts.filters_kube();
        for (key, head) in &self.heads.keys {
            let value = if need_value {
                Some(self.db.kv_at(head.revision)?.value)
            } else {
                None
            };
            if let Some(v) = &value
                && !opts.keep_value(key, v)
            {
                continue;
            }
            let entry = Entry {
                key: key.clone(),
                head: *head,
                value: if opts.keys_only { None } else { value },
            };
            emit(&entry)?;
            count += 1;
        }
        Ok(count)
    }
}

/// The key space of `db` at `opts.rev`, each entry passed to `emit` in key order.
pub fn inspect(
    db: &Db,
    opts: &InspectOptions,
    emit: impl FnMut(&Entry) -> Result<()>,
) -> Result<InspectSummary> {
    let l = listing(db, opts)?;
    let count = l.for_each(emit)?;
    Ok(InspectSummary {
        revision: l.revision(),
        compacted_revision: l.compacted_revision(),
        count,
    })
}

/// How a key differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One side of a change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value_size: usize,
    pub value_type: String,
    pub summary: String,
}

/// A key that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub key: String,
    pub change: ChangeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Side>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Side>,
    /// For changed JSON and Kubernetes objects: the fields that differ (dotted paths, three
    /// levels deep at most); `lease` when the lease changed; `value` for other values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// `--diff`: what changed from `old` to `new`, both at their latest revisions.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub old_revision: i64,
    pub new_revision: i64,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub changes: Vec<Change>,
}

fn side(head: &KeyHead, value: &[u8]) -> Side {
    let g = glance(value);
    Side {
        create_revision: head.create_revision,
        mod_revision: head.mod_revision,
        version: head.version,
        lease: head.lease,
        value_size: value.len(),
        value_type: g.type_name.to_string(),
        summary: g.summary,
    }
}

fn as_object(view: &ValueView) -> Option<&Value> {
    match view {
        ValueView::Kube(o) => Some(&o.object),
        ValueView::Json(j) => Some(j),
        _ => None,
    }
}

/// Dotted paths where `a` and `b` differ, up to `depth` levels.
fn differing(a: &Value, b: &Value, path: &str, depth: usize, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    if let (Value::Object(x), Value::Object(y)) = (a, b)
        && depth > 0
    {
        let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            differing(
                x.get(k).unwrap_or(&Value::Null),
                y.get(k).unwrap_or(&Value::Null),
                &p,
                depth - 1,
                out,
            );
        }
        return;
    }
    out.push(if path.is_empty() {
        "value".into()
    } else {
        path.to_string()
    });
}

/// Compares the latest key spaces of `old` and `new` (keys under `prefix`, if given). Values of
/// keys present in both are compared byte for byte, one pair at a time.
pub fn diff(old: &Db, new: &Db, prefix: Option<&[u8]>) -> Result<DiffReport> {
    let keep = |k: &[u8]| prefix.is_none_or(|p| k.starts_with(p));
    let a: Heads = old.heads_at(None, keep)?;
    let b: Heads = new.heads_at(None, keep)?;
    let mut report = DiffReport {
        old_revision: a.revision,
        new_revision: b.revision,
        added: 0,
        removed: 0,
        changed: 0,
        changes: Vec::new(),
    };
    let show = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    let mut ia = a.keys.iter().peekable();
    let mut ib = b.keys.iter().peekable();
    loop {
        let order = match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
        };
        match order {
            std::cmp::Ordering::Less => {
                let Some((k, h)) = ia.next() else { break };
                let v = old.kv_at(h.revision)?.value;
                report.removed += 1;
                report.changes.push(Change {
                    key: show(k),
                    change: ChangeKind::Removed,
                    old: Some(side(h, &v)),
                    new: None,
                    fields: Vec::new(),
                });
            }
            std::cmp::Ordering::Greater => {
                let Some((k, h)) = ib.next() else { break };
                let v = new.kv_at(h.revision)?.value;
                report.added += 1;
                report.changes.push(Change {
                    key: show(k),
                    change: ChangeKind::Added,
                    old: None,
                    new: Some(side(h, &v)),
                    fields: Vec::new(),
                });
            }
            std::cmp::Ordering::Equal => {
                let (Some((k, ha)), Some((_, hb))) = (ia.next(), ib.next()) else {
                    break;
                };
                let va = old.kv_at(ha.revision)?.value;
                let vb = new.kv_at(hb.revision)?.value;
                if va == vb && ha.lease == hb.lease {
                    continue;
                }
                let mut fields = Vec::new();
                if va != vb {
                    let (xa, xb) = (ValueView::of(&va), ValueView::of(&vb));
                    match (as_object(&xa), as_object(&xb)) {
                        (Some(oa), Some(ob)) => differing(oa, ob, "", 3, &mut fields),
                        _ => fields.push("value".into()),
                    }
                    if fields.is_empty() {
                        // Same decoded object, different bytes (encoding, field order).
                        fields.push("value".into());
                    }
                }
                if ha.lease != hb.lease {
                    fields.push("lease".into());
                }
                report.changed += 1;
                report.changes.push(Change {
                    key: show(k),
                    change: ChangeKind::Changed,
                    old: Some(side(ha, &va)),
                    new: Some(side(hb, &vb)),
                    fields,
                });
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
