//! Config-file layering, K3s style: YAML keys become command-line flags placed right after the
//! command words, so flags typed on the command line (which come later) win.
//!
//! Rules:
//! * the file is the value of `-c`/`--config` in argv, else `$ETCDSNAP_CONFIG_FILE`, else
//!   `/etc/etcdsnap/config.yaml`; a missing default file is fine, a missing chosen file is not;
//! * drop-ins `<file>.d/*.yaml` and `*.yml` (any case) follow the main file, sorted by name;
//! * top-level keys only; a later file replaces a key, a key ending in `+` appends to it; values
//!   are strings, numbers and booleans, or lists of those (one flag per item); a null value is an
//!   empty string; nested mappings are errors; only `true`/`false` (any case) are booleans, so
//!   `yes`, `no`, `on`, `off` stay text (boolean flags still accept them through clap);
//! * keys keep the order in which they first appear; `key: v` becomes `--key=v`, and a one-letter
//!   key becomes its argument's long flag (or `-k v` when it has none);
//! * a key the (sub)command does not know is skipped with K3s's warning
//!   `Unknown flag --<key> found in config.yaml, skipping`; the `config` key is skipped silently;
//! * a key whose argument has an environment variable that is set and not empty is skipped, so the
//!   order is flags > environment > config file > defaults.
//!
//! Unlike K3s, a `-c` flag beats `$ETCDSNAP_CONFIG_FILE` (K3s checks the variable first), and the
//! last `-c` wins, as it does for clap.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::{Arg, ArgAction, Command};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Where the config file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The main config file; drop-ins live in `<path>.d/`.
    pub path: PathBuf,
    /// Chosen by `-c`/`--config` or the environment variable (then it must exist), rather than
    /// the default path.
    pub explicit: bool,
}

/// Finds the config file: `-c X`, `-cX`, `-c=X`, `--config X` or `--config=X` in `args` (the last
/// one wins, as in clap), else the non-empty environment variable `env_var`, else `default_path`.
///
/// `args` is the whole argv, program name first; scanning stops at `--`.
pub fn find_config(args: &[OsString], env_var: &str, default_path: &Path) -> ConfigSource {
    find_config_in(args, std::env::var_os(env_var), default_path)
}

fn find_config_in(
    args: &[OsString],
    env_value: Option<OsString>,
    default_path: &Path,
) -> ConfigSource {
    let mut found: Option<OsString> = None;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        if arg == "-c" || arg == "--config" {
            if let Some(value) = rest.next() {
                found = Some(value.clone());
            }
            continue;
        }
        let Some(text) = arg.to_str() else { continue };
        if let Some(value) = text.strip_prefix("--config=") {
            found = Some(value.into());
        } else if let Some(value) = text.strip_prefix("-c") {
            found = Some(value.strip_prefix('=').unwrap_or(value).into());
        }
    }
    match found.or(env_value.filter(|v| !v.is_empty())) {
        Some(path) => ConfigSource {
            path: path.into(),
            explicit: true,
        },
        None => ConfigSource {
            path: default_path.to_path_buf(),
            explicit: false,
        },
    }
}

/// Reads the main config file and its drop-ins and merges them into `(key, value)` pairs, one
/// per flag to pass, in first-appearance order of the keys (see the module docs for the rules).
pub fn load_config_args(src: &ConfigSource) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    match std::fs::metadata(&src.path) {
        Ok(_) => files.push(src.path.clone()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if src.explicit {
                bail!(
                    "config file {} does not exist; create it or point -c/--config (or ETCDSNAP_CONFIG_FILE) at an existing file",
                    src.path.display()
                );
            }
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read config file {}", src.path.display()));
        }
    }
    files.extend(drop_in_files(&src.path)?);

    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, Flat> = HashMap::new();
    for file in &files {
        for (key, value) in read_file(file)? {
            let (key, append) = match key.strip_suffix('+') {
                Some(key) => (key.to_string(), true),
                None => (key, false),
            };
            match values.get_mut(&key) {
                Some(old) if append => {
                    let mut items = std::mem::replace(old, Flat::Null).into_items();
                    items.extend(value.into_items());
                    *old = Flat::List(items);
                }
                Some(old) => *old = value,
                None => {
                    order.push(key.clone());
                    values.insert(key, value);
                }
            }
        }
    }

    let mut out = Vec::new();
    for key in order {
        match values.remove(&key) {
            Some(Flat::Null) => out.push((key, String::new())),
            Some(Flat::One(value)) => out.push((key, value)),
            Some(Flat::List(items)) => {
                out.extend(items.into_iter().map(|item| (key.clone(), item)))
            }
            None => {}
        }
    }
    Ok(out)
}

