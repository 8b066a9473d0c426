//! `inspect --diff`: two snapshots' latest key spaces compared, key by key.

use super::*;

/// How a key differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One side of a change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value_size: usize,
    pub value_type: String,
    pub summary: String,
}

/// A key that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub key: String,
    pub change: ChangeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Side>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Side>,
    /// For changed JSON and Kubernetes objects: the fields that differ (dotted paths, three
    /// levels deep at most); `lease` when the lease changed; `value` for other values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// `--diff`: what changed from `old` to `new`, both at their latest revisions.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub old_revision: i64,
    pub new_revision: i64,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub changes: Vec<Change>,
}

fn side(head: &KeyHead, value: &[u8]) -> Side {
    let g = glance(value);
    Side {
        create_revision: head.create_revision,
        mod_revision: head.mod_revision,
        version: head.version,
        lease: head.lease,
        value_size: value.len(),
        value_type: g.type_name.to_string(),
        summary: g.summary,
    }
}

fn as_object(view: &ValueView) -> Option<&Value> {
    match view {
        ValueView::Kube(o) => Some(&o.object),
        ValueView::Json(j) => Some(j),
        _ => None,
    }
}

/// Dotted paths where `a` and `b` differ, up to `depth` levels.
pub(super) fn differing(a: &Value, b: &Value, path: &str, depth: usize, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    if let (Value::Object(x), Value::Object(y)) = (a, b)
        && depth > 0
    {
        let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            differing(
                x.get(k).unwrap_or(&Value::Null),
                y.get(k).unwrap_or(&Value::Null),
                &p,
                depth - 1,
                out,
            );
        }
        return;
    }
    out.push(if path.is_empty() {
        "value".into()
    } else {
        path.to_string()
    });
}

/// Compares the latest key spaces of `old` and `new` (keys under `prefix`, if given). Values of
/// keys present in both are compared byte for byte, one pair at a time.
pub fn diff(old: &Db, new: &Db, prefix: Option<&[u8]>) -> Result<DiffReport> {
    let keep = |k: &[u8]| prefix.is_none_or(|p| k.starts_with(p));
    let a: Heads = old.heads_at(None, keep)?;
    let b: Heads = new.heads_at(None, keep)?;
    let mut report = DiffReport {
        old_revision: a.revision,
        new_revision: b.revision,
        added: 0,
        removed: 0,
        changed: 0,
        changes: Vec::new(),
    };
    let show = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    let mut ia = a.keys.iter().peekable();
    let mut ib = b.keys.iter().peekable();
    loop {
        let order = match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
        };
        match order {
            std::cmp::Ordering::Less => {
                let Some((k, h)) = ia.next() else { break };
                let v = old.kv_at(h.revision)?.value;
                report.removed += 1;
                report.changes.push(Change {
                    key: show(k),
                    change: ChangeKind::Removed,
                    old: Some(side(h, &v)),
                    new: None,
                    fields: Vec::new(),
                });
            }
            std::cmp::Ordering::Greater => {
                let Some((k, h)) = ib.next() else { break };
                let v = new.kv_at(h.revision)?.value;
                report.added += 1;
                report.changes.push(Change {
                    key: show(k),
                    change: ChangeKind::Added,
                    old: None,
                    new: Some(side(h, &v)),
                    fields: Vec::new(),
                });
            }
            std::cmp::Ordering::Equal => {
                let (Some((k, ha)), Some((_, hb))) = (ia.next(), ib.next()) else {
                    break;
                };
                let va = old.kv_at(ha.revision)?.value;
                let vb = new.kv_at(hb.revision)?.value;
                if va == vb && ha.lease == hb.lease {
                    continue;
                }
                let mut fields = Vec::new();
                if va != vb {
                    let (xa, xb) = (ValueView::of(&va), ValueView::of(&vb));
                    match (as_object(&xa), as_object(&xb)) {
                        (Some(oa), Some(ob)) => differing(oa, ob, "", 3, &mut fields),
                        _ => fields.push("value".into()),
                    }
                    if fields.is_empty() {
                        // Same decoded object, different bytes (encoding, field order).
                        fields.push("value".into());
                    }
                }
                if ha.lease != hb.lease {
                    fields.push("lease".into());
                }
                report.changed += 1;
                report.changes.push(Change {
                    key: show(k),
                    change: ChangeKind::Changed,
                    old: Some(side(ha, &va)),
                    new: Some(side(hb, &vb)),
                    fields,
                });
            }
        }
    }
    Ok(report)
}
