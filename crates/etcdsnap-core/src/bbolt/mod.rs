//! A read-only reader of etcd's bbolt database file: an etcd snapshot (the database followed by
//! a 32-byte SHA-256 trailer, recognised by `len % 512 == 32`) or a raw `member/snap/db`.
//!
//! Rules:
//! - Memory is bounded by the tree depth times the largest page, whatever the file size: pages
//!   are read one at a time with positional reads, never the whole file. [`Db::verify`] adds two
//!   bitmaps of one bit per page.
//! - Nothing panics on any input. Every offset is bounds-checked, page ids are checked against
//!   the high-water mark, and depth limits and visit budgets stop cycles; a corrupt file is an
//!   [`Error::Integrity`] naming the page and what is wrong.
//! - [`Db::status`] reproduces `etcdutl snapshot status` of etcd 3.4/3.5 exactly (hash, revision,
//!   total keys, size); [`Db::verify`] is a structural check in the spirit of bbolt's `tx.Check`.
//! - etcd 3.4 and 3.5 open bbolt with NoFreelistSync: their files have no freelist page, and
//!   every page not reachable from the root counts as free (as bbolt rebuilds it at open).

mod check;
mod crc32c;
mod mvcc;
mod page;
#[cfg(test)]
pub(crate) mod tests;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crc32c::Crc32c;
pub use mvcc::{Heads, KeyHead, KeyValue, MvccEntry, MvccIter, Revision};

use crate::{Error, Result};
use page::{BUCKET_FLAG, HEADER, Header, Page, Place};

/// Magic number of a bbolt meta page.
const MAGIC: u32 = 0xED0C_DAED;
/// The only bbolt file format version there is.
const VERSION: u32 = 2;
/// Meta fields start after the page header and take 64 bytes.
const META_LEN: usize = 64;
/// Meta `freelist` value meaning "not persisted" (bbolt's NoFreelistSync).
const NO_FREELIST: u64 = u64::MAX;
/// The SHA-256 trailer `etcdctl snapshot save` appends.
const TRAILER: u64 = 32;
/// The smallest page size accepted: a page header and a meta must fit.
const MIN_PAGE_SIZE: u32 = 128;
/// The largest page size accepted: the largest bbolt's meta-1 probe tries. It also caps what a
/// single-page read allocates.
const MAX_PAGE_SIZE: u32 = 16 << 20;
/// B+tree depth limit: a tree of fan-out ≥ 2 this deep would need more pages than any file has,
/// so a deeper path means a branch points back up the tree.
const MAX_DEPTH: usize = 64;

/// The fields of a meta page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Meta {
    page_size: u32,
    flags: u32,
    root: u64,
    freelist: u64,
    /// High-water mark: the first page id past the database.
    pgid: u64,
    txid: u64,
}

/// FNV-1a, 64 bits: the checksum bbolt keeps in each meta page.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Decodes and validates the 64 meta bytes; the error says why they are unusable.
fn parse_meta(b: &[u8]) -> std::result::Result<Meta, String> {
    let field32 = |off| page::u32_at(b, off).unwrap_or(0);
    let field64 = |off| page::u64_at(b, off).unwrap_or(0);
    if b.len() < META_LEN {
        return Err(format!("only {} bytes, a meta needs {META_LEN}", b.len()));
    }
    let magic = field32(0);
    if magic != MAGIC {
        return Err(format!(
            "bad magic 0x{magic:08x} (a bbolt meta has 0x{MAGIC:08x})"
        ));
    }
    let version = field32(4);
    if version != VERSION {
        return Err(format!(
            "format version {version}, this reader knows only {VERSION}"
        ));
    }
    let stored = field64(56);
    let computed = fnv1a64(&b[..56]);
    if stored != computed {
        return Err(format!(
            "checksum mismatch (stored 0x{stored:016x}, computed 0x{computed:016x}): the meta page is corrupt"
        ));
    }
    let page_size = field32(8);
    if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(format!(
            "page size {page_size} outside the supported {MIN_PAGE_SIZE} B to {} MiB",
            MAX_PAGE_SIZE >> 20
        ));
    }
    Ok(Meta {
        page_size,
        flags: field32(12),
        root: field64(16),
        freelist: field64(32),
        pgid: field64(40),
        txid: field64(48),
    })
}

