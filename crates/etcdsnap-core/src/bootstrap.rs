//! Bootstrap data: the server's CA certificates and keys (supervisor CA, etcd server CA, etcd
//! peer CA), kept in its own etcd so that a restore, or a new machine restored from a snapshot
//! with the old token, gets the old CAs back and every token, client certificate and CLI
//! configuration keeps working. K3s's format and scheme (reference §8.5), so the data is
//! interchangeable:
//! * a JSON object mapping K3s's names (`ServerCA`, `ETCDServerCAKey`, …) to
//!   `{"Timestamp": RFC 3339, "Content": base64 of the file}`;
//! * stored at `/bootstrap/<first 12 hex of sha256(token secret)>`;
//! * encrypted with AES-256-GCM under PBKDF2-HMAC-SHA1(secret, 8-character salt, 4096 rounds,
//!   32 bytes), stored as `<salt>:<base64(nonce ‖ ciphertext ‖ tag)>`.
//!
//! Written here because it is K3s's own format; the primitives come from ring.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::etcd::EtcdSource;
use crate::fsutil::{create_private_dir, write_private};
use crate::{Error, Result};

/// Where bootstrap keys live in etcd.
pub const PREFIX: &str = "/bootstrap/";

/// K3s's names for the files we keep, and where they are under `server/tls`.
pub const FILES: [(&str, &str); 6] = [
    ("ServerCA", "server-ca.crt"),
    ("ServerCAKey", "server-ca.key"),
    ("ETCDServerCA", "etcd/server-ca.crt"),
    ("ETCDServerCAKey", "etcd/server-ca.key"),
    ("ETCDPeerCA", "etcd/peer-ca.crt"),
    ("ETCDPeerCAKey", "etcd/peer-ca.key"),
];

const ROUNDS: u32 = 4096;
const SALT_LEN: usize = 8;

/// K3s's message when the data cannot be decrypted with the token given.
pub const DIFFERENT_TOKEN: &str = "bootstrap data already found and encrypted with different token";

/// One file of the bootstrap data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    /// The file's bytes (base64 in JSON, as Go encodes `[]byte`).
    #[serde(rename = "Content", with = "b64")]
    pub content: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(D::Error::custom)
    }
}

/// The bootstrap data: K3s name → file. Names we do not know (K3s keeps more files) are kept
/// as they are but never written to disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap(pub BTreeMap<String, File>);

impl Bootstrap {
    /// The files of [`FILES`] found under `tls_dir`.
    pub fn read(tls_dir: &Path) -> Result<Bootstrap> {
        let mut map = BTreeMap::new();
        for (name, rel) in FILES {
            let path = tls_dir.join(rel);
            let content = match std::fs::read(&path) {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read", &path, e)),
            };
            let mtime: DateTime<Utc> = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map(Into::into)
                .unwrap_or_else(|_| Utc::now());
            map.insert(
                name.to_string(),
                File {
                    timestamp: mtime.to_rfc3339_opts(SecondsFormat::Nanos, true),
                    content,
                },
            );
        }
        Ok(Bootstrap(map))
    }

    /// Whether both hold the same bytes for every file we keep (timestamps aside).
    pub fn same_files(&self, other: &Bootstrap) -> bool {
        FILES.iter().all(|(name, _)| {
            self.0.get(*name).map(|f| &f.content) == other.0.get(*name).map(|f| &f.content)
        })
    }

    /// Whether it holds the supervisor CA and the etcd CAs with their keys.
    pub fn is_complete(&self) -> bool {
        FILES.iter().all(|(name, _)| self.0.contains_key(*name))
    }

    /// Writes the files we keep under `tls_dir` (0600, directories 0700); returns their paths.
    pub fn write(&self, tls_dir: &Path) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (name, rel) in FILES {
            if let Some(f) = self.0.get(name) {
                let path = tls_dir.join(rel);
                create_private_dir(crate::fsutil::parent_dir(&path))?;
                write_private(&path, &f.content)?;
                written.push(path);
            }
        }
        Ok(written)
    }
}

/// `/bootstrap/<first 12 hex of sha256(secret)>`.
pub fn key_for(secret: &str) -> String {
    let h = hex::encode(Sha256::digest(secret.as_bytes()));
    format!("{PREFIX}{}", &h[..12])
}

