//! The S3 configuration as K3s carries it (`EtcdS3`): JSON names, defaults and validation.
//! Beyond K3s, the same configuration names a Google Cloud Storage bucket or an Azure Blob
//! container instead (`provider`); see [`Provider`] for which fields each one reads.
//!
//! Deserialising follows Go's rules: a field missing from the JSON is the zero value, not the
//! K3s default (`S3Config::default()` gives those). Secrets never reach `Debug` output.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::transport::{load_endpoint_ca, redact_proxy, scrub};
use crate::duration::format_go_duration;
use crate::store::S3Spec;
use crate::{Error, Result};

/// Default `--etcd-s3-endpoint`.
pub const DEFAULT_ENDPOINT: &str = "s3.amazonaws.com";
/// Default `--etcd-s3-region`.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default `--etcd-s3-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Default `--etcd-s3-retention`.
pub const DEFAULT_RETENTION: i64 = 5;

/// K3s's `EtcdS3` configuration, as carried in the `/db/snapshot` request JSON. Unknown
/// fields are refused, naming the field.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Config {
    /// `--etcd-s3-access-key` (secret-ish: never logged).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub access_key: String,
    /// `--etcd-s3-bucket`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    /// `--etcd-s3-bucket-lookup-type`: `auto`, `dns`, `path` or empty (auto).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket_lookup: String,
    /// `--etcd-s3-config-secret`: name of a kube-system Secret holding the configuration.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_secret: String,
    /// `--etcd-s3-endpoint`: `host[:port]`, no scheme.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// `--etcd-s3-endpoint-ca`: space-separated file paths or base64-encoded PEM bundles.
    #[serde(
        rename = "endpointCA",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub endpoint_ca: String,
    /// `--etcd-s3-folder`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub folder: String,
    /// `--etcd-s3-proxy`: a URL, or `none` to ignore `HTTP(S)_PROXY`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proxy: String,
    /// `--etcd-s3-region`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// `--etcd-s3-secret-key` (never logged).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret_key: String,
    /// `--etcd-s3-session-token` (never logged).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_token: String,
    /// `--etcd-s3-insecure`: plain HTTP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// `--etcd-s3-skip-ssl-verify`: accept any server certificate.
    #[serde(
        rename = "skipSSLVerify",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub skip_ssl_verify: bool,
    /// `--etcd-s3-retention`: objects kept per name prefix; below 1 disables pruning.
    #[serde(default)]
    pub retention: i64,
    /// `--etcd-s3-timeout`: bound of each S3 operation (Go duration text in JSON).
    #[serde(default, with = "crate::duration::serde_go")]
    pub timeout: Duration,
    /// etcdsnap extension, `--etcd-s3-upload-concurrency`: multipart parts in flight at once
    /// (0: [`DEFAULT_UPLOAD_CONCURRENCY`]).
    #[serde(rename = "uploadConcurrency", default, skip_serializing_if = "is_zero")]
    pub upload_concurrency: u32,
    /// etcdsnap extension, `--etcd-s3-checksum`: the checksum each uploaded object carries,
    /// `auto` (empty), `sha256`, `crc64nvme` or `none`; see [`ChecksumMode`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checksum: String,
    /// etcdsnap extension: the object store (S3 when absent, as K3s sends it).
    #[serde(default, skip_serializing_if = "Provider::is_s3")]
    pub provider: Provider,
    /// etcdsnap extension, `--etcd-gcs-credentials-file`: a service-account JSON file (empty:
    /// Google's application-default credentials).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credentials_file: String,
    /// etcdsnap extension, `--etcd-azure-account`: the storage account.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub account: String,
    /// etcdsnap extension: a GCS service-account key itself (the JSON text), as the CLI sends
    /// the key file it was given, so that the server never reads a key file a request names
    /// (never logged).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credentials_json: String,
    /// Whether a client built from this configuration may fall back on the identity of the
    /// process that builds it (environment keys, the shared credentials file, instance roles,
    /// Google's application-default credentials). True for configurations from the process's
    /// own flags, config file or config Secret; never carried on the wire, so a configuration
    /// that arrived in a request is false, and the server lends it no identity (issue 23).
    #[serde(skip)]
    pub ambient_identity: bool,
}