/// `<path>.d/*.yaml|*.yml`, sorted by file name; none when the directory does not exist.
fn drop_in_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut dir = path.as_os_str().to_owned();
    dir.push(".d");
    let dir = PathBuf::from(dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot read config drop-in directory {}", dir.display())
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry
            .with_context(|| format!("cannot read config drop-in directory {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().to_ascii_lowercase();
        if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        // Follows symlinks, so a link to a file counts and a link to a directory does not.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        files.push(entry.path());
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// A config value reduced to what flags can carry.
#[derive(Debug, Clone, PartialEq)]
enum Flat {
    Null,
    One(String),
    List(Vec<String>),
}

impl Flat {
    /// The items a `+` key appends: a null adds nothing.
    fn into_items(self) -> Vec<String> {
        match self {
            Flat::Null => Vec::new(),
            Flat::One(value) => vec![value],
            Flat::List(items) => items,
        }
    }
}

fn read_file(path: &Path) -> anyhow::Result<Vec<(String, Flat)>> {
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
        .map_err(|e| anyhow!("invalid YAML in config file {}: {e}", path.display()))?;
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

/// Inserts the config flags into `argv` right after the command words `subcommand_path` (e.g.
/// `["etcd-snapshot", "save"]` or `["server"]`), and returns the new argv with the warnings for
/// keys that command does not know.
///
/// `cmd` is the top-level command; the flags are checked against the (sub)command at
/// `subcommand_path`, including global arguments. When argv does not contain those command
/// words, argv comes back unchanged. For later flags to win, the commands must use
/// `args_override_self(true)`; `Append` arguments collect config and command-line values alike.
pub fn expand_args(
    cmd: &Command,
    subcommand_path: &[&str],
    argv: Vec<OsString>,
    config: Vec<(String, String)>,
) -> (Vec<OsString>, Vec<String>) {
    expand_args_with_env(cmd, subcommand_path, argv, config, |name| {
        std::env::var_os(name)
    })
}

fn expand_args_with_env(
    cmd: &Command,
    subcommand_path: &[&str],
    argv: Vec<OsString>,
    config: Vec<(String, String)>,
    env: impl Fn(&OsStr) -> Option<OsString>,
) -> (Vec<OsString>, Vec<String>) {
    let mut root = cmd.clone();
    // Building propagates global arguments into subcommands and settles every action.
    root.build();
    let Some((target, insert_at)) = locate(&root, subcommand_path, &argv) else {
        return (argv, Vec::new());
    };

    let mut flags: Vec<OsString> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut warn = |warning: String| {
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    };
    for (key, value) in config {
        if key == "config" {
            continue;
        }
        let shown = if key.chars().count() == 1 {
            format!("-{key}")
        } else {
            format!("--{key}")
        };
        let Some(arg) = find_arg(target, &key) else {
            warn(format!(
                "Unknown flag {shown} found in config.yaml, skipping"
            ));
            continue;
        };
        if arg.get_long() == Some("config") {
            continue;
        }
        if arg
            .get_env()
            .and_then(&env)
            .is_some_and(|value| !value.is_empty())
        {
            continue;
        }
        // Name the flag by its long form when it has one: `--long=value` also carries values
        // that start with `-` or are empty.
        let long = if key.chars().count() == 1 {
            arg.get_long()
        } else {
            Some(key.as_str())
        };
        if arg.get_action().takes_values() {
            match long {
                Some(long) => flags.push(format!("--{long}={value}").into()),
                None => {
                    flags.push(shown.into());
                    flags.push(value.into());
                }
            }
            continue;
        }
        let name: OsString = match long {
            Some(long) => format!("--{long}").into(),
            None => shown.clone().into(),
        };
        let times = match (arg.get_action(), parse_bool(&value)) {
            (ArgAction::SetTrue, Some(on)) | (ArgAction::Count, Some(on)) => usize::from(on),
            (ArgAction::SetFalse, Some(on)) => usize::from(!on),
            (ArgAction::Count, None) if value.parse::<u8>().is_ok() => {
                usize::from(value.parse::<u8>().unwrap_or(0))
            }
            _ => {
                warn(format!(
                    "Invalid value {value:?} for flag {shown} found in config.yaml (expected true or false), skipping"
                ));
                0
            }
        };
        flags.extend(std::iter::repeat_n(name, times));
    }

    let mut out = argv;
    out.splice(insert_at..insert_at, flags);
    (out, warnings)
}

/// The command words at the start of `argv` (after the program name and any flags before
/// them), e.g. `["etcd-snapshot", "save"]` for `etcdsnap --debug etcd-snapshot save --s3`.
///
/// Words are returned by their canonical names even when argv uses an alias. Use it to decide
/// which subcommand the config file applies to and to pass that path to [`expand_args`].
pub fn find_subcommand_path(cmd: &Command, argv: &[OsString]) -> Vec<String> {
    let mut root = cmd.clone();
    root.build();
    let mut path = Vec::new();
    let mut current = &root;
    let mut i = 1;
    while let Some(word) = next_word(current, argv, &mut i) {
        let Some(sub) = current.find_subcommand(word) else {
            break;
        };
        path.push(sub.get_name().to_string());
        current = sub;
    }
    path
}

/// Finds the subcommand at `path` and the argv index right after its last command word.
fn locate<'a>(root: &'a Command, path: &[&str], argv: &[OsString]) -> Option<(&'a Command, usize)> {
    let mut current = root;
    let mut i = 1;
    for want in path {
        let word = next_word(current, argv, &mut i)?;
        let sub = current.find_subcommand(word)?;
        if current.find_subcommand(want)?.get_name() != sub.get_name() {
            return None;
        }
        current = sub;
    }
    Some((current, i.min(argv.len())))
}

/// Skips flags of `cmd` (and their separate values) from `argv[*i]` on and returns the next word,
/// leaving `*i` just past it; `None` at `--` or the end.
fn next_word<'a>(cmd: &Command, argv: &'a [OsString], i: &mut usize) -> Option<&'a OsStr> {
    while let Some(arg) = argv.get(*i) {
        *i += 1;
        if arg == "--" {
            return None;
        }
        let Some(text) = arg.to_str() else {
            return Some(arg);
        };
        if let Some(long) = text.strip_prefix("--") {
            if !long.contains('=') && find_long(cmd, long).is_some_and(takes_separate_value) {
                *i += 1;
            }
        } else if let Some(shorts) = text.strip_prefix('-').filter(|s| !s.is_empty()) {
            // `-abc`: flags a, b, c; the first that takes a value takes the rest, or the next arg.
            for (at, c) in shorts.char_indices() {
                let Some(arg) = find_short(cmd, c) else { break };
                if takes_separate_value(arg) {
                    if at + c.len_utf8() == shorts.len() {
                        *i += 1;
                    }
                    break;
                }
            }
        } else {
            return Some(arg);
        }
    }
    None
}

fn takes_separate_value(arg: &Arg) -> bool {
    arg.get_action().takes_values() && arg.get_num_args().is_none_or(|n| n.min_values() > 0)
}

/// The flag argument of `cmd` that `key` names: its long name, a long alias, or for a one-letter
/// key its short name or a short alias. Positionals and help/version flags do not count.
fn find_arg<'a>(cmd: &'a Command, key: &str) -> Option<&'a Arg> {
    let mut chars = key.chars();
    if let (Some(c), None) = (chars.next(), chars.next())
        && let Some(arg) = find_short(cmd, c)
    {
        return Some(arg);
    }
    find_long(cmd, key)
}

