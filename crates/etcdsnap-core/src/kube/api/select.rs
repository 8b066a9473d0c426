//! Label and field selectors as kubectl and client libraries send them, parsed to the grammar
//! the Kubernetes API server accepts and refused where it refuses (a 400 naming the problem,
//! never "no resources" for a selector that means nothing):
//! * labels: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, `k>1`, `k<1`,
//!   joined by commas; keys are qualified names (`[prefix/]name`), values label values;
//! * fields: `path=value`, `path==value`, `path!=value`, joined by commas (a `\` escapes `,`
//!   `=` `!` and `\` in values), where `path` must be one of the fields the resource supports
//!   ([`supported_fields`]), as the API server allows.

use serde_json::Value;

use super::resources::ResourceType;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed selector: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Req>);

/// The fields a field selector may name for `rt`, as in Kubernetes: `metadata.name` and
/// `metadata.namespace` everywhere (custom resources included), `type` for Secrets, the
/// involved object, reason, source and type for Events.
pub fn supported_fields(rt: &ResourceType) -> &'static [&'static str] {
    match rt.plural {
        "secrets" => &["metadata.name", "metadata.namespace", "type"],
        "events" => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        _ => &["metadata.name", "metadata.namespace"],
    }
}

/// One token of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    In,
    NotIn,
    Not,
    Eq,
    EqEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

impl Tok {
    /// The text the token came from, as error messages quote it.
    fn text(&self) -> &str {
        match self {
            Tok::Ident(s) => s,
            Tok::In => "in",
            Tok::NotIn => "notin",
            Tok::Not => "!",
            Tok::Eq => "=",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Gt => ">",
            Tok::Lt => "<",
            Tok::Open => "(",
            Tok::Close => ")",
            Tok::Comma => ",",
            Tok::End => "",
        }
    }

    /// Where a value is expected, `in` and `notin` are plain words.
    fn into_value(self) -> Tok {
        match self {
            Tok::In => Tok::Ident("in".into()),
            Tok::NotIn => Tok::Ident("notin".into()),
            t => t,
        }
    }
}

fn special(c: char) -> bool {
    "=!(),<>".contains(c)
}

fn lex(s: &str) -> Vec<Tok> {
    let chars: Vec<char> = s.chars().collect();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            ('!', Some('=')) => (Tok::NotEq, 2),
            ('=', Some('=')) => (Tok::EqEq, 2),
            ('!', _) => (Tok::Not, 1),
            ('=', _) => (Tok::Eq, 1),
            ('>', _) => (Tok::Gt, 1),
            ('<', _) => (Tok::Lt, 1),
            ('(', _) => (Tok::Open, 1),
            (')', _) => (Tok::Close, 1),
            (',', _) => (Tok::Comma, 1),
            _ => {
                let word: String = chars[i..]
                    .iter()
                    .take_while(|c| !c.is_whitespace() && !special(**c))
                    .collect();
                let len = word.chars().count();
                let tok = match word.as_str() {
                    "in" => Tok::In,
                    "notin" => Tok::NotIn,
                    _ => Tok::Ident(word),
                };
                (tok, len)
            }
        };
        out.push(tok);
        i += len;
    }
    out
}

