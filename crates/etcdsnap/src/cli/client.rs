//! The CLI's side of the supervisor API: finds the token, pins the server's CA by the hash in the
//! token (as a K3s agent does when it joins), and posts `/db/snapshot` requests.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use etcdsnap_core::api::paths::{CACERTS_PATH, SNAPSHOT_PATH};
use etcdsnap_core::api::{SnapshotRequest, Status};
use etcdsnap_core::token::{Token, ca_hash};

/// How long a CLI command waits for a server whose etcd is not ready.
pub const NOT_READY_WAIT: Duration = Duration::from_secs(30);

/// How long a CLI command keeps connecting to a server that closes new connections before
/// they carry a request (a server at its connection cap gives a place to a newcomer only when
/// an idle connection can go; README, "Connections and certificates").
const CLOSED_RETRY_WAIT: Duration = Duration::from_secs(15);

/// The server closed or reset the connection before our request went out (during the TCP or
/// TLS handshake): the request never reached it, so sending it again is safe. A refused
/// connection (no server), a certificate error or a timeout is not this.
fn closed_before_request(e: &reqwest::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    if !e.is_connect() || e.is_timeout() {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            );
        }
        cause = c.source();
    }
    false
}

/// Sends the request `make` builds, again (after 200 ms, doubling to 2 s) while the server
/// closes the connection before the request goes out, for up to [`CLOSED_RETRY_WAIT`].
async fn send(
    make: impl Fn() -> reqwest::RequestBuilder,
) -> std::result::Result<reqwest::Response, reqwest::Error> {
    let deadline = std::time::Instant::now() + CLOSED_RETRY_WAIT;
    let mut delay = Duration::from_millis(200);
    loop {
        match make().send().await {
            Err(e) if closed_before_request(&e) && std::time::Instant::now() + delay < deadline => {
                tracing::debug!(
                    "the server closed the connection before the request: {e}; trying again"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            r => return r,
        }
    }
}

enum Answer {
    Body(Vec<u8>),
    NotReady(String),
}

/// A client bound to one server, its CA verified.
pub struct SupervisorClient {
    http: reqwest::Client,
    server: String,
    token: Token,
    /// The local CA file trusted when the token carries no CA hash.
    local_ca: Option<std::path::PathBuf>,
}

fn is_certificate_error(e: &reqwest::Error) -> bool {
    let chain = etcdsnap_core::error::error_chain(e).to_ascii_lowercase();
    [
        "certificate",
        "unknownissuer",
        "unknown issuer",
        "badsignature",
    ]
    .iter()
    .any(|w| chain.contains(w))
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

/// The token in the `--etcd-token-file` file.
fn token_file(f: &Path) -> Result<String> {
    etcdsnap_core::token::check_file_mode(f)?;
    let text = std::fs::read_to_string(f).map_err(|e| {
        anyhow!(
            "cannot read --etcd-token-file {}: {e}; give a file holding the server's token (a copy of <data-dir>/server/token on the server, mode 0600)",
            f.display()
        )
    })?;
    let t = text.trim();
    if t.is_empty() {
        bail!(
            "--etcd-token-file {} is empty: put the server's token in it (from <data-dir>/server/token on the server)",
            f.display()
        );
    }
    Ok(t.to_string())
}

fn unreachable(server: &str, e: &reqwest::Error) -> anyhow::Error {
    let cause = etcdsnap_core::error::error_chain(e);
    anyhow!(
        "cannot reach the etcdsnap server at {server}: {cause}; is `etcdsnap server` running there (see --etcd-server)?"
    )
}

impl SupervisorClient {
    /// Connects with the `--etcd-server`, `--etcd-token` (or `--etcd-token-file`) and
    /// `--data-dir` flags.
    pub async fn from_flags(c: &super::Connection, timeout: Duration) -> Result<Self> {
        let data_dir = c.data_dir.clone().unwrap_or_else(super::default_data_dir);
        let from_file = c.etcd_token_file.as_deref().map(token_file).transpose()?;
        let token = c.etcd_token.as_deref().or(from_file.as_deref());
        Self::connect(&c.etcd_server, token, &data_dir, timeout).await
    }

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
        let mut local_ca = None;
        let ca_pem = match &token.ca_hash {
            Some(want) => {
                // The CA is fetched unverified and then pinned by its hash from the token.
                let probe = reqwest::Client::builder()
                    .danger_accept_invalid_certs(true)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .context("building the HTTP client")?;
                let body = send(|| probe.get(format!("{server}{CACERTS_PATH}")))
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
                local_ca = Some(local.clone());
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
            local_ca,
        })
    }

    /// Posts a snapshot request; returns the body of a 2xx answer. A server whose etcd is not
    /// ready yet (it is starting, or restarting etcd) is asked again for up to
    /// [`NOT_READY_WAIT`].
    pub async fn snapshot(&self, req: &SnapshotRequest) -> Result<Vec<u8>> {
        let started = std::time::Instant::now();
        let mut said = false;
        loop {
            match self.post(req).await? {
                Answer::NotReady(msg) if started.elapsed() < NOT_READY_WAIT => {
                    if !said {
                        eprintln!(
                            "the server is not ready yet ({msg}); retrying for up to {}s",
                            NOT_READY_WAIT.as_secs()
                        );
                        said = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Answer::NotReady(msg) => bail!(
                    "{msg} (HTTP 503 Service Unavailable for {}s; see the server log for details)",
                    NOT_READY_WAIT.as_secs()
                ),
                Answer::Body(b) => return Ok(b),
            }
        }
    }

    async fn post(&self, req: &SnapshotRequest) -> Result<Answer> {
        self.call(
            reqwest::Method::POST,
            SNAPSHOT_PATH,
            Some(serde_json::to_vec(req)?),
        )
        .await
    }

    /// An authenticated request to `path` of the supervisor; the body of a 2xx answer.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        match self.call(method, path, body).await? {
            Answer::Body(b) => Ok(b),
            Answer::NotReady(msg) => bail!("{msg} (HTTP 503 Service Unavailable)"),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer> {
        let url = format!("{}{path}", self.server);
        let resp = send(|| {
            let rb = self
                .http
                .request(method.clone(), &url)
                .basic_auth(&self.token.username, Some(&self.token.password));
            match &body {
                Some(b) => rb
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone()),
                None => rb,
            }
        })
        .await
            .map_err(|e| {
                if e.is_timeout() {
                    anyhow!("the request to {} timed out: {e}", self.server)
                } else if self.local_ca.is_some() && is_certificate_error(&e) {
                    anyhow!(
                        "the server at {} presented a certificate that the CA in {} did not sign: that CA belongs to another server. The token has no CA hash to fetch the right one; pass the full K10… token from the server's <data-dir>/server/token (--etcd-token), or the --data-dir of that server",
                        self.server,
                        self.local_ca.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
                    )
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
            return Ok(Answer::Body(body.to_vec()));
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
        if code == reqwest::StatusCode::SERVICE_UNAVAILABLE
            && msg.starts_with("etcd is not ready yet")
        {
            return Ok(Answer::NotReady(msg));
        }
        bail!("{msg} (HTTP {code}; see the server log for details)")
    }
}
