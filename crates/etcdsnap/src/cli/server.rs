//! `etcdsnap server`: turns flags into a validated [`ServerConfig`] (a bad schedule, name or S3
//! setting fails here, at start-up, not at the first tick), binds the supervisor port and runs.

use anyhow::{Context, Result, bail};
use etcdsnap_core::etcd::ClientTls;
use etcdsnap_core::naming::{CompressFormat, Compression, validate_prefix};
use etcdsnap_core::schedule::Schedule;
use etcdsnap_core::server::RequestHook;
use etcdsnap_core::server::reset::ResetSettings;
use etcdsnap_core::server::{ExternalDatastore, ServerConfig, SnapshotSettings};
use etcdsnap_core::snapshot::confine::RequestDirs;
use etcdsnap_core::store::remote::S3Target;

use super::{ServerArgs, default_data_dir};

/// The host name, lower-cased, as K3s names its node.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).to_lowercase()
}

/// Validates the flags into a server configuration.
pub fn config(a: &ServerArgs) -> Result<ServerConfig> {
    let join = join_url(a)?;
    let learner_promotion_delay =
        etcdsnap_core::duration::parse_go_duration(&a.etcd_learner_promotion_delay)
            .map_err(|e| anyhow::anyhow!("invalid --etcd-learner-promotion-delay: {e}"))?;
    let restoring = a.cluster_reset && a.cluster_reset_restore_path.is_some();
    if restoring && a.s3.s3 == Some(true) && a.s3.config_secret.is_some() {
        bail!(
            "cannot use S3 config secret when restoring snapshot; configuration must be set in CLI or config file"
        );
    }
    let schedule = Schedule::parse(&a.etcd_snapshot_schedule_cron)?;
    let drill = drill_request(a)?;
    let reconcile_interval =
        etcdsnap_core::duration::parse_go_duration(&a.etcd_snapshot_reconcile_interval)
            .map_err(|e| anyhow::anyhow!("invalid --etcd-snapshot-reconcile-interval: {e}"))?;
    if reconcile_interval.is_zero() {
        bail!("etcd-snapshot-reconcile-interval must be greater than 0s");
    }
    let idle_timeout = etcdsnap_core::duration::parse_go_duration(&a.etcd_snapshot_idle_timeout)
        .map_err(|e| anyhow::anyhow!("invalid --etcd-snapshot-idle-timeout: {e}"))?;
    if idle_timeout.is_zero() {
        bail!("etcd-snapshot-idle-timeout must be greater than 0s");
    }
    let kubeconfig = etcdsnap_core::server::kubeconfig::KubeconfigOut {
        path: a
            .write_kubeconfig
            .clone()
            .unwrap_or_else(super::default_kubeconfig),
        mode: etcdsnap_core::server::kubeconfig::parse_mode(&a.write_kubeconfig_mode)?,
    };
    check_snapshot_and_bind_flags(a)?;
    let token = server_token(a, join.is_some())?;
    let datastore = external_datastore(a)?;
    let node_name = a
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(hostname);
    validate_prefix(&node_name).context("invalid --node-name")?;
    // The CA bundle is loaded now: a bad --etcd-s3-endpoint-ca stops the server at start.
    let s3 = match super::cloud::remote_config(&a.s3, &a.cloud, Some(a.etcd_snapshot_retention))? {
        Some(cfg) => Some(S3Target::new(cfg)?),
        None => None,
    };
    let data_dir = a.data_dir.clone().unwrap_or_else(default_data_dir);
    Ok(ServerConfig {
        data_dir: data_dir.clone(),
        node_name,
        token,
        join_token_file: a.join_token_file.clone(),
        viewer_token_file: a.viewer_token_file.clone(),
        bind_address: a.bind_address.clone(),
        advertise_address: a
            .advertise_address
            .clone()
            .unwrap_or_else(|| "127.0.0.1".into()),
        etcd_client_port: a.etcd_client_port,
        etcd_peer_port: a.etcd_peer_port,
        etcd_binary: a.etcd_binary.clone(),
        datastore,
        snapshots: SnapshotSettings {
            disabled: a.etcd_disable_snapshots,
            name: a.etcd_snapshot_name.clone(),
            schedule,
            retention: a.etcd_snapshot_retention,
            dir: a.etcd_snapshot_dir.clone(),
            compress: a.etcd_snapshot_compress,
            compression: Compression::new(
                CompressFormat::parse(&a.etcd_snapshot_compress_format)?,
                a.etcd_snapshot_compress_level,
            )?,
            s3: s3.clone(),
            reconcile_interval,
            idle_timeout,
            request_dirs: RequestDirs::new(
                &data_dir,
                a.etcd_snapshot_dir.as_deref(),
                &a.etcd_snapshot_allowed_dirs,
            )?,
        },
        after_request: Some(RequestHook(std::sync::Arc::new(release_freed_memory))),
        kubeconfig: (!a.cluster_reset).then_some(kubeconfig),
        join,
        learner_promotion_delay,
        drill: drill.filter(|_| !a.cluster_reset),
        reset: a.cluster_reset.then(|| ResetSettings {
            restore_path: a.cluster_reset_restore_path.clone(),
            s3: if restoring { s3.clone() } else { None },
            etcdutl_binary: a.etcdutl_binary.clone(),
            etcdctl_binary: a.etcdctl_binary.clone(),
        }),
    })
}