/// What `etcdutl snapshot status` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// CRC-32C over each top-level bucket's name followed by its keys and values.
    pub hash: u32,
    /// Main revision of the last key of bucket `key` (0 when it is empty).
    pub revision: i64,
    /// Number of entries in all top-level buckets (etcd 3.4/3.5 semantics).
    pub total_key: u64,
    /// The database size: high-water mark × page size.
    pub total_size: u64,
}

/// An open database file.
#[derive(Debug)]
pub struct Db {
    file: File,
    path: PathBuf,
    data_len: u64,
    page_size: u32,
    /// The meta in use: the valid one with the higher txid.
    meta: Meta,
    /// Each meta page as decoded at open, or why it is unusable (for [`Db::verify`]).
    metas: [std::result::Result<Meta, String>; 2],
}

/// A bucket: a B+tree of sorted keys, rooted in a page of the file or inline in its parent.
#[derive(Clone, Debug)]
pub struct Bucket<'db> {
    db: &'db Db,
    root: Root,
    /// Who points to the root, for error messages.
    from: Referrer,
}

#[derive(Clone, Debug)]
enum Root {
    Disk(u64),
    Inline(Arc<Page>),
}

/// A bucket entry's value: bytes, or a nested bucket.
#[derive(Clone, Debug)]
pub enum Value<'db> {
    /// A plain value.
    Bytes(Vec<u8>),
    /// A sub-bucket (etcd has none below the top level).
    Bucket(Bucket<'db>),
}

/// Who points to a page, for error messages.
#[derive(Clone, Copy, Debug)]
enum Referrer {
    Meta,
    Elem(Place, usize),
}

impl std::fmt::Display for Referrer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Referrer::Meta => write!(f, "the meta page (root bucket)"),
            Referrer::Elem(place, i) => write!(f, "{place} element {i}"),
        }
    }
}

