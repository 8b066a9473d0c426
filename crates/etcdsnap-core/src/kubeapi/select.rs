//! Label and field selectors as `kubectl -l` and `kubectl describe` send them: `k=v`, `k==v`,
//! `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)` for labels; equality and inequality of
//! dotted paths for fields.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed selector: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Req>);

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_of(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl Selector {
    /// Parses a label selector; `Err` names the part that does not parse.
    pub fn labels(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let req = if let Some((k, v)) = p.split_once("!=") {
                Req::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = p.split_once(" notin ") {
                Req::NotIn(
                    k.trim().into(),
                    set_of(rest).ok_or(format!("bad set in {p:?}"))?,
                )
            } else if let Some((k, rest)) = p.split_once(" in ") {
                Req::In(
                    k.trim().into(),
                    set_of(rest).ok_or(format!("bad set in {p:?}"))?,
                )
            } else if let Some(k) = p.strip_prefix('!') {
                Req::Absent(k.trim().into())
            } else if p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Req::Exists(p.into())
            } else {
                return Err(format!("unable to parse requirement {p:?}"));
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    /// Parses a field selector (equality and inequality only, as the API server allows).
    pub fn fields(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let req = if let Some((k, v)) = p.split_once("!=") {
                Req::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Req::Eq(k.trim().into(), v.trim().into())
            } else {
                return Err(format!("invalid field selector {p:?}: use field=value"));
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    /// Whether `lookup` (a key's value, if any) satisfies every requirement.
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            Req::Ne(k, v) => lookup(k).as_deref() != Some(v.as_str()),
            Req::Exists(k) => lookup(k).is_some(),
            Req::Absent(k) => lookup(k).is_none(),
            Req::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.contains(&x)),
        })
    }

    /// Against an object's labels.
    pub fn matches_labels(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.matches(|k| labels.get(k).and_then(Value::as_str).map(str::to_string))
    }

    /// Against an object's fields (`a.b.c` paths; a missing field is the empty string, as the
    /// API server treats `involvedObject.namespace=` for cluster-scoped objects).
    pub fn matches_fields(&self, obj: &Value) -> bool {
        self.matches(|path| {
            let mut v = obj;
            for part in path.split('.') {
                v = &v[part];
            }
            Some(match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let o = json!({"metadata": {"labels": {"a": "1", "etcd.k3s.cattle.io/snapshot-storage-node": "s3"}}});
        let yes = [
            "a=1",
            "a==1",
            "a!=2",
            "a",
            "!b",
            "a in (1,2)",
            "a notin (3)",
            "etcd.k3s.cattle.io/snapshot-storage-node=s3,a=1",
            "",
        ];
        for s in yes {
            assert!(Selector::labels(s).unwrap().matches_labels(&o), "{s}");
        }
        for s in ["a=2", "b", "!a", "a in (3)", "a notin (1)", "a=1,b=2"] {
            assert!(!Selector::labels(s).unwrap().matches_labels(&o), "{s}");
        }
        assert!(Selector::labels("a in 1").is_err());
        assert!(Selector::labels("a b c").is_err());
    }

    #[test]
    fn field_selectors() {
        let ev = json!({"involvedObject": {"name": "x", "kind": "ETCDSnapshotFile"}, "metadata": {"namespace": "default"}});
        let s = Selector::fields(
            "involvedObject.name=x,involvedObject.namespace=,involvedObject.kind=ETCDSnapshotFile",
        )
        .unwrap();
        assert!(s.matches_fields(&ev));
        assert!(
            !Selector::fields("involvedObject.name=y")
                .unwrap()
                .matches_fields(&ev)
        );
        assert!(
            Selector::fields("metadata.namespace!=kube-system")
                .unwrap()
                .matches_fields(&ev)
        );
        assert!(Selector::fields("nonsense").is_err());
    }
}
