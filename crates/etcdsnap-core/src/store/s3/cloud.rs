//! Building the object_store clients of the stores beyond K3s: Google Cloud Storage and Azure
//! Blob. Everything above the client (layout, metadata, upload, download, listing, retention)
//! is the S3 store's; only the client, its credentials and its endpoint differ.
//!
//! Rules:
//! * `endpoint` is a full URL and is meant for emulators: GCS requests then go unsigned unless a
//!   credentials file is given; an `http://` endpoint allows plain HTTP.
//! * The Azure account key is a secret: it is scrubbed from every error text.

use std::sync::Arc;

use object_store::StaticCredentialProvider;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};

use super::client::{Addressing, BuiltClient, ProxyMode, Transport, request_policy, scrub};
use super::config::S3Config;
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
    let source = if !cfg.credentials_file.is_empty() {
        b = b.with_service_account_path(&cfg.credentials_file);
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
    use crate::store::s3::Provider;

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
            bucket: "b".into(),
            endpoint: "http://127.0.0.1:4443".into(),
            ..S3Config::default()
        };
        let built = build_gcs(&gcs).unwrap();
        assert_eq!(built.addressing.endpoint_url, "http://127.0.0.1:4443");
        assert!(built.credential_source.starts_with("anonymous"));
    }
}
