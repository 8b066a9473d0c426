//! `etcdsnap etcd-snapshot status|verify|inspect`: read a snapshot on this machine (or one
//! downloaded from S3 into a temporary directory) without restoring it. The work is in
//! `etcdsnap_core::inspect`; this module finds the snapshot and renders.

use std::io::{BufWriter, Write};

use anyhow::{Context, Result, bail};
use etcdsnap_core::inspect::{
    self, DiffReport, Entry, InspectOptions, Opened, StatusReport, Trailer,
};
use etcdsnap_core::source::Source;
use etcdsnap_core::store::local::default_snapshot_dir;
use etcdsnap_core::store::remote::S3Target;

use super::render::{Format, table};
use super::{DrillArgs, InspectArgs, ReadFlags, StatusArgs, VerifyArgs, default_data_dir};

/// Resolves `arg` the way the three subcommands do.
fn source(flags: &ReadFlags, arg: &str) -> Result<Source> {
    let dir = match &flags.dir {
        Some(d) => d.clone(),
        None => default_snapshot_dir(&flags.data_dir.clone().unwrap_or_else(default_data_dir)),
    };
    let s3 = match super::cloud::remote_config(&flags.s3, &flags.cloud, None)? {
        Some(cfg) => Some(S3Target::new(cfg)?),
        None => None,
    };
    Ok(etcdsnap_core::source::resolve(arg, &dir, s3.as_ref())?)
}

async fn open(flags: &ReadFlags, arg: Option<&str>) -> Result<Opened> {
    let Some(arg) = arg else {
        bail!(
            "give the snapshot: a file, a name in the snapshot dir, or with --s3 a name in the bucket"
        );
    };
    Ok(inspect::open(&source(flags, arg)?).await?)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("the reading task failed")?
}

/// The status as a two-column table.
pub fn status_table(r: &StatusReport) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        vec!["HASH".into(), format!("{:x}", r.hash)],
        vec!["REVISION".into(), r.revision.to_string()],
        vec!["TOTAL KEYS".into(), r.total_key.to_string()],
        vec![
            "TOTAL SIZE".into(),
            format!(
                "{} ({} bytes)",
                etcdsnap_core::units::si_bytes(r.total_size),
                r.total_size
            ),
        ],
        vec!["NAME".into(), r.name.clone()],
        vec!["LOCATION".into(), r.location.clone()],
        vec!["FILE SIZE".into(), r.file_size.to_string()],
    ];
    if let Some(u) = r.uncompressed_size {
        rows.push(vec!["UNCOMPRESSED SIZE".into(), u.to_string()]);
    }
    let trailer = match &r.sha256 {
        Some(sha) => format!("{} (sha256 {sha})", r.trailer),
        None => r.trailer.clone(),
    };
    rows.push(vec!["SHA-256 TRAILER".into(), trailer]);
    if let Some(n) = &r.node {
        rows.push(vec!["NODE".into(), n.clone()]);
    }
    if let Some(c) = &r.created_at {
        rows.push(vec!["CREATED".into(), c.clone()]);
    }
    if let Some(c) = r.compacted_revision {
        rows.push(vec!["COMPACTED REVISION".into(), c.to_string()]);
    }
    rows.push(vec!["PAGE SIZE".into(), r.page_size.to_string()]);
    table(&rows)
}

/// `etcd-snapshot status`.
pub async fn status(a: &StatusArgs) -> Result<()> {
    let json = match a.write_out.as_str() {
        "json" => true,
        "table" | "simple" | "" => false,
        other => bail!("invalid output format: {other} (status prints table or json)"),
    };
    let opened = open(&a.flags, a.snapshot.as_deref()).await?;
    let check = !a.skip_hash_check;
    let report = blocking(move || Ok(inspect::status(&opened, check)?)).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", status_table(&report));
    }
    if let Some(p) = &report.trailer_problem {
        eprintln!(
            "WARNING: {}: {p}; run `etcdsnap etcd-snapshot verify` for the structure",
            report.name
        );
    }
    Ok(())
}

