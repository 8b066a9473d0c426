//! Certificates for the embedded etcd and the supervisor API, generated on first start and reused
//! afterwards. File names follow K3s (`server/tls/etcd/server-ca.crt`, `client.crt`, ...), so an
//! operator finds them where the K3s docs say. CAs have fixed subjects, so a leaf can be issued
//! later from the CA key alone.
//!
//! Lifetimes, as K3s: CAs live [`CA_VALIDITY_DAYS`] (ten years); serving, peer and client
//! certificates [`LEAF_VALIDITY_DAYS`] (one year), and each start renews those with fewer than
//! [`RENEW_WITHIN_DAYS`] left, from the same CA and with the same key, so tokens (which pin the
//! CA's hash) and clients that trust the CA keep working. A running server renews its supervisor
//! certificate too (`server::serve::keep_serving_cert_fresh`, twice a day); etcd's are renewed
//! at its next start.

use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};

use crate::fsutil::{create_private_dir, write_private};
use crate::{Error, Result};

/// Makes ring the process-wide rustls crypto provider (idempotent). The HTTP clients (reqwest,
/// object_store) take the process default; one provider for every TLS stack keeps a single
/// crypto library in the build.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The crypto provider for the TLS configurations we build ourselves.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    install_crypto_provider();
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()))
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("failed to {what}: {e}"))
}

/// Days a CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Days a serving, peer or client certificate is valid.
pub const LEAF_VALIDITY_DAYS: i64 = 365;
/// A leaf certificate with fewer days than this left is renewed at start (as K3s does).
pub const RENEW_WITHIN_DAYS: i64 = 90;

/// Valid from yesterday (clocks differ a little between hosts) for `days`.
fn validity(params: &mut CertificateParams, days: i64) {
    let start = Utc::now() - Duration::days(1);
    let end = start + Duration::days(days);
    params.not_before = date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
    params.not_after = date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
}

/// The end of validity of the first certificate in the PEM file `path`.
pub fn not_after(path: &Path) -> Result<chrono::DateTime<Utc>> {
    let data = std::fs::read(path).map_err(|e| Error::io("read certificate", path, e))?;
    let broken = |why: String| {
        Error::InvalidInput(format!(
            "{}: {why}; move it and its key away and restart the server to issue new ones",
            path.display()
        ))
    };
    let pem = x509_parser::pem::Pem::iter_from_buffer(&data)
        .next()
        .ok_or_else(|| broken("no certificate in it".into()))?
        .map_err(|e| broken(format!("not valid PEM: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| broken(format!("not a valid X.509 certificate: {e}")))?;
    chrono::DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .ok_or_else(|| broken("its end of validity is out of range".into()))
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "etcdsnap");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, CA_VALIDITY_DAYS);
    p
}

/// A certificate authority on disk: `<name>.crt` and `<name>.key`.
pub struct Ca {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    common_name: String,
    key: KeyPair,
}

impl Ca {
    /// Loads the CA `<dir>/<name>.{crt,key}`, creating it when absent.
    pub fn load_or_create(dir: &Path, name: &str, common_name: &str) -> Result<Ca> {
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        let key = if cert_path.exists() && key_path.exists() {
            let pem = std::fs::read_to_string(&key_path)
                .map_err(|e| Error::io("read CA key", &key_path, e))?;
            KeyPair::from_pem(&pem).map_err(|e| tls_err("parse CA key", e))?
        } else {
            let key = KeyPair::generate().map_err(|e| tls_err("generate CA key", e))?;
            let cert = ca_params(common_name)
                .self_signed(&key)
                .map_err(|e| tls_err("sign CA certificate", e))?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            write_private(&cert_path, cert.pem().as_bytes())?;
            key
        };
        Ok(Ca {
            cert_path,
            key_path,
            common_name: common_name.to_string(),
            key,
        })
    }

    /// The CA certificate as PEM text.
    pub fn cert_pem(&self) -> Result<String> {
        std::fs::read_to_string(&self.cert_path)
            .map_err(|e| Error::io("read CA certificate", &self.cert_path, e))
    }

    /// Issues `<dir>/<name>.{crt,key}` unless both exist; renews the certificate (same key)
    /// when it has fewer than [`RENEW_WITHIN_DAYS`] left. `hosts` become SANs (IP or DNS).
    pub fn ensure_leaf(
        &self,
        dir: &Path,
        name: &str,
        common_name: &str,
        hosts: &[String],
        usages: &[ExtendedKeyUsagePurpose],
    ) -> Result<(PathBuf, PathBuf)> {
        let crt = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        let key = if crt.exists() && key_path.exists() {
            let until = not_after(&crt)?;
            let left = until - Utc::now();
            if left >= Duration::days(RENEW_WITHIN_DAYS) {
                return Ok((crt, key_path));
            }
            let pem = std::fs::read_to_string(&key_path)
                .map_err(|e| Error::io("read key", &key_path, e))?;
            let key = KeyPair::from_pem(&pem).map_err(|e| {
                Error::InvalidInput(format!(
                    "{}: cannot parse the key ({e}); move it and {} away and restart the server to issue new ones",
                    key_path.display(),
                    crt.display()
                ))
            })?;
            let when = if left <= Duration::zero() {
                format!("expired on {}", until.format("%Y-%m-%d"))
            } else {
                format!(
                    "expires on {} (in {} days)",
                    until.format("%Y-%m-%d"),
                    left.num_days()
                )
            };
            tracing::info!(
                "renewing certificate {}: it {when}; the new one, from the same CA and key, is valid for {LEAF_VALIDITY_DAYS} days",
                crt.display()
            );
            Some(key)
        } else {
            None
        };
        let (key, renewing) = match key {
            Some(k) => (k, true),
            None => (
                KeyPair::generate().map_err(|e| tls_err("generate key", e))?,
                false,
            ),
        };
        let cert = self.issue(&key, common_name, hosts, usages, LEAF_VALIDITY_DAYS)?;
        // A renewal keeps the key: only the certificate file changes, in one rename.
        if !renewing {
            write_private(&key_path, key.serialize_pem().as_bytes())?;
        }
        write_private(&crt, cert.as_bytes())?;
        Ok((crt, key_path))
    }

    /// A certificate (PEM) for `key`, valid for `days`.
    pub(crate) fn issue(
        &self,
        key: &KeyPair,
        common_name: &str,
        hosts: &[String],
        usages: &[ExtendedKeyUsagePurpose],
        days: i64,
    ) -> Result<String> {
        let mut sans: Vec<String> = hosts.to_vec();
        sans.sort();
        sans.dedup();
        let mut p = CertificateParams::new(sans).map_err(|e| tls_err("build certificate", e))?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, common_name);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = usages.to_vec();
        p.use_authority_key_identifier_extension = true;
        validity(&mut p, days);
        let issuer = Issuer::new(ca_params(&self.common_name), &self.key);
        let cert = p
            .signed_by(key, &issuer)
            .map_err(|e| tls_err("sign certificate", e))?;
        Ok(cert.pem())
    }
}

