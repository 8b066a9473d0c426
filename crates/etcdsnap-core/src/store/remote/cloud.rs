//! Building the object_store clients of the stores beyond K3s: Google Cloud Storage and Azure
//! Blob. Everything above the client (layout, metadata, upload, download, listing, retention)
//! is the S3 store's; only the client, its credentials and its endpoint differ.
//!
//! Rules:
//! * `endpoint` is a full URL and is meant for emulators: GCS requests then go unsigned unless a
//!   credentials file is given; an `http://` endpoint allows plain HTTP.
//! * The Azure account key is a secret: it is scrubbed from every error text.
//! * A GCS service-account key signs its own bearer tokens here ([`ScopedJwt`]) rather than in
//!   object_store, which asks for the `cloud-platform` scope (every Google API the account may
//!   use); ours carry `devstorage.read_write`, all a snapshot store needs, so a token that
//!   leaks opens the buckets and nothing else (issue 23).

use std::sync::Arc;

use object_store::StaticCredentialProvider;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};

use super::config::{NO_REQUEST_KEYS, S3Config};
use super::transport::{Addressing, BuiltClient, ProxyMode, Transport, request_policy, scrub};
use crate::error::error_chain;
use crate::{Error, Result};

/// Google's public endpoint, for messages when no endpoint is configured.
pub const GCS_DEFAULT_URL: &str = "https://storage.googleapis.com";

fn transport() -> Transport {
    Transport {
        roots: None,
        accept_invalid_certs: false,
        proxy: ProxyMode::Environment,
    }
}

fn addressing(endpoint_url: String) -> Addressing {
    Addressing {
        store_endpoint: endpoint_url.clone(),
        endpoint_url,
        virtual_hosted: false,
    }
}

fn init_error(cfg: &S3Config, e: &object_store::Error) -> Error {
    Error::InvalidInput(format!(
        "failed to initialize {} client: {}",
        cfg.provider.label(),
        scrub(&error_chain(e), &cfg.secrets())
    ))
}

/// A GCS client for `cfg.bucket`: a service-account key file, Google's application-default
/// credentials, or (an emulator endpoint without a key file) unsigned requests.
pub fn build_gcs(cfg: &S3Config) -> Result<BuiltClient> {
    let endpoint = cfg.endpoint.trim_end_matches('/');
    let allow_http = endpoint.starts_with("http://");
    let (options, retry) = request_policy(cfg.timeout, allow_http);
    let mut b = GoogleCloudStorageBuilder::new()
        .with_bucket_name(&cfg.bucket)
        .with_client_options(options)
        .with_retry(retry)
        .with_http_connector(transport());
    let source = if !cfg.credentials_json.is_empty() {
        b = b.with_credentials(Arc::new(ScopedJwt::from_key(&cfg.credentials_json)?));
        "service-account key sent with the request".to_string()
    } else if !cfg.credentials_file.is_empty() {
        if !cfg.ambient_identity {
            return Err(Error::InvalidInput(NO_REQUEST_KEYS.into()));
        }
        let text = std::fs::read_to_string(&cfg.credentials_file).map_err(|e| {
            Error::InvalidInput(format!(
                "cannot read --etcd-gcs-credentials-file {}: {e}: give the service-account JSON key file",
                cfg.credentials_file
            ))
        })?;
        b = b.with_credentials(Arc::new(ScopedJwt::from_key(&text)?));
        cfg.credentials_file.clone()
    } else if !endpoint.is_empty() {
        // Unsigned: object_store skips signing for reads only when told to, and its writes and
        // deletes always ask the credential provider, so that one must answer without going to
        // the metadata server (an empty bearer, as its `disable_oauth` key files give).
        b = b
            .with_skip_signature(true)
            .with_credentials(Arc::new(StaticCredentialProvider::new(GcpCredential {
                bearer: String::new(),
            })));
        "anonymous (emulator endpoint)".to_string()
    } else {
        if !cfg.ambient_identity {
            return Err(Error::InvalidInput(NO_REQUEST_KEYS.into()));
        }
        "application default".to_string()
    };
    if !endpoint.is_empty() {
        b = b.with_base_url(endpoint);
    }
    let client = b.build().map_err(|e| init_error(cfg, &e))?;
    let url = if endpoint.is_empty() {
        GCS_DEFAULT_URL.to_string()
    } else {
        endpoint.to_string()
    };
    Ok(BuiltClient::new(client, addressing(url), source))
}