impl Db {
    /// Opens a snapshot or database file. A file with `len % 512 == 32` is a snapshot: its last
    /// 32 bytes are the SHA-256 trailer and not data.
    pub fn open(path: &Path) -> Result<Db> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        let data_len = if len % 512 == TRAILER {
            len - TRAILER
        } else {
            len
        };
        Db::from_file(file, path, data_len)
    }

    /// Opens a file whose first `data_len` bytes are the database, whatever follows.
    pub fn open_len(path: &Path, data_len: u64) -> Result<Db> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        if data_len > len {
            return Err(Error::Integrity(format!(
                "{} is truncated: it has {len} bytes, fewer than the {data_len} bytes of database expected",
                path.display()
            )));
        }
        Db::from_file(file, path, data_len)
    }

    fn from_file(file: File, path: &Path, data_len: u64) -> Result<Db> {
        let mut db = Db {
            file,
            path: path.to_path_buf(),
            data_len,
            page_size: 0,
            meta: Meta {
                page_size: 0,
                flags: 0,
                root: 0,
                freelist: 0,
                pgid: 0,
                txid: 0,
            },
            metas: [Err(String::new()), Err(String::new())],
        };
        let m0 = db.read_meta_at(0)?;
        let page_size = match &m0 {
            Ok(m) => m.page_size,
            Err(why) => db.probe_page_size()?.ok_or_else(|| {
                Error::Integrity(format!(
                    "{} has no valid meta page: meta page 0: {why}; and no valid meta page 1 at 1 KiB × 2^i (i = 0..14), where bbolt looks for it{}",
                    path.display(),
                    if data_len < 2 * 1024 {
                        format!("; the file has only {data_len} bytes of data, so it is probably truncated")
                    } else {
                        String::new()
                    }
                ))
            })?,
        };
        let m1 = match db.read_meta_at(u64::from(page_size))? {
            Ok(m) if m.page_size != page_size => Err(format!(
                "it says page size {}, but page size {page_size} is in use",
                m.page_size
            )),
            other => other,
        };
        let meta = match (&m0, &m1) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    *b
                } else {
                    *a
                }
            }
            (Ok(a), Err(_)) => *a,
            (Err(_), Ok(b)) => *b,
            (Err(e0), Err(e1)) => {
                return Err(Error::Integrity(format!(
                    "{} has no valid meta page: meta page 0: {e0}; meta page 1: {e1}",
                    path.display()
                )));
            }
        };
        let size = meta.pgid.checked_mul(u64::from(page_size));
        match size {
            Some(size) if size <= data_len => {}
            _ => {
                return Err(Error::Integrity(format!(
                    "{} is truncated: its meta page (txid {}) says the database is {} pages of {page_size} bytes ({} bytes), but the file holds only {data_len} bytes of data",
                    path.display(),
                    meta.txid,
                    meta.pgid,
                    size.map_or_else(|| "more than 2^64".to_string(), |s| s.to_string()),
                )));
            }
        }
        db.page_size = page_size;
        db.meta = meta;
        db.metas = [m0, m1];
        Ok(db)
    }

    /// The meta at `offset` (a page start), or why it is unusable; `Err` only for I/O.
    fn read_meta_at(&self, offset: u64) -> Result<std::result::Result<Meta, String>> {
        let need = (HEADER + META_LEN) as u64;
        if offset.saturating_add(need) > self.data_len {
            return Ok(Err(format!(
                "the file's {} bytes of data end before it",
                self.data_len
            )));
        }
        let mut buf = [0u8; HEADER + META_LEN];
        self.read_at(offset, &mut buf, "read the meta page of")?;
        Ok(parse_meta(&buf[HEADER..]))
    }

    /// The page size recorded in a valid meta page 1, found where bbolt looks for it when
    /// meta page 0 is unreadable.
    fn probe_page_size(&self) -> Result<Option<u32>> {
        for i in 0..=14 {
            let pos = 1024u64 << i;
            if let Ok(m) = self.read_meta_at(pos)?
                && u64::from(m.page_size) == pos
            {
                return Ok(Some(m.page_size));
            }
        }
        Ok(None)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8], what: &str) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io(what, &self.path, e))
    }

    /// The file this database was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The page size the file was created with.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// Bytes of the file that are database (the SHA-256 trailer of a snapshot excluded).
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// The id of the transaction the meta in use was written by.
    pub fn txid(&self) -> u64 {
        self.meta.txid
    }

    /// The size of the database: high-water mark × page size (bbolt's `tx.Size()`).
    pub fn size(&self) -> u64 {
        // Checked against the file length at open, so it cannot overflow.
        self.meta.pgid * u64::from(self.page_size)
    }

    /// Reads the header of page `id` and checks that the page's span lies below the high-water
    /// mark; the id in the header must be the page's own.
    fn read_header(&self, id: u64) -> Result<Header> {
        if id >= self.meta.pgid {
            return Err(Error::Integrity(format!(
                "page {id} is past the high-water mark {} (the database's last page is {})",
                self.meta.pgid,
                self.meta.pgid.saturating_sub(1)
            )));
        }
        let mut buf = [0u8; HEADER];
        self.read_at(
            id * u64::from(self.page_size),
            &mut buf,
            &format!("read page {id} of"),
        )?;
        let h = Header::parse(&buf).ok_or_else(|| Error::Integrity("short page header".into()))?;
        if h.id != id {
            return Err(Error::Integrity(format!(
                "page {id}: its header says it is page {} (the page is overwritten or corrupt)",
                h.id
            )));
        }
        let end = id.checked_add(1 + u64::from(h.overflow));
        if end.is_none_or(|end| end > self.meta.pgid) {
            return Err(Error::Integrity(format!(
                "page {id}: its overflow of {} pages runs past the high-water mark {}",
                h.overflow, self.meta.pgid
            )));
        }
        Ok(h)
    }

    /// Reads page `id` with its whole span.
    fn read_page(&self, id: u64) -> Result<Page> {
        let h = self.read_header(id)?;
        let ps = u64::from(self.page_size);
        // The span lies below the high-water mark, which is inside the data: it fits in memory
        // as much as the file does, and in usize on 64-bit targets.
        let len = (1 + u64::from(h.overflow)) * ps;
        let len = usize::try_from(len)
            .map_err(|_| Error::Integrity(format!("page {id}: a span of {len} bytes")))?;
        let mut buf = vec![0u8; len];
        self.read_at(id * ps, &mut buf, &format!("read page {id} of"))?;
        Page::new(Place::Disk(id), buf)
    }

    /// Reads the branch or leaf page `id` that `from` points to, naming `from` if the pointer
    /// is bad.
    fn read_node(&self, id: u64, from: Referrer) -> Result<Page> {
        if id < 2 {
            return Err(Error::Integrity(format!(
                "{from} points to page {id}, a meta page, where a branch or leaf page was expected"
            )));
        }
        if id >= self.meta.pgid {
            return Err(Error::Integrity(format!(
                "{from} points to page {id}, past the high-water mark {} (the database's last page is {}): a dangling page reference",
                self.meta.pgid,
                self.meta.pgid.saturating_sub(1)
            )));
        }
        let page = self.read_page(id)?;
        if !page.is_branch() && !page.is_leaf() {
            return Err(Error::Integrity(format!(
                "page {id} (referenced by {from}) has type {}, where a branch or leaf page was expected",
                page::type_name(page.header.flags)
            )));
        }
        Ok(page)
    }

    /// The root bucket, whose entries are the top-level buckets.
    pub fn root(&self) -> Bucket<'_> {
        Bucket {
            db: self,
            root: Root::Disk(self.meta.root),
            from: Referrer::Meta,
        }
    }

    /// The top-level bucket `name`, if there is one.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'_>>> {
        match self.root().get(name)? {
            Some(Value::Bucket(b)) => Ok(Some(b)),
            Some(Value::Bytes(_)) => Err(Error::Integrity(format!(
                "the root bucket's entry {} is not a bucket",
                show_key(name)
            ))),
            None => Ok(None),
        }
    }

    /// `etcdutl snapshot status` of etcd 3.4/3.5: the CRC-32C over, for each top-level bucket in
    /// byte order, its name followed by each key and value (a nested bucket adds its key only),
    /// the main revision of the last key of bucket `key`, the count of all entries, and the
    /// database size. etcdutl runs bbolt's check first; call [`Db::verify`] for that.
    pub fn status(&self) -> Result<Status> {
        let mut crc = Crc32c::new();
        let mut revision = 0i64;
        let mut total_key = 0u64;
        for entry in self.root().iter() {
            let (name, value) = entry?;
            let Value::Bucket(bucket) = value else {
                return Err(Error::Integrity(format!(
                    "the root bucket's entry {} is not a bucket",
                    show_key(&name)
                )));
            };
            crc.update(&name);
            let is_key = name == b"key";
            for entry in bucket.iter() {
                let (k, v) = entry?;
                crc.update(&k);
                if let Value::Bytes(v) = &v {
                    crc.update(v);
                }
                if is_key {
                    // etcdutl decodes only the main revision here; so do we, without the
                    // stricter shape check of `verify`. Keys sort by revision: the last wins.
                    let main: Option<[u8; 8]> = k.get(..8).and_then(|m| m.try_into().ok());
                    revision = match main {
                        Some(main) if k.len() >= 17 => i64::from_be_bytes(main),
                        _ => {
                            return Err(Error::Integrity(format!(
                                "bucket key: key {} is not an etcd revision (17 or 18 bytes)",
                                show_key(&k)
                            )));
                        }
                    };
                }
                total_key += 1;
            }
        }
        Ok(Status {
            hash: crc.finish(),
            revision,
            total_key,
            total_size: self.size(),
        })
    }
}