/// Paths of the embedded etcd's certificates.
#[derive(Debug, Clone)]
pub struct EtcdCerts {
    pub server_ca: PathBuf,
    pub peer_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub peer_cert: PathBuf,
    pub peer_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Creates (or reuses) the etcd CAs and certificates under `<tls_dir>/etcd`.
/// What a PEM file given by the user must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemKind {
    Certificates,
    PrivateKey,
}

/// Checks that `path` (named by `flag`) is a readable PEM file holding `kind`, so that a wrong
/// file stops the start with its flag rather than failing every TLS handshake later.
pub fn check_pem_file(path: &Path, flag: &str, kind: PemKind) -> Result<()> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| {
        Error::InvalidInput(format!(
            "cannot read {flag} {shown}: {e}: give an existing PEM file"
        ))
    })?;
    let ok = match kind {
        PemKind::Certificates => CertificateDer::pem_slice_iter(&bytes)
            .next()
            .is_some_and(|c| c.is_ok()),
        PemKind::PrivateKey => PrivateKeyDer::from_pem_slice(&bytes).is_ok(),
    };
    if !ok {
        let what = match kind {
            PemKind::Certificates => "a PEM certificate (-----BEGIN CERTIFICATE-----)",
            PemKind::PrivateKey => "a PEM private key (-----BEGIN ... PRIVATE KEY-----)",
        };
        return Err(Error::InvalidInput(format!(
            "{flag} {shown} does not hold {what}: give the file etcd's TLS uses"
        )));
    }
    Ok(())
}

pub fn ensure_etcd_certs(tls_dir: &Path, hosts: &[String]) -> Result<EtcdCerts> {
    let dir = tls_dir.join("etcd");
    create_private_dir(&dir)?;
    let server_ca = Ca::load_or_create(&dir, "server-ca", "etcd-server-ca")?;
    let peer_ca = Ca::load_or_create(&dir, "peer-ca", "etcd-peer-ca")?;
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let (server_cert, server_key) = server_ca.ensure_leaf(
        &dir,
        "server-client",
        "etcd-server",
        hosts,
        &[ServerAuth, ClientAuth],
    )?;
    let (peer_cert, peer_key) = peer_ca.ensure_leaf(
        &dir,
        "peer-server-client",
        "etcd-peer",
        hosts,
        &[ServerAuth, ClientAuth],
    )?;
    let (client_cert, client_key) =
        server_ca.ensure_leaf(&dir, "client", "etcd-client", &[], &[ClientAuth])?;
    Ok(EtcdCerts {
        server_ca: server_ca.cert_path,
        peer_ca: peer_ca.cert_path,
        server_cert,
        server_key,
        peer_cert,
        peer_key,
        client_cert,
        client_key,
    })
}

