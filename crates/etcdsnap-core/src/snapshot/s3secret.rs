//! S3 settings from a Secret (K3s's `--etcd-s3-config-secret`, reference §4.2): with only
//! `--etcd-s3` and the Secret's name set, every operation reads Secret `kube-system/<name>`
//! (so rotated credentials apply without a restart); keys are the flag names; a missing
//! endpoint or region key means the default, an empty one is used as it is; bad booleans,
//! durations and numbers only warn; `etcd-s3-endpoint-ca-name` names a ConfigMap whose values
//! are all CA bundles. Any other S3 setting makes the Secret ignored, with K3s's warning.

use base64::Engine as _;
use serde_json::Value;

use crate::kube::api::resources::{CONFIGMAPS, SECRETS};
use crate::kube::api::store::ObjectStore;
use crate::store::remote::S3Config;
use crate::{Error, Result};

fn secret_error(cause: impl std::fmt::Display) -> Error {
    Error::ConfigSecret(cause.to_string())
}

/// The configuration to use for `cfg`: itself, or the one in its Secret.
pub async fn resolve(cfg: &S3Config, objects: Option<&ObjectStore>) -> Result<S3Config> {
    if cfg.config_secret.is_empty() {
        return Ok(cfg.clone());
    }
    let beside = cfg.settings_beside_secret();
    if !beside.is_empty() {
        // K3s's words, then which settings made the Secret be ignored and what to do.
        tracing::warn!(
            "Ignoring s3 configuration from etcd-s3-config-secret {:?} due to existing configuration from CLI or config file: {} set; give --etcd-s3 and --etcd-s3-config-secret alone to use the Secret",
            cfg.config_secret,
            beside.join(", ")
        );
        return Ok(cfg.clone());
    }
    let objects = objects.ok_or_else(|| secret_error("no Kubernetes API store on this server"))?;
    let name = &cfg.config_secret;
    tracing::info!("Using etcd s3 configuration from etcd-s3-config-secret {name:?}");
    let secret = objects
        .get(&SECRETS, Some("kube-system"), name)
        .await
        .map_err(|e| secret_error(e.message))?
        .ok_or_else(|| {
            secret_error(format!(
                "secrets \"{name}\" not found in namespace kube-system"
            ))
        })?;
    let mut data = std::collections::BTreeMap::new();
    if let Some(map) = secret["data"].as_object() {
        for (k, v) in map {
            let raw = v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .unwrap_or_default();
            data.insert(k.clone(), String::from_utf8_lossy(&raw).into_owned());
        }
    }
    let mut out = from_secret_data(&data);
    // etcdsnap's upload settings are not part of K3s's Secret: they stay the caller's.
    out.upload_concurrency = cfg.upload_concurrency;
    out.checksum = cfg.checksum.clone();
    out.retention = if out.retention == 0 {
        cfg.retention.max(0)
    } else {
        out.retention
    };
    if let Some(cm) = data
        .get("etcd-s3-endpoint-ca-name")
        .filter(|n| !n.is_empty())
    {
        match objects.get(&CONFIGMAPS, Some("kube-system"), cm).await {
            Ok(Some(m)) => {
                let mut bundles = Vec::new();
                for field in ["data", "binaryData"] {
                    if let Some(map) = m[field].as_object() {
                        for v in map.values() {
                            let pem = match (field, v) {
                                ("data", Value::String(s)) => s.as_bytes().to_vec(),
                                (_, Value::String(s)) => base64::engine::general_purpose::STANDARD
                                    .decode(s)
                                    .unwrap_or_default(),
                                _ => continue,
                            };
                            bundles.push(base64::engine::general_purpose::STANDARD.encode(pem));
                        }
                    }
                }
                if !out.endpoint_ca.is_empty() {
                    bundles.insert(0, out.endpoint_ca.clone());
                }
                out.endpoint_ca = bundles.join(" ");
            }
            Ok(None) => {
                tracing::warn!("ConfigMap kube-system/{cm} of etcd-s3-endpoint-ca-name not found")
            }
            Err(e) => tracing::warn!("cannot read ConfigMap kube-system/{cm}: {}", e.message),
        }
    }
    Ok(out)
}