impl<'db> Bucket<'db> {
    /// The bucket's entries in key order.
    pub fn iter(&self) -> BucketIter<'db> {
        BucketIter {
            db: self.db,
            stack: Vec::new(),
            start: Some((self.root.clone(), self.from)),
            last_key: None,
            loads: 0,
            done: false,
        }
    }

    /// Whether the bucket is stored inline in its parent's value.
    pub fn is_inline(&self) -> bool {
        matches!(self.root, Root::Inline(_))
    }

    /// The page id of the bucket's root, `None` for an inline bucket.
    pub fn root_page(&self) -> Option<u64> {
        match self.root {
            Root::Disk(id) => Some(id),
            Root::Inline(_) => None,
        }
    }

    /// The value of `key`, found by descending the tree.
    pub fn get(&self, key: &[u8]) -> Result<Option<Value<'db>>> {
        let mut page = match &self.root {
            Root::Disk(id) => Arc::new(self.db.read_node(*id, self.from)?),
            Root::Inline(p) => p.clone(),
        };
        for _ in 0..MAX_DEPTH {
            if page.is_leaf() {
                for i in 0..page.count() {
                    let e = page.leaf(i)?;
                    if e.key == key {
                        return Ok(Some(self.db.value_of(&page, i, &e)?));
                    }
                }
                return Ok(None);
            }
            // The child to follow is the last one whose lower bound is ≤ key (or the first).
            let mut child = None;
            for i in 0..page.count() {
                let (k, id) = page.branch(i)?;
                if i == 0 || k <= key {
                    child = Some((i, id));
                } else {
                    break;
                }
            }
            let Some((i, id)) = child else {
                return Err(Error::Integrity(format!(
                    "{}: a branch page without elements",
                    page.place
                )));
            };
            page = Arc::new(self.db.read_node(id, Referrer::Elem(page.place, i))?);
        }
        Err(too_deep(page.place))
    }
}

