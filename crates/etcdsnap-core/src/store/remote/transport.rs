//! What every store's client is built with, whatever the provider: the HTTP transport (CA
//! roots from `--etcd-s3-endpoint-ca`, certificate checks, proxy), the request policy, the
//! built client, and the scrubbing of secrets from messages. A leaf: it imports none of its
//! siblings, so the configuration, the S3 client and the cloud clients all build on it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use object_store::ObjectStore;
use object_store::client::{HttpClient, HttpConnector};
use object_store::list::PaginatedListStore;
use object_store::{BackoffConfig, ClientConfigKey, ClientOptions, RetryConfig};

use crate::error::error_chain;
use crate::{Error, Result};

/// Loads `--etcd-s3-endpoint-ca`: space-separated tokens, each base64 of a PEM bundle or a path
/// to a PEM file. Returns the DER certificates.
pub fn load_endpoint_ca(value: &str) -> Result<Vec<Vec<u8>>> {
    let mut certs = Vec::new();
    for token in value.split_whitespace() {
        let from_b64 = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .map(|pem| pem_certificates(&pem))
            .filter(|c| !c.is_empty());
        if let Some(found) = from_b64 {
            certs.extend(found);
            continue;
        }
        match read_ca_file(Path::new(token)) {
            Ok(pem) => certs.extend(pem_certificates(&pem)),
            Err(e) => {
                return Err(Error::InvalidInput(format!(
                    "etcd-s3-endpoint-ca {:?} is neither base64-encoded PEM nor a readable file: {e}",
                    shorten(token)
                )));
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::InvalidInput(
            "no certificates loaded from etcd-s3-endpoint-ca".into(),
        ));
    }
    Ok(certs)
}

/// `--etcd-s3-endpoint-ca` with each file replaced by its contents, base64-encoded, as a
/// request carries it: the server reads no file a request names (issue 23). Read as
/// [`load_endpoint_ca`] reads them; a file with no certificate is refused.
pub fn inline_endpoint_ca(value: &str) -> Result<String> {
    let mut items = Vec::new();
    for token in value.split_whitespace() {
        let inline = base64::engine::general_purpose::STANDARD
            .decode(token)
            .is_ok_and(|pem| !pem_certificates(&pem).is_empty());
        if inline {
            items.push(token.to_string());
            continue;
        }
        let pem = read_ca_file(Path::new(token)).map_err(|e| {
            Error::InvalidInput(format!(
                "cannot read --s3-endpoint-ca file {:?}: {e}: give a readable PEM file or a base64-encoded PEM bundle",
                shorten(token)
            ))
        })?;
        if pem_certificates(&pem).is_empty() {
            return Err(Error::InvalidInput(format!(
                "--s3-endpoint-ca file {:?} holds no PEM certificate: give the CA bundle of the S3 endpoint",
                shorten(token)
            )));
        }
        items.push(base64::engine::general_purpose::STANDARD.encode(pem));
    }
    Ok(items.join(" "))
}

/// A CA file larger than this is refused: bundles are kilobytes (a whole system store is well
/// under 1 MiB), and the path can come from an API request.
pub const MAX_CA_FILE: u64 = 4 << 20;

/// Reads a CA file named by the flag, the config file or a `/db/snapshot` request: only a
/// regular file (after symlinks) of at most [`MAX_CA_FILE`] bytes. A device such as
/// `/dev/zero` would otherwise grow the buffer until memory runs out and a FIFO would block the
/// caller; some devices act when merely opened (a watchdog starts counting), so the path is
/// checked before it is opened, and the open handle again, in case the path was swapped.
fn read_ca_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error as IoError, ErrorKind, Read as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    let not_regular = || IoError::new(ErrorKind::InvalidInput, "not a regular file");
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let too_big = || {
        IoError::new(
            ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_CA_FILE >> 20),
        )
    };
    if meta.len() > MAX_CA_FILE {
        return Err(too_big());
    }
    let mut pem = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow after the check (and /proc files say 0): read one byte past the limit.
    file.take(MAX_CA_FILE + 1).read_to_end(&mut pem)?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(too_big());
    }
    Ok(pem)
}