/// A recursive-descent reader of the label selector grammar.
struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Tok {
        self.toks.get(self.pos).cloned().unwrap_or(Tok::End)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek();
        self.pos += 1;
        t
    }

    fn selector(&mut self) -> Result<Vec<Req>, String> {
        let mut reqs = Vec::new();
        loop {
            match self.peek().into_value() {
                Tok::End => return Ok(reqs),
                Tok::Ident(_) | Tok::Not => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    match self.next().into_value() {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => match self.peek().into_value() {
                            Tok::Ident(_) | Tok::Not => {}
                            t => {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.text()
                                ));
                            }
                        },
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.text()
                            ));
                        }
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.text()
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Req, String> {
        let mut tok = self.next().into_value();
        let absent = tok == Tok::Not;
        if absent {
            tok = self.next().into_value();
        }
        let Tok::Ident(key) = tok else {
            return Err(format!("found '{}', expected: identifier", tok.text()));
        };
        check_key(&key)?;
        if absent {
            return Ok(Req::Absent(key));
        }
        if matches!(self.peek().into_value(), Tok::End | Tok::Comma) {
            return Ok(Req::Exists(key));
        }
        let op = self.next();
        match op {
            Tok::In | Tok::NotIn => {
                let set = self.set()?;
                if set.is_empty() {
                    return Err(format!(
                        "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty (key {key:?})"
                    ));
                }
                for v in &set {
                    check_value(v)?;
                }
                Ok(if op == Tok::In {
                    Req::In(key, set)
                } else {
                    Req::NotIn(key, set)
                })
            }
            Tok::Eq | Tok::EqEq | Tok::NotEq | Tok::Gt | Tok::Lt => {
                let value = self.exact_value()?;
                if matches!(op, Tok::Gt | Tok::Lt) {
                    let n: i64 = value.parse().map_err(|_| {
                        format!(
                            "values[0]: Invalid value: {value:?}: for 'gt', 'lt' operators, the value must be an integer"
                        )
                    })?;
                    return Ok(if op == Tok::Gt {
                        Req::Gt(key, n)
                    } else {
                        Req::Lt(key, n)
                    });
                }
                check_value(&value)?;
                Ok(if op == Tok::NotEq {
                    Req::Ne(key, value)
                } else {
                    Req::Eq(key, value)
                })
            }
            t => Err(format!(
                "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                t.text()
            )),
        }
    }

    /// `(a,b,…)`; empty members (`(,a)`) are the empty value.
    fn set(&mut self) -> Result<Vec<String>, String> {
        let t = self.next().into_value();
        if t != Tok::Open {
            return Err(format!("found '{}', expected: '('", t.text()));
        }
        let mut set: Vec<String> = Vec::new();
        let push = |set: &mut Vec<String>, v: String| {
            if !set.contains(&v) {
                set.push(v);
            }
        };
        if self.peek().into_value() == Tok::Close {
            self.next();
            return Ok(set);
        }
        let mut want_value = true;
        loop {
            match self.next().into_value() {
                Tok::Ident(v) if want_value => {
                    push(&mut set, v);
                    want_value = false;
                }
                Tok::Comma => {
                    if want_value {
                        push(&mut set, String::new());
                    }
                    want_value = true;
                }
                Tok::Close => {
                    if want_value {
                        push(&mut set, String::new());
                    }
                    return Ok(set);
                }
                t if want_value => {
                    return Err(format!(
                        "found '{}', expected: ',', ')' or identifier",
                        t.text()
                    ));
                }
                t => return Err(format!("found '{}', expected: ',' or ')'", t.text())),
            }
        }
    }

    /// The value after `=`, `==`, `!=`, `>`, `<`: a word, or nothing (the empty value).
    fn exact_value(&mut self) -> Result<String, String> {
        match self.peek().into_value() {
            Tok::End | Tok::Comma => Ok(String::new()),
            Tok::Ident(v) => {
                self.next();
                Ok(v)
            }
            t => Err(format!("found '{}', expected: identifier", t.text())),
        }
    }
}

/// A name part of a label key or a label value: at most 63 characters, alphanumerics, `-`,
/// `_` and `.`, starting and ending with an alphanumeric.
fn name_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(crate::naming::is_dns1123_subdomain);
    if !prefix_ok || !name_part_ok(name) {
        return Err(format!(
            "key: Invalid value: {key:?}: a label key is an optional DNS subdomain prefix and '/', then a name of at most 63 characters: alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric (e.g. 'app' or 'example.com/app')"
        ));
    }
    Ok(())
}