/// Which object store a configuration names. GCS and Azure read `bucket` (the container for
/// Azure), `folder`, `endpoint` (a full `http(s)://` URL, for emulators), `timeout`,
/// `retention` and `uploadConcurrency`; GCS also `credentialsFile`, Azure `account` and
/// `secretKey` (the account key). The S3-only settings (region, lookup type, CA bundle,
/// proxy, checksum, session token) do not apply to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    S3,
    Gcs,
    Azure,
}

impl Provider {
    fn is_s3(&self) -> bool {
        *self == Provider::S3
    }

    /// The URL scheme of object locations: `s3`, `gs`, `azure`.
    pub fn scheme(self) -> &'static str {
        match self {
            Provider::S3 => "s3",
            Provider::Gcs => "gs",
            Provider::Azure => "azure",
        }
    }

    /// The name operators know the store by, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Provider::S3 => "S3",
            Provider::Gcs => "GCS",
            Provider::Azure => "Azure Blob",
        }
    }

    /// What holds the objects: `bucket`, or `container` for Azure.
    pub fn bucket_noun(self) -> &'static str {
        match self {
            Provider::Azure => "container",
            _ => "bucket",
        }
    }

    /// The server flag prefix: `etcd-s3`, `etcd-gcs`, `etcd-azure`.
    pub fn flag_prefix(self) -> &'static str {
        match self {
            Provider::S3 => "etcd-s3",
            Provider::Gcs => "etcd-gcs",
            Provider::Azure => "etcd-azure",
        }
    }
}

/// Whether `location` names an object in a remote store (`s3://`, `gs://`, `azure://`).
pub fn is_remote_location(location: &str) -> bool {
    [Provider::S3, Provider::Gcs, Provider::Azure]
        .iter()
        .any(|p| location.starts_with(&format!("{}://", p.scheme())))
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Parts uploaded at once when `uploadConcurrency` is not set: with 8 MiB parts, 32 MiB in
/// flight, enough to keep a link with some latency busy.
pub const DEFAULT_UPLOAD_CONCURRENCY: u32 = 4;
/// The most parts in flight we accept (each holds a part in memory).
pub const MAX_UPLOAD_CONCURRENCY: u32 = 16;

/// The S3 checksum uploads carry (`x-amz-checksum-*`), checked by the server as each part and
/// each small object arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMode {
    /// Over plain HTTP, SHA-256 (the payload is signed with the same digest, so it costs
    /// nothing more); over HTTPS, CRC-64/NVME with an unsigned payload (TLS already protects
    /// the bytes, and a CRC costs a fraction of a SHA-256).
    Auto,
    Sha256,
    Crc64Nvme,
    /// No checksum header, for S3-compatible servers that refuse them.
    None,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            access_key: String::new(),
            bucket: String::new(),
            bucket_lookup: String::new(),
            config_secret: String::new(),
            endpoint: DEFAULT_ENDPOINT.to_string(),
            endpoint_ca: String::new(),
            folder: String::new(),
            proxy: String::new(),
            region: DEFAULT_REGION.to_string(),
            secret_key: String::new(),
            session_token: String::new(),
            insecure: false,
            skip_ssl_verify: false,
            retention: DEFAULT_RETENTION,
            timeout: DEFAULT_TIMEOUT,
            upload_concurrency: 0,
            checksum: String::new(),
            provider: Provider::S3,
            credentials_file: String::new(),
            account: String::new(),
            credentials_json: String::new(),
            ambient_identity: true,
        }
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn redacted(v: &str) -> &'static str {
            if v.is_empty() { "" } else { "<redacted>" }
        }
        f.debug_struct("S3Config")
            .field("access_key", &redacted(&self.access_key))
            .field("bucket", &self.bucket)
            .field("bucket_lookup", &self.bucket_lookup)
            .field("config_secret", &self.config_secret)
            .field("endpoint", &self.endpoint)
            .field("endpoint_ca", &self.endpoint_ca)
            .field("folder", &self.folder)
            .field("proxy", &redact_proxy(&self.proxy))
            .field("region", &self.region)
            .field("secret_key", &redacted(&self.secret_key))
            .field("session_token", &redacted(&self.session_token))
            .field("insecure", &self.insecure)
            .field("skip_ssl_verify", &self.skip_ssl_verify)
            .field("retention", &self.retention)
            .field("timeout", &format_go_duration(self.timeout))
            .field("upload_concurrency", &self.upload_concurrency)
            .field("checksum", &self.checksum)
            .field("provider", &self.provider)
            .field("credentials_file", &self.credentials_file)
            .field("account", &self.account)
            .field("credentials_json", &redacted(&self.credentials_json))
            .field("ambient_identity", &self.ambient_identity)
            .finish()
    }
}

