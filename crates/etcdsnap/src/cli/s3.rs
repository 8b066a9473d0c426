//! The S3 flags, one definition for both commands: `etcd-snapshot` subcommands spell them
//! `--s3-*` (with `--etcd-s3-*` as an alias), `server` spells them `--etcd-s3-*` only
//! ([`server_spelling`]), as K3s does.

use anyhow::Result;
use clap::Args;
use clap::builder::BoolishValueParser;
use etcdsnap_core::store::remote::S3Config;

/// S3 settings, shared by `server` (`--etcd-s3-*`) and `etcd-snapshot` (`--s3-*`, with the
/// `--etcd-` spelling as an alias). Every field is optional so that "not given" is visible.
#[derive(Debug, Args, Clone, Default)]
pub struct S3Flags {
    /// Enable backup to S3
    #[arg(long = "s3", alias = "etcd-s3", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub s3: Option<bool>,
    /// S3 endpoint host[:port], no scheme (default: s3.amazonaws.com)
    #[arg(long = "s3-endpoint", alias = "etcd-s3-endpoint")]
    pub endpoint: Option<String>,
    /// S3 custom CA: file paths or base64 PEM bundles, space-separated
    #[arg(long = "s3-endpoint-ca", alias = "etcd-s3-endpoint-ca")]
    pub endpoint_ca: Option<String>,
    /// Disable S3 TLS certificate verification
    #[arg(long = "s3-skip-ssl-verify", alias = "etcd-s3-skip-ssl-verify", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub skip_ssl_verify: Option<bool>,
    /// S3 access key
    #[arg(
        long = "s3-access-key",
        alias = "etcd-s3-access-key",
        env = "AWS_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    pub access_key: Option<String>,
    /// S3 secret key
    #[arg(
        long = "s3-secret-key",
        alias = "etcd-s3-secret-key",
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,
    /// S3 session token
    #[arg(
        long = "s3-session-token",
        alias = "etcd-s3-session-token",
        env = "AWS_SESSION_TOKEN",
        hide_env_values = true
    )]
    pub session_token: Option<String>,
    /// S3 bucket name
    #[arg(long = "s3-bucket", alias = "etcd-s3-bucket")]
    pub bucket: Option<String>,
    /// S3 bucket lookup type: auto, dns or path
    #[arg(long = "s3-bucket-lookup-type", alias = "etcd-s3-bucket-lookup-type")]
    pub bucket_lookup_type: Option<String>,
    /// S3 region (default: us-east-1)
    #[arg(long = "s3-region", alias = "etcd-s3-region")]
    pub region: Option<String>,
    /// S3 folder
    #[arg(long = "s3-folder", alias = "etcd-s3-folder")]
    pub folder: Option<String>,
    /// Proxy URL for S3, or `none` to ignore proxy environment variables
    #[arg(long = "s3-proxy", alias = "etcd-s3-proxy")]
    pub proxy: Option<String>,
    /// Name of a kube-system Secret holding the S3 settings, when no other S3 flag is set
    #[arg(long = "s3-config-secret", alias = "etcd-s3-config-secret")]
    pub config_secret: Option<String>,
    /// Use plain HTTP to talk to S3
    #[arg(long = "s3-insecure", alias = "etcd-s3-insecure", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub insecure: Option<bool>,
    /// Multipart upload parts (8 MiB each) sent at once, 1 to 16 (default: 4)
    #[arg(long = "s3-upload-concurrency", alias = "etcd-s3-upload-concurrency", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub upload_concurrency: Option<u32>,
    /// Checksum carried by every uploaded object and checked by the S3 server: auto (sha256 over
    /// plain HTTP; crc64nvme with an unsigned payload over HTTPS), sha256, crc64nvme, or none for
    /// servers that refuse checksum headers
    #[arg(long = "s3-checksum", alias = "etcd-s3-checksum", value_parser = ["auto", "sha256", "crc64nvme", "none"])]
    pub checksum: Option<String>,
    /// Bound on each S3 operation, a Go duration (default: 5m)
    #[arg(
        long = "s3-timeout",
        alias = "etcd-s3-timeout",
        allow_hyphen_values = true
    )]
    pub timeout: Option<String>,
    /// Number of S3 snapshots to retain (default: the snapshot retention)
    #[arg(
        id = "s3_retention",
        long = "s3-retention",
        alias = "etcd-s3-retention",
        allow_negative_numbers = true
    )]
    pub retention: Option<i64>,
}

impl S3Flags {
    /// The S3 configuration the flags give, when S3 is enabled, validated.
    /// `fallback_retention` is used when no S3 retention is given (K3s 1.35+: S3 retention
    /// defaults to the snapshot retention).
    pub fn config(&self, fallback_retention: Option<i64>) -> Result<Option<S3Config>> {
        let flags = self;
        if flags.s3 != Some(true) {
            return Ok(None);
        }
        let mut cfg = S3Config::default();
        if let Some(secret) = &flags.config_secret {
            cfg.config_secret = secret.clone();
        }
        let set = |field: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                *field = v.clone();
            }
        };
        set(&mut cfg.endpoint, &flags.endpoint);
        set(&mut cfg.endpoint_ca, &flags.endpoint_ca);
        set(&mut cfg.access_key, &flags.access_key);
        set(&mut cfg.secret_key, &flags.secret_key);
        set(&mut cfg.session_token, &flags.session_token);
        set(&mut cfg.bucket, &flags.bucket);
        set(&mut cfg.bucket_lookup, &flags.bucket_lookup_type);
        set(&mut cfg.region, &flags.region);
        set(&mut cfg.folder, &flags.folder);
        set(&mut cfg.proxy, &flags.proxy);
        if let Some(t) = &flags.timeout {
            cfg.timeout = etcdsnap_core::duration::parse_go_duration(t)
                .map_err(|e| anyhow::anyhow!("invalid --etcd-s3-timeout {t:?}: {e}"))?;
        }
        if let Some(n) = flags.upload_concurrency {
            cfg.upload_concurrency = n;
        }
        set(&mut cfg.checksum, &flags.checksum);
        if let Some(b) = flags.skip_ssl_verify {
            cfg.skip_ssl_verify = b;
        }
        if let Some(b) = flags.insecure {
            cfg.insecure = b;
        }
        if let Some(r) = flags.retention.or(fallback_retention) {
            cfg.retention = r;
        }
        // With only the Secret's name, the settings come from the Secret at each operation
        // and are checked then.
        if !cfg.uses_config_secret() {
            cfg.validate()?;
        }
        Ok(Some(cfg))
    }
}

/// Renames the S3 flags of `server` to their `--etcd-s3-*` spelling and drops the aliases.
pub fn server_spelling(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| match a.get_long() {
        Some(long) if long == "s3" || long.starts_with("s3-") => {
            let long = format!("etcd-{long}");
            a.long(long).alias(None)
        }
        _ => a,
    })
}