/// The OAuth scope of our GCS tokens: read and write objects, nothing else.
pub const GCS_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

/// How long a self-signed token is valid, and when a new one is made.
const JWT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);
const JWT_RENEW_AFTER: std::time::Duration = std::time::Duration::from_secs(3000);

/// Bearer tokens for GCS, self-signed with a service-account key (Google's "JWT access
/// token": no exchange with an OAuth server) and scoped to [`GCS_SCOPE`]. Hand-written because
/// object_store's signer fixes the `cloud-platform` scope; RS256 comes from ring, already here.
pub struct ScopedJwt {
    email: String,
    key_id: String,
    key: ring::signature::RsaKeyPair,
    cached: std::sync::Mutex<Option<(std::time::Instant, Arc<GcpCredential>)>>,
}

impl std::fmt::Debug for ScopedJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedJwt")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl ScopedJwt {
    /// From a service-account key (the JSON Google issues). Errors name the problem, never the
    /// key.
    pub fn from_key(json: &str) -> Result<ScopedJwt> {
        use rustls_pki_types::PrivatePkcs8KeyDer;
        use rustls_pki_types::pem::PemObject;
        let bad = |why: &str| {
            Error::InvalidInput(format!(
                "the GCS service-account key is not usable ({why}): give the JSON key file Google issued for the service account"
            ))
        };
        let v: serde_json::Value = serde_json::from_str(json).map_err(|_| bad("not JSON"))?;
        let field = |name: &str| v[name].as_str().map(str::to_string);
        let email = field("client_email").ok_or_else(|| bad("no client_email"))?;
        let pem = field("private_key").ok_or_else(|| bad("no private_key"))?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| bad("private_key is not a PKCS#8 PEM key"))?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|_| bad("private_key is not an RSA key"))?;
        Ok(ScopedJwt {
            email,
            key_id: field("private_key_id").unwrap_or_default(),
            key,
            cached: Default::default(),
        })
    }

    /// A new token, valid for [`JWT_LIFETIME`] from `now` (seconds since the epoch).
    pub fn sign(&self, now: u64) -> Result<String> {
        use base64::Engine as _;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": self.key_id});
        let claims = serde_json::json!({
            "iss": self.email,
            "sub": self.email,
            "scope": GCS_SCOPE,
            "iat": now,
            "exp": now + JWT_LIFETIME.as_secs(),
        });
        let message = format!("{}.{}", b64(&header), b64(&claims));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message.as_bytes(),
                &mut sig,
            )
            .map_err(|_| Error::Other("signing the GCS token failed".into()))?;
        Ok(format!(
            "{message}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
        ))
    }

    fn current(&self) -> Result<Arc<GcpCredential>> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((made, c)) = cached.as_ref()
            && made.elapsed() < JWT_RENEW_AFTER
        {
            return Ok(c.clone());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let c = Arc::new(GcpCredential {
            bearer: self.sign(now)?,
        });
        *cached = Some((std::time::Instant::now(), c.clone()));
        Ok(c)
    }
}

impl object_store::CredentialProvider for ScopedJwt {
    type Credential = GcpCredential;

