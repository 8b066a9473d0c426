//! `etcdsnap etcd-snapshot save|delete|ls|prune`: each is one request to the running server, as
//! in K3s, so on-demand and scheduled snapshots share one code path and one lock. `restore`,
//! `status`, `verify` and `inspect` run here, on files of this machine (or downloaded from S3).

use std::time::Duration;

use anyhow::{Result, bail};
use etcdsnap_core::api::{Operation, SnapshotRequest, SnapshotResult};
use etcdsnap_core::records::EtcdSnapshotFileList;
use etcdsnap_core::restore::{DirRestore, Membership, RestoreTool};
use etcdsnap_core::store::remote::{S3Config, S3Target};

use super::client::SupervisorClient;
use super::render::{Format, render_list};
use super::{RestoreArgs, SnapshotAction, SnapshotFlags};

/// `--dir` as the server must see it: absolute (a relative path means this shell's directory,
/// not the server's).
fn absolute_dir(dir: &Option<String>) -> Result<Option<String>> {
    match dir.as_deref() {
        None | Some("") => Ok(dir.clone()),
        Some(d) => {
            let abs =
                std::path::absolute(d).map_err(|e| anyhow::anyhow!("invalid --dir {d:?}: {e}"))?;
            Ok(Some(abs.to_string_lossy().into_owned()))
        }
    }
}

/// The remote store as a request carries it: the server reads no file a request names (issue
/// 23), so the CA bundle files and the GCS key file given here are read here and sent as their
/// contents (the CA files base64-encoded, as `--s3-endpoint-ca` also accepts them).
fn for_request(cfg: Option<S3Config>) -> Result<Option<S3Config>> {
    let Some(mut cfg) = cfg else {
        return Ok(None);
    };
    cfg.endpoint_ca = etcdsnap_core::store::remote::inline_endpoint_ca(&cfg.endpoint_ca)?;
    if !cfg.credentials_file.is_empty() {
        let file = std::mem::take(&mut cfg.credentials_file);
        cfg.credentials_json = std::fs::read_to_string(&file).map_err(|e| {
            anyhow::anyhow!(
                "cannot read --etcd-gcs-credentials-file {file:?}: {e}: give the service-account JSON key file"
            )
        })?;
    }
    Ok(Some(cfg))
}

fn request(flags: &SnapshotFlags, op: Operation) -> Result<SnapshotRequest> {
    if let Some(r) = flags.retention {
        super::server::check_retention("--snapshot-retention", r)?;
    }
    if let Some(r) = flags.s3.retention {
        super::server::check_retention("--s3-retention", r)?;
    }
    Ok(SnapshotRequest {
        operation: Some(op),
        name: vec![flags.name.clone()],
        dir: absolute_dir(&flags.dir)?,
        // Naming a format asks for compression, unless compression is turned off explicitly.
        compress: flags
            .compress
            .or(flags.compress_format.as_ref().map(|_| true)),
        compress_format: flags.compress_format.clone(),
        compress_level: flags.compress_level,
        retention: flags.retention,
        s3: for_request(super::cloud::remote_config(
            &flags.s3,
            &flags.cloud,
            flags.retention,
        )?)?,
        s3_node_metadata: None,
    })
}

async fn client(flags: &SnapshotFlags, s3: Option<&S3Config>) -> Result<SupervisorClient> {
    // K3s waits 2 minutes, plus the S3 timeout when S3 is in play.
    let mut timeout = Duration::from_secs(120);
    if let Some(s3) = s3 {
        timeout += s3.timeout;
    }
    SupervisorClient::from_flags(&flags.server, timeout).await
}

fn print_result(r: &SnapshotResult, verb: &str) {
    for n in &r.created {
        println!("Snapshot {n} {verb}.");
    }
    for w in &r.warnings {
        eprintln!("WARNING: {w}");
    }
}

