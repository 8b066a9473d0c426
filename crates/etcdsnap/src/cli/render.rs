//! Output of `etcd-snapshot ls`: K3s's aligned table (columns padded by one space), or the
//! `ETCDSnapshotFileList` as JSON or YAML.

use anyhow::{Result, bail};
use chrono::{DateTime, Local};
use etcdsnap_core::records::EtcdSnapshotFileList;

/// Output formats of `ls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        Ok(match s {
            "" | "table" | "standard" => Format::Table,
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
        Format::Table => {
            let mut rows = vec![vec![
                "Name".to_string(),
                "Location".to_string(),
                "Size".to_string(),
                "Created".to_string(),
            ]];
            for item in &list.items {
                rows.push(vec![
                    item.spec.snapshot_name.clone(),
                    item.spec.location.clone(),
                    item.status.size.clone().unwrap_or_else(|| "0".into()),
                    item.status
                        .creation_time
                        .as_deref()
                        .map(local_time)
                        .unwrap_or_default(),
                ]);
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
