//! The CLI's side of the supervisor API: finds the token, pins the server's CA by the hash in the
//! token (as a K3s agent does when it joins), and posts `/db/snapshot` requests.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use etcdsnap_core::api::{SnapshotRequest, Status};
use etcdsnap_core::token::{Token, ca_hash};

/// A client bound to one server, its CA verified.
pub struct SupervisorClient {
    http: reqwest::Client,
    server: String,
    token: Token,
}

fn read_token(given: Option<&str>, data_dir: &Path) -> Result<Token> {
    if let Some(t) = given {
        return Ok(Token::parse(t)?);
    }
    let file = data_dir.join("server").join("token");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        anyhow!(
            "cannot read the server token {}: {e}; pass --etcd-token (the server's token, from <data-dir>/server/token on the server) or --data-dir of the server",
            file.display()
        )
    })?;
    Ok(Token::parse(&text)?)
}

fn unreachable(server: &str, e: &reqwest::Error) -> anyhow::Error {
    let cause = etcdsnap_core::error::error_chain(e);
    anyhow!(
        "cannot reach the etcdsnap server at {server}: {cause}; is `etcdsnap server` running there (see --etcd-server)?"
    )
}

impl SupervisorClient {
    /// Loads the token and fetches and verifies the server's CA.
    pub async fn connect(
        server: &str,
        token: Option<&str>,
        data_dir: &Path,
        timeout: Duration,
    ) -> Result<Self> {
        let server = server.trim_end_matches('/').to_string();
        if !server.starts_with("https://") {
            bail!("--etcd-server must be an https:// URL, got {server:?}");
        }
        let token = read_token(token, data_dir)?;
        let ca_pem = match &token.ca_hash {
            Some(want) => {
                // The CA is fetched unverified and then pinned by its hash from the token.
                let probe = reqwest::Client::builder()
                    .danger_accept_invalid_certs(true)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .context("building the HTTP client")?;
                let body = probe
                    .get(format!("{server}/cacerts"))
                    .send()
                    .await
                    .map_err(|e| unreachable(&server, &e))?
                    .bytes()
                    .await
                    .map_err(|e| unreachable(&server, &e))?;
                let got = ca_hash(&body);
                if &got != want {
                    bail!(
                        "the server at {server} presented a CA whose hash {got} does not match the token's CA hash {want}: wrong --etcd-server or wrong --etcd-token"
                    );
                }
                body.to_vec()
            }
            None => {
                let local = data_dir.join("server").join("tls").join("server-ca.crt");
                std::fs::read(&local).map_err(|e| {
                    anyhow!(
                        "the token has no CA hash, so the server cannot be verified, and {} is not readable ({e}): pass the full K10… token from the server's <data-dir>/server/token",
                        local.display()
                    )
                })?
            }
        };
        let cert = reqwest::Certificate::from_pem(&ca_pem).context("parsing the server CA")?;
        let http = reqwest::Client::builder()
            .tls_certs_only([cert])
            .timeout(timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(SupervisorClient {
            http,
            server,
            token,
        })
    }

    /// Posts a snapshot request; returns the body of a 2xx answer.
    pub async fn snapshot(&self, req: &SnapshotRequest) -> Result<Vec<u8>> {
        let resp = self
            .http
            .post(format!("{}/db/snapshot", self.server))
            .basic_auth("server", Some(&self.token.password))
            .json(req)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    anyhow!("the request to {} timed out: {e}", self.server)
                } else {
                    unreachable(&self.server, &e)
                }
            })?;
        let code = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| unreachable(&self.server, &e))?;
        if code.is_success() {
            return Ok(body.to_vec());
        }
        if code == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "the server at {} rejected the token (401 Unauthorized): pass the server's token with --etcd-token, or the server's --data-dir so <data-dir>/server/token is read",
                self.server
            );
        }
        let msg = serde_json::from_slice::<Status>(&body)
            .map(|s| s.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_string());
        bail!("{msg} (HTTP {code}; see the server log for details)")
    }
}