fn find_long<'a>(cmd: &'a Command, name: &str) -> Option<&'a Arg> {
    cmd.get_arguments().filter(|a| is_flag(a)).find(|a| {
        a.get_long() == Some(name)
            || a.get_all_aliases()
                .is_some_and(|aliases| aliases.contains(&name))
    })
}

fn find_short(cmd: &Command, c: char) -> Option<&Arg> {
    cmd.get_arguments().filter(|a| is_flag(a)).find(|a| {
        a.get_short() == Some(c)
            || a.get_all_short_aliases()
                .is_some_and(|aliases| aliases.contains(&c))
    })
}

fn is_flag(arg: &Arg) -> bool {
    !arg.is_positional()
        && !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
}

/// clap's spellings of a boolean (`BoolishValueParser`).
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "on" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::value_parser;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn snapshot_args() -> [Arg; 5] {
        [
            Arg::new("dir").long("etcd-snapshot-dir").alias("dir"),
            Arg::new("s3")
                .long("etcd-s3")
                .alias("s3")
                .num_args(0..=1)
                .default_missing_value("true")
                .value_parser(value_parser!(bool)),
            Arg::new("bucket")
                .long("etcd-s3-bucket")
                .alias("s3-bucket")
                .env("ETCDSNAP_TEST_S3_BUCKET"),
            Arg::new("retention")
                .long("etcd-snapshot-retention")
                .value_parser(value_parser!(u32)),
            Arg::new("name").long("name"),
        ]
    }

    /// A small stand-in for the real CLI: a global `-c`, `server`, `etcd-snapshot save|ls`.
    fn command() -> Command {
        Command::new("etcdsnap")
            .args_override_self(true)
            .arg(Arg::new("config").short('c').long("config").global(true))
            .arg(
                Arg::new("debug")
                    .long("debug")
                    .global(true)
                    .action(ArgAction::SetTrue),
            )
            .subcommand(
                Command::new("server")
                    .args_override_self(true)
                    .arg(
                        Arg::new("token")
                            .short('t')
                            .long("token")
                            .env("ETCDSNAP_TEST_TOKEN"),
                    )
                    .arg(
                        Arg::new("node-label")
                            .long("node-label")
                            .action(ArgAction::Append),
                    )
                    .arg(
                        Arg::new("cluster-init")
                            .long("cluster-init")
                            .action(ArgAction::SetTrue),
                    )
                    .arg(Arg::new("verbose").short('v').action(ArgAction::Count))
                    .arg(Arg::new("port").short('p'))
                    .args(snapshot_args()),
            )
            .subcommand(
                Command::new("etcd-snapshot")
                    .alias("etcd-snapshots")
                    .args_override_self(true)
                    .subcommand(
                        Command::new("save")
                            .args_override_self(true)
                            .args(snapshot_args()),
                    )
                    .subcommand(
                        Command::new("ls")
                            .alias("list")
                            .args_override_self(true)
                            .args(snapshot_args())
                            .arg(Arg::new("output").short('o').long("output")),
                    ),
            )
    }

    fn no_env(_: &OsStr) -> Option<OsString> {
        None
    }

    fn expand(
        path: &[&str],
        argv: &[&str],
        config: &[(&str, &str)],
    ) -> (Vec<OsString>, Vec<String>) {
        expand_args_with_env(&command(), path, os(argv), pairs(config), no_env)
    }

    /// Parses the expanded argv and returns the matches of the subcommand at `path`.
    fn parse(path: &[&str], argv: Vec<OsString>) -> clap::ArgMatches {
        let mut matches = command()
            .try_get_matches_from(argv)
            .unwrap_or_else(|e| panic!("{e}"));
        for name in path {
            matches = matches.subcommand_matches(name).unwrap().clone();
        }
        matches
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn load(path: &Path, explicit: bool) -> anyhow::Result<Vec<(String, String)>> {
        load_config_args(&ConfigSource {
            path: path.to_path_buf(),
            explicit,
        })
    }

    #[test]
    fn find_config_prefers_flag_then_env_then_default() {
        let default = Path::new("/etc/etcdsnap/config.yaml");
        let env = Some(OsString::from("/env.yaml"));
        // (argv, environment value, expected path, explicit)
        let cases: &[(&[&str], Option<OsString>, &str, bool)] = &[
            (
                &["etcdsnap", "server"],
                None,
                "/etc/etcdsnap/config.yaml",
                false,
            ),
            (
                &["etcdsnap", "server"],
                Some("".into()),
                "/etc/etcdsnap/config.yaml",
                false,
            ),
            (&["etcdsnap", "server"], env.clone(), "/env.yaml", true),
            (
                &["etcdsnap", "server", "-c", "/a.yaml"],
                env.clone(),
                "/a.yaml",
                true,
            ),
            (&["etcdsnap", "server", "-c/a.yaml"], None, "/a.yaml", true),
            (&["etcdsnap", "server", "-c=/a.yaml"], None, "/a.yaml", true),
            (
                &["etcdsnap", "--config", "/a.yaml", "server"],
                None,
                "/a.yaml",
                true,
            ),
            (
                &["etcdsnap", "server", "--config=/a.yaml"],
                env.clone(),
                "/a.yaml",
                true,
            ),
            (
                &["etcdsnap", "-c", "/a.yaml", "server", "-c", "/b.yaml"],
                None,
                "/b.yaml",
                true,
            ),
            (
                &["etcdsnap", "server", "--", "-c", "/a.yaml"],
                None,
                "/etc/etcdsnap/config.yaml",
                false,
            ),
            (
                &["etcdsnap", "server", "--configx=/a.yaml"],
                None,
                "/etc/etcdsnap/config.yaml",
                false,
            ),
            (
                &["etcdsnap", "server", "-c"],
                env.clone(),
                "/env.yaml",
                true,
            ),
        ];
        for (argv, env_value, path, explicit) in cases {
            let got = find_config_in(&os(argv), env_value.clone(), default);
            assert_eq!(
                got,
                ConfigSource {
                    path: PathBuf::from(path),
                    explicit: *explicit
                },
                "{argv:?} with env {env_value:?}"
            );
        }
    }

    #[test]
    fn find_config_reads_the_named_environment_variable() {
        let src = find_config(
            &os(&["etcdsnap"]),
            "ETCDSNAP_TEST_CONFIG_FILE_SURELY_UNSET",
            Path::new("/default.yaml"),
        );
        assert_eq!(src.path, Path::new("/default.yaml"));
        assert!(!src.explicit);
    }

    #[test]
    fn flags_go_right_after_the_command_words() {
        let config = [("etcd-snapshot-dir", "/snaps")];
        // (path, argv, expected argv)
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (
                &["etcd-snapshot", "save"],
                &["etcdsnap", "etcd-snapshot", "save", "--name", "x"],
                &[
                    "etcdsnap",
                    "etcd-snapshot",
                    "save",
                    "--etcd-snapshot-dir=/snaps",
                    "--name",
                    "x",
                ],
            ),
            (
                &["etcd-snapshot", "save"],
                &[
                    "etcdsnap",
                    "--debug",
                    "-c",
                    "/c.yaml",
                    "etcd-snapshot",
                    "--config",
                    "/c.yaml",
                    "save",
                ],
                &[
                    "etcdsnap",
                    "--debug",
                    "-c",
                    "/c.yaml",
                    "etcd-snapshot",
                    "--config",
                    "/c.yaml",
                    "save",
                    "--etcd-snapshot-dir=/snaps",
                ],
            ),
            (
                &["etcd-snapshot", "ls"],
                &["etcdsnap", "etcd-snapshots", "list", "-o", "json"],
                &[
                    "etcdsnap",
                    "etcd-snapshots",
                    "list",
                    "--etcd-snapshot-dir=/snaps",
                    "-o",
                    "json",
                ],
            ),
            (
                &["server"],
                &["etcdsnap", "-c/c.yaml", "server", "--token", "t"],
                &[
                    "etcdsnap",
                    "-c/c.yaml",
                    "server",
                    "--etcd-snapshot-dir=/snaps",
                    "--token",
                    "t",
                ],
            ),
            (
                &["server"],
                &["etcdsnap", "server"],
                &["etcdsnap", "server", "--etcd-snapshot-dir=/snaps"],
            ),
            // Not the command the path names: nothing is inserted.
            (
                &["server"],
                &["etcdsnap", "etcd-snapshot", "save"],
                &["etcdsnap", "etcd-snapshot", "save"],
            ),
            (
                &["server"],
                &["etcdsnap", "--debug"],
                &["etcdsnap", "--debug"],
            ),
        ];
        for (path, argv, want) in cases {
            let (got, warnings) = expand(path, argv, &config);
            assert_eq!(got, os(want), "{argv:?}");
            assert!(warnings.is_empty(), "{warnings:?}");
        }
    }

    #[test]
    fn later_command_line_flags_win() {
        let config = [("etcd-snapshot-retention", "5"), ("name", "from-config")];
        let path = ["etcd-snapshot", "save"];
        let (argv, _) = expand(&path, &["etcdsnap", "etcd-snapshot", "save"], &config);
        let m = parse(&path, argv);
        assert_eq!(m.get_one::<u32>("retention"), Some(&5));
        assert_eq!(m.get_one::<String>("name").unwrap(), "from-config");

        let (argv, _) = expand(
            &path,
            &[
                "etcdsnap",
                "etcd-snapshot",
                "save",
                "--etcd-snapshot-retention",
                "2",
            ],
            &config,
        );
        let m = parse(&path, argv);
        assert_eq!(m.get_one::<u32>("retention"), Some(&2));
        assert_eq!(m.get_one::<String>("name").unwrap(), "from-config");
    }

    #[test]
    fn unknown_keys_are_skipped_with_k3s_warning() {
        let config = [
            ("cluster-init", "true"),
            ("token", "secret"),
            ("node-label", "a=b"),
            ("node-label", "c=d"),
            ("config", "/other.yaml"),
            ("x", "1"),
            ("etcd-snapshot-dir", "/snaps"),
        ];
        let (argv, warnings) = expand(
            &["etcd-snapshot", "save"],
            &["etcdsnap", "etcd-snapshot", "save"],
            &config,
        );
        assert_eq!(
            argv,
            os(&[
                "etcdsnap",
                "etcd-snapshot",
                "save",
                "--etcd-snapshot-dir=/snaps"
            ])
        );
        assert_eq!(
            warnings,
            [
                "Unknown flag --cluster-init found in config.yaml, skipping",
                "Unknown flag --token found in config.yaml, skipping",
                "Unknown flag --node-label found in config.yaml, skipping",
                "Unknown flag -x found in config.yaml, skipping",
            ]
        );
    }

    #[test]
    fn aliases_and_global_flags_are_known() {
        let config = [("s3-bucket", "b"), ("dir", "/d"), ("debug", "true")];
        let path = ["etcd-snapshot", "save"];
        let (argv, warnings) = expand(&path, &["etcdsnap", "etcd-snapshot", "save"], &config);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            argv,
            os(&[
                "etcdsnap",
                "etcd-snapshot",
                "save",
                "--s3-bucket=b",
                "--dir=/d",
                "--debug"
            ])
        );
        let m = parse(&path, argv);
        assert_eq!(m.get_one::<String>("bucket").unwrap(), "b");
        assert_eq!(m.get_one::<String>("dir").unwrap(), "/d");
        assert!(m.get_flag("debug"));
    }

    #[test]
    fn one_letter_keys() {
        // `t` has a long name, `p` and `v` have none.
        let config = [("t", "-starts-with-dash"), ("p", "6443"), ("v", "true")];
        let path = ["server"];
        let (argv, warnings) = expand(&path, &["etcdsnap", "server", "-v"], &config);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            argv,
            os(&[
                "etcdsnap",
                "server",
                "--token=-starts-with-dash",
                "-p",
                "6443",
                "-v",
                "-v"
            ])
        );
        let m = parse(&path, argv);
        assert_eq!(m.get_one::<String>("token").unwrap(), "-starts-with-dash");
        assert_eq!(m.get_one::<String>("port").unwrap(), "6443");
        assert_eq!(m.get_count("verbose"), 2);
    }

    #[test]
    fn boolean_flags() {
        let path = ["server"];
        // (config key, value, flags inserted)
        let cases: &[(&str, &str, &[&str])] = &[
            ("cluster-init", "true", &["--cluster-init"]),
            ("cluster-init", "false", &[]),
            ("etcd-s3", "true", &["--etcd-s3=true"]),
            ("etcd-s3", "false", &["--etcd-s3=false"]),
            ("v", "3", &["-v", "-v", "-v"]),
        ];
        for (key, value, want) in cases {
            let (argv, warnings) = expand(&path, &["etcdsnap", "server"], &[(key, value)]);
            assert!(warnings.is_empty(), "{warnings:?}");
            assert_eq!(argv[2..], os(want)[..], "{key}: {value}");
            parse(&path, argv);
        }
        let (argv, warnings) = expand(&path, &["etcdsnap", "server"], &[("cluster-init", "maybe")]);
        assert_eq!(argv, os(&["etcdsnap", "server"]));
        assert_eq!(
            warnings,
            [
                "Invalid value \"maybe\" for flag --cluster-init found in config.yaml (expected true or false), skipping"
            ]
        );
        let m = parse(
            &path,
            os(&["etcdsnap", "server", "--etcd-s3=false", "--etcd-s3"]),
        );
        assert_eq!(m.get_one::<bool>("s3"), Some(&true));
    }

    #[test]
    fn environment_variables_beat_the_config_file() {
        let env = |name: &OsStr| match name.to_str() {
            Some("ETCDSNAP_TEST_TOKEN") => Some(OsString::from("from-env")),
            Some("ETCDSNAP_TEST_S3_BUCKET") => Some(OsString::new()),
            _ => None,
        };
        let (argv, warnings) = expand_args_with_env(
            &command(),
            &["server"],
            os(&["etcdsnap", "server"]),
            pairs(&[
                ("token", "from-config"),
                ("t", "x"),
                ("etcd-s3-bucket", "b"),
            ]),
            env,
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        // The set token variable wins; the empty bucket variable does not count.
        assert_eq!(argv, os(&["etcdsnap", "server", "--etcd-s3-bucket=b"]));
    }

    #[test]
    fn lists_give_one_flag_per_item_and_append_to_cli_values() {
        let path = ["server"];
        let (argv, _) = expand(
            &path,
            &["etcdsnap", "server", "--node-label", "cli"],
            &[("node-label", "a"), ("node-label", "b")],
        );
        let m = parse(&path, argv);
        let labels: Vec<&String> = m.get_many("node-label").unwrap().collect();
        assert_eq!(labels, ["a", "b", "cli"]);
    }

    #[test]
    fn yaml_values_become_flag_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        write(
            &file,
            "# comment\n\
             token: \"abc\"\n\
             etcd-snapshot-retention: 10\n\
             ratio: 1.5\n\
             whole: 2.0\n\
             negative: -3\n\
             big: 18446744073709551615\n\
             etcd-s3: true\n\
             legacy-bool: yes\n\
             region: no\n\
             upper-bool: TRUE\n\
             mode: 0755\n\
             under: 1_000\n\
             inf: .inf\n\
             quoted-number: \"10\"\n\
             empty:\n\
             tilde: ~\n\
             duration: 5m0s\n\
             url: https://example.com:9000/x?y=z\n\
             node-label: [a=b, 1, true]\n\
             none: []\n\
             dup: first\n\
             dup: second\n",
        );
        let got = load(&file, true).unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("token", "abc"),
                ("etcd-snapshot-retention", "10"),
                ("ratio", "1.5"),
                ("whole", "2"),
                ("negative", "-3"),
                ("big", "18446744073709551615"),
                ("etcd-s3", "true"),
                ("legacy-bool", "yes"),
                ("region", "no"),
                ("upper-bool", "true"),
                ("mode", "0755"),
                ("under", "1_000"),
                ("inf", ".inf"),
                ("quoted-number", "10"),
                ("empty", ""),
                ("tilde", ""),
                ("duration", "5m0s"),
                ("url", "https://example.com:9000/x?y=z"),
                ("node-label", "a=b"),
                ("node-label", "1"),
                ("node-label", "true"),
                ("dup", "second"),
            ])
        );
    }

    #[test]
    fn empty_or_comment_only_files_give_no_args() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("empty.yaml", ""),
            ("comments.yaml", "# nothing\n\n"),
            ("doc.yaml", "---\n"),
        ] {
            let file = dir.path().join(name);
            write(&file, text);
            assert_eq!(load(&file, true).unwrap(), [], "{name}");
        }
    }

    #[test]
    fn append_keys_extend_earlier_values_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        write(
            &file,
            "node-label: [a, b]\netcd-snapshot-dir: /one\nname: x\nnew+: n\n",
        );
        write(
            &dir.path().join("config.yaml.d/10-more.yaml"),
            "node-label+: c\netcd-snapshot-dir+: [/two, /three]\nname+: ~\n",
        );
        write(
            &dir.path().join("config.yaml.d/20-more.yaml"),
            "node-label+: [d]\nnew+: [m]\n",
        );
        let got = load(&file, false).unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("node-label", "a"),
                ("node-label", "b"),
                ("node-label", "c"),
                ("node-label", "d"),
                ("etcd-snapshot-dir", "/one"),
                ("etcd-snapshot-dir", "/two"),
                ("etcd-snapshot-dir", "/three"),
                ("name", "x"),
                ("new", "n"),
                ("new", "m"),
            ])
        );
    }

    #[test]
    fn drop_ins_load_in_name_order_and_later_files_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        let d = dir.path().join("config.yaml.d");
        write(&file, "name: main\nfirst: main\nlog+: main\n");
        write(&d.join("20-b.yaml"), "name: b\nlog+: b\nlater: b\n");
        write(&d.join("10-a.YML"), "name: a\nlog+: a\n");
        write(&d.join("30-c.Yaml"), "log+: c\n");
        write(&d.join("40-ignored.txt"), "name: ignored\n");
        write(&d.join("50-ignored.yaml.bak"), "name: ignored\n");
        std::fs::create_dir_all(d.join("60-dir.yaml")).unwrap();
        let got = load(&file, true).unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("name", "b"),
                ("first", "main"),
                ("log", "main"),
                ("log", "a"),
                ("log", "b"),
                ("log", "c"),
                ("later", "b"),
            ])
        );
    }

    #[test]
    fn missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");

        // The default file may be absent.
        assert_eq!(load(&file, false).unwrap(), []);

        // A chosen one may not.
        let err = load(&file, true).unwrap_err().to_string();
        assert!(
            err.contains(&format!("config file {} does not exist", file.display())),
            "{err}"
        );

        // Drop-ins count without a main file.
        write(&dir.path().join("config.yaml.d/a.yaml"), "name: a\n");
        assert_eq!(load(&file, false).unwrap(), pairs(&[("name", "a")]));
    }

    #[test]
    fn bad_yaml_names_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        // (content, text the error must contain)
        let cases = [
            ("name: [unclosed\n", "line 1"),
            ("a: b: c\n", "line 1"),
            ("- a\n- b\n", "mapping"),
            ("just text\n", "mapping"),
            ("a: 1\n---\nb: 2\n", "multiple YAML documents"),
            ("etcd-s3:\n  bucket: x\n", "key \"etcd-s3\" holds a mapping"),
            (
                "node-label: [[a]]\n",
                "key \"node-label\" has a list or mapping inside its list",
            ),
            ("[a]: 1\n", "keys must be flag names"),
        ];
        for (text, want) in cases {
            write(&file, text);
            let err = format!("{:#}", load(&file, true).unwrap_err());
            assert!(err.contains(&file.display().to_string()), "{text:?}: {err}");
            assert!(
                err.contains(want),
                "{text:?}: {err:?} should contain {want:?}"
            );
        }

        let sub = dir.path().join("d.yaml.d");
        std::fs::create_dir_all(&sub).unwrap();
        write(&dir.path().join("d.yaml"), "a: 1\n");
        write(&sub.join("x.yaml"), "a: [\n");
        let err = format!("{:#}", load(&dir.path().join("d.yaml"), true).unwrap_err());
        assert!(
            err.contains(&sub.join("x.yaml").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn finds_the_subcommand_path() {
        let cmd = command();
        let cases: &[(&[&str], &[&str])] = &[
            (&["etcdsnap"], &[]),
            (&["etcdsnap", "server", "--token", "t"], &["server"]),
            (
                &["etcdsnap", "--debug", "-c", "server", "server"],
                &["server"],
            ),
            (
                &["etcdsnap", "-cserver", "etcd-snapshots", "list"],
                &["etcd-snapshot", "ls"],
            ),
            (
                &["etcdsnap", "etcd-snapshot", "--config=x", "save", "extra"],
                &["etcd-snapshot", "save"],
            ),
            (&["etcdsnap", "etcd-snapshot"], &["etcd-snapshot"]),
            (&["etcdsnap", "nope", "server"], &[]),
            (&["etcdsnap", "--", "server"], &[]),
        ];
        for (argv, want) in cases {
            assert_eq!(find_subcommand_path(&cmd, &os(argv)), *want, "{argv:?}");
        }
    }

    #[test]
    fn end_to_end_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        write(
            &file,
            "etcd-snapshot-retention: 7\netcd-s3: true\ns3-bucket: backups\ncluster-init: true\n",
        );
        write(
            &dir.path().join("config.yaml.d/override.yml"),
            "etcd-snapshot-retention: 9\n",
        );
        let argv = os(&[
            "etcdsnap",
            "etcd-snapshot",
            "save",
            "-c",
            file.to_str().unwrap(),
        ]);
        let src = find_config_in(&argv, None, Path::new("/nonexistent/config.yaml"));
        assert!(src.explicit);
        let config = load_config_args(&src).unwrap();
        let path = find_subcommand_path(&command(), &argv);
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let (argv, warnings) = expand_args_with_env(&command(), &path, argv, config, no_env);
        assert_eq!(
            warnings,
            ["Unknown flag --cluster-init found in config.yaml, skipping"]
        );
        let m = parse(&path, argv);
        assert_eq!(m.get_one::<u32>("retention"), Some(&9));
        assert_eq!(m.get_one::<bool>("s3"), Some(&true));
        assert_eq!(m.get_one::<String>("bucket").unwrap(), "backups");
    }
}
