//! [`Db::verify`]: a structural check in the spirit of bbolt's `tx.Check`, plus the meta pages
//! and etcd's revision keys. It stops at the first problem and names it: the page, the element,
//! and what is wrong. Memory: two bitmaps of one bit per page, and one page per tree level.

use super::page::{self, FREELIST, HEADER, META, Page, Place};
use super::{Db, MAX_DEPTH, NO_FREELIST, Referrer, Root, Value, mvcc, show_key, too_deep};
use crate::{Error, Result};

/// One bit per page id.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: u64) -> Bits {
        Bits(vec![0; n.div_ceil(64) as usize])
    }

    fn get(&self, i: u64) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, i: u64) {
        if let Some(w) = self.0.get_mut((i / 64) as usize) {
            *w |= 1 << (i % 64);
        }
    }
}

/// Which extra rules a bucket's entries follow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// The root bucket: every entry is a bucket.
    Root,
    /// etcd's `key` bucket: every key is a revision, every value bytes.
    EtcdKey,
    Plain,
}

/// The bucket being checked.
struct Ctx {
    /// For messages: `root`, `"key"`, `"a"/"b"`.
    name: String,
    rules: Rules,
}

struct Checker<'a> {
    db: &'a Db,
    pgid: u64,
    reach: Bits,
    free: Bits,
    /// The pages from the root to the current one, to tell a cycle from a shared page.
    path: Vec<u64>,
}

/// Free page ids read per positional read of the freelist.
const FREELIST_CHUNK: usize = 8192;