/// Why a request's remote store without keys of its own is refused.
pub const NO_REQUEST_KEYS: &str = "the request names a remote store that is not this server's configured one and carries no keys of its own, and the server lends its own identity (environment keys, shared credentials file, instance role, application-default credentials) only to its configured store: give the store's keys with the request (--s3-access-key and --s3-secret-key or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; --etcd-gcs-credentials-file; --etcd-azure-access-key), or configure that store on the server (--etcd-s3-*, --etcd-gcs-*, --etcd-azure-*)";

/// An S3 configuration that passed its checks, with its CA bundle loaded: what a client is built
/// from. Making one is where a bad configuration fails: at server start for the server's own
/// settings, when a request arrives for the CLI's.
#[derive(Clone)]
pub struct S3Target {
    cfg: S3Config,
    roots: Option<Vec<Vec<u8>>>,
}

impl fmt::Debug for S3Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Target")
            .field("cfg", &self.cfg)
            .field("roots", &self.roots.as_ref().map(Vec::len))
            .finish()
    }
}

impl S3Target {
    /// Validates `cfg` and loads `endpointCA` (unless TLS is off or unchecked). Failures are
    /// [`Error::Remote`] errors of the `Init` stage with every secret scrubbed.
    pub fn new(cfg: S3Config) -> Result<S3Target> {
        if cfg.provider != Provider::S3 {
            let secrets = cfg.secrets();
            cfg.validate_cloud()
                .map_err(|e| Error::InvalidInput(scrub(&e.to_string(), &secrets)))?;
            return Ok(S3Target { cfg, roots: None });
        }
        if cfg.uses_config_secret() {
            // Checked when the Secret is read, at each operation.
            return Ok(S3Target { cfg, roots: None });
        }
        let secrets = cfg.secrets();
        let init = |e: Error| Error::remote_init(scrub(&e.to_string(), &secrets));
        cfg.validate().map_err(init)?;
        let roots = if cfg.insecure || cfg.skip_ssl_verify || cfg.endpoint_ca.trim().is_empty() {
            None
        } else {
            Some(load_endpoint_ca(&cfg.endpoint_ca).map_err(init)?)
        };
        Ok(S3Target { cfg, roots })
    }

    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    /// The DER certificates that replace the system roots, when a CA bundle is configured.
    pub fn roots(&self) -> Option<&[Vec<u8>]> {
        self.roots.as_deref()
    }
}

/// How bucket names are put into request URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketLookup {
    /// Path style, except AWS and Aliyun endpoints (virtual-hosted).
    Auto,
    /// Virtual-hosted style: `https://<bucket>.<endpoint>/<key>`.
    Dns,
    /// Path style: `https://<endpoint>/<bucket>/<key>`.
    Path,
}

impl S3Config {
    /// What ETCDSnapshotFile `spec.s3` records: the non-secret part for S3, nothing for the
    /// other stores (their records carry only the `gs://` or `azure://` location).
    pub fn record_spec(&self) -> Option<S3Spec> {
        (self.provider == Provider::S3).then(|| self.spec())
    }

    /// The non-secret part, as recorded in ETCDSnapshotFile `spec.s3`.
    pub fn spec(&self) -> S3Spec {
        S3Spec {
            endpoint: self.endpoint.clone(),
            endpoint_ca: self.endpoint_ca.clone(),
            skip_ssl_verify: self.skip_ssl_verify,
            bucket: self.bucket.clone(),
            bucket_lookup: self.bucket_lookup.clone(),
            region: self.region.clone(),
            prefix: self.folder.clone(),
            insecure: self.insecure,
        }
    }

    /// Whether every setting but the Secret's name is at its default: K3s then takes the
    /// settings from the Secret (`--etcd-s3` plus `--etcd-s3-config-secret` alone).
    pub fn is_default_but_secret(&self) -> bool {
        self.settings_beside_secret().is_empty()
    }