fn parse_bool(key: &str, v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => {
            tracing::warn!(
                "invalid value {v:?} for {key} in the S3 config secret: not a boolean, ignored"
            );
            None
        }
    }
}

/// The configuration in a Secret's (decoded) data.
pub fn from_secret_data(d: &std::collections::BTreeMap<String, String>) -> S3Config {
    let mut c = S3Config::default();
    let get = |k: &str| d.get(k).cloned();
    for (key, field) in [
        ("etcd-s3-access-key", &mut c.access_key),
        ("etcd-s3-secret-key", &mut c.secret_key),
        ("etcd-s3-session-token", &mut c.session_token),
        ("etcd-s3-bucket", &mut c.bucket),
        ("etcd-s3-bucket-lookup-type", &mut c.bucket_lookup),
        ("etcd-s3-folder", &mut c.folder),
        ("etcd-s3-proxy", &mut c.proxy),
        ("etcd-s3-endpoint", &mut c.endpoint),
        ("etcd-s3-region", &mut c.region),
    ] {
        if let Some(v) = get(key) {
            *field = v;
        }
    }
    if let Some(pem) = get("etcd-s3-endpoint-ca").filter(|p| !p.trim().is_empty()) {
        c.endpoint_ca = base64::engine::general_purpose::STANDARD.encode(pem);
    }
    if let Some(v) = get("etcd-s3-timeout").filter(|v| !v.is_empty()) {
        match crate::duration::parse_go_duration(&v) {
            Ok(t) => c.timeout = t,
            Err(e) => tracing::warn!(
                "invalid etcd-s3-timeout in the S3 config secret ({e}), using the default"
            ),
        }
    }
    if let Some(v) = get("etcd-s3-retention").filter(|v| !v.is_empty()) {
        match v.parse() {
            Ok(r) => c.retention = r,
            Err(_) => tracing::warn!(
                "invalid etcd-s3-retention {v:?} in the S3 config secret, using the default"
            ),
        }
    }
    if let Some(b) =
        get("etcd-s3-skip-ssl-verify").and_then(|v| parse_bool("etcd-s3-skip-ssl-verify", &v))
    {
        c.skip_ssl_verify = b;
    }
    if let Some(b) = get("etcd-s3-insecure").and_then(|v| parse_bool("etcd-s3-insecure", &v)) {
        c.insecure = b;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn k3s_secret_keys() {
        let c = from_secret_data(&data(&[
            ("etcd-s3-access-key", "AK"),
            ("etcd-s3-secret-key", "SK"),
            ("etcd-s3-bucket", "bucket"),
            ("etcd-s3-folder", "folder"),
            ("etcd-s3-endpoint", ""),
            ("etcd-s3-timeout", "5m"),
            ("etcd-s3-skip-ssl-verify", "false"),
            ("etcd-s3-insecure", "notabool"),
            ("etcd-s3-retention", "x"),
        ]));
        assert_eq!(
            (c.access_key.as_str(), c.bucket.as_str(), c.folder.as_str()),
            ("AK", "bucket", "folder")
        );
        assert_eq!(c.endpoint, "", "an empty value present is used as is");
        assert_eq!(c.region, "us-east-1", "a missing key is the default");
        assert!(!c.insecure, "a bad boolean only warns");
        assert_eq!(c.retention, 5);
        assert_eq!(c.timeout, std::time::Duration::from_secs(300));
    }

    #[test]
    fn the_secret_is_used_only_with_nothing_else_set() {
        let only = S3Config {
            config_secret: "s".into(),
            ..S3Config::default()
        };
        assert!(only.uses_config_secret());
        let also = S3Config {
            bucket: "bkt".into(),
            ..only.clone()
        };
        assert!(!also.uses_config_secret());
        let retention = S3Config {
            retention: 9,
            ..only.clone()
        };
        assert!(
            !retention.uses_config_secret(),
            "K3s: any non-default field"
        );
    }
}
