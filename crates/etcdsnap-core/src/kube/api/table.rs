//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for (`Accept:
//! application/json;as=Table;v=v1;g=meta.k8s.io`), with the columns `kubectl get` shows for
//! each resource. ETCDSnapshotFile gets K3s's printer columns (NAME SNAPSHOTNAME NODE LOCATION
//! SIZE CREATIONTIME, read from `.status`, as fixed in K3s#12684) and, for `-o wide`, READY and
//! ERROR.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::resources::ResourceType;

fn column(name: &str, ty: &str, priority: i64, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

/// `5m`, `3h`, `2d`: how kubectl shows ages.
pub fn age(ts: &str) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(ts) else {
        return "<unknown>".into();
    };
    let secs = (Utc::now() - t.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn s(v: &Value) -> Value {
    match v {
        Value::Null => json!(""),
        Value::String(_) => v.clone(),
        other => json!(other.to_string()),
    }
}

fn columns(rt: &ResourceType) -> Vec<Value> {
    match rt.kind {
        "ETCDSnapshotFile" => vec![
            column("Name", "string", 0, "Name of the record"),
            column("SnapshotName", "string", 0, "Snapshot file name"),
            column("Node", "string", 0, "Node that holds the snapshot"),
            column("Location", "string", 0, "Where the snapshot is stored"),
            column("Size", "string", 0, "Size of the snapshot file"),
            column("CreationTime", "string", 0, "When the snapshot was taken"),
            column(
                "Ready",
                "boolean",
                1,
                "Whether the snapshot can be restored",
            ),
            column("Error", "string", 1, "Why the snapshot failed"),
        ],
        "Secret" => vec![
            column("Name", "string", 0, "Name"),
            column("Type", "string", 0, "Type of the secret"),
            column("Data", "integer", 0, "Number of data keys"),
            column("Age", "string", 0, "Age"),
        ],
        "ConfigMap" => vec![
            column("Name", "string", 0, "Name"),
            column("Data", "integer", 0, "Number of data keys"),
            column("Age", "string", 0, "Age"),
        ],
        _ => vec![
            column("Last Seen", "string", 0, "Last time the event was seen"),
            column("Type", "string", 0, "Normal or Warning"),
            column("Reason", "string", 0, "Reason"),
            column("Object", "string", 0, "The object the event is about"),
            column("Message", "string", 0, "Message"),
        ],
    }
}

fn cells(rt: &ResourceType, o: &Value) -> Vec<Value> {
    let m = &o["metadata"];
    let count = |v: &Value, w: &Value| {
        v.as_object().map_or(0, |x| x.len()) + w.as_object().map_or(0, |x| x.len())
    };
    match rt.kind {
        "ETCDSnapshotFile" => vec![
            s(&m["name"]),
            s(&o["spec"]["snapshotName"]),
            s(&o["spec"]["nodeName"]),
            s(&o["spec"]["location"]),
            s(&o["status"]["size"]),
            s(&o["status"]["creationTime"]),
            json!(o["status"]["readyToUse"].as_bool().unwrap_or(false)),
            s(&o["status"]["error"]["message"]),
        ],
        "Secret" => vec![
            s(&m["name"]),
            s(&o["type"]),
            json!(count(&o["data"], &Value::Null)),
            json!(age(m["creationTimestamp"].as_str().unwrap_or(""))),
        ],
        "ConfigMap" => vec![
            s(&m["name"]),
            json!(count(&o["data"], &o["binaryData"])),
            json!(age(m["creationTimestamp"].as_str().unwrap_or(""))),
        ],
        _ => vec![
            json!(age(o["lastTimestamp"].as_str().unwrap_or(""))),
            s(&o["type"]),
            s(&o["reason"]),
            json!(format!(
                "{}/{}",
                o["involvedObject"]["kind"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase(),
                o["involvedObject"]["name"].as_str().unwrap_or("")
            )),
            s(&o["message"]),
        ],
    }
}

/// The metadata kubectl reads from a row's object (namespace, labels for `--show-labels` and
/// `-L`, the name, age and identity). Annotations and finalizers stay out: kubectl's printer
/// decodes every row's object, and for 10,000 records they doubled its time.
fn row_metadata(m: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "labels",
    ] {
        if let Some(v) = m.get(k) {
            out.insert(k.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// One row of the Table of `o`.
pub fn row(rt: &ResourceType, o: &Value) -> Value {
    json!({
        "cells": cells(rt, o),
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": row_metadata(&o["metadata"]),
        },
    })
}

/// The Table fields before its rows: `{"kind":"Table",...,"rows":[` (a streamed Table puts
/// its metadata after the rows, as JSON allows).
pub fn head(rt: &ResourceType) -> String {
    format!(
        r#"{{"kind":"Table","apiVersion":"meta.k8s.io/v1","columnDefinitions":{},"rows":["#,
        Value::Array(columns(rt))
    )
}

/// A Table of `items`; each row carries the object's metadata, as kubectl expects.
pub fn table(
    rt: &ResourceType,
    items: &[Value],
    resource_version: &str,
    next: Option<&str>,
) -> Value {
    let rows: Vec<Value> = items.iter().map(|o| row(rt, o)).collect();
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(n) = next {
        meta["continue"] = json!(n);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns(rt),
        "rows": rows,
    })
}

/// Whether an Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p = part.replace(' ', "");
        p.contains("as=Table") && p.contains("g=meta.k8s.io") && p.contains("v=v1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::api::resources::SNAPSHOT_FILES;

    #[test]
    fn snapshot_rows_have_k3s_columns() {
        let o = json!({
            "metadata": {"name": "local-on-demand-n1-1-abcdef"},
            "spec": {"snapshotName": "on-demand-n1-1", "nodeName": "n1", "location": "file:///x"},
            "status": {"size": "4128", "creationTime": "2024-10-30T17:20:16Z", "readyToUse": true},
        });
        let t = table(&SNAPSHOT_FILES, &[o], "42", Some("next"));
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["priority"] == 0)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "SnapshotName",
                "Node",
                "Location",
                "Size",
                "CreationTime"
            ]
        );
        assert_eq!(t["rows"][0]["cells"][4], "4128");
        assert_eq!(t["metadata"]["continue"], "next");
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