/// The snapshot name prefix, retention counts, `--bind-address` and a custom snapshot dir,
/// checked before anything starts; retention 0 is said once.
fn check_snapshot_and_bind_flags(a: &ServerArgs) -> Result<()> {
    validate_prefix(&a.etcd_snapshot_name).context("invalid --etcd-snapshot-name")?;
    check_retention("--etcd-snapshot-retention", a.etcd_snapshot_retention)?;
    if let Some(r) = a.s3.retention {
        check_retention("--etcd-s3-retention", r)?;
    }
    if a.etcd_snapshot_retention == 0 && !a.etcd_disable_snapshots {
        tracing::warn!(
            "--etcd-snapshot-retention 0: retention is off, scheduled snapshots are never pruned"
        );
    }
    if let Some(bind) = &a.bind_address
        && bind.parse::<std::net::IpAddr>().is_err()
    {
        bail!(
            "invalid --bind-address {bind:?}: give an IP address of this host, such as 0.0.0.0 (all) or 127.0.0.1"
        );
    }
    if let Some(dir) = &a.etcd_snapshot_dir {
        check_snapshot_dir(dir)?;
    }
    Ok(())
}

/// `--server`, checked: only outside a reset, an https:// supervisor URL, with a token and
/// without an external datastore. `None` when this server starts or resets a cluster.
fn join_url(a: &ServerArgs) -> Result<Option<String>> {
    if a.cluster_reset_restore_path.is_some() && !a.cluster_reset {
        bail!("invalid flag use; --cluster-reset required with --cluster-reset-restore-path");
    }
    if a.cluster_reset && a.server.as_deref().is_some_and(|s| !s.is_empty()) {
        bail!(
            "cannot perform cluster-reset while server URL is set - remove server from configuration before resetting"
        );
    }
    let join = a
        .server
        .clone()
        .filter(|s| !s.is_empty() && !a.cluster_reset);
    if let Some(url) = &join {
        if !url.starts_with("https://") {
            bail!(
                "--server must be the https:// supervisor URL of a server of the cluster (https://<host>:9345), got {url:?}"
            );
        }
        if a.datastore_endpoint.is_some() {
            bail!(
                "--server joins the embedded etcd of another server; with --datastore-endpoint every server attaches to the external cluster itself: drop --server"
            );
        }
        if a.token.is_none() && a.token_file.is_none() {
            bail!(
                "joining a cluster with --server needs its token: pass --token or --token-file (the token is in <data-dir>/server/token on a server of the cluster)"
            );
        }
    }
    Ok(join)
}

/// The restore drills' schedule (`--etcd-snapshot-drill-schedule-cron`), `None` when empty.
fn drill_request(a: &ServerArgs) -> Result<Option<etcdsnap_core::server::DrillRequest>> {
    Ok(match a.etcd_snapshot_drill_schedule_cron.trim() {
        "" => None,
        spec => Some(etcdsnap_core::server::DrillRequest {
            schedule: Schedule::parse(spec).map_err(|e| {
                anyhow::anyhow!(
                    "invalid --etcd-snapshot-drill-schedule-cron {:?}: {}",
                    e.spec(),
                    e.problem()
                )
            })?,
            etcdutl_binary: a.etcdutl_binary.clone(),
            etcdctl_binary: a.etcdctl_binary.clone(),
        }),
    })
}

/// The server token from `--token` or `--token-file`: a weak token or one of another role
/// is refused where it is given, except in a reset, which may need the old cluster's token,
/// whatever it is, to read back its CAs.
fn server_token(a: &ServerArgs, joining: bool) -> Result<Option<String>> {
    let token = match (&a.token, &a.token_file) {
        (Some(t), _) => Some((t.clone(), "--token (or ETCDSNAP_TOKEN)".to_string())),
        (None, Some(f)) => Some((
            {
                etcdsnap_core::token::check_file_mode(f)?;
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read --token-file {}", f.display()))?
                    .trim()
                    .to_string()
            },
            format!("--token-file {}", f.display()),
        )),
        (None, None) => None,
    };
    if let Some((t, source)) = &token
        && !a.cluster_reset
    {
        let parsed = etcdsnap_core::token::Token::parse(t)?;
        etcdsnap_core::token::check_strength(&parsed.password, source)?;
        match parsed.username.as_str() {
            "server" => {}
            "join" if joining => {}
            "join" => bail!(
                "{source} holds a join token, which only joins a cluster: give --server too, or this server's own token"
            ),
            user => bail!(
                "{source} holds a {user} token: it takes the server token (<data-dir>/server/token of a server of the cluster) or, with --server, its join token (<data-dir>/server/join-token)"
            ),
        }
    }
    Ok(token.map(|(t, _)| t))
}

