//! Building the object_store S3 client from an [`S3Config`]: credentials chain, endpoint and
//! addressing style, upload checksums, over the shared [`Transport`] (CA bundle, certificate
//! checks, proxy, timeouts). Also turns any provider's client errors into a [`RemoteCause`] and a
//! message that names it, with every secret value scrubbed.

use std::path::PathBuf;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum};

use super::config::{BucketLookup, ChecksumMode, NO_REQUEST_KEYS, Provider, S3Config, S3Target};
use super::transport::{
    Addressing, BuiltClient, ProxyMode, Transport, redact_proxy, request_policy, scrub,
};
use crate::error::{RemoteCause, error_chain};
use crate::{Error, Result};

/// Static credentials, wherever they came from.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    /// Where they came from, for logs: `configuration`, `environment`, or the file path.
    pub source: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Where credentials are looked up (injected so tests need not touch the process environment).
pub trait CredentialEnv {
    fn var(&self, name: &str) -> Option<String>;
    fn home(&self) -> Option<PathBuf>;
}

/// The real process environment.
pub struct ProcessEnv;

impl CredentialEnv for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
    fn home(&self) -> Option<PathBuf> {
        self.var("HOME").map(PathBuf::from)
    }
}

/// How requests are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Static(StaticCredentials),
    /// Only one of the access key and the secret key is set: K3s's client then sends unsigned
    /// (anonymous) requests, and so do we, with a warning.
    Anonymous,
    /// Nothing configured: object_store's instance credentials (IMDS, ECS, web identity).
    Instance,
}

/// Explicit keys, then `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`(/`AWS_SESSION_TOKEN`), then the
/// shared credentials file, else instance credentials. Half a key pair means anonymous.
pub fn credentials(cfg: &S3Config, env: &dyn CredentialEnv) -> Result<Credentials> {
    if cfg.access_key.is_empty() != cfg.secret_key.is_empty() {
        tracing::warn!(
            "only one of etcd-s3-access-key and etcd-s3-secret-key is set: requests to S3 are sent unsigned (anonymous), as K3s does; set both to sign them"
        );
        return Ok(Credentials::Anonymous);
    }
    if !cfg.ambient_identity && cfg.access_key.is_empty() {
        // A configuration that arrived in a request: the server's own identity is never lent
        // to it (the request layer refuses this earlier, with the fix; this is the backstop).
        return Err(Error::InvalidInput(NO_REQUEST_KEYS.into()));
    }
    Ok(match resolve_credentials(cfg, env)? {
        Some(c) => Credentials::Static(c),
        None => Credentials::Instance,
    })
}

/// Explicit keys, then `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`(/`AWS_SESSION_TOKEN`), then the
/// shared credentials file. `None` leaves the choice to object_store's instance credentials.
pub fn resolve_credentials(
    cfg: &S3Config,
    env: &dyn CredentialEnv,
) -> Result<Option<StaticCredentials>> {
    if !cfg.access_key.is_empty() || !cfg.secret_key.is_empty() {
        if cfg.access_key.is_empty() || cfg.secret_key.is_empty() {
            return Ok(None);
        }
        return Ok(Some(StaticCredentials {
            access_key: cfg.access_key.clone(),
            secret_key: cfg.secret_key.clone(),
            session_token: Some(cfg.session_token.clone()).filter(|t| !t.is_empty()),
            source: "configuration".into(),
        }));
    }
    if let (Some(access_key), Some(secret_key)) = (
        env.var("AWS_ACCESS_KEY_ID"),
        env.var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(Some(StaticCredentials {
            access_key,
            secret_key,
            session_token: env.var("AWS_SESSION_TOKEN"),
            source: "environment".into(),
        }));
    }
    let file = env
        .var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env.home().map(|h| h.join(".aws").join("credentials")));
    let Some(file) = file else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            tracing::warn!(
                "Unable to read AWS shared credentials file {}: {e}",
                file.display()
            );
            return Ok(None);
        }
    };
    let profile = env
        .var("AWS_PROFILE")
        .unwrap_or_else(|| "default".to_string());
    Ok(
        parse_shared_credentials(&text, &profile).map(|(ak, sk, token)| StaticCredentials {
            access_key: ak,
            secret_key: sk,
            session_token: token,
            source: file.display().to_string(),
        }),
    )
}