fn shorten(token: &str) -> String {
    if token.chars().count() > 64 {
        format!("{}...", token.chars().take(61).collect::<String>())
    } else {
        token.to_string()
    }
}

/// The DER bytes of every `CERTIFICATE` block in a PEM text; other blocks are skipped, and so
/// is everything after a malformed block.
pub fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .map_while(|c| c.ok())
        .map(|c| c.to_vec())
        .collect()
}

/// How requests reach the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyMode {
    /// `HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY` from the environment.
    Environment,
    /// `none`: always direct.
    Direct,
    /// This proxy for every request.
    Url(String),
}

impl ProxyMode {
    pub fn from_config(proxy: &str) -> Self {
        match proxy {
            "" => ProxyMode::Environment,
            "none" => ProxyMode::Direct,
            url => ProxyMode::Url(url.to_string()),
        }
    }
}

/// Builds the reqwest clients object_store asks for, with our TLS and proxy rules (object_store's
/// own options cannot turn off environment proxies or replace the system roots).
#[derive(Clone)]
pub struct Transport {
    /// Only these roots when set (K3s replaces the system pool with the CA bundle).
    pub roots: Option<Vec<Vec<u8>>>,
    pub accept_invalid_certs: bool,
    pub proxy: ProxyMode,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proxy = match &self.proxy {
            ProxyMode::Url(u) => format!("Url({})", redact_proxy(u)),
            other => format!("{other:?}"),
        };
        f.debug_struct("Transport")
            .field("roots", &self.roots.as_ref().map(Vec::len))
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .field("proxy", &proxy)
            .finish()
    }
}

impl Transport {
    fn reqwest_client(&self, options: &ClientOptions) -> Result<reqwest::Client, String> {
        let duration = |key: ClientConfigKey| {
            options
                .get_config_value(&key)
                .and_then(|v| humantime::parse_duration(&v).ok())
        };
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|v| v == "true");
        crate::tls::install_crypto_provider();
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("etcdsnap/", env!("CARGO_PKG_VERSION")))
            .no_gzip()
            .https_only(!allow_http);
        if let Some(t) = duration(ClientConfigKey::Timeout) {
            b = b.timeout(t);
        }
        if let Some(t) = duration(ClientConfigKey::ConnectTimeout) {
            b = b.connect_timeout(t);
        }
        if self.accept_invalid_certs {
            b = b.danger_accept_invalid_certs(true);
        } else if let Some(roots) = &self.roots {
            let certs = roots
                .iter()
                .map(|der| reqwest::Certificate::from_der(der))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("invalid CA certificate: {e}"))?;
            b = b.tls_certs_only(certs);
        }
        b = match &self.proxy {
            ProxyMode::Environment => b,
            ProxyMode::Direct => b.no_proxy(),
            ProxyMode::Url(u) => b.proxy(
                reqwest::Proxy::all(u.as_str())
                    .map_err(|_| format!("invalid proxy URL {}", redact_proxy(u)))?,
            ),
        };
        b.build()
            .map_err(|e| format!("cannot build HTTP client: {}", error_chain(&e)))
    }
}

impl HttpConnector for Transport {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = self
            .reqwest_client(options)
            .map_err(|e| object_store::Error::Generic {
                store: "HTTP",
                source: e.into(),
            })?;
        Ok(HttpClient::new(client))
    }
}

/// A proxy URL may carry `user:password@`; keep only the scheme and host part.
pub(crate) fn redact_proxy(proxy: &str) -> String {
    match proxy.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://<redacted>@{host}"),
            None => proxy.to_string(),
        },
        None => proxy.to_string(),
    }
}

/// Where requests go, after the endpoint, region and lookup rules are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressing {
    /// `scheme://host[:port]` that the user sees in messages (no bucket).
    pub endpoint_url: String,
    /// What object_store gets as its endpoint (with the bucket for virtual-hosted style).
    pub store_endpoint: String,
    pub virtual_hosted: bool,
}