    /// The flags set away from their defaults, which make a config Secret be ignored.
    pub fn settings_beside_secret(&self) -> Vec<&'static str> {
        let d = S3Config::default();
        let mut set: Vec<&'static str> = [
            (&self.access_key, "--etcd-s3-access-key"),
            (&self.secret_key, "--etcd-s3-secret-key"),
            (&self.session_token, "--etcd-s3-session-token"),
            (&self.bucket, "--etcd-s3-bucket"),
            (&self.bucket_lookup, "--etcd-s3-bucket-lookup-type"),
            (&self.endpoint_ca, "--etcd-s3-endpoint-ca"),
            (&self.folder, "--etcd-s3-folder"),
            (&self.proxy, "--etcd-s3-proxy"),
        ]
        .into_iter()
        .filter(|(v, _)| !v.is_empty())
        .map(|(_, flag)| flag)
        .collect();
        for (differs, flag) in [
            (
                self.effective_endpoint() != d.endpoint,
                "--etcd-s3-endpoint",
            ),
            (self.effective_region() != d.region, "--etcd-s3-region"),
            (self.insecure, "--etcd-s3-insecure"),
            (self.skip_ssl_verify, "--etcd-s3-skip-ssl-verify"),
            (
                !(self.timeout == d.timeout || self.timeout.is_zero()),
                "--etcd-s3-timeout",
            ),
            (
                !(self.retention == d.retention || self.retention == 0),
                "--etcd-s3-retention",
            ),
        ] {
            if differs {
                set.push(flag);
            }
        }
        set
    }

    /// Whether the settings come from the config Secret.
    pub fn uses_config_secret(&self) -> bool {
        self.provider == Provider::S3
            && !self.config_secret.is_empty()
            && self.is_default_but_secret()
    }

    /// Checks a GCS or Azure configuration; each message names the flag to fix.
    fn validate_cloud(&self) -> Result<()> {
        let flag = self.provider.flag_prefix();
        let noun = self.provider.bucket_noun();
        let missing = |what: &str, fix: &str| {
            Err(Error::InvalidInput(format!(
                "{} {what} was not set: give {fix}",
                self.provider.label()
            )))
        };
        if self.bucket.is_empty() {
            return missing(&format!("{noun} name"), &format!("--{flag}-{noun}"));
        }
        if self.provider == Provider::Azure {
            if self.account.is_empty() {
                return missing("storage account", "--etcd-azure-account");
            }
            if self.secret_key.is_empty() {
                return missing(
                    "account key",
                    "--etcd-azure-access-key (or AZURE_STORAGE_KEY)",
                );
            }
        }
        if self.timeout.is_zero() {
            return Err(Error::InvalidInput(
                "the timeout must be greater than 0s".into(),
            ));
        }
        if self.upload_concurrency > MAX_UPLOAD_CONCURRENCY {
            return Err(Error::InvalidInput(format!(
                "upload concurrency {} is too high: use 1 to {MAX_UPLOAD_CONCURRENCY}",
                self.upload_concurrency
            )));
        }
        validate_folder(&self.folder, flag)?;
        if !self.endpoint.is_empty() {
            let ok = ["http://", "https://"].iter().any(|s| {
                self.endpoint
                    .strip_prefix(s)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
            });
            if !ok {
                return Err(Error::InvalidInput(format!(
                    "{flag}-endpoint must be an http:// or https:// URL, e.g. http://127.0.0.1:10000/devstoreaccount1 for azurite: {}",
                    self.endpoint
                )));
            }
            let after_scheme = self.endpoint.split_once("://").map_or("", |(_, r)| r);
            let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
            check_host_port(authority).map_err(|why| {
                Error::InvalidInput(format!(
                    "invalid {flag}-endpoint {}: {why}",
                    redact_userinfo(authority)
                ))
            })?;
        }
        if self.provider == Provider::Gcs && !self.credentials_file.is_empty() {
            let meta = std::fs::metadata(&self.credentials_file).map_err(|e| {
                Error::InvalidInput(format!(
                    "cannot read --etcd-gcs-credentials-file {}: {e}: give the service-account JSON key file",
                    self.credentials_file
                ))
            })?;
            if !meta.is_file() {
                return Err(Error::InvalidInput(format!(
                    "--etcd-gcs-credentials-file {} is not a file: give the service-account JSON key file",
                    self.credentials_file
                )));
            }
        }
        if !self.credentials_json.is_empty() {
            let v: serde_json::Value =
                serde_json::from_str(&self.credentials_json).unwrap_or_default();
            if v["private_key"].as_str().is_none() || v["client_email"].as_str().is_none() {
                return Err(Error::InvalidInput(
                    "the GCS credentials sent are not a service-account JSON key (no private_key or client_email): give --etcd-gcs-credentials-file the key file Google issued".into(),
                ));
            }
        }
        Ok(())
    }

    /// Checks the values K3s checks before building a client.
    pub fn validate(&self) -> Result<()> {
        if self.bucket.is_empty() {
            return Err(Error::InvalidInput("s3 bucket name was not set".into()));
        }
        if self.timeout.is_zero() {
            return Err(Error::InvalidInput(
                "etcd-s3-timeout must be greater than 0s".into(),
            ));
        }
        self.bucket_lookup_type()?;
        self.checksum_mode()?;
        if self.upload_concurrency > MAX_UPLOAD_CONCURRENCY {
            return Err(Error::InvalidInput(format!(
                "etcd-s3-upload-concurrency {} is too high: use 1 to {MAX_UPLOAD_CONCURRENCY}",
                self.upload_concurrency
            )));
        }
        validate_folder(&self.folder, "etcd-s3")?;
        validate_proxy(&self.proxy)?;
        validate_endpoint(&self.endpoint)?;
        validate_bucket(&self.bucket)?;
        Ok(())
    }

    /// The parsed `checksum`.
    pub fn checksum_mode(&self) -> Result<ChecksumMode> {
        match self.checksum.to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(ChecksumMode::Auto),
            "sha256" => Ok(ChecksumMode::Sha256),
            "crc64nvme" => Ok(ChecksumMode::Crc64Nvme),
            "none" => Ok(ChecksumMode::None),
            other => Err(Error::InvalidInput(format!(
                "invalid etcd-s3-checksum {other:?}: must be auto, sha256, crc64nvme or none"
            ))),
        }
    }

    /// Parts in flight during an upload.
    pub fn effective_upload_concurrency(&self) -> usize {
        match self.upload_concurrency {
            0 => DEFAULT_UPLOAD_CONCURRENCY as usize,
            n => n as usize,
        }
    }

    /// The parsed `bucketLookup`.
    pub fn bucket_lookup_type(&self) -> Result<BucketLookup> {
        match self.bucket_lookup.to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(BucketLookup::Auto),
            "dns" => Ok(BucketLookup::Dns),
            "path" => Ok(BucketLookup::Path),
            other => Err(Error::InvalidInput(format!(
                "invalid etcd-s3-bucket-lookup-type {other:?}: must be auto, dns or path"
            ))),
        }
    }

    /// The endpoint, or the default when empty.
    pub fn effective_endpoint(&self) -> &str {
        if self.endpoint.is_empty() {
            DEFAULT_ENDPOINT
        } else {
            &self.endpoint
        }
    }

    /// The region, or the default when empty.
    pub fn effective_region(&self) -> &str {
        if self.region.is_empty() {
            DEFAULT_REGION
        } else {
            &self.region
        }
    }

    /// The folder without leading or trailing slashes.
    pub fn folder_trimmed(&self) -> &str {
        self.folder.trim_matches('/')
    }

    /// The secret values held by this configuration, for scrubbing error texts.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let proxy_userinfo = self
            .proxy
            .split_once("://")
            .and_then(|(_, rest)| rest.rsplit_once('@'))
            .map(|(userinfo, _)| userinfo.to_string())
            .unwrap_or_default();
        [
            self.access_key.clone(),
            self.secret_key.clone(),
            self.session_token.clone(),
            proxy_userinfo,
            gcs_private_key(&self.credentials_json),
        ]
        .into_iter()
        .filter(|s| s.len() >= 4)
        .collect()
    }
}