impl Db {
    /// Checks the whole file and returns the first problem found as [`Error::Integrity`]:
    /// both meta pages valid; the freelist; every page in [2, high-water mark) reachable
    /// exactly once or free, never both; no reference past the high-water mark; branch or leaf
    /// pages only, each with its own id in its header; keys strictly increasing and inside the
    /// bounds their parent branch gives; the keys of bucket `key` well-formed etcd revisions.
    /// When the file has no freelist (etcd's case) unreachable pages are free, as in bbolt.
    pub fn verify(&self) -> Result<()> {
        self.check_metas()?;
        let pgid = self.meta.pgid;
        let mut c = Checker {
            db: self,
            pgid,
            reach: Bits::new(pgid),
            free: Bits::new(pgid),
            path: Vec::new(),
        };
        c.reach.set(0);
        c.reach.set(1);
        let freelist_synced = self.meta.freelist != NO_FREELIST;
        if freelist_synced {
            c.freelist(self.meta.freelist)?;
        }
        let root = Ctx {
            name: "root".into(),
            rules: Rules::Root,
        };
        c.tree(self.meta.root, Referrer::Meta, None, None, &root, 0)?;
        // Without a persisted freelist bbolt treats every unreachable page as free.
        if freelist_synced {
            for id in 2..pgid {
                if !c.reach.get(id) && !c.free.get(id) {
                    return Err(Error::Integrity(format!(
                        "page {id} is unreachable and not in the freelist: a leaked page (bbolt: \"unreachable unfreed\")"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_metas(&self) -> Result<()> {
        for (i, m) in self.metas.iter().enumerate() {
            if let Err(why) = m {
                return Err(Error::Integrity(format!("meta page {i}: {why}")));
            }
            let mut buf = [0u8; HEADER];
            self.read_at(
                i as u64 * u64::from(self.page_size),
                &mut buf,
                "read the meta page of",
            )?;
            let h = page::Header::parse(&buf)
                .ok_or_else(|| Error::Integrity("short page header".into()))?;
            if h.id != i as u64 || h.flags != META || h.overflow != 0 {
                return Err(Error::Integrity(format!(
                    "meta page {i}: its page header says page {} of type {} with {} overflow pages; it must be page {i} of type meta without overflow",
                    h.id,
                    page::type_name(h.flags),
                    h.overflow
                )));
            }
        }
        let m = &self.meta;
        if m.root < 2 || m.root >= m.pgid {
            return Err(Error::Integrity(format!(
                "meta (txid {}): the root bucket's page {} is outside the data pages 2..{} of the database",
                m.txid,
                m.root,
                m.pgid.saturating_sub(1)
            )));
        }
        if m.freelist != NO_FREELIST && (m.freelist < 2 || m.freelist >= m.pgid) {
            return Err(Error::Integrity(format!(
                "meta (txid {}): the freelist page {} is outside the data pages 2..{} of the database",
                m.txid,
                m.freelist,
                m.pgid.saturating_sub(1)
            )));
        }
        if m.flags != 0 {
            return Err(Error::Integrity(format!(
                "meta (txid {}): flags 0x{:x}, bbolt writes 0",
                m.txid, m.flags
            )));
        }
        Ok(())
    }
}

impl Checker<'_> {
    /// Reads the freelist page `id`, streaming its ids rather than loading the page whole.
    fn freelist(&mut self, id: u64) -> Result<()> {
        let h = self.db.read_header(id)?;
        if h.flags != FREELIST {
            return Err(Error::Integrity(format!(
                "page {id}: the meta page names it the freelist, but it has type {}",
                page::type_name(h.flags)
            )));
        }
        let span_end = id + 1 + u64::from(h.overflow);
        for p in id..span_end {
            self.reach.set(p);
        }
        let ps = u64::from(self.db.page_size);
        let start = id * ps;
        let span_bytes = (span_end - id) * ps;
        // A count of 0xFFFF means the real count is the first u64 after the header.
        let (mut off, count) = if h.count == 0xFFFF {
            let mut b = [0u8; 8];
            self.db
                .read_at(start + HEADER as u64, &mut b, "read the freelist of")?;
            (HEADER as u64 + 8, u64::from_le_bytes(b))
        } else {
            (HEADER as u64, u64::from(h.count))
        };
        if count
            .checked_mul(8)
            .and_then(|n| n.checked_add(off))
            .is_none_or(|end| end > span_bytes)
        {
            return Err(Error::Integrity(format!(
                "freelist page {id}: it claims {count} free pages, more than its {} page(s) can hold",
                span_end - id
            )));
        }
        let mut left = count;
        let mut buf = vec![0u8; FREELIST_CHUNK.min(count as usize) * 8];
        while left > 0 {
            let n = (left as usize).min(FREELIST_CHUNK);
            let chunk = &mut buf[..n * 8];
            self.db
                .read_at(start + off, chunk, "read the freelist of")?;
            for raw in chunk.chunks_exact(8) {
                let fid = page::u64_at(raw, 0).unwrap_or(0);
                if fid < 2 || fid >= self.pgid {
                    return Err(Error::Integrity(format!(
                        "freelist page {id}: it lists page {fid} as free, outside the data pages 2..{} of the database",
                        self.pgid.saturating_sub(1)
                    )));
                }
                if (id..span_end).contains(&fid) {
                    return Err(Error::Integrity(format!(
                        "freelist page {id}: it lists its own page {fid} as free"
                    )));
                }
                if self.free.get(fid) {
                    return Err(Error::Integrity(format!(
                        "freelist page {id}: it lists page {fid} twice (bbolt: \"already freed\")"
                    )));
                }
                self.free.set(fid);
            }
            off += (n * 8) as u64;
            left -= n as u64;
        }
        Ok(())
    }

    /// Checks the tree rooted at page `id` (which `from` points to): every key in
    /// `[lo, hi)` and in order.
    fn tree(
        &mut self,
        id: u64,
        from: Referrer,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        ctx: &Ctx,
        depth: usize,
    ) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(too_deep(Place::Disk(id)));
        }
        if id < 2 || id >= self.pgid {
            // read_node names both problems in full.
            self.db.read_node(id, from)?;
        }
        if self.path.contains(&id) {
            return Err(Error::Integrity(format!(
                "{from} points to page {id}, an ancestor of itself in bucket {}: a cycle",
                ctx.name
            )));
        }
        if self.reach.get(id) {
            return Err(Error::Integrity(format!(
                "{from} points to page {id}, which is already in use elsewhere: a page may be referenced only once (bbolt: \"multiple references\")"
            )));
        }
        let page = self.db.read_node(id, from)?;
        for p in id..=id + u64::from(page.header.overflow) {
            if p != id && self.reach.get(p) {
                return Err(Error::Integrity(format!(
                    "page {p}, part of page {id}'s overflow, is also in use elsewhere (bbolt: \"multiple references\")"
                )));
            }
            if self.free.get(p) {
                return Err(Error::Integrity(format!(
                    "page {p} is in use (bucket {}, referenced by {from}) but also listed in the freelist (bbolt: \"reachable freed\")",
                    ctx.name
                )));
            }
            self.reach.set(p);
        }
        self.path.push(id);
        if page.is_branch() {
            self.branch(&page, lo, hi, ctx, depth)?;
        } else {
            self.leaf(&page, lo, hi, ctx, depth)?;
        }
        self.path.pop();
        Ok(())
    }

    fn branch(
        &mut self,
        page: &Page,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        ctx: &Ctx,
        depth: usize,
    ) -> Result<()> {
        let n = page.count();
        if n == 0 {
            return Err(Error::Integrity(format!(
                "{}: a branch page without elements (bucket {})",
                page.place, ctx.name
            )));
        }
        // The page's own keys first, so that a bad key is named here and not as a bound
        // its neighbour's child breaks.
        let mut prev: Option<&[u8]> = None;
        for i in 0..n {
            let (key, _) = page.branch(i)?;
            order(page.place, i, key, prev, lo, hi, ctx)?;
            prev = Some(key);
        }
        for i in 0..n {
            let (key, child) = page.branch(i)?;
            let next_hi = if i + 1 < n {
                Some(page.branch(i + 1)?.0)
            } else {
                hi
            };
            self.tree(
                child,
                Referrer::Elem(page.place, i),
                Some(key),
                next_hi,
                ctx,
                depth + 1,
            )?;
        }
        Ok(())
    }

    fn leaf(
        &mut self,
        page: &Page,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        ctx: &Ctx,
        depth: usize,
    ) -> Result<()> {
        let mut prev: Option<&[u8]> = None;
        for i in 0..page.count() {
            let e = page.leaf(i)?;
            if e.key.is_empty() {
                return Err(Error::Integrity(format!(
                    "{} element {i}: an empty key in bucket {} (bbolt forbids them)",
                    page.place, ctx.name
                )));
            }
            order(page.place, i, e.key, prev, lo, hi, ctx)?;
            prev = Some(e.key);
            let value = self.db.value_of(page, i, &e)?;
            match (ctx.rules, &value) {
                (Rules::Root, Value::Bytes(_)) => {
                    return Err(Error::Integrity(format!(
                        "{} element {i}: the root bucket's entry {} is not a bucket",
                        page.place,
                        show_key(e.key)
                    )));
                }
                (Rules::EtcdKey, _) => {
                    if let Err(why) = mvcc::parse_revision(e.key) {
                        return Err(Error::Integrity(format!(
                            "{} element {i}: bucket key holds key {}, which is not an etcd revision: {why}",
                            page.place,
                            show_key(e.key)
                        )));
                    }
                    if let Value::Bucket(_) = value {
                        return Err(Error::Integrity(format!(
                            "{} element {i}: bucket key holds a nested bucket {}; etcd stores only revisions there",
                            page.place,
                            show_key(e.key)
                        )));
                    }
                }
                _ => {}
            }
            if let Value::Bucket(b) = value {
                let nested = Ctx {
                    name: if ctx.rules == Rules::Root {
                        show_key(e.key)
                    } else {
                        format!("{}/{}", ctx.name, show_key(e.key))
                    },
                    rules: if ctx.rules == Rules::Root && e.key == b"key" {
                        Rules::EtcdKey
                    } else {
                        Rules::Plain
                    },
                };
                if depth + 1 >= MAX_DEPTH {
                    return Err(too_deep(page.place));
                }
                match &b.root {
                    Root::Disk(rid) => {
                        self.tree(*rid, b.from, None, None, &nested, depth + 1)?;
                    }
                    Root::Inline(inline) => {
                        self.leaf(inline, None, None, &nested, depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Element `i`'s key must sort after the previous one, at or after the parent's lower bound
/// (only the first is checked: the rest follow), and before the parent's next key.
fn order(
    place: Place,
    i: usize,
    key: &[u8],
    prev: Option<&[u8]>,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
    ctx: &Ctx,
) -> Result<()> {
    let problem = match (prev, lo, hi) {
        (Some(p), _, _) if key <= p => Some(format!(
            "does not sort after the previous key {}",
            show_key(p)
        )),
        (None, Some(lo), _) if key < lo => Some(format!(
            "sorts before {}, the lower bound its parent branch gives this page",
            show_key(lo)
        )),
        (_, _, Some(hi)) if key >= hi => Some(format!(
            "does not sort before {}, the next key in its parent branch",
            show_key(hi)
        )),
        _ => None,
    };
    match problem {
        Some(p) => Err(Error::Integrity(format!(
            "{place} element {i}: key {} {p} (keys out of order in bucket {})",
            show_key(key),
            ctx.name
        ))),
        None => Ok(()),
    }
}
