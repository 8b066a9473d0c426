//! A test-only writer of small bbolt files, page by page, so that page sizes, overflow, inline
//! buckets and probing can be tested without etcd. It knows the layout, not bbolt's policies.

use super::super::{Crc32c, KeyValue, fnv1a64};
use prost::Message;

pub const BRANCH: u16 = 0x01;
pub const LEAF: u16 = 0x02;
pub const META: u16 = 0x04;
pub const FREELIST: u16 = 0x10;

/// A leaf entry: key and value; a bucket when `bucket` is set (the value is then its header).
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub bucket: bool,
}

pub fn kv(key: &[u8], value: &[u8]) -> Entry {
    Entry {
        key: key.to_vec(),
        value: value.to_vec(),
        bucket: false,
    }
}

/// A bucket entry whose tree is rooted at page `root`.
pub fn bucket_at(name: &[u8], root: u64) -> Entry {
    let mut v = root.to_le_bytes().to_vec();
    v.extend_from_slice(&0u64.to_le_bytes());
    Entry {
        key: name.to_vec(),
        value: v,
        bucket: true,
    }
}

/// An inline bucket entry holding `entries`.
pub fn bucket_inline(name: &[u8], entries: &[Entry]) -> Entry {
    let mut v = vec![0u8; 16];
    v.extend_from_slice(&leaf_bytes(0, entries));
    Entry {
        key: name.to_vec(),
        value: v,
        bucket: true,
    }
}

fn header(id: u64, flags: u16, count: usize, overflow: u32) -> Vec<u8> {
    let mut b = id.to_le_bytes().to_vec();
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&(count as u16).to_le_bytes());
    b.extend_from_slice(&overflow.to_le_bytes());
    b
}

/// A leaf page's bytes, unpadded, with overflow 0 (the caller sets it).
fn leaf_bytes(id: u64, entries: &[Entry]) -> Vec<u8> {
    let mut b = header(id, LEAF, entries.len(), 0);
    let mut data = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let elem_at = 16 + 16 * i;
        let pos = 16 + 16 * entries.len() + data.len() - elem_at;
        b.extend_from_slice(&u32::from(e.bucket).to_le_bytes());
        b.extend_from_slice(&(pos as u32).to_le_bytes());
        b.extend_from_slice(&(e.key.len() as u32).to_le_bytes());
        b.extend_from_slice(&(e.value.len() as u32).to_le_bytes());
        data.extend_from_slice(&e.key);
        data.extend_from_slice(&e.value);
    }
    b.extend_from_slice(&data);
    b
}

/// Pads `b` to whole pages and sets the overflow count.
fn pad(mut b: Vec<u8>, ps: usize) -> Vec<u8> {
    let pages = b.len().div_ceil(ps).max(1);
    b.resize(pages * ps, 0);
    b[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
    b
}

pub fn leaf(id: u64, entries: &[Entry], ps: usize) -> Vec<u8> {
    pad(leaf_bytes(id, entries), ps)
}

pub fn branch(id: u64, children: &[(&[u8], u64)], ps: usize) -> Vec<u8> {
    let mut b = header(id, BRANCH, children.len(), 0);
    let mut data = Vec::new();
    for (i, (key, child)) in children.iter().enumerate() {
        let elem_at = 16 + 16 * i;
        let pos = 16 + 16 * children.len() + data.len() - elem_at;
        b.extend_from_slice(&(pos as u32).to_le_bytes());
        b.extend_from_slice(&(key.len() as u32).to_le_bytes());
        b.extend_from_slice(&child.to_le_bytes());
        data.extend_from_slice(key);
    }
    b.extend_from_slice(&data);
    pad(b, ps)
}

pub fn freelist(id: u64, ids: &[u64], ps: usize) -> Vec<u8> {
    let mut b = header(id, FREELIST, ids.len(), 0);
    for i in ids {
        b.extend_from_slice(&i.to_le_bytes());
    }
    pad(b, ps)
}

pub fn meta(id: u64, ps: usize, root: u64, freelist: u64, pgid: u64, txid: u64) -> Vec<u8> {
    let mut b = header(id, META, 0, 0);
    let mut m = Vec::new();
    m.extend_from_slice(&0xED0C_DAEDu32.to_le_bytes());
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&(ps as u32).to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(&root.to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes());
    m.extend_from_slice(&freelist.to_le_bytes());
    m.extend_from_slice(&pgid.to_le_bytes());
    m.extend_from_slice(&txid.to_le_bytes());
    let sum = fnv1a64(&m);
    m.extend_from_slice(&sum.to_le_bytes());
    b.extend_from_slice(&m);
    pad(b, ps)
}

/// An etcd revision key.
pub fn rev(main: u64, sub: u64, tombstone: bool) -> Vec<u8> {
    let mut k = main.to_be_bytes().to_vec();
    k.push(b'_');
    k.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        k.push(b't');
    }
    k
}