    fn get_credential<'a, 'b>(
        &'a self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = object_store::Result<Arc<GcpCredential>>> + Send + 'b>,
    >
    where
        'a: 'b,
        Self: 'b,
    {
        let result = self.current().map_err(|e| object_store::Error::Generic {
            store: "GCS",
            source: Box::new(e),
        });
        Box::pin(std::future::ready(result))
    }
}

/// An Azure Blob client for container `cfg.bucket` of account `cfg.account`, signed with the
/// account key (`cfg.secret_key`). An endpoint replaces `https://<account>.blob.core.windows.net`;
/// for azurite it is `http://host:port/<account>`.
pub fn build_azure(cfg: &S3Config) -> Result<BuiltClient> {
    let endpoint = cfg.endpoint.trim_end_matches('/');
    let allow_http = endpoint.starts_with("http://");
    let (options, retry) = request_policy(cfg.timeout, allow_http);
    let mut b = MicrosoftAzureBuilder::new()
        .with_account(&cfg.account)
        .with_container_name(&cfg.bucket)
        .with_access_key(&cfg.secret_key)
        .with_allow_http(allow_http)
        .with_client_options(options)
        .with_retry(retry)
        .with_http_connector(transport());
    let url = if endpoint.is_empty() {
        format!("https://{}.blob.core.windows.net", cfg.account)
    } else {
        b = b.with_endpoint(endpoint.to_string());
        endpoint.to_string()
    };
    let client = b.build().map_err(|e| init_error(cfg, &e))?;
    Ok(BuiltClient::new(
        client,
        addressing(url),
        "account key".to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::remote::Provider;

    fn azure() -> S3Config {
        S3Config {
            provider: Provider::Azure,
            bucket: "snaps".into(),
            account: "acct".into(),
            // Not base64: the builder refuses it, and the message must not carry it.
            secret_key: "NOT-BASE64-SECRET!".into(),
            endpoint: String::new(),
            ..S3Config::default()
        }
    }

    #[test]
    fn azure_bad_key_is_init_error_without_the_key() {
        let e = build_azure(&azure())
            .err()
            .expect("a key that is not base64 fails");
        let text = e.to_string();
        assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
        assert!(
            text.starts_with("failed to initialize Azure Blob client"),
            "{text}"
        );
        assert!(!text.contains("NOT-BASE64-SECRET!"), "{text}");
    }

    /// A service-account key as Google issues it, with a fresh RSA key from openssl.
    fn service_account_key() -> String {
        etcdsnap_testkit::gcs::service_account_key("kid1", "snaps@proj.iam.gserviceaccount.com")
    }

    #[test]
    fn gcs_tokens_carry_the_storage_scope_only_and_verify() {
        use base64::Engine as _;
        let json = service_account_key();
        let jwt = ScopedJwt::from_key(&json).unwrap();
        let token = jwt.sign(1_700_000_000).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |p: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap()
        };
        let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(claims["scope"], GCS_SCOPE);
        assert!(!claims.to_string().contains("cloud-platform"));
        assert_eq!(claims["iss"], "snaps@proj.iam.gserviceaccount.com");
        assert_eq!(claims["exp"], 1_700_003_600u64);
        let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        assert_eq!(
            (header["alg"].as_str(), header["kid"].as_str()),
            (Some("RS256"), Some("kid1"))
        );
        // The signature verifies with the key's public half.
        use ring::signature::KeyPair as _;
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            jwt.key.public_key().as_ref().to_vec(),
        );
        public
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &decode(parts[2]),
            )
            .unwrap();
        // The GCS client is built with it, signed.
        let cfg = S3Config {
            provider: Provider::Gcs,
            bucket: "bkt".into(),
            credentials_json: json,
            ambient_identity: false,
            ..S3Config::default()
        };
        let built = build_gcs(&cfg).unwrap();
        assert!(built.credential_source.contains("service-account key"));
        // A bad key names the problem and not the key.
        for bad in [
            "not json",
            r#"{"client_email":"a@b"}"#,
            r#"{"client_email":"a@b","private_key":"SECRETPEM"}"#,
        ] {
            let e = ScopedJwt::from_key(bad).unwrap_err().to_string();
            assert!(e.contains("service-account key is not usable"), "{e}");
            assert!(!e.contains("SECRETPEM"), "{e}");
        }
    }

    #[test]
    fn endpoints_shown_in_messages() {
        let ok = S3Config {
            secret_key: "a2V5".into(),
            ..azure()
        };
        let built = build_azure(&ok).unwrap();
        assert_eq!(
            built.addressing.endpoint_url,
            "https://acct.blob.core.windows.net"
        );
        let emu = S3Config {
            endpoint: "http://127.0.0.1:10000/devstoreaccount1/".into(),
            ..ok
        };
        let built = build_azure(&emu).unwrap();
        assert_eq!(
            built.addressing.endpoint_url,
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        let gcs = S3Config {
            provider: Provider::Gcs,
            bucket: "bkt".into(),
            endpoint: "http://127.0.0.1:4443".into(),
            ..S3Config::default()
        };
        let built = build_gcs(&gcs).unwrap();
        assert_eq!(built.addressing.endpoint_url, "http://127.0.0.1:4443");
        assert!(built.credential_source.starts_with("anonymous"));
    }
}