/// `etcd-snapshot verify`.
pub async fn verify(a: &VerifyArgs) -> Result<()> {
    let opened = open(&a.flags, a.snapshot.as_deref()).await?;
    let name = opened.info.name.clone();
    let skip = a.skip_hash_check;
    let r = blocking(move || Ok(inspect::verify(&opened, skip)?)).await?;
    let trailer = match &r.trailer {
        Trailer::Valid { .. } => "SHA-256 trailer matches",
        _ => "SHA-256 trailer not checked (--skip-hash-check)",
    };
    println!(
        "OK {name}: {trailer}; bbolt structure verified: {} pages of {} bytes, meta pages, page references, key order, etcd revision keys (txid {}, revision {})",
        r.pages, r.page_size, r.txid, r.revision
    );
    Ok(())
}

fn lease(l: i64) -> String {
    if l == 0 {
        "-".into()
    } else {
        format!("{:016x}", l as u64)
    }
}

fn table_row(e: &Entry, keys_only: bool) -> Vec<String> {
    let mut row = vec![
        String::from_utf8_lossy(&e.key)
            .chars()
            .flat_map(char::escape_debug)
            .collect(),
        e.head.create_revision.to_string(),
        e.head.mod_revision.to_string(),
        e.head.version.to_string(),
        lease(e.head.lease),
    ];
    if !keys_only && let Some(v) = e.summary() {
        row.push(v);
    }
    row
}

/// `etcd-snapshot inspect`.
pub async fn inspect(a: &InspectArgs) -> Result<()> {
    let format = Format::parse(&a.output)?;
    if format == Format::Wide {
        anyhow::bail!("invalid output format: wide (inspect prints table, json or yaml)");
    }
    if let Some(other) = &a.diff {
        if a.rev.is_some() {
            bail!("--diff compares the latest revisions of both snapshots; drop --rev");
        }
        if a.kind.is_some() || a.namespace.is_some() {
            bail!(
                "--diff does not filter by --kind or --namespace; use --prefix (e.g. /registry/secrets/)"
            );
        }
        let old = open(&a.flags, a.snapshot.as_deref()).await?;
        let new = open(&a.flags, Some(other)).await?;
        let prefix = a.prefix.clone();
        let names = (old.info.name.clone(), new.info.name.clone());
        let keys_only = a.keys_only;
        let check = !a.skip_hash_check;
        return blocking(move || {
            // Both trailers are hashed beside the comparison, the new one after the old.
            checked_trailer(&old, check, || {
                checked_trailer(&new, check, || {
                    let (od, nd) = (old.db()?, new.db()?);
                    let report = inspect::diff(&od, &nd, prefix.as_deref().map(str::as_bytes))?;
                    print_diff(&report, &names, format, keys_only)
                })
            })
        })
        .await;
    }
    let opened = open(&a.flags, a.snapshot.as_deref()).await?;
    let opts = InspectOptions {
        prefix: a.prefix.clone().map(String::into_bytes),
        rev: a.rev,
        keys_only: a.keys_only,
        kind: a.kind.clone(),
        namespace: a.namespace.clone(),
    };
    let check = !a.skip_hash_check;
    // The trailer is hashed beside the listing (a raw file) or was checked while the file was
    // decompressed; a bad one is reported after the listing, as an error.
    blocking(move || checked_trailer(&opened, check, || list(&opened, &opts, format))).await
}