pub fn kv_proto(key: &str, value: &str, create: i64, modr: i64, version: i64) -> Vec<u8> {
    KeyValue {
        key: key.into(),
        create_revision: create,
        mod_revision: modr,
        version,
        value: value.into(),
        lease: 0,
    }
    .encode_to_vec()
}

/// A small etcd-like database and what a reader must find in it.
pub struct Sample {
    pub bytes: Vec<u8>,
    pub hash: u32,
    pub total_key: u64,
    pub pages: u64,
    /// Page ids of interest: the `key` bucket's branch and its leaves.
    pub key_branch: u64,
    pub key_leaves: [u64; 2],
    pub big_value: Vec<u8>,
}

/// Pages: 0-1 meta, 2 freelist [10], 3 root leaf, 4 branch of bucket `key` over leaves 5 and
/// 6, 7-9 a leaf of bucket `zeta` whose one value overflows, 10 free. Buckets `alpha` and
/// `meta` are inline. History: rev 2 puts a=1 and b=2, rev 3 puts a=3, rev 4 deletes b;
/// compacted at 2.
pub fn sample(ps: usize) -> Sample {
    let revs: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (rev(2, 0, false), kv_proto("a", "1", 2, 2, 1)),
        (rev(2, 1, false), kv_proto("b", "2", 2, 2, 1)),
        (rev(3, 0, false), kv_proto("a", "3", 2, 3, 2)),
        (
            rev(4, 0, true),
            KeyValue {
                key: b"b".to_vec(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    ];
    let alpha = [kv(b"k1", b"v1"), kv(b"k2", b"v2")];
    let metab = [kv(b"finishedCompactRev", &rev(2, 0, false))];
    let big_value: Vec<u8> = (0..ps * 2 + ps / 2).map(|i| (i % 251) as u8).collect();
    let zeta = [kv(b"big", &big_value)];
    let root = [
        bucket_inline(b"alpha", &alpha),
        bucket_at(b"key", 4),
        bucket_inline(b"meta", &metab),
        bucket_at(b"zeta", 7),
    ];
    let key_leaf = |id, r: &[(Vec<u8>, Vec<u8>)]| {
        let es: Vec<Entry> = r.iter().map(|(k, v)| kv(k, v)).collect();
        leaf(id, &es, ps)
    };
    let mut bytes = Vec::new();
    bytes.extend(meta(0, ps, 3, 2, 11, 8));
    bytes.extend(meta(1, ps, 3, 2, 11, 7));
    bytes.extend(freelist(2, &[10], ps));
    bytes.extend(leaf(3, &root, ps));
    bytes.extend(branch(4, &[(&revs[0].0, 5), (&revs[2].0, 6)], ps));
    bytes.extend(key_leaf(5, &revs[..2]));
    bytes.extend(key_leaf(6, &revs[2..]));
    let zeta_page = leaf(7, &zeta, ps);
    assert_eq!(zeta_page.len(), 3 * ps, "the big value spans pages 7-9");
    bytes.extend(zeta_page);
    bytes.extend(leaf(10, &[kv(b"stale", b"page")], ps));
    assert_eq!(bytes.len(), 11 * ps);

    let mut crc = Crc32c::new();
    let mut feed = |name: &[u8], entries: &mut dyn Iterator<Item = (&[u8], &[u8])>| {
        crc.update(name);
        for (k, v) in entries {
            crc.update(k);
            crc.update(v);
        }
    };
    feed(
        b"alpha",
        &mut alpha.iter().map(|e| (&e.key[..], &e.value[..])),
    );
    feed(b"key", &mut revs.iter().map(|(k, v)| (&k[..], &v[..])));
    feed(
        b"meta",
        &mut metab.iter().map(|e| (&e.key[..], &e.value[..])),
    );
    feed(
        b"zeta",
        &mut zeta.iter().map(|e| (&e.key[..], &e.value[..])),
    );
    Sample {
        bytes,
        hash: crc.finish(),
        total_key: 2 + 4 + 1 + 1,
        pages: 11,
        key_branch: 4,
        key_leaves: [5, 6],
        big_value,
    }
}

/// Writes `bytes` to a new temporary file.
pub fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
    f
}
