//! The patches kubectl sends: JSON merge patch (RFC 7386), strategic merge patch (which, for
//! the objects we serve — maps of strings and the server's own records — is a merge patch:
//! there are no lists merged by key), and JSON patch (RFC 6902).

use serde_json::Value;

/// Applies a JSON merge patch: objects merge recursively, `null` removes, anything else
/// replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("an object");
            for (k, v) in p {
                if k.starts_with('$') {
                    // Strategic-merge directives ($patch, $retainKeys, ...) have nothing to
                    // steer in our objects.
                    continue;
                }
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn pointer_parts(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("JSON patch path {path:?} must start with /"))?;
    Ok(rest
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_of<'a>(doc: &'a mut Value, parts: &[String]) -> Result<&'a mut Value, String> {
    let mut v = doc;
    for p in &parts[..parts.len().saturating_sub(1)] {
        v = match v {
            Value::Object(m) => m
                .get_mut(p)
                .ok_or_else(|| format!("no {p:?} in the object"))?,
            Value::Array(a) => {
                let i: usize = p.parse().map_err(|_| format!("bad index {p:?}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("index {i} out of range"))?
            }
            _ => return Err(format!("cannot descend into {p:?}")),
        };
    }
    Ok(v)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let parts = pointer_parts(path)?;
    let Some(last) = parts.last() else {
        *doc = value;
        return Ok(());
    };
    match parent_of(doc, &parts)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last.parse().map_err(|_| format!("bad index {last:?}"))?;
            if i > a.len() {
                return Err(format!("index {i} out of range"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("cannot add at {path:?}")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let parts = pointer_parts(path)?;
    let last = parts.last().ok_or("cannot remove the whole document")?;
    match parent_of(doc, &parts)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("no {path:?} to remove")),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| format!("bad index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("index {i} out of range"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("cannot remove {path:?}")),
    }
}

/// Applies a JSON patch (a list of operations); the document is unchanged on error.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch is a list of operations")?;
    let mut work = doc.clone();
    for op in ops {
        let path = op["path"].as_str().ok_or("each operation needs a path")?;
        match op["op"].as_str().unwrap_or("") {
            "add" => add(&mut work, path, op["value"].clone())?,
            "remove" => {
                remove(&mut work, path)?;
            }
            "replace" => {
                remove(&mut work, path)?;
                add(&mut work, path, op["value"].clone())?;
            }
            "test" => {
                if work.pointer(path) != Some(&op["value"]) {
                    return Err(format!("test of {path:?} failed"));
                }
            }
            "move" | "copy" => {
                let from = op["from"].as_str().ok_or("move and copy need from")?;
                let v = if op["op"] == "move" {
                    remove(&mut work, from)?
                } else {
                    work.pointer(from).cloned().ok_or(format!("no {from:?}"))?
                };
                add(&mut work, path, v)?;
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    *doc = work;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge(&mut t, &json!({"a": "z", "c": {"f": null}, "$patch": "x"}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1, 2]});
        merge(&mut t, &json!({"a": [3]}));
        assert_eq!(t, json!({"a": [3]}));
    }

    #[test]
    fn json_patch_rfc6902() {
        let mut d = json!({"data": {"a": "1"}, "list": [1, 2]});
        json_patch(
            &mut d,
            &json!([
                {"op": "add", "path": "/data/b", "value": "2"},
                {"op": "replace", "path": "/data/a", "value": "9"},
                {"op": "remove", "path": "/list/0"},
                {"op": "add", "path": "/list/-", "value": 3},
                {"op": "test", "path": "/data/b", "value": "2"},
                {"op": "copy", "from": "/data/a", "path": "/data/c"},
                {"op": "add", "path": "/metadata~1x", "value": 1}
            ]),
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"data": {"a": "9", "b": "2", "c": "9"}, "list": [2, 3], "metadata/x": 1})
        );
        let before = d.clone();
        assert!(json_patch(&mut d, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(
            json_patch(
                &mut d,
                &json!([{"op": "test", "path": "/data/a", "value": "0"}])
            )
            .is_err()
        );
        assert_eq!(d, before, "a failed patch changes nothing");
    }
}
