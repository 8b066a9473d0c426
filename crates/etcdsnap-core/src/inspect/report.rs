//! `status` (as `etcdutl snapshot status`, plus what etcdsnap knows) and `verify` (the trailer
//! and the whole bbolt structure).

use super::*;

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