/// A built client and what it was built with: one object_store client seen through the two
/// traits the store uses.
pub struct BuiltClient {
    pub store: Arc<dyn ObjectStore>,
    pub lister: Arc<dyn PaginatedListStore>,
    pub addressing: Addressing,
    pub credential_source: String,
    /// S3 only: its incomplete multipart uploads.
    pub uploads: Option<Arc<super::uploads::Uploads>>,
}

impl BuiltClient {
    pub(crate) fn new<T: ObjectStore + PaginatedListStore>(
        client: T,
        addressing: Addressing,
        credential_source: String,
    ) -> Self {
        let client = Arc::new(client);
        BuiltClient {
            store: client.clone(),
            lister: client,
            addressing,
            credential_source,
            uploads: None,
        }
    }
}

/// The client options and retry policy every store uses: each request bounded by the timeout.
pub(crate) fn request_policy(timeout: Duration, allow_http: bool) -> (ClientOptions, RetryConfig) {
    let options = ClientOptions::new()
        .with_allow_http(allow_http)
        .with_timeout(timeout)
        .with_connect_timeout(timeout.min(Duration::from_secs(30)));
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 5,
        retry_timeout: timeout.min(Duration::from_secs(180)),
    };
    (options, retry)
}

/// Replaces each secret value in `text` with `<redacted>`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "<redacted>");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn endpoint_ca_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let pem1 = test_ca_pem();
        let pem2 = test_ca_pem();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, format!("{pem1}\n{pem2}")).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&pem1);

        assert_eq!(
            load_endpoint_ca(&path.display().to_string()).unwrap().len(),
            2
        );
        assert_eq!(load_endpoint_ca(&b64).unwrap().len(), 1);
        let both = format!("  {b64}   {} ", path.display());
        assert_eq!(load_endpoint_ca(&both).unwrap().len(), 3);

        let err = load_endpoint_ca("/no/such/ca.pem").unwrap_err().to_string();
        assert!(err.contains("/no/such/ca.pem"), "{err}");
        assert!(err.contains("neither base64-encoded PEM nor a readable file"));

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let err = load_endpoint_ca(&empty.display().to_string()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no certificates loaded from etcd-s3-endpoint-ca"
        );
        assert_eq!(
            load_endpoint_ca("").unwrap_err().to_string(),
            "no certificates loaded from etcd-s3-endpoint-ca"
        );
        assert_eq!(pem_certificates(pem1.as_bytes()).len(), 1);
    }

    /// Found by the `snapshot_request` fuzz target (fuzz/artifacts-found/snapshot_request): a
    /// request naming `/dev/zero` made the server read until memory ran out.
    #[test]
    fn endpoint_ca_reads_only_small_regular_files() {
        for special in ["/dev/zero", "/dev/urandom", "/dev/null"] {
            let err = load_endpoint_ca(special).unwrap_err().to_string();
            assert!(
                err.contains(special) && err.contains("not a regular file"),
                "{special}: {err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        // A FIFO with no writer: opening it must not block.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = load_endpoint_ca(&fifo.display().to_string()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // A directory.
        let err = load_endpoint_ca(&dir.path().display().to_string()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // Too big, even when it starts with a good certificate.
        let big = dir.path().join("big.pem");
        let mut text = test_ca_pem();
        text.push_str(&"#".repeat(usize::try_from(MAX_CA_FILE).unwrap()));
        std::fs::write(&big, text).unwrap();
        let err = load_endpoint_ca(&big.display().to_string()).unwrap_err();
        assert!(err.to_string().contains("larger than 4 MiB"), "{err}");
        // A symlink to a good file is still a good file.
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, test_ca_pem()).unwrap();
        let link = dir.path().join("link.pem");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert_eq!(
            load_endpoint_ca(&link.display().to_string()).unwrap().len(),
            1
        );
    }
}
