//! `etcdsnap member ls|remove`: the etcd members of a running server's cluster, through its
//! supervisor API (`GET /db/info`, `POST /db/member-remove`), authenticated by the token.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcdsnap_core::api::members::{ClusterInfo, RemoveRequest, Removed};
use etcdsnap_core::api::paths::{INFO_PATH, REMOVE_PATH};

use super::client::SupervisorClient;
use super::{Connection, MemberAction};

async fn connect(flags: &Connection) -> Result<SupervisorClient> {
    SupervisorClient::from_flags(flags, Duration::from_secs(60)).await
}

/// The member table: NAME, ID (hex, as etcdctl prints it), ROLE, PEER URLS, CLIENT URLS.
pub fn table(info: &ClusterInfo) -> String {
    let rows: Vec<[String; 5]> = info
        .members
        .iter()
        .map(|m| {
            [
                if m.name.is_empty() {
                    "(not started)".into()
                } else {
                    m.name.clone()
                },
                format!("{:x}", m.id),
                if m.is_learner { "learner" } else { "voter" }.into(),
                m.peer_urls.join(","),
                m.client_urls.join(","),
            ]
        })
        .collect();
    let head = ["NAME", "ID", "ROLE", "PEER URLS", "CLIENT URLS"];
    let mut widths = head.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i == 4 {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$} "));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(head);
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out
}

pub async fn run(action: MemberAction) -> Result<()> {
    match action {
        MemberAction::Ls(a) => {
            if !matches!(a.output.as_str(), "table" | "json") {
                bail!("invalid output format: {} (use table or json)", a.output);
            }
            let client = connect(&a.flags).await?;
            let body = client
                .request(reqwest::Method::GET, INFO_PATH, None)
                .await?;
            let info: ClusterInfo =
                serde_json::from_slice(&body).context("the server's member list")?;
            if a.output == "json" {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{}", table(&info));
            }
        }
        MemberAction::Remove(a) => {
            let client = connect(&a.flags).await?;
            for name in &a.names {
                let body = serde_json::to_vec(&RemoveRequest { name: name.clone() })?;
                let answer = client
                    .request(reqwest::Method::POST, REMOVE_PATH, Some(body))
                    .await?;
                let r: Removed = serde_json::from_slice(&answer).context("the server's answer")?;
                println!("Removed etcd member {} ({:x})", r.removed, r.id);
            }
        }
    }
    Ok(())
}