/// `--datastore-endpoint` and its client TLS files, checked: etcd client URLs, a certificate
/// with its key, and PEM of the right kind in each file.
fn external_datastore(a: &ServerArgs) -> Result<Option<ExternalDatastore>> {
    let Some(eps) = &a.datastore_endpoint else {
        return Ok(None);
    };
    let endpoints: Vec<String> = eps
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if endpoints.is_empty() {
        bail!("--datastore-endpoint is empty: give one or more etcd client URLs, comma-separated");
    }
    for e in &endpoints {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            bail!("--datastore-endpoint {e:?} must be an http:// or https:// etcd client URL");
        }
    }
    match (&a.datastore_certfile, &a.datastore_keyfile) {
        (Some(_), None) | (None, Some(_)) => bail!(
            "an etcd client certificate needs both --datastore-certfile and --datastore-keyfile"
        ),
        _ => {}
    }
    use etcdsnap_core::tls::{PemKind, check_pem_file};
    for (f, flag, kind) in [
        (
            &a.datastore_cafile,
            "--datastore-cafile",
            PemKind::Certificates,
        ),
        (
            &a.datastore_certfile,
            "--datastore-certfile",
            PemKind::Certificates,
        ),
        (
            &a.datastore_keyfile,
            "--datastore-keyfile",
            PemKind::PrivateKey,
        ),
    ] {
        if let Some(f) = f {
            check_pem_file(f, flag, kind)?;
        }
    }
    Ok(Some(ExternalDatastore {
        endpoints,
        tls: ClientTls {
            ca_file: a.datastore_cafile.clone(),
            cert_file: a.datastore_certfile.clone(),
            key_file: a.datastore_keyfile.clone(),
        },
    }))
}

/// A retention count must be 0 (keep every snapshot) or more. K3s takes any number below 1
/// as "keep all"; we say so by refusing a negative one rather than reading it silently.
pub(super) fn check_retention(flag: &str, n: i64) -> Result<()> {
    if n < 0 {
        bail!(
            "invalid {flag} {n}: give the number of snapshots to keep, or 0 to keep every snapshot (no pruning)"
        );
    }
    Ok(())
}

/// A custom snapshot dir must be an existing directory at start: a typo must not surface only
/// at the first scheduled snapshot, hours later.
fn check_snapshot_dir(dir: &std::path::Path) -> Result<()> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => {
            bail!("--etcd-snapshot-dir {shown} is not a directory: give a directory for snapshots")
        }
        Err(e) => bail!(
            "--etcd-snapshot-dir {shown}: {e}: create it (mkdir -m 0700 -p {shown}) or give an existing directory"
        ),
    }
}

/// Hands memory freed by a request back to the OS. Listing a large S3 folder allocates tens of
/// MiB that glibc would otherwise keep, so a long-running server would sit at its peak.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
}

/// Runs the server until SIGTERM/SIGINT, or the one-shot `--cluster-reset`.
pub async fn run(a: ServerArgs) -> Result<()> {
    let cfg = config(&a)?;
    if let Some(reset) = &cfg.reset {
        tracing::info!(
            "etcdsnap server {}: cluster reset on node {} (data dir {})",
            env!("CARGO_PKG_VERSION"),
            cfg.node_name,
            cfg.data_dir.display()
        );
        let message = etcdsnap_core::server::reset::run(&cfg, reset).await?;
        tracing::info!("{message}");
        println!("{message}");
        return Ok(());
    }
    let bind = a.bind_address.clone().unwrap_or_else(|| "0.0.0.0".into());
    let listener = tokio::net::TcpListener::bind((bind.as_str(), a.https_listen_port))
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow::anyhow!(
                    "cannot listen on {bind}:{} for the supervisor API: {e}: is another etcdsnap server running? Stop it or choose another port with --https-listen-port",
                    a.https_listen_port
                )
            } else {
                anyhow::anyhow!(
                    "cannot listen on {bind}:{} for the supervisor API: {e}: check --bind-address (an address of this host) and --https-listen-port",
                    a.https_listen_port
                )
            }
        })?;
    tracing::info!(
        "starting etcdsnap server {} on node {} (data dir {})",
        env!("CARGO_PKG_VERSION"),
        cfg.node_name,
        cfg.data_dir.display()
    );
    etcdsnap_core::server::run(cfg, listener, shutdown_signal()).await?;
    tracing::info!("server stopped");
    Ok(())
}