/// The private key inside a GCS service-account key (JSON), for scrubbing; empty when there is
/// none.
fn gcs_private_key(json: &str) -> String {
    if json.is_empty() {
        return String::new();
    }
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["private_key"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn validate_folder(folder: &str, flag: &str) -> Result<()> {
    if folder
        .split('/')
        .any(|seg| seg == ".." || seg == "." || seg.chars().any(char::is_control))
    {
        return Err(Error::InvalidInput(format!(
            "{flag}-folder {folder:?} must not contain '.' or '..' path segments or control characters"
        )));
    }
    Ok(())
}

/// S3's bucket naming rules (the ones every S3 server since 2018 enforces), so that a bad name
/// fails here with the rule, not later with the server's `InvalidBucketName`.
fn validate_bucket(bucket: &str) -> Result<()> {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge_ok(bucket.chars().next())
        && edge_ok(bucket.chars().last())
        && !bucket.contains("..");
    if ok {
        return Ok(());
    }
    let shown: String = bucket.chars().take(80).collect();
    Err(Error::InvalidInput(format!(
        "invalid etcd-s3-bucket {shown:?}: S3 bucket names are 3 to 63 lowercase letters, digits, dots and hyphens, beginning and ending with a letter or digit"
    )))
}

fn validate_proxy(proxy: &str) -> Result<()> {
    if proxy.is_empty() || proxy == "none" {
        return Ok(());
    }
    // K3s's words, with the flag and the value (its user information hidden) in front.
    let bad = || {
        Error::InvalidInput(format!(
            "invalid etcd-s3-proxy {:?}: proxy URL must include scheme and host, e.g. http://proxy.example:3128, or give none to ignore HTTP(S)_PROXY",
            redact_proxy(proxy)
        ))
    };
    let (scheme, rest) = proxy.split_once("://").ok_or_else(bad)?;
    let scheme_ok = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    if !scheme_ok || host.is_empty() {
        return Err(bad());
    }
    // reqwest takes any scheme here and then ignores a proxy it cannot speak (ftp://): the
    // requests would go direct, silently.
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(Error::InvalidInput(format!(
            "invalid etcd-s3-proxy {:?}: the scheme {scheme:?} is not a proxy etcdsnap speaks: give an http:// or https:// proxy URL, or none",
            redact_proxy(proxy)
        )));
    }
    reqwest::Proxy::all(proxy).map(|_| ()).map_err(|_| {
        Error::InvalidInput(format!(
            "invalid etcd-s3-proxy {:?}: give an http:// or https:// proxy URL, or none",
            redact_proxy(proxy)
        ))
    })
}

fn validate_endpoint(endpoint: &str) -> Result<()> {
    if endpoint.contains("://") {
        return Err(Error::InvalidInput(format!(
            "etcd-s3-endpoint must be host[:port] without a scheme (use --etcd-s3-insecure for \
             http): {endpoint}"
        )));
    }
    if endpoint.contains('/') || endpoint.chars().any(char::is_whitespace) {
        return Err(Error::InvalidInput(format!(
            "etcd-s3-endpoint must be host[:port]: {endpoint}"
        )));
    }
    if endpoint.is_empty() {
        return Ok(());
    }
    check_host_port(endpoint).map_err(|why| {
        Error::InvalidInput(format!(
            "invalid etcd-s3-endpoint {}: {why}",
            redact_userinfo(endpoint)
        ))
    })
}

/// `user[:password]@host` with the user information hidden (it may hold a password).
fn redact_userinfo(authority: &str) -> String {
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("<redacted>@{host}"),
        None => authority.to_string(),
    }
}

