//! What a `/db/snapshot` request may reach (issue 23). The token that authenticates a request
//! is held by the CLI, by scripts and (before separate credentials existed) by joining servers;
//! holding it must not give the reach of the server process itself. Two rules:
//!
//! * **Directories.** A request's `dir` must be the server's own snapshot dir
//!   (`--etcd-snapshot-dir`, or `<data-dir>/server/db/snapshots`) or one listed in the server's
//!   `--etcd-snapshot-allowed-dirs`. The match is on the exact absolute path, as configured or
//!   as it resolved (symlinks followed) when the server started; the request's path itself is
//!   never looked up, so a request learns nothing about paths it may not use. Allowed dirs are
//!   checked at start: absolute, existing directories, not symlinks, and neither inside the
//!   data dir's `server/` (which holds the CA keys, the token and the live etcd database) nor
//!   above it. K3s uses a request's `dir` as given; this is a deliberate difference.
//! * **Remote stores.** A request's store is used with the request's own keys only. The server
//!   lends its own credentials (configured keys, or its identity: environment keys, the shared
//!   credentials file, an instance role, Google's application-default credentials) only to the
//!   store it is configured with (same provider, endpoint, bucket, region, TLS settings, CA and
//!   proxy; the folder may differ), and a request never names a file on the server (a CA
//!   bundle or a GCS key file) other than the ones the server's configuration names: the CLI
//!   sends the contents instead. So nothing in a request makes the server sign for, or send a
//!   token to, an endpoint the request chose, or tells whether a file exists.

use std::path::{Component, Path, PathBuf};

use crate::store::remote::{Provider, S3Config};
use crate::{Error, Result};

/// One directory a request may name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedDir {
    /// As configured (absolute, normalised): what the engine is given and records show.
    configured: PathBuf,
    /// As it resolved at start, when it existed.
    canonical: Option<PathBuf>,
}

/// The directories a request may name, fixed at server start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirs {
    /// The server's own snapshot dir, and the value that means it in a plan (`None`: default).
    own: Option<(AllowedDir, Option<PathBuf>)>,
    extra: Vec<AllowedDir>,
}

fn invalid(msg: String) -> Error {
    Error::InvalidInput(msg)
}