/// Reads `aws_access_key_id`, `aws_secret_access_key` and `aws_session_token` of `profile` from
/// the INI text of an AWS shared credentials file.
pub fn parse_shared_credentials(
    text: &str,
    profile: &str,
) -> Option<(String, String, Option<String>)> {
    let mut in_profile = false;
    let (mut ak, mut sk, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[') {
            let name = section.split(']').next().unwrap_or("").trim();
            let name = name.strip_prefix("profile ").map_or(name, str::trim);
            in_profile = name == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => ak = Some(v),
            "aws_secret_access_key" => sk = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    match (ak, sk) {
        (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => {
            Some((a, s, token.filter(|t| !t.is_empty())))
        }
        _ => None,
    }
}

/// AWS serves every region at `s3.<region>.amazonaws.com`; the global name only answers for
/// us-east-1 without redirects, so the default endpoint follows the region.
fn regional_host(endpoint: &str, region: &str) -> String {
    if endpoint == super::config::DEFAULT_ENDPOINT && region != super::config::DEFAULT_REGION {
        if region.starts_with("cn-") {
            return format!("s3.{region}.amazonaws.com.cn");
        }
        return format!("s3.{region}.amazonaws.com");
    }
    endpoint.to_string()
}

fn is_aws_host(host: &str) -> bool {
    let h = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    h.ends_with(".amazonaws.com") || h.ends_with(".amazonaws.com.cn") || h == "amazonaws.com"
}

/// A bucket name that can be a DNS label under TLS (no dots, lowercase).
fn dns_compatible(bucket: &str) -> bool {
    !bucket.is_empty()
        && !bucket.contains('.')
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub fn addressing(cfg: &S3Config) -> Result<Addressing> {
    let scheme = if cfg.insecure { "http" } else { "https" };
    let host = regional_host(cfg.effective_endpoint(), cfg.effective_region());
    let virtual_hosted = match cfg.bucket_lookup_type()? {
        BucketLookup::Dns => true,
        BucketLookup::Path => false,
        BucketLookup::Auto => {
            host.to_ascii_lowercase().contains("aliyun")
                || (is_aws_host(&host) && dns_compatible(&cfg.bucket))
        }
    };
    let endpoint_url = format!("{scheme}://{host}");
    let store_endpoint = if virtual_hosted {
        format!("{scheme}://{}.{host}", cfg.bucket)
    } else {
        endpoint_url.clone()
    };
    Ok(Addressing {
        endpoint_url,
        store_endpoint,
        virtual_hosted,
    })
}

/// Builds the object_store client of the configured provider; no request is made.
pub fn build_client(target: &S3Target, env: &dyn CredentialEnv) -> Result<BuiltClient> {
    match target.config().provider {
        Provider::S3 => build_s3_client(target, env),
        Provider::Gcs => super::cloud::build_gcs(target.config()),
        Provider::Azure => super::cloud::build_azure(target.config()),
    }
}

fn build_s3_client(target: &S3Target, env: &dyn CredentialEnv) -> Result<BuiltClient> {
    let cfg = target.config();
    let addressing = addressing(cfg)?;
    let transport = Transport {
        roots: target.roots().map(<[Vec<u8>]>::to_vec),
        accept_invalid_certs: cfg.skip_ssl_verify && !cfg.insecure,
        proxy: ProxyMode::from_config(&cfg.proxy),
    };
    let (options, retry) = request_policy(cfg.timeout, cfg.insecure);
    let (checksum, unsigned_payload) = upload_integrity(cfg)?;
    let uploads_http = {
        use object_store::client::HttpConnector;
        transport
            .clone()
            .connect(&options)
            .map_err(|e| Error::remote_init(scrub(&error_chain(&e), &cfg.secrets())))?
    };
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&cfg.bucket)
        .with_region(cfg.effective_region())
        .with_endpoint(&addressing.store_endpoint)
        .with_virtual_hosted_style_request(addressing.virtual_hosted)
        .with_allow_http(cfg.insecure)
        .with_client_options(options)
        .with_retry(retry)
        .with_unsigned_payload(unsigned_payload)
        .with_http_connector(transport);
    if let Some(c) = checksum {
        builder = builder.with_checksum_algorithm(c);
    }
    let credential_source = match credentials(cfg, env)? {
        Credentials::Anonymous => {
            builder = builder.with_skip_signature(true);
            "anonymous".to_string()
        }
        Credentials::Static(c) => {
            builder = builder
                .with_access_key_id(c.access_key)
                .with_secret_access_key(c.secret_key);
            if let Some(t) = c.session_token {
                builder = builder.with_token(t);
            }
            c.source
        }
        Credentials::Instance => {
            // Web identity and container credentials, as the AWS SDKs read them.
            for (var, key) in [
                (
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    AmazonS3ConfigKey::WebIdentityTokenFile,
                ),
                ("AWS_ROLE_ARN", AmazonS3ConfigKey::RoleArn),
                ("AWS_ROLE_SESSION_NAME", AmazonS3ConfigKey::RoleSessionName),
                (
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
                ),
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    AmazonS3ConfigKey::ContainerCredentialsFullUri,
                ),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    AmazonS3ConfigKey::ContainerAuthorizationTokenFile,
                ),
            ] {
                if let Some(v) = env.var(var) {
                    builder = builder.with_config(key, v);
                }
            }
            "instance".to_string()
        }
    };
    let store = builder
        .build()
        .map_err(|e| Error::remote_init(scrub(&error_chain(&e), &cfg.secrets())))?;
    let uploads = super::uploads::Uploads {
        http: uploads_http,
        credentials: (credential_source != "anonymous").then(|| store.credentials().clone()),
        region: cfg.effective_region().to_string(),
        bucket_url: if addressing.virtual_hosted {
            addressing.store_endpoint.clone()
        } else {
            format!("{}/{}", addressing.endpoint_url, cfg.bucket)
        },
    };
    let mut built = BuiltClient::new(store, addressing, credential_source);
    built.uploads = Some(std::sync::Arc::new(uploads));
    Ok(built)
}

/// The checksum uploads carry and whether their payload goes unsigned. A SHA-256 checksum
/// reuses the digest that signing computes, so it keeps the payload signed; an unsigned payload
/// is used only over TLS, which protects the bytes in transit.
pub fn upload_integrity(cfg: &S3Config) -> Result<(Option<Checksum>, bool)> {
    let tls = !cfg.insecure;
    Ok(match cfg.checksum_mode()? {
        ChecksumMode::Auto if tls => (Some(Checksum::CRC64NVME), true),
        ChecksumMode::Auto | ChecksumMode::Sha256 => (Some(Checksum::SHA256), false),
        ChecksumMode::Crc64Nvme => (Some(Checksum::CRC64NVME), tls),
        ChecksumMode::None => (None, tls),
    })
}

/// The likely cause of a failed request, from the error and its text.
pub fn classify_error(err: &object_store::Error, chain: &str) -> RemoteCause {
    let lower = chain.to_ascii_lowercase();
    if chain.contains("NoSuchBucket") || chain.contains("ContainerNotFound") {
        return RemoteCause::NoSuchBucket;
    }
    if matches!(
        err,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || [
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "AuthenticationFailed",
        "AuthorizationFailure",
    ]
    .iter()
    .any(|c| chain.contains(c))
    {
        return RemoteCause::AccessDenied;
    }
    if matches!(err, object_store::Error::NotFound { .. }) {
        return RemoteCause::NotFound;
    }
    if [
        "certificate",
        "unknownissuer",
        "tls handshake",
        "invalid peer",
        "handshake failure",
        "received corrupt message",
        "invalidcontenttype",
    ]
    .iter()
    .any(|c| lower.contains(c))
    {
        return RemoteCause::Tls;
    }
    if [
        "connection refused",
        "error trying to connect",
        "dns error",
        "failed to lookup address",
        "connection reset",
        "client error (connect)",
        "no route to host",
        "network is unreachable",
        "unsuccessful tunnel",
    ]
    .iter()
    .any(|c| lower.contains(c))
    {
        return RemoteCause::Network;
    }
    // After the connect checks: "connect timed out" is a connect problem, not a slow server.
    if ["timed out", "deadline has elapsed"]
        .iter()
        .any(|c| lower.contains(c))
    {
        return RemoteCause::Timeout;
    }
    RemoteCause::Other
}

/// A message for an error of `what` (e.g. `upload of s3://b/k`), with a hint for the cause
/// that names the flags of `provider`.
pub fn describe_error(
    what: &str,
    err: &object_store::Error,
    provider: Provider,
    bucket: &str,
    endpoint_url: &str,
    proxy: &str,
    secrets: &[String],
) -> (RemoteCause, String) {
    let chain = error_chain(err);
    let cause = classify_error(err, &chain);
    let detail = summarize(&chain);
    let label = provider.label();
    let noun = provider.bucket_noun();
    let via = proxy_in_use(proxy, endpoint_url, |name| std::env::var(name).ok());
    let flag = "--etcd-s3-proxy";
    let msg = match (cause, provider) {
        // Through a proxy, a refused or timed-out connection may be the proxy's: say both.
        (RemoteCause::Network | RemoteCause::Timeout, _) if via.is_some() => {
            let via = via.unwrap_or_default();
            let side = if chain.contains("unsuccessful tunnel") {
                "the proxy answered but could not reach the endpoint"
            } else {
                "the proxy or the endpoint is down or unreachable"
            };
            format!(
                "{what}: cannot connect to {label} endpoint {endpoint_url} through proxy {via}: \
                 {side}; check the proxy ({flag}; `none` connects directly): {detail}"
            )
        }
        (RemoteCause::NoSuchBucket, _) => format!("{noun} {bucket} does not exist"),
        (RemoteCause::AccessDenied, Provider::S3) => format!(
            "{what}: access denied to bucket {bucket}: check --etcd-s3-access-key and \
             --etcd-s3-secret-key (and --etcd-s3-session-token): {detail}"
        ),
        (RemoteCause::AccessDenied, Provider::Gcs) => format!(
            "{what}: access denied to bucket {bucket}: check --etcd-gcs-credentials-file (a \
             service-account key allowed to read and write the bucket): {detail}"
        ),
        (RemoteCause::AccessDenied, Provider::Azure) => format!(
            "{what}: access denied to container {bucket}: check --etcd-azure-account and \
             --etcd-azure-access-key: {detail}"
        ),
        (RemoteCause::Tls, Provider::S3) if chain.contains("InvalidContentType") => format!(
            "{what}: TLS connection to {endpoint_url} failed: the endpoint does not seem to speak \
             TLS (set --etcd-s3-insecure for plain HTTP; for a private CA set \
             --etcd-s3-endpoint-ca or --etcd-s3-skip-ssl-verify): {detail}"
        ),
        (RemoteCause::Tls, Provider::S3) => format!(
            "{what}: TLS connection to {endpoint_url} failed; set --etcd-s3-endpoint-ca to the \
             CA bundle that signed the server certificate, or --etcd-s3-skip-ssl-verify: {detail}"
        ),
        (RemoteCause::Tls, _) => format!(
            "{what}: TLS connection to {endpoint_url} failed (an http:// endpoint needs \
             --{}-endpoint=http://...): {detail}",
            provider.flag_prefix()
        ),
        (RemoteCause::Network, _) => {
            format!("{what}: cannot connect to {label} endpoint {endpoint_url}: {detail}")
        }
        (RemoteCause::Timeout, _) => {
            format!("{what}: no answer from {label} endpoint {endpoint_url} in time: {detail}")
        }
        (RemoteCause::NotFound | RemoteCause::Other, _) => format!("{what}: {detail}"),
    };
    (cause, scrub(&msg, secrets))
}

/// The proxy a request to `endpoint_url` goes through, for messages: the configured one, or
/// the environment's (`HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`, upper or lower case) when the
/// setting is empty. `NO_PROXY` is not evaluated here, so the message says "unless NO_PROXY
/// matches".
fn proxy_in_use(
    proxy: &str,
    endpoint_url: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    match ProxyMode::from_config(proxy) {
        ProxyMode::Direct => None,
        ProxyMode::Url(u) => Some(redact_proxy(&u)),
        ProxyMode::Environment => {
            let scheme = if endpoint_url.starts_with("https://") {
                "https_proxy"
            } else {
                "http_proxy"
            };
            [scheme, "all_proxy"].iter().find_map(|name| {
                let upper = name.to_ascii_uppercase();
                let (var, value) = [upper.as_str(), name]
                    .into_iter()
                    .find_map(|v| env(v).filter(|x| !x.is_empty()).map(|x| (v.to_string(), x)))?;
                Some(format!(
                    "{} (from {var}, unless NO_PROXY matches)",
                    redact_proxy(&value)
                ))
            })
        }
    }
}

/// Shortens an S3 XML error body to its code and message when present.
fn summarize(chain: &str) -> String {
    let tag = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = chain.find(&open)? + open.len();
        let end = chain[start..].find(&close)? + start;
        Some(chain[start..end].to_string())
    };
    let head = || chain.split('<').next().unwrap_or("").trim_end().to_string();
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!("{} {code}: {message}", head()),
        (Some(code), None) => format!("{} {code}", head()),
        _ => chain.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct FakeEnv(HashMap<&'static str, String>, Option<PathBuf>);

    impl CredentialEnv for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
        fn home(&self) -> Option<PathBuf> {
            self.1.clone()
        }
    }

    fn cfg() -> S3Config {
        S3Config {
            bucket: "bk".into(),
            ..S3Config::default()
        }
    }

    #[test]
    fn credentials_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "# comment\n[default]\naws_access_key_id = FILEAK\naws_secret_access_key=FILESK\n\n\
             [other]\naws_access_key_id=OAK\naws_secret_access_key = OSK\naws_session_token=OT\n",
        )
        .unwrap();
        let mut vars: HashMap<&'static str, String> = HashMap::new();
        vars.insert("AWS_ACCESS_KEY_ID", "ENVAK".into());
        vars.insert("AWS_SECRET_ACCESS_KEY", "ENVSK".into());
        vars.insert("AWS_SESSION_TOKEN", "ENVT".into());
        vars.insert("AWS_SHARED_CREDENTIALS_FILE", file.display().to_string());
        let env = FakeEnv(vars.clone(), None);

        let explicit = S3Config {
            access_key: "AK".into(),
            secret_key: "SK".into(),
            ..cfg()
        };
        let c = resolve_credentials(&explicit, &env).unwrap().unwrap();
        assert_eq!((c.access_key.as_str(), c.session_token), ("AK", None));

        let c = resolve_credentials(&cfg(), &env).unwrap().unwrap();
        assert_eq!(c.access_key, "ENVAK");
        assert_eq!(c.session_token.as_deref(), Some("ENVT"));

        vars.remove("AWS_ACCESS_KEY_ID");
        let c = resolve_credentials(&cfg(), &FakeEnv(vars.clone(), None))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.access_key.as_str(), c.secret_key.as_str()),
            ("FILEAK", "FILESK")
        );

        vars.insert("AWS_PROFILE", "other".into());
        let c = resolve_credentials(&cfg(), &FakeEnv(vars.clone(), None))
            .unwrap()
            .unwrap();
        assert_eq!(c.access_key, "OAK");
        assert_eq!(c.session_token.as_deref(), Some("OT"));

        // Default file location under $HOME.
        std::fs::create_dir_all(dir.path().join("home/.aws")).unwrap();
        std::fs::write(
            dir.path().join("home/.aws/credentials"),
            "[profile default]\naws_access_key_id=H\naws_secret_access_key=HS\n",
        )
        .unwrap();
        let env = FakeEnv(HashMap::new(), Some(dir.path().join("home")));
        assert_eq!(
            resolve_credentials(&cfg(), &env)
                .unwrap()
                .unwrap()
                .access_key,
            "H"
        );
        let none = FakeEnv(HashMap::new(), Some(dir.path().join("nowhere")));
        assert!(resolve_credentials(&cfg(), &none).unwrap().is_none());

        let half = S3Config {
            access_key: "AK".into(),
            ..cfg()
        };
        assert_eq!(credentials(&half, &none).unwrap(), Credentials::Anonymous);
        let other_half = S3Config {
            secret_key: "SK".into(),
            ..cfg()
        };
        assert_eq!(
            credentials(&other_half, &none).unwrap(),
            Credentials::Anonymous
        );
        assert!(matches!(
            credentials(&explicit, &none).unwrap(),
            Credentials::Static(_)
        ));
        assert_eq!(
            format!("{:?}", resolve_credentials(&explicit, &none).unwrap()),
            "Some(StaticCredentials { source: \"configuration\", .. })"
        );
    }

    #[test]
    fn upload_checksum_and_payload_signing() {
        use object_store::aws::Checksum::{CRC64NVME, SHA256};
        // (insecure, checksum) -> (checksum sent, unsigned payload)
        let cases = [
            (true, "", Some(SHA256), false),
            (false, "", Some(CRC64NVME), true),
            (false, "auto", Some(CRC64NVME), true),
            (true, "sha256", Some(SHA256), false),
            (false, "SHA256", Some(SHA256), false),
            (true, "crc64nvme", Some(CRC64NVME), false),
            (false, "crc64nvme", Some(CRC64NVME), true),
            (true, "none", None, false),
            (false, "none", None, true),
        ];
        for (insecure, checksum, want, unsigned) in cases {
            let c = S3Config {
                insecure,
                checksum: checksum.into(),
                ..cfg()
            };
            assert_eq!(
                upload_integrity(&c).unwrap(),
                (want, unsigned),
                "{insecure} {checksum}"
            );
        }
        let bad = S3Config {
            checksum: "md5".into(),
            ..cfg()
        };
        assert!(upload_integrity(&bad).is_err());
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("etcd-s3-checksum") && e.contains("md5"), "{e}");
        let many = S3Config {
            upload_concurrency: 17,
            ..cfg()
        };
        let e = many.validate().unwrap_err().to_string();
        assert!(e.contains("1 to 16"), "{e}");
        assert_eq!(cfg().effective_upload_concurrency(), 4);
        assert_eq!(
            S3Config {
                upload_concurrency: 1,
                ..cfg()
            }
            .effective_upload_concurrency(),
            1
        );
        // Not K3s's fields: absent from the JSON unless set.
        let json = serde_json::to_string(&cfg()).unwrap();
        assert!(
            !json.contains("uploadConcurrency") && !json.contains("checksum"),
            "{json}"
        );
    }

    #[test]
    fn addressing_rules() {
        let a = |endpoint: &str, lookup: &str, bucket: &str, region: &str, insecure: bool| {
            addressing(&S3Config {
                endpoint: endpoint.into(),
                bucket_lookup: lookup.into(),
                bucket: bucket.into(),
                region: region.into(),
                insecure,
                ..S3Config::default()
            })
            .unwrap()
        };
        let x = a("minio:9000", "", "bk", "us-east-1", false);
        assert_eq!(x.store_endpoint, "https://minio:9000");
        assert!(!x.virtual_hosted);
        let x = a("minio:9000", "dns", "bk", "us-east-1", true);
        assert_eq!(x.store_endpoint, "http://bk.minio:9000");
        assert_eq!(x.endpoint_url, "http://minio:9000");
        assert!(x.virtual_hosted);
        let x = a("s3.amazonaws.com", "auto", "bk", "us-east-1", false);
        assert_eq!(x.store_endpoint, "https://bk.s3.amazonaws.com");
        let x = a("s3.amazonaws.com", "", "bk", "eu-west-1", false);
        assert_eq!(x.store_endpoint, "https://bk.s3.eu-west-1.amazonaws.com");
        let x = a("s3.amazonaws.com", "", "my.bucket", "us-east-1", false);
        assert_eq!(x.store_endpoint, "https://s3.amazonaws.com");
        assert!(!x.virtual_hosted);
        let x = a("s3.amazonaws.com", "path", "bk", "us-east-1", false);
        assert!(!x.virtual_hosted);
        let x = a(
            "oss-cn-hangzhou.aliyuncs.com",
            "",
            "bk",
            "cn-hangzhou",
            false,
        );
        assert!(x.virtual_hosted);
        assert_eq!(x.store_endpoint, "https://bk.oss-cn-hangzhou.aliyuncs.com");
        let x = a("", "", "bk", "", false);
        assert_eq!(x.store_endpoint, "https://bk.s3.amazonaws.com");
    }

    #[test]
    fn scrub_and_summarize() {
        let secrets = vec!["TOPSECRET".to_string()];
        assert_eq!(scrub("a TOPSECRET b", &secrets), "a <redacted> b");
        let s = summarize(
            "Error performing GET http://x in 1ms - Server returned non-2xx status code: 403 \
             Forbidden: <?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>\
             <Message>bad sig</Message></Error>",
        );
        assert!(s.ends_with("SignatureDoesNotMatch: bad sig"), "{s}");
        assert!(!s.contains('<'));
        let s = summarize("403 Forbidden: <Error><Code>AccessDenied</Code></Error>");
        assert_eq!(s, "403 Forbidden: AccessDenied");
    }

    #[test]
    fn a_refused_connection_through_a_proxy_names_the_proxy() {
        let err = object_store::Error::Generic {
            store: "S3",
            source: "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)".into(),
        };
        let (cause, msg) = describe_error(
            "list of s3://bkt",
            &err,
            Provider::S3,
            "bkt",
            "https://s3.example:9000",
            "http://user:pw@127.0.0.1:1",
            &[],
        );
        assert_eq!(cause, RemoteCause::Network);
        assert!(
            msg.contains("through proxy http://<redacted>@127.0.0.1:1: the proxy or the endpoint is down or unreachable; check the proxy (--etcd-s3-proxy"),
            "{msg}"
        );
        assert!(!msg.contains("pw"), "{msg}");
        let (_, direct) = describe_error(
            "list of s3://bkt",
            &err,
            Provider::S3,
            "bkt",
            "https://s3.example:9000",
            "none",
            &[],
        );
        assert!(!direct.contains("proxy"), "{direct}");
        let env = |name: &str| (name == "HTTPS_PROXY").then(|| "http://p:3128".to_string());
        assert_eq!(
            proxy_in_use("", "https://s3.example", env).as_deref(),
            Some("http://p:3128 (from HTTPS_PROXY, unless NO_PROXY matches)")
        );
        assert_eq!(proxy_in_use("", "http://s3.example", env), None);
    }
}
