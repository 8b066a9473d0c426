//! One bbolt page as read from the file: the 16-byte header and a buffer covering the page's
//! whole span (1 + overflow pages). Element accessors check every offset against the buffer, so
//! a corrupt element is an [`Error::Integrity`] naming the page, never a panic.

use std::fmt;

use crate::{Error, Result};

/// Size of the page header: id u64, flags u16, count u16, overflow u32.
pub(crate) const HEADER: usize = 16;
/// Size of a branch or leaf element.
const ELEM: usize = 16;

pub(crate) const BRANCH: u16 = 0x01;
pub(crate) const LEAF: u16 = 0x02;
pub(crate) const META: u16 = 0x04;
pub(crate) const FREELIST: u16 = 0x10;

/// Leaf element flag: the value is a sub-bucket header, not user bytes.
pub(crate) const BUCKET_FLAG: u32 = 0x01;

/// Where a page lives, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// A page of the file.
    Disk(u64),
    /// An inline bucket's page, stored inside a value on the given file page.
    Inline { parent: u64 },
}

impl Place {
    /// The file page holding this page's bytes.
    pub(crate) fn disk_id(self) -> u64 {
        match self {
            Place::Disk(id) | Place::Inline { parent: id } => id,
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Disk(id) => write!(f, "page {id}"),
            Place::Inline { parent } => write!(f, "the inline bucket stored in page {parent}"),
        }
    }
}

/// A page type in words.
pub(crate) fn type_name(flags: u16) -> String {
    match flags {
        BRANCH => "branch".into(),
        LEAF => "leaf".into(),
        META => "meta".into(),
        FREELIST => "freelist".into(),
        other => format!("unknown (flags 0x{other:04x})"),
    }
}

/// A decoded page header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl Header {
    /// Decodes the first 16 bytes of `b` (which the caller guarantees are there).
    pub(crate) fn parse(b: &[u8]) -> Option<Header> {
        Some(Header {
            id: u64_at(b, 0)?,
            flags: u16::from_le_bytes(b.get(8..10)?.try_into().ok()?),
            count: u16::from_le_bytes(b.get(10..12)?.try_into().ok()?),
            overflow: u32_at(b, 12)?,
        })
    }
}

/// A page and its bytes.
#[derive(Debug)]
pub(crate) struct Page {
    pub place: Place,
    pub header: Header,
    /// The whole span, header included.
    pub buf: Vec<u8>,
}

/// A leaf element: flags, key and value, borrowed from the page.
pub(crate) struct LeafElem<'a> {
    pub flags: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl Page {
    /// A page from its bytes; `buf` must hold at least the header.
    pub(crate) fn new(place: Place, buf: Vec<u8>) -> Result<Page> {
        let header = Header::parse(&buf).ok_or_else(|| {
            Error::Integrity(format!(
                "{place}: {} bytes cannot hold a page header",
                buf.len()
            ))
        })?;
        Ok(Page { place, header, buf })
    }

    pub(crate) fn is_branch(&self) -> bool {
        self.header.flags == BRANCH
    }

    pub(crate) fn is_leaf(&self) -> bool {
        self.header.flags == LEAF
    }

    pub(crate) fn count(&self) -> usize {
        usize::from(self.header.count)
    }

    /// The 16 bytes of element `i` and their offset in the buffer.
    fn elem(&self, i: usize) -> Result<(usize, &[u8])> {
        let start = HEADER + i * ELEM;
        match self.buf.get(start..start + ELEM) {
            Some(e) => Ok((start, e)),
            None => Err(Error::Integrity(format!(
                "{}: element {i} of {} lies past the end of the page ({} bytes); the element count is corrupt",
                self.place,
                self.count(),
                self.buf.len()
            ))),
        }
    }

    /// `len` bytes at `base + pos`, or an error naming what they were meant to be.
    fn span(&self, base: usize, pos: u32, len: u32, what: &str, i: usize) -> Result<&[u8]> {
        let start = base.checked_add(pos as usize);
        let end = start.and_then(|s| s.checked_add(len as usize));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.buf.len() => Ok(&self.buf[s..e]),
            _ => Err(Error::Integrity(format!(
                "{}: the {what} of element {i} ({len} bytes at offset {}) runs past the end of the page ({} bytes)",
                self.place,
                base as u64 + u64::from(pos),
                self.buf.len()
            ))),
        }
    }

    /// Branch element `i`: its key (a lower bound of the child's keys) and the child's page id.
    pub(crate) fn branch(&self, i: usize) -> Result<(&[u8], u64)> {
        let (at, e) = self.elem(i)?;
        let pos = u32_at(e, 0).unwrap_or(0);
        let ksize = u32_at(e, 4).unwrap_or(0);
        let child = u64_at(e, 8).unwrap_or(0);
        let key = self.span(at, pos, ksize, "key", i)?;
        Ok((key, child))
    }

    /// Leaf element `i`: the value follows the key; `pos` counts from the element itself.
    pub(crate) fn leaf(&self, i: usize) -> Result<LeafElem<'_>> {
        let (at, e) = self.elem(i)?;
        let flags = u32_at(e, 0).unwrap_or(0);
        let pos = u32_at(e, 4).unwrap_or(0);
        let ksize = u32_at(e, 8).unwrap_or(0);
        let vsize = u32_at(e, 12).unwrap_or(0);
        let key = self.span(at, pos, ksize, "key", i)?;
        let vpos = pos.checked_add(ksize).ok_or_else(|| {
            Error::Integrity(format!(
                "{}: element {i}'s key offset and size overflow",
                self.place
            ))
        })?;
        let value = self.span(at, vpos, vsize, "value", i)?;
        Ok(LeafElem { flags, key, value })
    }
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}
