//! The GCS and Azure Blob flags (beyond K3s), shared by `server` and the `etcd-snapshot`
//! subcommands under one spelling, `--etcd-gcs-*` and `--etcd-azure-*` (also the config-file
//! keys). A snapshot is copied to at most one remote store: S3, GCS or Azure; enabling two is
//! refused at start-up.

use anyhow::{Result, bail};
use clap::Args;
use clap::builder::BoolishValueParser;
use etcdsnap_core::store::remote::{Provider, S3Config};

use super::S3Flags;

/// GCS and Azure Blob settings. Retention, timeout and upload concurrency are the S3 ones
/// (`--etcd-s3-retention`, default the snapshot retention; `--etcd-s3-timeout`;
/// `--etcd-s3-upload-concurrency`), since only one remote store is in use.
#[derive(Debug, Args, Clone, Default)]
pub struct CloudFlags {
    /// Copy snapshots to Google Cloud Storage instead of S3 (beyond K3s)
    #[arg(long = "etcd-gcs", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub gcs: Option<bool>,
    /// GCS bucket name
    #[arg(long = "etcd-gcs-bucket")]
    pub gcs_bucket: Option<String>,
    /// GCS folder (object name prefix) for snapshots
    #[arg(long = "etcd-gcs-folder")]
    pub gcs_folder: Option<String>,
    /// GCS service-account JSON key file (default: Google's application-default credentials)
    #[arg(
        long = "etcd-gcs-credentials-file",
        env = "GOOGLE_APPLICATION_CREDENTIALS",
        hide_env_values = true
    )]
    pub gcs_credentials_file: Option<String>,
    /// GCS endpoint URL, for emulators (http://host:port); requests go unsigned unless a
    /// credentials file is given
    #[arg(long = "etcd-gcs-endpoint")]
    pub gcs_endpoint: Option<String>,
    /// Copy snapshots to Azure Blob Storage instead of S3 (beyond K3s)
    #[arg(long = "etcd-azure", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub azure: Option<bool>,
    /// Azure storage account name
    #[arg(long = "etcd-azure-account", env = "AZURE_STORAGE_ACCOUNT")]
    pub azure_account: Option<String>,
    /// Azure Blob container name
    #[arg(long = "etcd-azure-container")]
    pub azure_container: Option<String>,
    /// Azure Blob folder (blob name prefix) for snapshots
    #[arg(long = "etcd-azure-folder")]
    pub azure_folder: Option<String>,
    /// Azure storage account key (never logged)
    #[arg(
        long = "etcd-azure-access-key",
        env = "AZURE_STORAGE_KEY",
        hide_env_values = true
    )]
    pub azure_access_key: Option<String>,
    /// Azure Blob endpoint URL, for azurite: http://host:port/<account>
    /// (default: https://<account>.blob.core.windows.net)
    #[arg(long = "etcd-azure-endpoint")]
    pub azure_endpoint: Option<String>,
}