/// The supervisor API's CA and serving certificate.
#[derive(Debug, Clone)]
pub struct SupervisorCerts {
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Creates (or reuses) `<tls_dir>/server-ca.{crt,key}` and the supervisor's serving certificate.
pub fn ensure_supervisor_certs(tls_dir: &Path, hosts: &[String]) -> Result<SupervisorCerts> {
    create_private_dir(tls_dir)?;
    let ca = Ca::load_or_create(tls_dir, "server-ca", "etcdsnap-server-ca")?;
    let (cert, key) = ca.ensure_leaf(
        tls_dir,
        "serving-supervisor",
        "etcdsnap-supervisor",
        hosts,
        &[ExtendedKeyUsagePurpose::ServerAuth],
    )?;
    Ok(SupervisorCerts {
        ca_pem: ca.cert_pem()?,
        cert,
        key,
    })
}

/// The SANs every generated serving certificate carries, plus the given extra hosts.
pub fn default_hosts(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["127.0.0.1", "::1", "localhost"]
        .iter()
        .chain(extra)
        .filter(|h| !h.is_empty() && **h != "0.0.0.0" && **h != "::")
        .map(|s| s.to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = default_hosts(&["node1"]);
        let a = ensure_etcd_certs(dir.path(), &hosts).unwrap();
        let pem1 = std::fs::read(&a.client_cert).unwrap();
        let b = ensure_etcd_certs(dir.path(), &hosts).unwrap();
        assert_eq!(pem1, std::fs::read(&b.client_cert).unwrap());
        for p in [&a.server_ca, &a.server_key, &a.client_key, &a.peer_key] {
            assert_eq!(crate::fsutil::mode_of(p), Some(0o600), "{}", p.display());
        }
        assert!(dir.path().join("etcd/server-ca.key").exists());
        let s = ensure_supervisor_certs(dir.path(), &hosts).unwrap();
        assert!(s.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }

    fn days_left(p: &Path) -> i64 {
        (not_after(p).unwrap() - Utc::now()).num_days()
    }

    #[test]
    fn leaves_live_a_year_and_are_renewed_within_90_days_with_the_same_ca_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = default_hosts(&[]);
        let s = ensure_supervisor_certs(dir.path(), &hosts).unwrap();
        let ca = dir.path().join("server-ca.crt");
        assert!(
            (3640..=3650).contains(&days_left(&ca)),
            "{}",
            days_left(&ca)
        );
        assert!(
            (360..=365).contains(&days_left(&s.cert)),
            "{}",
            days_left(&s.cert)
        );
        let ca_before = std::fs::read(&ca).unwrap();
        let key_before = std::fs::read(&s.key).unwrap();
        // A certificate with 30 days left, from the same CA and key.
        let issue = |days: i64| {
            let c = Ca::load_or_create(dir.path(), "server-ca", "etcdsnap-server-ca").unwrap();
            let key = KeyPair::from_pem(&String::from_utf8(key_before.clone()).unwrap()).unwrap();
            let pem = c
                .issue(
                    &key,
                    "etcdsnap-supervisor",
                    &hosts,
                    &[ExtendedKeyUsagePurpose::ServerAuth],
                    days,
                )
                .unwrap();
            std::fs::write(&s.cert, pem).unwrap();
        };
        issue(30);
        assert!(days_left(&s.cert) < 31);
        ensure_supervisor_certs(dir.path(), &hosts).unwrap();
        assert!((360..=365).contains(&days_left(&s.cert)), "not renewed");
        assert_eq!(std::fs::read(&ca).unwrap(), ca_before, "the CA changed");
        assert_eq!(
            std::fs::read(&s.key).unwrap(),
            key_before,
            "the key changed"
        );
        assert_eq!(crate::fsutil::mode_of(&s.cert), Some(0o600));
        // With 120 days left nothing changes.
        issue(121);
        let kept = std::fs::read(&s.cert).unwrap();
        ensure_supervisor_certs(dir.path(), &hosts).unwrap();
        assert_eq!(std::fs::read(&s.cert).unwrap(), kept);
        // An expired etcd client certificate is renewed as well.
        let etcd = ensure_etcd_certs(dir.path(), &hosts).unwrap();
        let c =
            Ca::load_or_create(&dir.path().join("etcd"), "server-ca", "etcd-server-ca").unwrap();
        let key = KeyPair::from_pem(&std::fs::read_to_string(&etcd.client_key).unwrap()).unwrap();
        let pem = c
            .issue(
                &key,
                "etcd-client",
                &[],
                &[ExtendedKeyUsagePurpose::ClientAuth],
                1,
            )
            .unwrap();
        std::fs::write(&etcd.client_cert, pem).unwrap();
        ensure_etcd_certs(dir.path(), &hosts).unwrap();
        assert!(days_left(&etcd.client_cert) > 300);
        // A certificate file that is not one is refused, naming the file and the fix.
        std::fs::write(&s.cert, "garbage").unwrap();
        let e = ensure_supervisor_certs(dir.path(), &hosts)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("serving-supervisor.crt") && e.contains("move it"),
            "{e}"
        );
    }
}