/// `p` without `.` components, repeated or trailing slashes; `None` when it is relative, holds
/// `..`, or is not printable text.
fn normalise(p: &Path) -> Option<PathBuf> {
    let text = p.to_str()?;
    if text.chars().any(char::is_control) || !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir => out.push("/"),
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl RequestDirs {
    /// The server's snapshot dir (`own`, `None` for the default under `data_dir`) and the
    /// allow-list. Fails, naming the flag, on an allowed dir that is relative, missing, not a
    /// directory, a symlink, inside `<data-dir>/server` or above it.
    pub fn new(data_dir: &Path, own: Option<&Path>, extra: &[PathBuf]) -> Result<RequestDirs> {
        let own_path = match own {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => crate::store::local::default_snapshot_dir(data_dir),
        };
        let own_abs = std::path::absolute(&own_path).unwrap_or(own_path);
        let own_dir = normalise(&own_abs).map(|configured| AllowedDir {
            canonical: std::fs::canonicalize(&configured).ok(),
            configured,
        });
        let server_dir = std::path::absolute(data_dir.join("server"))
            .ok()
            .map(|d| std::fs::canonicalize(&d).unwrap_or(d));
        let flag = "--etcd-snapshot-allowed-dirs";
        let mut list = Vec::new();
        for d in extra {
            let shown = d.display();
            let configured = normalise(d).ok_or_else(|| {
                invalid(format!(
                    "{flag} {shown:?} is not an absolute path without `..`: give the full path of a directory for snapshots"
                ))
            })?;
            let meta = std::fs::symlink_metadata(&configured).map_err(|e| {
                invalid(format!(
                    "{flag} {shown:?}: {e}: create the directory or remove it from the list"
                ))
            })?;
            if meta.file_type().is_symlink() {
                return Err(invalid(format!(
                    "{flag} {shown:?} is a symbolic link: give the directory it points to"
                )));
            }
            if !meta.is_dir() {
                return Err(invalid(format!(
                    "{flag} {shown:?} is not a directory: give a directory for snapshots"
                )));
            }
            let canonical = std::fs::canonicalize(&configured)
                .map_err(|e| invalid(format!("{flag} {shown:?}: {e}")))?;
            if let Some(server) = &server_dir {
                let is_own = own_dir
                    .as_ref()
                    .is_some_and(|o| o.canonical.as_ref() == Some(&canonical));
                if server.starts_with(&canonical) || (canonical.starts_with(server) && !is_own) {
                    return Err(invalid(format!(
                        "{flag} {shown:?} is inside or above {}, which holds the CA keys, the token and the etcd database: give a directory outside it",
                        server.display()
                    )));
                }
            }
            list.push(AllowedDir {
                configured,
                canonical: Some(canonical),
            });
        }
        Ok(RequestDirs {
            own: own_dir.map(|d| (d, own.map(Path::to_path_buf))),
            extra: list,
        })
    }

    /// Every allowed dir as a plan names it: the server's own (`None` for the default) first.
    pub fn values(&self) -> Vec<Option<PathBuf>> {
        let own = self.own.as_ref().map(|(_, v)| v.clone()).unwrap_or(None);
        std::iter::once(own)
            .chain(self.extra.iter().map(|d| Some(d.configured.clone())))
            .collect()
    }

    /// The dir a request's `dir` means: `Ok(plan value)`, where the server's own dir gives its
    /// configured value (`None` for the default) and an allowed dir its configured path.
    pub fn resolve(&self, requested: &str) -> Result<Option<PathBuf>> {
        let wanted = normalise(Path::new(requested));
        let hit = |d: &AllowedDir| {
            wanted
                .as_ref()
                .is_some_and(|w| *w == d.configured || Some(w) == d.canonical.as_ref())
        };
        if let Some((own, value)) = &self.own
            && hit(own)
        {
            return Ok(value.clone());
        }
        if let Some(d) = self.extra.iter().find(|d| hit(d)) {
            return Ok(Some(d.configured.clone()));
        }
        let own = self
            .own
            .as_ref()
            .map(|(d, _)| d.configured.display().to_string())
            .unwrap_or_default();
        Err(invalid(format!(
            "snapshot dir {requested:?} is not one this server allows: a request may name only the server's snapshot dir ({own}) or a dir listed in the server's --etcd-snapshot-allowed-dirs; omit --dir to use the server's"
        )))
    }
}

/// Whether `a` and `b` name the same store, folder aside: the settings that decide where
/// requests and credentials go.
fn same_store(a: &S3Config, b: &S3Config) -> bool {
    let endpoint = |c: &S3Config| match c.provider {
        Provider::S3 => c.effective_endpoint().to_string(),
        _ => c.endpoint.trim_end_matches('/').to_string(),
    };
    a.provider == b.provider
        && endpoint(a) == endpoint(b)
        && a.bucket == b.bucket
        && a.account == b.account
        && (a.provider != Provider::S3 || a.effective_region() == b.effective_region())
        && a.bucket_lookup == b.bucket_lookup
        && a.insecure == b.insecure
        && a.skip_ssl_verify == b.skip_ssl_verify
        && a.endpoint_ca
            .split_whitespace()
            .eq(b.endpoint_ca.split_whitespace())
        && a.proxy == b.proxy
}

/// Whether the request brings keys of its own.
fn has_own_keys(c: &S3Config) -> bool {
    !c.access_key.is_empty()
        || !c.secret_key.is_empty()
        || !c.credentials_json.is_empty()
        || (c.provider != Provider::S3 && !c.credentials_file.is_empty())
}

/// Whether an `endpointCA` item is a file path rather than a base64 PEM bundle.
fn is_path_item(item: &str) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(item)
        .map(|pem| crate::store::remote::pem_certificates(&pem).is_empty())
        .unwrap_or(true)
}