/// The remote store the flags enable, validated: S3 (K3s's flags), GCS or Azure Blob, or none.
/// `fallback_retention` is used when no `--etcd-s3-retention` is given.
pub fn remote_config(
    s3: &S3Flags,
    cloud: &CloudFlags,
    fallback_retention: Option<i64>,
) -> Result<Option<S3Config>> {
    let enabled: Vec<&str> = [
        (s3.s3, "--etcd-s3"),
        (cloud.gcs, "--etcd-gcs"),
        (cloud.azure, "--etcd-azure"),
    ]
    .iter()
    .filter(|(on, _)| *on == Some(true))
    .map(|(_, flag)| *flag)
    .collect();
    if enabled.len() > 1 {
        bail!(
            "{} are all enabled, but a snapshot is copied to one remote store only: keep one of them",
            enabled.join(" and ")
        );
    }
    let provider = match enabled.first().copied() {
        Some("--etcd-gcs") => Provider::Gcs,
        Some("--etcd-azure") => Provider::Azure,
        _ => return s3.config(fallback_retention),
    };
    // The settings shared with S3 (timeout, retention, upload concurrency) come from the S3
    // flags, read as if S3 were enabled; the S3-only ones are reset.
    let shared = S3Flags {
        s3: Some(true),
        bucket: Some("unused".into()),
        ..s3.clone()
    }
    .config(fallback_retention)?
    .unwrap_or_default();
    let pick = |v: &Option<String>| v.clone().unwrap_or_default();
    let cfg = match provider {
        Provider::Gcs => S3Config {
            provider,
            bucket: pick(&cloud.gcs_bucket),
            folder: pick(&cloud.gcs_folder),
            credentials_file: pick(&cloud.gcs_credentials_file),
            endpoint: pick(&cloud.gcs_endpoint),
            ..cloud_base(&shared)
        },
        _ => S3Config {
            provider,
            account: pick(&cloud.azure_account),
            bucket: pick(&cloud.azure_container),
            folder: pick(&cloud.azure_folder),
            secret_key: pick(&cloud.azure_access_key),
            endpoint: pick(&cloud.azure_endpoint),
            ..cloud_base(&shared)
        },
    };
    etcdsnap_core::store::remote::S3Target::new(cfg.clone())?;
    Ok(Some(cfg))
}

/// A configuration with only the settings GCS and Azure share with S3.
fn cloud_base(shared: &S3Config) -> S3Config {
    S3Config {
        endpoint: String::new(),
        region: String::new(),
        timeout: shared.timeout,
        retention: shared.retention,
        upload_concurrency: shared.upload_concurrency,
        ..S3Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_remote_store_at_most() {
        let s3 = S3Flags {
            s3: Some(true),
            bucket: Some("b".into()),
            ..S3Flags::default()
        };
        let gcs = CloudFlags {
            gcs: Some(true),
            gcs_bucket: Some("g".into()),
            ..CloudFlags::default()
        };
        let e = remote_config(&s3, &gcs, None).unwrap_err().to_string();
        assert!(e.contains("--etcd-s3 and --etcd-gcs"), "{e}");
        let cfg = remote_config(&S3Flags::default(), &gcs, Some(3))
            .unwrap()
            .unwrap();
        assert_eq!(cfg.provider, Provider::Gcs);
        assert_eq!(cfg.bucket, "g");
        assert_eq!(cfg.retention, 3);
        assert!(cfg.record_spec().is_none());
        assert_eq!(
            remote_config(&S3Flags::default(), &CloudFlags::default(), None).unwrap(),
            None
        );
    }

    #[test]
    fn azure_bad_input_names_the_flag() {
        let base = CloudFlags {
            azure: Some(true),
            azure_account: Some("acct".into()),
            azure_container: Some("c".into()),
            azure_access_key: Some("S3CRETKEY".into()),
            ..CloudFlags::default()
        };
        let cases = [
            (
                CloudFlags {
                    azure_container: None,
                    ..base.clone()
                },
                "--etcd-azure-container",
            ),
            (
                CloudFlags {
                    azure_account: None,
                    ..base.clone()
                },
                "--etcd-azure-account",
            ),
            (
                CloudFlags {
                    azure_access_key: None,
                    ..base.clone()
                },
                "--etcd-azure-access-key",
            ),
            (
                CloudFlags {
                    azure_endpoint: Some("127.0.0.1:10000".into()),
                    ..base.clone()
                },
                "etcd-azure-endpoint must be an http:// or https:// URL",
            ),
            (
                CloudFlags {
                    azure_folder: Some("a/../b".into()),
                    ..base.clone()
                },
                "etcd-azure-folder",
            ),
        ];
        for (flags, want) in cases {
            let e = remote_config(&S3Flags::default(), &flags, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
            assert!(!e.contains("S3CRETKEY"), "{e}");
        }
        let ok = remote_config(&S3Flags::default(), &base, None)
            .unwrap()
            .unwrap();
        assert_eq!(ok.provider, Provider::Azure);
        assert!(!format!("{ok:?}").contains("S3CRETKEY"));
    }
}