/// Runs `work` on `o` with its trailer checked beside it (unless `check` is off); a trailer
/// that is absent or does not match makes the outcome an error naming it.
fn checked_trailer(
    o: &Opened,
    check: bool,
    work: impl FnOnce() -> Result<()> + Send,
) -> Result<()> {
    let (done, trailer) = inspect::with_trailer(o, check, work);
    let problem = match trailer.transpose()? {
        Some(t) => t
            .problem()
            .map(|p| (p, matches!(t, Trailer::Absent { .. }))),
        None => None,
    };
    let name = &o.info.name;
    match (done, problem) {
        (done, None) => done,
        (Ok(()), Some((p, absent))) => bail!(
            "{name}: {p}; the output above may be wrong or incomplete{}",
            if absent {
                " (for a raw database file, member/snap/db, pass --skip-hash-check)"
            } else {
                ""
            }
        ),
        (Err(e), Some((p, _))) => Err(e.context(format!("{name}: {p}"))),
    }
}

/// Streams the listing: JSON and YAML one entry at a time; the table after all rows (its
/// columns are aligned), with value summaries of bounded length.
fn list(opened: &Opened, opts: &InspectOptions, format: Format) -> Result<()> {
    let db = opened.db()?;
    let listing = inspect::listing(&db, opts)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let w = |e: std::io::Error| etcdsnap_core::Error::Other(format!("writing the output: {e}"));
    let header = serde_json::json!({
        "revision": listing.revision(),
        "compacted_revision": listing.compacted_revision(),
    });
    match format {
        Format::Table | Format::Wide => {
            let mut rows = vec![
                ["KEY", "CREATE", "MOD", "VERSION", "LEASE", "VALUE"]
                    .iter()
                    .take(if opts.keys_only { 5 } else { 6 })
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            ];
            let n = listing.for_each(|e| {
                rows.push(table_row(e, opts.keys_only));
                Ok(())
            })?;
            out.write_all(table(&rows).as_bytes())?;
            out.flush()?;
            eprintln!(
                "{n} keys at revision {}{}",
                listing.revision(),
                listing
                    .compacted_revision()
                    .map(|c| format!(" (compacted at {c})"))
                    .unwrap_or_default()
            );
            if n == 0
                && let Some(kind) = &opts.kind
            {
                eprintln!(
                    "no object of kind or resource {kind:?}{} is in this snapshot at that revision: give a kind as Kubernetes spells it (Secret, ConfigMap, Deployment) or its resource (secrets); without --kind every key is listed",
                    opts.namespace
                        .as_ref()
                        .map(|ns| format!(" in namespace {ns:?}"))
                        .unwrap_or_default()
                );
            }
        }
        Format::Json => {
            write!(out, "{{\"header\":{header},\"kvs\":[")?;
            let mut first = true;
            let n = listing.for_each(|e| {
                let sep = if first { "\n" } else { ",\n" };
                first = false;
                write!(out, "{sep}{}", e.to_json()).map_err(w)
            })?;
            writeln!(out, "{}],\"count\":{n}}}", if first { "" } else { "\n" })?;
            out.flush()?;
        }
        Format::Yaml => {
            out.write_all(
                serde_saphyr::to_string(&serde_json::json!({ "header": header }))?.as_bytes(),
            )?;
            let mut first = true;
            let n = listing.for_each(|e| {
                if first {
                    out.write_all(b"kvs:\n").map_err(w)?;
                    first = false;
                }
                let item = serde_saphyr::to_string(&[e.to_json()])
                    .map_err(|x| etcdsnap_core::Error::Other(format!("YAML output: {x}")))?;
                out.write_all(item.as_bytes()).map_err(w)
            })?;
            if first {
                out.write_all(b"kvs: []\n")?;
            }
            writeln!(out, "count: {n}")?;
            out.flush()?;
        }
    }
    Ok(())
}