/// The configuration a request's remote store is connected with, under the rule in the module
/// doc. `server` is the server's configured store. Pure: nothing is read or connected.
pub fn confine_remote(req: &S3Config, server: Option<&S3Config>) -> Result<S3Config> {
    let mut cfg = req.clone();
    cfg.ambient_identity = false;
    if cfg.uses_config_secret() {
        // The settings come from the kube-system Secret, the server's own configuration.
        return Ok(cfg);
    }
    let label = cfg.provider.label();
    if let Some(srv) = server
        && same_store(&cfg, srv)
        && !has_own_keys(&cfg)
    {
        // The server's store, without keys: the server's credentials, as configured.
        cfg.access_key = srv.access_key.clone();
        cfg.secret_key = srv.secret_key.clone();
        cfg.session_token = srv.session_token.clone();
        cfg.credentials_file = srv.credentials_file.clone();
        cfg.credentials_json = srv.credentials_json.clone();
        cfg.ambient_identity = srv.ambient_identity;
        return Ok(cfg);
    }
    let server_items: Vec<&str> = server
        .map(|s| s.endpoint_ca.split_whitespace().collect())
        .unwrap_or_default();
    for item in cfg.endpoint_ca.split_whitespace() {
        if is_path_item(item) && !server_items.contains(&item) {
            return Err(invalid(format!(
                "the request's {label} CA bundle names a file on the server, which a request may not do (only the server's own --etcd-s3-endpoint-ca files): send the bundle itself, base64-encoded (the etcdsnap CLI does so for the files it is given)"
            )));
        }
    }
    if !cfg.credentials_file.is_empty() {
        let same_server_file = server
            .is_some_and(|s| same_store(&cfg, s) && s.credentials_file == cfg.credentials_file);
        if !same_server_file {
            return Err(invalid(format!(
                "the request names a {label} key file on the server, which a request may not do: send the key itself (the etcdsnap CLI reads --etcd-gcs-credentials-file and sends its contents), or configure the store on the server"
            )));
        }
        cfg.ambient_identity = true;
        return Ok(cfg);
    }
    let keyless = match cfg.provider {
        // Half a key pair is K3s's anonymous (unsigned) request: no identity is used.
        Provider::S3 => cfg.access_key.is_empty() && cfg.secret_key.is_empty(),
        // An emulator endpoint without a key is unsigned; no endpoint means Google's
        // application-default credentials: the server's identity.
        Provider::Gcs => cfg.credentials_json.is_empty() && cfg.endpoint.is_empty(),
        Provider::Azure => cfg.secret_key.is_empty(),
    };
    if keyless {
        return Err(invalid(crate::store::remote::NO_REQUEST_KEYS.to_string()));
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_servers_dir_and_allowed_dirs_resolve() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(data.join("server/db/snapshots")).unwrap();
        std::fs::create_dir_all(data.join("server/tls")).unwrap();
        let extra = root.path().join("extra");
        std::fs::create_dir(&extra).unwrap();
        let dirs = RequestDirs::new(&data, None, std::slice::from_ref(&extra)).unwrap();
        let own = data.join("server/db/snapshots");
        let own_text = own.to_str().unwrap();
        // The server's own dir, however spelt, means "the server's" (None: the default).
        assert_eq!(dirs.resolve(own_text).unwrap(), None);
        assert_eq!(dirs.resolve(&format!("{own_text}/")).unwrap(), None);
        assert_eq!(
            dirs.resolve(&format!(
                "{}//db/./snapshots",
                data.join("server").display()
            ))
            .unwrap(),
            None
        );
        assert_eq!(
            dirs.resolve(extra.to_str().unwrap()).unwrap(),
            Some(extra.clone())
        );
        for bad in [
            "/etc/ssh".to_string(),
            data.join("server/tls").display().to_string(),
            data.join("server/db/etcd/member/snap")
                .display()
                .to_string(),
            format!("{own_text}/../../tls"),
            "relative/dir".to_string(),
            format!("{own_text}\nforged log line"),
            data.display().to_string(),
        ] {
            let e = dirs.resolve(&bad).unwrap_err();
            assert_eq!(e.http_status(), 400, "{bad}");
            assert!(e.to_string().contains("not one this server allows"), "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_configured_dir_keeps_its_value_and_matches_its_canonical_form() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        // The admin may configure the server's own dir through a symlink.
        let dirs = RequestDirs::new(root.path(), Some(&link), &[]).unwrap();
        assert_eq!(
            dirs.resolve(link.to_str().unwrap()).unwrap(),
            Some(link.clone())
        );
        let canonical = std::fs::canonicalize(&real).unwrap();
        assert_eq!(
            dirs.resolve(canonical.to_str().unwrap()).unwrap(),
            Some(link)
        );
    }

    #[test]
    fn allowed_dirs_are_checked_at_start() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(data.join("server/tls")).unwrap();
        std::fs::create_dir_all(data.join("server/db/snapshots")).unwrap();
        let file = root.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        let cases = [
            (PathBuf::from("rel"), "not an absolute path"),
            (root.path().join("missing"), "create the directory"),
            (file, "is not a directory"),
            (link, "symbolic link"),
            (data.join("server/tls"), "inside or above"),
            (data.clone(), "inside or above"),
            (PathBuf::from("/"), "inside or above"),
        ];
        for (dir, want) in cases {
            let e = RequestDirs::new(&data, None, std::slice::from_ref(&dir)).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(want), "{}: {msg}", dir.display());
            assert!(msg.contains("--etcd-snapshot-allowed-dirs"), "{msg}");
        }
        // The server's own snapshot dir may be listed again.
        RequestDirs::new(&data, None, &[data.join("server/db/snapshots")]).unwrap();
    }

    fn server_s3() -> S3Config {
        S3Config {
            bucket: "ours".into(),
            endpoint: "s3.example:9000".into(),
            access_key: "SERVERAK".into(),
            secret_key: "SERVERSK".into(),
            ..S3Config::default()
        }
    }

    fn request(json: &str) -> S3Config {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_request_without_keys_gets_the_servers_credentials_only_for_its_store() {
        let srv = server_s3();
        // The server's store (another folder): the server's keys.
        let got = confine_remote(
            &request(
                r#"{"bucket":"ours","endpoint":"s3.example:9000","folder":"f","timeout":"1m"}"#,
            ),
            Some(&srv),
        )
        .unwrap();
        assert_eq!(
            (got.access_key.as_str(), got.folder.as_str()),
            ("SERVERAK", "f")
        );
        assert!(got.ambient_identity);
        // Another endpoint, bucket, proxy, CA or plain HTTP: refused, nothing lent.
        for json in [
            r#"{"bucket":"ours","endpoint":"evil.example:9000"}"#,
            r#"{"bucket":"theirs","endpoint":"s3.example:9000"}"#,
            r#"{"bucket":"ours","endpoint":"s3.example:9000","insecure":true}"#,
            r#"{"bucket":"ours","endpoint":"s3.example:9000","proxy":"http://evil:3128"}"#,
            r#"{"bucket":"ours"}"#,
        ] {
            let e = confine_remote(&request(json), Some(&srv)).unwrap_err();
            assert!(
                e.to_string().contains("carries no keys of its own"),
                "{json}: {e}"
            );
        }
        // No server store at all: a keyless request is refused too.
        assert!(confine_remote(&request(r#"{"bucket":"bkt"}"#), None).is_err());
    }

    #[test]
    fn a_request_with_its_own_keys_uses_them_and_no_identity() {
        let srv = server_s3();
        let got = confine_remote(
            &request(r#"{"bucket":"theirs","endpoint":"x:1","accessKey":"AK","secretKey":"SK"}"#),
            Some(&srv),
        )
        .unwrap();
        assert_eq!(got.access_key, "AK");
        assert!(!got.ambient_identity);
        // Half a pair is K3s's anonymous request: allowed, unsigned.
        let got = confine_remote(&request(r#"{"bucket":"bkt","accessKey":"AK"}"#), None).unwrap();
        assert!(!got.ambient_identity);
    }

    #[test]
    fn a_request_names_no_file_on_the_server() {
        use base64::Engine as _;
        let mut srv = server_s3();
        srv.endpoint_ca = "/etc/ours/ca.pem".into();
        let keys = r#""accessKey":"AK","secretKey":"SK""#;
        let e = confine_remote(
            &request(&format!(
                r#"{{"bucket":"bkt",{keys},"endpointCA":"/etc/shadow"}}"#
            )),
            Some(&srv),
        )
        .unwrap_err();
        assert!(e.to_string().contains("names a file on the server"), "{e}");
        // The server's own CA file may be named; an inline bundle always.
        confine_remote(
            &request(&format!(
                r#"{{"bucket":"bkt",{keys},"endpointCA":"/etc/ours/ca.pem"}}"#
            )),
            Some(&srv),
        )
        .unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["s3.example".to_string()])
            .unwrap()
            .cert
            .pem();
        let inline = base64::engine::general_purpose::STANDARD.encode(cert);
        confine_remote(
            &request(&format!(
                r#"{{"bucket":"bkt",{keys},"endpointCA":"{inline}"}}"#
            )),
            None,
        )
        .unwrap();
        // GCS: a key file named by the request, or Google's default identity, is refused.
        for json in [
            r#"{"provider":"gcs","bucket":"bkt","credentialsFile":"/srv/key.json","endpoint":"http://evil:1"}"#,
            r#"{"provider":"gcs","bucket":"bkt"}"#,
        ] {
            let e = confine_remote(&request(json), None).unwrap_err();
            assert!(
                e.to_string().contains("key file on the server")
                    || e.to_string().contains("no keys of its own"),
                "{json}: {e}"
            );
        }
        // An emulator endpoint without a key is unsigned: allowed.
        confine_remote(
            &request(r#"{"provider":"gcs","bucket":"bkt","endpoint":"http://127.0.0.1:4443"}"#),
            None,
        )
        .unwrap();
    }
}