/// Runs one `etcd-snapshot` subcommand.
pub async fn run(action: SnapshotAction) -> Result<()> {
    match action {
        SnapshotAction::Save(a) => {
            if !a.extra.is_empty() {
                bail!(
                    "save takes no arguments, got {:?}; use --name to set the snapshot name prefix",
                    a.extra
                );
            }
            let mut req = request(&a.flags, Operation::Save)?;
            // On-demand saves never prune local snapshots (K3s sends retention 0).
            req.retention = Some(0);
            let c = client(&a.flags, req.s3.as_ref()).await?;
            let body = super::progress::follow_save(&c, c.snapshot(&req)).await?;
            let r: SnapshotResult = serde_json::from_slice(&body)?;
            if r.created.is_empty() {
                bail!("the server took no snapshot; see the server log for details");
            }
            print_result(&r, "saved");
            for n in &r.deleted {
                println!("Snapshot {n} deleted.");
            }
        }
        SnapshotAction::Delete(a) => {
            if a.names.is_empty() {
                bail!("no snapshots given for removal");
            }
            let mut req = request(&a.flags, Operation::Delete)?;
            req.name = a.names.clone();
            let c = client(&a.flags, req.s3.as_ref()).await?;
            let r: SnapshotResult = serde_json::from_slice(&c.snapshot(&req).await?)?;
            for n in &r.deleted {
                println!("Snapshot {n} deleted.");
            }
            for n in &a.names {
                if !r.deleted.contains(n) {
                    eprintln!("WARNING: Snapshot {n} not found.");
                }
            }
        }
        SnapshotAction::Prune(a) => {
            let req = request(&a.flags, Operation::Prune)?;
            let c = client(&a.flags, req.s3.as_ref()).await?;
            let r: SnapshotResult = serde_json::from_slice(&c.snapshot(&req).await?)?;
            for n in &r.deleted {
                println!("Snapshot {n} deleted.");
            }
        }
        SnapshotAction::Restore(a) => restore(&a).await?,
        SnapshotAction::Status(a) => super::inspect::status(&a).await?,
        SnapshotAction::Verify(a) => super::inspect::verify(&a).await?,
        SnapshotAction::Inspect(a) => super::inspect::inspect(&a).await?,
        SnapshotAction::Drill(a) => super::inspect::drill(&a).await?,
        SnapshotAction::Ls(a) => {
            let format = Format::parse(&a.output)?;
            let mut req = request(&a.flags, Operation::List)?;
            req.s3_node_metadata = Some(!matches!(format, Format::Table | Format::Wide));
            let c = client(&a.flags, req.s3.as_ref()).await?;
            let list: EtcdSnapshotFileList = serde_json::from_slice(&c.snapshot(&req).await?)?;
            print!("{}", render_list(&list, format)?);
        }
    }
    Ok(())
}

/// Checks the restored member's name, peer URLs and initial cluster before anything is read,
/// so that a typo is named by its flag rather than by etcdutl.
fn check_membership(a: &RestoreArgs) -> Result<()> {
    let name = a.name.as_str();
    if name.is_empty()
        || name.contains(|c: char| c == '=' || c == ',' || c.is_whitespace() || c.is_control())
    {
        bail!(
            "invalid --name {name:?}: give the restored member's name, without spaces, '=' or ',' (etcd's --name)"
        );
    }
    let url = |u: &str| {
        let rest = u
            .strip_prefix("http://")
            .or_else(|| u.strip_prefix("https://"))?;
        let (host, port) = rest.trim_end_matches('/').rsplit_once(':')?;
        (!host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)).then_some(())
    };
    let peers: Vec<&str> = a
        .initial_advertise_peer_urls
        .split(',')
        .map(str::trim)
        .collect();
    for u in &peers {
        if url(u).is_none() {
            bail!(
                "invalid --initial-advertise-peer-urls {u:?}: give http(s)://host:port, comma-separated"
            );
        }
    }
    if let Some(cluster) = &a.initial_cluster {
        let mut has_self = false;
        for item in cluster.split(',').map(str::trim) {
            let Some((n, u)) = item.split_once('=') else {
                bail!(
                    "invalid --initial-cluster entry {item:?}: give name=http(s)://host:port entries, comma-separated, e.g. {name}={}",
                    peers[0]
                );
            };
            if n.is_empty() || url(u).is_none() {
                bail!(
                    "invalid --initial-cluster entry {item:?}: give name=http(s)://host:port entries, comma-separated, e.g. {name}={}",
                    peers[0]
                );
            }
            has_self |= n == name;
        }
        if !has_self {
            bail!(
                "--initial-cluster {cluster:?} does not name the restored member {name:?} (--name): add {name}={}",
                peers[0]
            );
        }
    }
    Ok(())
}

/// `etcd-snapshot restore`: runs here, not on a server (it writes a data dir on this machine).
async fn restore(a: &RestoreArgs) -> Result<()> {
    let Some(snapshot) = a.snapshot.clone() else {
        bail!("give the snapshot to restore: a file, or with --s3 its name in the bucket");
    };
    let Some(output_dir) = a.output_dir.clone() else {
        bail!("give --output-dir, the new etcd data dir to write");
    };
    check_membership(a)?;
    let s3 = match super::cloud::remote_config(&a.s3, &a.cloud, None)? {
        Some(cfg) => Some(S3Target::new(cfg)?),
        None => None,
    };
    let tool = RestoreTool::any(
        a.tools.etcd_binary.as_deref(),
        a.tools.etcdutl_binary.as_deref(),
        a.tools.etcdctl_binary.as_deref(),
    )?;
    let job = DirRestore {
        snapshot,
        s3,
        output_dir,
        membership: Membership {
            name: a.name.clone(),
            initial_cluster: a.initial_cluster.clone(),
            peer_urls: a.initial_advertise_peer_urls.clone(),
            cluster_token: Some(a.initial_cluster_token.clone()),
        },
        tool,
    };
    job.run().await?;
    println!(
        "Snapshot {} restored to {}. Start etcd on it with:\n  {}",
        job.snapshot,
        job.output_dir.display(),
        job.etcd_command()
    );
    Ok(())
}