fn print_diff(
    r: &DiffReport,
    names: &(String, String),
    format: Format,
    keys_only: bool,
) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(r)?),
        Format::Yaml => print!("{}", serde_saphyr::to_string(r)?),
        Format::Table | Format::Wide => {
            let mut head = vec!["CHANGE", "KEY", "OLD MOD", "NEW MOD"];
            if !keys_only {
                head.push("DETAIL");
            }
            let mut rows = vec![head.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
            for c in &r.changes {
                let m = |s: &Option<inspect::Side>| {
                    s.as_ref()
                        .map_or("-".to_string(), |s| s.mod_revision.to_string())
                };
                let mut row = vec![
                    serde_json::to_value(c.change)?
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    c.key.chars().flat_map(char::escape_debug).collect(),
                    m(&c.old),
                    m(&c.new),
                ];
                if !keys_only {
                    row.push(if c.fields.is_empty() {
                        c.new
                            .as_ref()
                            .or(c.old.as_ref())
                            .map(|s| s.summary.clone())
                            .unwrap_or_default()
                    } else {
                        c.fields.join(", ")
                    });
                }
                rows.push(row);
            }
            if !r.changes.is_empty() {
                print!("{}", table(&rows));
            }
            println!(
                "{} added, {} removed, {} changed from {} (revision {}) to {} (revision {})",
                r.added, r.removed, r.changed, names.0, r.old_revision, names.1, r.new_revision
            );
        }
    }
    Ok(())
}

/// The newest successful snapshot in the snapshot dir, for a drill given no name.
async fn newest_local(flags: &ReadFlags) -> Result<String> {
    let dir = match &flags.dir {
        Some(d) => d.clone(),
        None => default_snapshot_dir(&flags.data_dir.clone().unwrap_or_else(default_data_dir)),
    };
    if let Some(remote) = super::cloud::remote_config(&flags.s3, &flags.cloud, None)? {
        bail!(
            "with a remote store ({}) give the snapshot to drill, by its name as `etcd-snapshot ls` prints it",
            remote.bucket
        );
    }
    let store = etcdsnap_core::store::local::LocalStore::new(dir.clone(), String::new());
    let newest = etcdsnap_core::drill::newest_snapshot(&store)
        .await
        .with_context(|| format!("cannot list the snapshot dir {}", dir.display()))?
        .with_context(|| {
            format!(
                "no snapshot in {} to drill: give a file, or the --dir or --data-dir that holds them",
                dir.display()
            )
        })?;
    Ok(dir.join(&newest.key).display().to_string())
}

/// `etcd-snapshot drill`.
pub async fn drill(a: &DrillArgs) -> Result<()> {
    let json = match a.output.as_str() {
        "json" => true,
        "table" | "" => false,
        other => bail!("invalid output format: {other} (drill prints table or json)"),
    };
    let arg = match &a.snapshot {
        Some(s) => s.clone(),
        None => newest_local(&a.flags).await?,
    };
    let source = source(&a.flags, &arg)?;
    let etcd_binary = etcdsnap_core::etcd::process::find_binary(a.tools.etcd_binary.as_deref())
        .context("a drill starts an etcd of its own on the restored copy")?;
    let tool = etcdsnap_core::restore::RestoreTool::any(
        Some(&etcd_binary),
        a.tools.etcdutl_binary.as_deref(),
        a.tools.etcdctl_binary.as_deref(),
    )?;
    let report = etcdsnap_core::drill::Drill {
        source,
        etcd_binary,
        tool,
        work_parent: std::env::temp_dir(),
    }
    .run()
    .await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!(
            "{}",
            table(&[
                vec!["SNAPSHOT".into(), report.name.clone()],
                vec!["LOCATION".into(), report.location.clone()],
                vec!["REVISION".into(), report.revision.to_string()],
                vec!["KEYS".into(), report.keys.to_string()],
                vec!["SHA-256".into(), report.sha256.clone()],
                vec!["SERVED BY".into(), format!("etcd {}", report.etcd_version)],
                vec!["RESTORE".into(), format!("{:.1}s", report.restore_seconds)],
                vec!["TOTAL".into(), format!("{:.1}s", report.seconds)],
            ])
        );
        println!(
            "Drill passed: the restored etcd serves the snapshot's {} keys at revision {}.",
            report.keys, report.revision
        );
    }
    Ok(())
}
