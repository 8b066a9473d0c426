//! The kubeconfig `server` writes (K3s's `--write-kubeconfig`/`-o` and
//! `--write-kubeconfig-mode`), so the real kubectl and client libraries reach the records
//! through the supervisor's Kubernetes API subset, and the bearer token it carries (kept in
//! `<data-dir>/server/cred/admin.token`, made once).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::fsutil::{create_private_dir, parent_dir, write_private};
use crate::{Error, Result};

/// Where to write the kubeconfig, and its mode.
#[derive(Debug, Clone)]
pub struct KubeconfigOut {
    pub path: PathBuf,
    pub mode: u32,
}

/// The admin token of the Kubernetes API subset, made on first start.
pub fn admin_token(server_dir: &Path) -> Result<String> {
    let path = server_dir.join("cred").join("admin.token");
    if let Ok(t) = std::fs::read_to_string(&path)
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    create_private_dir(parent_dir(&path))?;
    let token = crate::token::random_secret() + &crate::token::random_secret();
    write_private(&path, token.as_bytes())?;
    Ok(token)
}

/// The kubeconfig text for `server` (an https URL), trusting `ca_pem`, with `token`.
pub fn render(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: etcdsnap\ncontexts:\n- context:\n    cluster: etcdsnap\n    user: etcdsnap-admin\n  name: etcdsnap\ncurrent-context: etcdsnap\npreferences: {{}}\nusers:\n- name: etcdsnap-admin\n  user:\n    token: {token}\n"
    )
}

/// Writes the kubeconfig (its directory made if missing) with the given mode.
pub fn write(out: &KubeconfigOut, server: &str, ca_pem: &str, token: &str) -> Result<()> {
    let dir = parent_dir(&out.path);
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    write_private(&out.path, render(server, ca_pem, token).as_bytes())?;
    std::fs::set_permissions(&out.path, std::fs::Permissions::from_mode(out.mode))
        .map_err(|e| Error::io("chmod", &out.path, e))?;
    tracing::info!("Wrote kubeconfig {}", out.path.display());
    Ok(())
}

/// Parses `--write-kubeconfig-mode` (octal, e.g. `0600`, `644`).
pub fn parse_mode(s: &str) -> Result<u32> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "invalid --write-kubeconfig-mode {s:?}: give an octal file mode such as 0600 or 0644"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_kept_and_modes_parse() {
        let dir = tempfile::tempdir().unwrap();
        let a = admin_token(dir.path()).unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(admin_token(dir.path()).unwrap(), a);
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("600").unwrap(), 0o600);
        assert!(parse_mode("999").is_err());
        let out = KubeconfigOut {
            path: dir.path().join("k/c.yaml"),
            mode: 0o640,
        };
        write(&out, "https://127.0.0.1:1", "CA", &a).unwrap();
        assert_eq!(crate::fsutil::mode_of(&out.path), Some(0o640));
        assert!(std::fs::read_to_string(&out.path).unwrap().contains(&a));
    }
}