fn too_deep(place: Place) -> Error {
    Error::Integrity(format!(
        "{place}: the tree is more than {MAX_DEPTH} levels deep there, so a branch page points back up the tree (a cycle)"
    ))
}

impl Db {
    /// The value of leaf element `i` of `page`: bytes, or a nested bucket.
    fn value_of<'db>(
        &'db self,
        page: &Page,
        i: usize,
        e: &page::LeafElem<'_>,
    ) -> Result<Value<'db>> {
        if e.flags & BUCKET_FLAG == 0 {
            return Ok(Value::Bytes(e.value.to_vec()));
        }
        let root = page::u64_at(e.value, 0).ok_or_else(|| {
            Error::Integrity(format!(
                "{} element {i} is marked as a bucket, but its value has only {} bytes (a bucket header has 16)",
                page.place,
                e.value.len()
            ))
        })?;
        let root = if root != 0 {
            Root::Disk(root)
        } else {
            let bytes = e.value.get(16..).unwrap_or_default();
            let inline = Page::new(
                Place::Inline {
                    parent: page.place.disk_id(),
                },
                bytes.to_vec(),
            )?;
            if !inline.is_leaf() {
                return Err(Error::Integrity(format!(
                    "{} element {i}: its inline bucket has type {}, where a leaf page was expected",
                    page.place,
                    page::type_name(inline.header.flags)
                )));
            }
            Root::Inline(Arc::new(inline))
        };
        Ok(Value::Bucket(Bucket {
            db: self,
            root,
            from: Referrer::Elem(page.place, i),
        }))
    }
}

/// A bucket's entries in key order, read page by page. It stops at the first error; keys that
/// are not strictly increasing are an error, so shared pages and cycles cannot loop.
pub struct BucketIter<'db> {
    db: &'db Db,
    /// The path from the root to the current leaf: each page and its next element.
    stack: Vec<(Arc<Page>, usize)>,
    /// The root, until the first call loads it.
    start: Option<(Root, Referrer)>,
    last_key: Option<Vec<u8>>,
    /// Pages read so far: more than the file has means a cycle or shared pages.
    loads: u64,
    done: bool,
}

impl<'db> BucketIter<'db> {
    fn step(&mut self) -> Result<Option<(Vec<u8>, Value<'db>)>> {
        if let Some((root, from)) = self.start.take() {
            let page = match root {
                Root::Disk(id) => {
                    self.loads += 1;
                    Arc::new(self.db.read_node(id, from)?)
                }
                Root::Inline(p) => p,
            };
            self.stack.push((page, 0));
        }
        loop {
            let Some((page, next)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let i = *next;
            if i >= page.count() {
                self.stack.pop();
                continue;
            }
            *next += 1;
            let page = page.clone();
            if page.is_leaf() {
                let e = page.leaf(i)?;
                if let Some(last) = &self.last_key
                    && e.key <= last.as_slice()
                {
                    return Err(Error::Integrity(format!(
                        "{} element {i}: key {} does not sort after the previous key {} (keys out of order)",
                        page.place,
                        show_key(e.key),
                        show_key(last)
                    )));
                }
                let value = self.db.value_of(&page, i, &e)?;
                self.last_key = Some(e.key.to_vec());
                return Ok(Some((e.key.to_vec(), value)));
            }
            let (_, child) = page.branch(i)?;
            if self.stack.len() >= MAX_DEPTH {
                return Err(too_deep(page.place));
            }
            self.loads += 1;
            if self.loads > self.db.meta.pgid {
                return Err(Error::Integrity(format!(
                    "{}: the bucket's tree reaches more pages than the database has; branch pages share children or form a cycle",
                    page.place
                )));
            }
            let child = self.db.read_node(child, Referrer::Elem(page.place, i))?;
            self.stack.push((Arc::new(child), 0));
        }
    }
}

impl<'db> Iterator for BucketIter<'db> {
    type Item = Result<(Vec<u8>, Value<'db>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A key for a message: text when it is printable, else hex.
fn show_key(k: &[u8]) -> String {
    const MAX: usize = 64;
    let shown = &k[..k.len().min(MAX)];
    let more = if k.len() > MAX { "…" } else { "" };
    if !shown.is_empty() && shown.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("\"{}{more}\"", String::from_utf8_lossy(shown))
    } else {
        format!("0x{}{more}", hex::encode(shown))
    }
}