fn derive_key(secret: &str, salt: &[u8]) -> LessSafeKey {
    let mut key = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA1,
        NonZeroU32::new(ROUNDS).expect("non-zero"),
        salt,
        secret.as_bytes(),
        &mut key,
    );
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte key"))
}

fn random_salt() -> Result<String> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut b = [0u8; SALT_LEN];
    getrandom::fill(&mut b).map_err(|e| Error::Other(format!("random source failed: {e}")))?;
    Ok(b.iter()
        .map(|x| CHARS[*x as usize % CHARS.len()] as char)
        .collect())
}

/// Encrypts `plain` with the token secret: `<salt>:<base64(nonce ‖ ciphertext ‖ tag)>`.
pub fn encrypt(secret: &str, plain: &[u8]) -> Result<String> {
    let salt = random_salt()?;
    let key = derive_key(secret, salt.as_bytes());
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| Error::Other(format!("random source failed: {e}")))?;
    let mut data = plain.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| Error::Other("encrypting the bootstrap data failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend(data);
    Ok(format!(
        "{salt}:{}",
        base64::engine::general_purpose::STANDARD.encode(out)
    ))
}

/// Decrypts what [`encrypt`] made; a wrong secret is K3s's "different token" error.
pub fn decrypt(secret: &str, stored: &[u8]) -> Result<Vec<u8>> {
    let malformed = || Error::Integrity("the bootstrap data in etcd is malformed".into());
    let text = std::str::from_utf8(stored).map_err(|_| malformed())?;
    let (salt, b64) = text.split_once(':').ok_or_else(malformed)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| malformed())?;
    if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(malformed());
    }
    let (nonce, sealed) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| malformed())?;
    let mut sealed = sealed.to_vec();
    let plain = derive_key(secret, salt.as_bytes())
        .open_in_place(nonce, Aad::empty(), &mut sealed)
        .map_err(|_| different_token())?;
    Ok(plain.to_vec())
}

fn different_token() -> Error {
    Error::InvalidInput(format!(
        "{DIFFERENT_TOKEN}: pass the token the cluster was created with (--token, or its server/token file)"
    ))
}

/// The bootstrap data in etcd readable with `secret`: `None` when there is none at all; K3s's
/// "different token" error when some exists but not for this secret.
pub async fn fetch(etcd: &dyn EtcdSource, secret: &str) -> Result<Option<Bootstrap>> {
    let key = key_for(secret);
    let all = etcd.get_prefix(PREFIX).await?;
    match all.iter().find(|(k, _)| *k == key) {
        Some((_, value)) => {
            let json = decrypt(secret, value)?;
            let data = serde_json::from_slice(&json).map_err(|e| {
                Error::Integrity(format!("the bootstrap data in etcd is not valid JSON: {e}"))
            })?;
            Ok(Some(data))
        }
        None if all.is_empty() => Ok(None),
        None => Err(different_token()),
    }
}

/// Stores the files under `tls_dir` as the bootstrap data for `secret`.
pub async fn store(etcd: &dyn EtcdSource, secret: &str, data: &Bootstrap) -> Result<()> {
    let json = serde_json::to_vec(data)
        .map_err(|e| Error::Other(format!("cannot encode the bootstrap data: {e}")))?;
    etcd.put(&key_for(secret), encrypt(secret, &json)?.into_bytes())
        .await
}