fn check_value(v: &str) -> Result<(), String> {
    if !v.is_empty() && !name_part_ok(v) {
        return Err(format!(
            "values[0]: Invalid value: {v:?}: a label value must be empty or at most 63 characters: alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

/// Splits a field selector on the commas not escaped by `\`.
fn split_terms(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut escaped) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        match c {
            _ if escaped => {
                cur.push('\\');
                cur.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if escaped {
        cur.push('\\');
    }
    out.push(cur);
    out
}

/// A field selector value with its `\` escapes resolved.
fn unescape_field_value(v: &str) -> Result<String, String> {
    let (mut out, mut it) = (String::new(), v.chars());
    while let Some(c) = it.next() {
        if c != '\\' {
            if matches!(c, ',' | '=') {
                return Err(format!(
                    "invalid field selector value {v:?}: unescaped {c:?} (write \\{c})"
                ));
            }
            out.push(c);
            continue;
        }
        match it.next() {
            Some(e @ ('\\' | ',' | '=')) => out.push(e),
            Some(e) => {
                return Err(format!(
                    "invalid field selector value {v:?}: invalid escape sequence \\{e}"
                ));
            }
            None => {
                return Err(format!(
                    "invalid field selector value {v:?}: it ends with an escape character"
                ));
            }
        }
    }
    Ok(out)
}

impl Selector {
    /// Parses a label selector; `Err` is the message of the API server's 400, naming the part
    /// that does not parse.
    pub fn labels(s: &str) -> Result<Selector, String> {
        let mut p = Parser {
            toks: lex(s),
            pos: 0,
        };
        Ok(Selector(p.selector()?))
    }

    /// Parses a field selector for `rt` (equality and inequality only, as the API server
    /// allows); a field `rt` does not support is refused, as the API server refuses it.
    pub fn fields(s: &str, rt: &ResourceType) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Selector(reqs));
        }
        for term in split_terms(s) {
            let op_at = term.char_indices().find_map(|(i, _)| {
                ["!=", "==", "="]
                    .into_iter()
                    .find(|op| term[i..].starts_with(op))
                    .map(|op| (i, op))
            });
            let Some((i, op)) = op_at else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}' (use field=value or field!=value)"
                ));
            };
            let (field, value) = (term[..i].trim(), &term[i + op.len()..]);
            if !supported_fields(rt).contains(&field) {
                return Err(format!(
                    "field label not supported: {field} ({} support {})",
                    rt.plural,
                    supported_fields(rt).join(", ")
                ));
            }
            let field = match field {
                "source" => "source.component".to_string(),
                f => f.to_string(),
            };
            let value = unescape_field_value(value)?;
            reqs.push(if op == "!=" {
                Req::Ne(field, value)
            } else {
                Req::Eq(field, value)
            });
        }
        Ok(Selector(reqs))
    }

    /// Whether `lookup` (a key's value, if any) satisfies every requirement.
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        let num = |k: &str| lookup(k).and_then(|v| v.parse::<i64>().ok());
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            Req::Ne(k, v) => lookup(k).as_deref() != Some(v.as_str()),
            Req::Exists(k) => lookup(k).is_some(),
            Req::Absent(k) => lookup(k).is_none(),
            Req::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.contains(&x)),
            Req::Gt(k, n) => num(k).is_some_and(|x| x > *n),
            Req::Lt(k, n) => num(k).is_some_and(|x| x < *n),
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
    use crate::kube::api::resources::{CONFIGMAPS, EVENTS, SECRETS, SNAPSHOT_FILES};
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
            "a in (1, 2)",
            "a>0",
            "a<2",
            "etcd.k3s.cattle.io/snapshot-storage-node=s3,a=1",
            "etcd.k3s.cattle.io/snapshot-storage-node in (s3, local)",
            "b notin (x)",
            "",
        ];
        for s in yes {
            assert!(Selector::labels(s).unwrap().matches_labels(&o), "{s}");
        }
        for s in [
            "a=2",
            "b",
            "!a",
            "a in (3)",
            "a notin (1)",
            "a=1,b=2",
            "a>1",
            "b<5",
            "a=",
        ] {
            assert!(!Selector::labels(s).unwrap().matches_labels(&o), "{s}");
        }
    }

    #[test]
    fn label_selectors_kubernetes_refuses() {
        let bad = [
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin",
            ),
            (
                "=x",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            (
                "a in (b",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            ("a in 1", "found '1', expected: '('"),
            ("a in ()", "values set can't be empty"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            ("a,", "found '', expected: identifier after ','"),
            ("a=b=c", "found '=', expected: ',' or 'end of string'"),
            ("A_/b=x", "key: Invalid value: \"A_/b\""),
            ("-a=x", "key: Invalid value"),
            ("a=-x", "values[0]: Invalid value: \"-x\""),
            ("a>x", "the value must be an integer"),
            ("!", "found '', expected: identifier"),
            (")", "found ')', expected: !, identifier"),
        ];
        for (s, want) in bad {
            let e = Selector::labels(s).unwrap_err();
            assert!(e.contains(want), "{s:?}: {e}");
        }
    }

    #[test]
    fn field_selectors() {
        let ev = json!({"involvedObject": {"name": "x", "kind": "ETCDSnapshotFile"}, "metadata": {"namespace": "default"}, "source": {"component": "etcdsnap"}});
        let s = Selector::fields(
            "involvedObject.name=x,involvedObject.namespace=,involvedObject.kind=ETCDSnapshotFile,source=etcdsnap",
            &EVENTS,
        )
        .unwrap();
        assert!(s.matches_fields(&ev));
        assert!(
            !Selector::fields("involvedObject.name=y", &EVENTS)
                .unwrap()
                .matches_fields(&ev)
        );
        assert!(
            Selector::fields("metadata.namespace!=kube-system", &EVENTS)
                .unwrap()
                .matches_fields(&ev)
        );
        let sec = json!({"metadata": {"name": "a,b"}, "type": "Opaque"});
        assert!(
            Selector::fields("type=Opaque,metadata.name==a\\,b", &SECRETS)
                .unwrap()
                .matches_fields(&sec)
        );
        assert!(
            Selector::fields("", &CONFIGMAPS)
                .unwrap()
                .matches_fields(&sec)
        );
    }

    #[test]
    fn field_selectors_kubernetes_refuses() {
        let bad = [
            ("nonsense", &EVENTS, "can't understand 'nonsense'"),
            ("foo=bar", &SECRETS, "field label not supported: foo"),
            (
                "type=Opaque",
                &CONFIGMAPS,
                "field label not supported: type",
            ),
            (
                "spec.nodeName=n1",
                &SNAPSHOT_FILES,
                "field label not supported: spec.nodeName",
            ),
            ("=x", &SECRETS, "field label not supported: "),
            ("metadata.name=a\\x", &SECRETS, "invalid escape sequence"),
        ];
        for (s, rt, want) in bad {
            let e = Selector::fields(s, rt).unwrap_err();
            assert!(e.contains(want), "{s:?}: {e}");
        }
    }
}