/// Checks an endpoint's `host[:port]`: a DNS name or IPv4 address, or an IPv6 address in
/// brackets, and a port from 1 to 65535. Returns what is wrong and how to write it instead.
/// Client libraries are not trusted with such text: one of them panics on a port it cannot
/// parse.
fn check_host_port(authority: &str) -> std::result::Result<(), String> {
    if authority.contains('@') {
        return Err(
            "user information (user@host) is not allowed in the endpoint: give \
                    host[:port] only, and the credentials with the access-key and secret-key \
                    settings"
                .into(),
        );
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let Some((addr, after)) = rest.split_once(']') else {
                return Err(
                    "the IPv6 address lacks its closing ']': write it as [addr]:port, \
                            e.g. [::1]:9000"
                        .into(),
                );
            };
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!(
                    "{addr:?} in brackets is not an IPv6 address: write [addr]:port, e.g. [::1]:9000"
                ));
            }
            let port = match after {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => {
                        return Err(format!(
                            "unexpected {p:?} after the IPv6 address: write [addr]:port, e.g. [::1]:9000"
                        ));
                    }
                },
            };
            (None, port)
        }
        None => {
            if authority.matches(':').count() > 1 {
                return Err(
                    "an IPv6 address must be written in brackets: [addr]:port, e.g. \
                            [::1]:9000"
                        .into(),
                );
            }
            match authority.split_once(':') {
                Some((h, p)) => (Some(h), Some(p)),
                None => (Some(authority), None),
            }
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("the host name is empty: give host[:port], e.g. minio.local:9000".into());
        }
        let bad = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')));
        if let Some(c) = bad {
            return Err(format!(
                "the host name {host:?} holds {c:?}: use letters, digits, '-' and '.', an IPv4 \
                 address, or an IPv6 address in brackets"
            ));
        }
        if host.starts_with(['.', '-']) || host.contains("..") {
            return Err(format!(
                "the host name {host:?} is not a valid DNS name or IP address"
            ));
        }
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !valid {
            return Err(format!(
                "the port {port:?} is not a number from 1 to 65535: give host[:port], e.g. \
                 minio.local:9000, or leave the port out for 443 (80 with insecure)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> S3Config {
        S3Config {
            bucket: "bkt".into(),
            ..S3Config::default()
        }
    }

    #[test]
    fn defaults_are_k3s_defaults() {
        let c = S3Config::default();
        assert_eq!(c.endpoint, "s3.amazonaws.com");
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.timeout, Duration::from_secs(300));
        assert_eq!(c.retention, 5);
    }

    #[test]
    fn json_uses_k3s_names_and_omits_empty() {
        let c = S3Config {
            bucket: "bkt".into(),
            endpoint_ca: "/ca.pem".into(),
            skip_ssl_verify: true,
            bucket_lookup: "path".into(),
            access_key: "AK".into(),
            ..S3Config::default()
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "accessKey": "AK", "bucket": "bkt", "bucketLookup": "path",
                "endpoint": "s3.amazonaws.com", "endpointCA": "/ca.pem",
                "region": "us-east-1", "skipSSLVerify": true, "retention": 5,
                "timeout": "5m0s"
            })
        );
        let back: S3Config = serde_json::from_value(v).unwrap();
        // What arrives over the wire never carries the right to the receiver's identity.
        assert!(c.ambient_identity && !back.ambient_identity);
        assert_eq!(
            back,
            S3Config {
                ambient_identity: false,
                ..c
            }
        );
    }

    #[test]
    fn json_reads_go_durations_and_zero_values() {
        let c: S3Config = serde_json::from_str(
            r#"{"bucket":"bkt","timeout":"1m30.5s","insecure":true,"sessionToken":"t"}"#,
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_millis(90_500));
        assert!(c.insecure);
        assert_eq!(c.session_token, "t");
        assert_eq!(c.retention, 0);
        assert_eq!(c.endpoint, "");
        assert_eq!(c.effective_endpoint(), DEFAULT_ENDPOINT);
        let neg: S3Config = serde_json::from_str(r#"{"bucket":"bkt","timeout":"-1s"}"#).unwrap();
        assert_eq!(neg.timeout, Duration::ZERO);
        assert!(serde_json::from_str::<S3Config>(r#"{"timeout":"5 minutes"}"#).is_err());
    }

    #[test]
    fn validation_messages() {
        let cases: Vec<(S3Config, Option<&str>)> = vec![
            (valid(), None),
            (S3Config::default(), Some("s3 bucket name was not set")),
            (
                S3Config {
                    timeout: Duration::ZERO,
                    ..valid()
                },
                Some("etcd-s3-timeout must be greater than 0s"),
            ),
            (
                S3Config {
                    proxy: "none".into(),
                    ..valid()
                },
                None,
            ),
            (
                S3Config {
                    proxy: "http://proxy.local:3128".into(),
                    ..valid()
                },
                None,
            ),
            (
                S3Config {
                    proxy: "http://user:pw@proxy.local:3128".into(),
                    ..valid()
                },
                None,
            ),
            (
                S3Config {
                    proxy: "http://[::1]:3128".into(),
                    ..valid()
                },
                None,
            ),
            (
                S3Config {
                    proxy: "proxy.local:3128".into(),
                    ..valid()
                },
                Some("proxy URL must include scheme and host"),
            ),
            (
                S3Config {
                    proxy: "http://".into(),
                    ..valid()
                },
                Some("proxy URL must include scheme and host"),
            ),
            (
                S3Config {
                    bucket_lookup: "dns".into(),
                    ..valid()
                },
                None,
            ),
            (
                S3Config {
                    bucket_lookup: "PATH".into(),
                    ..valid()
                },
                None,
            ),
            (
                S3Config {
                    bucket_lookup: "virtual".into(),
                    ..valid()
                },
                Some("invalid etcd-s3-bucket-lookup-type"),
            ),
            (
                S3Config {
                    endpoint: "https://minio:9000".into(),
                    ..valid()
                },
                Some("without a scheme"),
            ),
        ];
        for (cfg, want) in cases {
            match (cfg.validate(), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => {
                    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
                    assert!(e.to_string().contains(w), "{e} should contain {w}");
                }
                (got, want) => panic!("{cfg:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn endpoints_need_a_host_and_a_port_from_1_to_65535() {
        let good = [
            "",
            "s3.amazonaws.com",
            "minio:9000",
            "127.0.0.1:1",
            "127.0.0.1:65535",
            "[::1]",
            "[::1]:9000",
            "[2001:db8::7]:443",
            "my_host.local:80",
        ];
        for e in good {
            let c = S3Config {
                endpoint: e.into(),
                ..valid()
            };
            assert!(c.validate().is_ok(), "{e}: {:?}", c.validate());
        }
        let bad = [
            ("127.0.0.1:abc", "\"abc\" is not a number from 1 to 65535"),
            (
                "127.0.0.1:99999",
                "\"99999\" is not a number from 1 to 65535",
            ),
            ("127.0.0.1:0", "\"0\" is not a number from 1 to 65535"),
            ("127.0.0.1:", "\"\" is not a number from 1 to 65535"),
            ("minio:+80", "is not a number from 1 to 65535"),
            ("[::1", "lacks its closing ']'"),
            ("[::1]9000", "after the IPv6 address"),
            ("[::1]:x", "is not a number from 1 to 65535"),
            ("[nope]:80", "is not an IPv6 address"),
            ("::1", "must be written in brackets"),
            ("::1:9000", "must be written in brackets"),
            (":9000", "the host name is empty"),
            (
                "bob@minio:9000",
                "user information (user@host) is not allowed",
            ),
            ("min!o:9000", "holds '!'"),
            (".minio", "not a valid DNS name"),
        ];
        for (e, want) in bad {
            let c = S3Config {
                endpoint: e.into(),
                ..valid()
            };
            let err = c.validate().unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{e}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains("invalid etcd-s3-endpoint"), "{e}: {msg}");
            assert!(msg.contains(want), "{e}: {msg} should say {want}");
        }
        // A password in the user part never reaches the message.
        let c = S3Config {
            endpoint: "bob:hunter22@minio:9000".into(),
            ..valid()
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            !msg.contains("hunter22") && msg.contains("<redacted>@minio:9000"),
            "{msg}"
        );
        // GCS and Azure emulator URLs get the same check of their host and port.
        for (e, ok) in [
            ("http://127.0.0.1:10000/devstoreaccount1", true),
            ("http://127.0.0.1:abc/devstoreaccount1", false),
            ("https://[::1/x", false),
            ("http://u:p@host/x", false),
        ] {
            let c = S3Config {
                provider: Provider::Gcs,
                endpoint: e.into(),
                ..valid()
            };
            assert_eq!(
                c.validate_cloud().is_ok(),
                ok,
                "{e}: {:?}",
                c.validate_cloud()
            );
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = S3Config {
            access_key: "AKIAEXAMPLEKEY".into(),
            secret_key: "sUpErSeCrEt/KEY".into(),
            session_token: "SeSsIoNtOkEn".into(),
            proxy: "http://bob:hunter22@proxy:3128".into(),
            bucket: "bkt".into(),
            ..S3Config::default()
        };
        let dbg = format!("{c:?} {c:#?}");
        for secret in [
            "AKIAEXAMPLEKEY",
            "sUpErSeCrEt/KEY",
            "SeSsIoNtOkEn",
            "hunter22",
        ] {
            assert!(!dbg.contains(secret), "{secret} leaked in {dbg}");
        }
        assert!(dbg.contains("<redacted>"));
        assert!(c.secrets().contains(&"bob:hunter22".to_string()));
        assert!(dbg.contains("\"bkt\""));
    }

    #[test]
    fn spec_is_the_non_secret_part() {
        let c = S3Config {
            bucket: "bkt".into(),
            folder: "f".into(),
            secret_key: "s".into(),
            insecure: true,
            ..S3Config::default()
        };
        let s = c.spec();
        assert_eq!(s.bucket, "bkt");
        assert_eq!(s.prefix, "f");
        assert_eq!(s.endpoint, "s3.amazonaws.com");
        assert_eq!(s.region, "us-east-1");
        assert!(s.insecure);
    }
}