/// At the start of a server that owns its etcd: the datastore's copy is created, or brought up
/// to date with the files this server runs with. Fails with K3s's message when the datastore's
/// copy was made with another token.
pub async fn reconcile(etcd: &dyn EtcdSource, secret: &str, tls_dir: &Path) -> Result<()> {
    let disk = Bootstrap::read(tls_dir)?;
    match fetch(etcd, secret).await? {
        Some(stored) if stored.same_files(&disk) => Ok(()),
        Some(_) => {
            tracing::info!(
                "updating the bootstrap data in etcd from {}",
                tls_dir.display()
            );
            store(etcd, secret, &disk).await
        }
        None => {
            tracing::info!("saving the bootstrap data (CA certificates and keys) in etcd");
            store(etcd, secret, &disk).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeEtcd;

    #[test]
    fn key_is_the_token_hash() {
        // sha256("secret") = 2bb80d537b1d…, the token hash K3s records.
        assert_eq!(key_for("secret"), "/bootstrap/2bb80d537b1d");
    }

    #[test]
    fn encryption_round_trip_and_wrong_token() {
        let sealed = encrypt("tok", b"{\"a\":1}").unwrap();
        let (salt, rest) = sealed.split_once(':').unwrap();
        assert_eq!(salt.len(), 8);
        assert!(!rest.contains("a\":1"));
        assert_eq!(decrypt("tok", sealed.as_bytes()).unwrap(), b"{\"a\":1}");
        let err = decrypt("other", sealed.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(DIFFERENT_TOKEN), "{err}");
        assert!(decrypt("tok", b"no-colon").is_err());
        assert!(decrypt("tok", b"salt:!!!").is_err());
        // Two encryptions of the same data differ (fresh salt and nonce).
        assert_ne!(encrypt("tok", b"x").unwrap(), encrypt("tok", b"x").unwrap());
    }

    #[test]
    fn pbkdf2_matches_a_derivation_by_hand() {
        // The same derivation done by hand through HMAC-SHA1 must give the same key (the
        // GCM layout is checked against Go's crypto/cipher in the integration tests).
        let salt = b"abcdefgh";
        let mut by_ring = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA1,
            NonZeroU32::new(4096).unwrap(),
            salt,
            b"tok",
            &mut by_ring,
        );
        // PBKDF2 blocks T1 and T2 (20 bytes each), truncated to 32.
        let hmac = |data: &[u8]| {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"tok");
            ring::hmac::sign(&k, data).as_ref().to_vec()
        };
        let mut by_hand = Vec::new();
        for block in 1u32..=2 {
            let mut u = hmac(&[salt.as_slice(), &block.to_be_bytes()].concat());
            let mut t = u.clone();
            for _ in 1..4096 {
                u = hmac(&u);
                t.iter_mut().zip(&u).for_each(|(a, b)| *a ^= b);
            }
            by_hand.extend(t);
        }
        assert_eq!(&by_hand[..32], &by_ring);
    }

    #[test]
    fn files_round_trip_through_json_in_k3s_shape() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        crate::tls::ensure_etcd_certs(&tls, &crate::tls::default_hosts(&[])).unwrap();
        crate::tls::ensure_supervisor_certs(&tls, &crate::tls::default_hosts(&[])).unwrap();
        let b = Bootstrap::read(&tls).unwrap();
        assert!(b.is_complete(), "{:?}", b.0.keys());
        let json: serde_json::Value = serde_json::to_value(&b).unwrap();
        assert!(json["ETCDPeerCAKey"]["Content"].is_string());
        assert!(
            json["ServerCA"]["Timestamp"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        let other = dir.path().join("other");
        b.write(&other).unwrap();
        assert_eq!(
            std::fs::read(other.join("etcd/peer-ca.key")).unwrap(),
            std::fs::read(tls.join("etcd/peer-ca.key")).unwrap()
        );
        assert_eq!(
            crate::fsutil::mode_of(&other.join("etcd/peer-ca.key")),
            Some(0o600)
        );
        assert!(Bootstrap::read(&other).unwrap().same_files(&b));
        // Leaf certificates are not bootstrap data.
        assert!(!other.join("etcd/client.crt").exists());
    }

    #[tokio::test]
    async fn reconcile_stores_then_refuses_another_token() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        crate::tls::ensure_etcd_certs(&tls, &crate::tls::default_hosts(&[])).unwrap();
        let etcd = FakeEtcd::new(1);
        assert!(fetch(&etcd, "tok").await.unwrap().is_none());
        reconcile(&etcd, "tok", &tls).await.unwrap();
        let got = fetch(&etcd, "tok").await.unwrap().unwrap();
        assert!(got.same_files(&Bootstrap::read(&tls).unwrap()));
        let err = reconcile(&etcd, "another", &tls)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(DIFFERENT_TOKEN), "{err}");
        let err = fetch(&etcd, "another").await.unwrap_err();
        assert_eq!(err.http_status(), 400);
    }
}
