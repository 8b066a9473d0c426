//! One config file read into top-level keys and flag-ready values (see the rules in the parent
//! module): a YAML document of scalars and lists, duplicate keys resolved the way K3s's YAML
//! library does.

use std::fmt;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Flat {
    Null,
    One(String),
    List(Vec<String>),
}

impl Flat {
    /// The items a `+` key appends: a null adds nothing.
    pub(super) fn into_items(self) -> Vec<String> {
        match self {
            Flat::Null => Vec::new(),
            Flat::One(value) => vec![value],
            Flat::List(items) => items,
        }
    }
}

/// A config file holds flags; anything near this size is a wrong file (a log, a snapshot), and
/// reading it whole would only end in the YAML reader's node budget.
pub(super) const MAX_CONFIG_BYTES: u64 = 1 << 20;

pub(super) fn read_file(path: &Path) -> anyhow::Result<Vec<(String, Flat)>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?
        .len();
    if size > MAX_CONFIG_BYTES {
        bail!(
            "config file {} is {size} bytes; a config file holds flags and may be at most {MAX_CONFIG_BYTES} bytes (1 MiB): check that -c/--config (or ETCDSNAP_CONFIG_FILE) names the right file",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let mut options = serde_saphyr::Options::default();
    // K3s's YAML library lets a later duplicate key win; our visitor does the same.
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    // Keep spellings a flag may need verbatim (`0755`, `1_000`, `.inf`) as text.
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
    // YAML 1.2 booleans only, so `no` or `n` stays text for string flags (the "Norway problem"
    // of K3s's YAML 1.1 parser); boolean flags still read yes/no/on/off through clap.
    options.strict_booleans = true;
    // The snippet would label the file `<input>`; line and column are in the message anyway.
    options.with_snippet = false;
    let document: Option<Document> = serde_saphyr::from_str_with_options(&text, options)
        .map_err(|e| {
            let e = e.to_string();
            if e.contains("budget") {
                // Aliases that expand without end, or nesting beyond reason.
                anyhow!(
                    "config file {} expands to too many YAML nodes (aliases or nesting): {e}; a config file lists flags as plain `key: value` lines",
                    path.display()
                )
            } else {
                anyhow!("invalid YAML in config file {}: {e}", path.display())
            }
        })?;
    let Some(Document(entries)) = document else {
        return Ok(Vec::new());
    };
    entries
        .into_iter()
        .map(|(key, value)| {
            let key = match key {
                Node::Scalar(key) => key,
                Node::Null => String::new(),
                Node::List(_) | Node::Map => bail!(
                    "config file {}: a key is a list or mapping; keys must be flag names",
                    path.display()
                ),
            };
            let flat = match value {
                Node::Null => Flat::Null,
                Node::Scalar(value) => Flat::One(value),
                Node::List(items) => Flat::List(
                    items
                        .into_iter()
                        .map(|item| match item {
                            Node::Null => Ok(String::new()),
                            Node::Scalar(value) => Ok(value),
                            Node::List(_) | Node::Map => Err(anyhow!(
                                "config file {}: key {key:?} has a list or mapping inside its list; a flag takes plain values",
                                path.display()
                            )),
                        })
                        .collect::<anyhow::Result<_>>()?,
                ),
                Node::Map => bail!(
                    "config file {}: key {key:?} holds a mapping; a flag takes a plain value or a list (only top-level keys are flags)",
                    path.display()
                ),
            };
            Ok((key, flat))
        })
        .collect()
}

/// The top level of a config file: a mapping, in file order.
struct Document(Vec<(Node, Node)>);

/// A YAML node, with scalars already turned into flag text.
enum Node {
    Null,
    Scalar(String),
    List(Vec<Node>),
    Map,
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DocumentVisitor;
        impl<'de> Visitor<'de> for DocumentVisitor {
            type Value = Document;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of flag names to values at the top level")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<Node, Node>()? {
                    entries.push(entry);
                }
                Ok(Document(entries))
            }
        }
        deserializer.deserialize_map(DocumentVisitor)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean, list or mapping")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Node::Map)
    }
}
