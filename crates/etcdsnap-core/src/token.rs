//! Server tokens in K3s's format, `K10<sha256 of the CA bundle>::<user>:<secret>`, and the
//! 12-hex token hash K3s records in snapshot metadata.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::fsutil::write_private;
use crate::{Error, Result};

/// A parsed token. A bare secret (no `K10` prefix) has no CA hash and user `server`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub ca_hash: Option<String>,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("ca_hash", &self.ca_hash)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Token {
    /// Parses `K10<hash>::<user>:<secret>` or a bare secret.
    pub fn parse(raw: &str) -> Result<Token> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Error::InvalidInput(
                "the token is empty: pass --token or write the server token file".into(),
            ));
        }
        if let Some(rest) = raw.strip_prefix("K10")
            && let Some((hash, creds)) = rest.split_once("::")
        {
            {
                let (user, pass) = creds.split_once(':').ok_or_else(|| {
                    Error::InvalidInput(
                        "malformed token: expected K10<ca hash>::<user>:<secret>".into(),
                    )
                })?;
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Error::InvalidInput(
                        "malformed token: the CA hash after K10 must be 64 hex digits".into(),
                    ));
                }
                if pass.is_empty() {
                    return Err(Error::InvalidInput(
                        "malformed token: the secret after <user>: is empty".into(),
                    ));
                }
                return Ok(Token {
                    ca_hash: Some(hash.to_ascii_lowercase()),
                    username: user.to_string(),
                    password: pass.to_string(),
                });
            }
        }
        Ok(Token {
            ca_hash: None,
            username: "server".into(),
            password: raw.to_string(),
        })
    }

    /// The full token text.
    pub fn to_full(&self) -> String {
        match &self.ca_hash {
            Some(h) => format!("K10{h}::{}:{}", self.username, self.password),
            None => self.password.clone(),
        }
    }

    /// K3s's token hash: the first 12 hex digits of sha256(secret).
    pub fn hash12(&self) -> String {
        hex::encode(Sha256::digest(self.password.as_bytes()))[..12].to_string()
    }
}

/// sha256 hex of a CA bundle, as the token's `K10` part carries it.
pub fn ca_hash(ca_pem: &[u8]) -> String {
    hex::encode(Sha256::digest(ca_pem))
}

/// A new random secret of 32 hex digits.
pub fn random_secret() -> String {
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf).expect("the OS random source failed");
    hex::encode(buf)
}

/// Fewest characters a token secret may have. K3s generates 32 hex digits (128 bits); 16 hex
/// digits are 64 bits, which no rate of guessing over the network exhausts.
pub const MIN_SECRET_LEN: usize = 16;

/// Refuses a secret shorter than [`MIN_SECRET_LEN`]; `source` names where it came from (a flag
/// or a file) so the message says what to change.
pub fn check_strength(secret: &str, source: &str) -> Result<()> {
    let n = secret.chars().count();
    if n < MIN_SECRET_LEN {
        return Err(Error::InvalidInput(format!(
            "the token secret of {source} is {n} characters long; a token secret needs at least {MIN_SECRET_LEN} (etcdsnap generates 32 hex digits): generate one with `openssl rand -hex 16`"
        )));
    }
    Ok(())
}

/// Compares two byte strings in time independent of where they differ (lengths are not secret:
/// every token secret we issue has the same length).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Checks who may touch a file holding a token: writable by group or others is refused (anyone
/// could replace the token), readable by them is warned about (anyone could read it).
pub fn check_file_mode(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(Error::InvalidInput(format!(
            "the token file {} is writable by group or others (mode {mode:o}): run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    if mode & 0o044 != 0 {
        tracing::warn!(
            "the token file {} is readable by group or others (mode {mode:o}); `chmod 600 {}` keeps the token secret",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// Returns the server token: the one given (a bare secret gets the CA hash added), else the one
/// in `token_file`, else a new one. The result is written to `token_file` (0600) when it differs.
pub fn load_or_create(given: Option<&str>, token_file: &Path, ca_pem: &[u8]) -> Result<Token> {
    let hash = ca_hash(ca_pem);
    check_file_mode(token_file)?;
    let existing = match std::fs::read_to_string(token_file) {
        Ok(s) if !s.trim().is_empty() => Some(Token::parse(&s)?),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("read token file", token_file, e)),
    };
    let mut token = match (given, existing) {
        (Some(g), _) => Token::parse(g)?,
        (None, Some(t)) => t,
        (None, None) => Token {
            ca_hash: None,
            username: "server".into(),
            password: random_secret(),
        },
    };
    if let Some(h) = &token.ca_hash
        && *h != hash
    {
        return Err(Error::InvalidInput(format!(
            "the token's CA hash {h} does not match this server's CA ({hash}): pass the token this server issued, or its bare secret"
        )));
    }
    token.ca_hash = Some(hash);
    token.username = "server".into();
    let text = token.to_full();
    let current = std::fs::read_to_string(token_file).unwrap_or_default();
    if current.trim() != text {
        write_private(token_file, format!("{text}\n").as_bytes())?;
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_bare_tokens() {
        let h = "a".repeat(64);
        let t = Token::parse(&format!("K10{h}::server:s3cret\n")).unwrap();
        assert_eq!(t.ca_hash.as_deref(), Some(h.as_str()));
        assert_eq!(t.username, "server");
        assert_eq!(t.password, "s3cret");
        let b = Token::parse("justasecret").unwrap();
        assert_eq!(b.ca_hash, None);
        assert_eq!(b.password, "justasecret");
        assert!(Token::parse("").is_err());
        assert!(Token::parse(&format!("K10{h}::server:")).is_err());
        assert!(Token::parse("K10abc::server:x").is_err());
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn weak_secrets_are_refused_with_the_fix() {
        assert!(check_strength(&random_secret(), "--token").is_ok());
        assert!(check_strength(&"x".repeat(MIN_SECRET_LEN), "--token").is_ok());
        let e = check_strength("s3cret", "--token-file /t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--token-file /t"), "{e}");
        assert!(e.contains("6 characters"), "{e}");
        assert!(e.contains("openssl rand -hex 16"), "{e}");
    }

    #[test]
    fn token_hash_is_sha256_prefix_of_secret() {
        let t = Token::parse("secret").unwrap();
        // sha256("secret") = 2bb80d53…
        assert_eq!(t.hash12(), "2bb80d537b1d");
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn token_files_open_to_others_are_refused_or_warned() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "x").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o640, true),
            (0o644, true),
            (0o620, false),
            (0o666, false),
        ] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = check_file_mode(&f);
            assert_eq!(r.is_ok(), ok, "{mode:o}: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("chmod 600"), "{e}");
            }
        }
    }

    #[test]
    fn load_or_create_generates_once_and_checks_ca() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let t1 = load_or_create(None, &file, b"CA1").unwrap();
        assert_eq!(t1.ca_hash.as_deref(), Some(ca_hash(b"CA1").as_str()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let t2 = load_or_create(None, &file, b"CA1").unwrap();
        assert_eq!(t1, t2);
        let t3 = load_or_create(Some("bare"), &file, b"CA1").unwrap();
        assert_eq!(t3.password, "bare");
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .starts_with(&format!("K10{}::server:bare", ca_hash(b"CA1")))
        );
        let wrong = format!("K10{}::server:x", ca_hash(b"OTHER"));
        assert!(load_or_create(Some(&wrong), &file, b"CA1").is_err());
    }
}
