//! Output of `etcd-snapshot ls`: K3s's aligned table (columns padded by one space), the same
//! with the revision and key count of each snapshot (`-o wide`, etcdsnap's), or the
//! `ETCDSnapshotFileList` as JSON or YAML.

use anyhow::{Result, bail};
use chrono::{DateTime, Local};
use etcdsnap_core::records::EtcdSnapshotFileList;

/// Output formats of `ls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    /// The table with REVISION and KEYS (known for raw snapshots this server saved).
    Wide,
    Json,
    Yaml,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        Ok(match s {
            "" | "table" | "standard" => Format::Table,
            "wide" => Format::Wide,
            "json" => Format::Json,
            "yaml" => Format::Yaml,
            other => bail!("invalid output format: {other}"),
        })
    }
}

/// Lays out rows as columns separated by at least one space; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 1));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn local_time(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&Local)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// Renders the list in the chosen format.
pub fn render_list(list: &EtcdSnapshotFileList, format: Format) -> Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(list)? + "\n",
        Format::Yaml => serde_saphyr::to_string(list)?,
        Format::Table | Format::Wide => {
            let wide = format == Format::Wide;
            let mut head: Vec<String> = ["Name", "Location", "Size", "Created"]
                .map(String::from)
                .to_vec();
            if wide {
                head.extend(["Revision".to_string(), "Keys".to_string()]);
            }
            let mut rows = vec![head];
            for item in &list.items {
                let mut row = vec![
                    item.spec.snapshot_name.clone(),
                    item.spec.location.clone(),
                    item.status.size.clone().unwrap_or_else(|| "0".into()),
                    item.status
                        .creation_time
                        .as_deref()
                        .map(local_time)
                        .unwrap_or_default(),
                ];
                if wide {
                    let known = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                    row.push(known(item.status.revision.map(|r| r.to_string())));
                    row.push(known(item.status.total_key.map(|k| k.to_string())));
                }
                rows.push(row);
            }
            table(&rows)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_by_one_space() {
        let rows = vec![
            vec!["Name".into(), "Size".into()],
            vec!["a-long-name".into(), "10".into()],
        ];
        assert_eq!(table(&rows), "Name        Size\na-long-name 10\n");
    }

    #[test]
    fn formats() {
        assert_eq!(Format::parse("json").unwrap(), Format::Json);
        assert_eq!(Format::parse("table").unwrap(), Format::Table);
        assert_eq!(
            Format::parse("xml").unwrap_err().to_string(),
            "invalid output format: xml"
        );
    }
}
