//! `etcdsnap`: parse (config file, env, flags), start logging, run the subcommand, map errors to
//! exit codes (2 for usage errors, 1 for failures).

use std::ffi::OsString;
use std::path::Path;

use clap::FromArgMatches;
use etcdsnap::cli;
use etcdsnap::cli::{CONFIG_ENV, Cli, Command, DEFAULT_CONFIG};

fn parse() -> Result<(Cli, Vec<String>), anyhow::Error> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let argv = cli::argv::single_dash_long_flags(&cli::command(), argv);
    let mut warnings = Vec::new();
    let mut loaded = cli::config_file::Loaded::default();
    // Config files apply to `server` and to each `etcd-snapshot` subcommand, as in K3s.
    let path = cli::config_file::find_subcommand_path(&cli::command(), &argv);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let given = argv.clone();
    let argv = match path.as_slice() {
        ["server"] | ["check"] | ["etcd-snapshot", _] => {
            let src = cli::config_file::find_config(&argv, CONFIG_ENV, Path::new(DEFAULT_CONFIG));
            loaded = cli::config_file::load_config(&src)?;
            cli::config_file::check_single_values(&cli::command(), &path, &loaded)?;
            let (argv, w) =
                cli::config_file::expand_args(&cli::command(), &path, argv, loaded.args.clone());
            warnings = loaded.warnings.clone();
            warnings.extend(w);
            argv
        }
        _ => argv,
    };
    let matches = match cli::command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            if let Some(msg) = config_value_error(&e, &loaded, &path, &given) {
                eprintln!("Error: {msg}");
                std::process::exit(2);
            }
            e.exit()
        }
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    Ok((cli, warnings))
}

/// A bad value that came from a config file (not from the command line): the message names
/// the file and the key.
fn config_value_error(
    e: &clap::Error,
    loaded: &cli::config_file::Loaded,
    path: &[&str],
    given: &[OsString],
) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg
        .strip_prefix("--")?
        .split([' ', '='])
        .next()?
        .to_string();
    let on_command_line = given.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")))
    });
    if on_command_line {
        return None;
    }
    let first = e.render().to_string();
    let first = first
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string();
    let key = loaded.key_for_flag(&cli::command(), path, &long)?;
    let given_key = given.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == format!("--{key}") || a.starts_with(&format!("--{key}=")))
    });
    if given_key {
        return None;
    }
    loaded.blame(&key, &first)
}

/// `etcdsnap kubectl ...`: kubectl with the server's kubeconfig (unless KUBECONFIG is set).
fn kubectl(args: Vec<OsString>) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("kubectl");
    if std::env::var_os("KUBECONFIG").is_none() {
        cmd.env("KUBECONFIG", cli::default_kubeconfig());
    }
    let err = cmd.args(args).exec();
    anyhow::bail!("cannot run kubectl: {err}; install kubectl and put it on PATH")
}

fn init_logging(debug: bool, quiet: bool, bars: bool) {
    let default = match (debug, quiet) {
        (true, _) => "debug",
        (false, true) => "warn",
        (false, false) => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if bars {
        // Log lines go above the progress bars.
        fmt.with_writer(|| cli::progress::LogWriter).init();
        cli::progress::install();
    } else {
        fmt.with_writer(std::io::stderr).init();
    }
}

/// K3s's environment variables that etcdsnap reads under its own name: a K3s user's
/// `K3S_CLUSTER_RESET=true` or `K3S_TOKEN_FILE` keeps working.
const K3S_ALIASES: &[&str] = &[
    "CLUSTER_INIT",
    "CLUSTER_RESET",
    "CONFIG_FILE",
    "DATASTORE_CAFILE",
    "DATASTORE_CERTFILE",
    "DATASTORE_ENDPOINT",
    "DATASTORE_KEYFILE",
    "DATA_DIR",
    "DEBUG",
    "KUBECONFIG_MODE",
    "KUBECONFIG_OUTPUT",
    "NODE_NAME",
    "TOKEN",
    "TOKEN_FILE",
    "URL",
];

/// Copies each set `K3S_<X>` of [`K3S_ALIASES`] to `ETCDSNAP_<X>` when that is not set, with a
/// one-line notice naming both (never the value); `ETCDSNAP_<X>` wins when both are set.
fn accept_k3s_env() {
    for x in K3S_ALIASES {
        let (k3s, ours) = (format!("K3S_{x}"), format!("ETCDSNAP_{x}"));
        let Some(value) = std::env::var_os(&k3s) else {
            continue;
        };
        if std::env::var_os(&ours).is_some() {
            eprintln!("notice: {k3s} is ignored: {ours} is set too and wins");
            continue;
        }
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe { std::env::set_var(&ours, value) };
        eprintln!("notice: {k3s} is read as {ours}");
    }
}

fn main() {
    accept_k3s_env();
    let (cli, warnings) = match parse() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("Error: {}", chain(&e));
            std::process::exit(2);
        }
    };
    let debug = match &cli.command {
        Command::Server(a) => a.common.debug,
        Command::Check(a) => a.server.common.debug,
        Command::EtcdSnapshot(_)
        | Command::Member(_)
        | Command::Kubectl(_)
        | Command::Completion(_)
        | Command::Man(_) => false,
    };
    // `check` prints its own findings; the library's progress lines would only repeat them.
    let quiet = matches!(cli.command, Command::Check(_));
    // The server's log never carries progress; the commands that do work here show it.
    let bars = matches!(cli.command, Command::EtcdSnapshot(_)) && cli::progress::enabled();
    init_logging(debug, quiet, bars);
    etcdsnap_core::tls::install_crypto_provider();
    for w in warnings {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Server(a) => cli::server::run(*a).await,
            Command::Check(a) => cli::check::run(*a).await,
            Command::EtcdSnapshot(c) => cli::etcd_snapshot::run(c.action).await,
            Command::Member(c) => cli::member::run(c.action).await,
            Command::Kubectl(k) => kubectl(k.args),
            Command::Completion(c) => cli::completion::run(c.shell),
            Command::Man(m) => cli::man::run(&m.dir),
        }
    });
    if let Err(e) = result {
        eprintln!(
            "Error: {}",
            as_typed(&chain(&e), &std::env::args().collect::<Vec<_>>())
        );
        std::process::exit(1);
    }
}

/// An error and its causes joined with `: `, leaving out a cause that an earlier message already
/// says (our errors carry their I/O cause in their own text; `{:#}` would print it twice).
fn chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
    }
    parts.join(": ")
}

/// A message names S3 settings by their server flags (`etcd-s3-bucket`); where the user typed
/// the `etcd-snapshot` spelling (`--s3-bucket`), name that one instead, so the message points
/// at what is on the screen.
fn as_typed(msg: &str, argv: &[String]) -> String {
    let mut out = msg.to_string();
    for a in argv {
        let Some(flag) = a.strip_prefix("--s3-") else {
            continue;
        };
        let name = flag.split('=').next().unwrap_or(flag);
        if name.is_empty()
            || argv
                .iter()
                .any(|b| b.starts_with(&format!("--etcd-s3-{name}")))
        {
            continue;
        }
        out = out
            .replace(&format!("--etcd-s3-{name}"), &format!("--s3-{name}"))
            .replace(&format!("etcd-s3-{name}"), &format!("--s3-{name}"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_name_the_flag_as_typed() {
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            super::as_typed(
                "invalid etcd-s3-bucket \"ab\": S3 bucket names",
                &argv(&["etcdsnap", "etcd-snapshot", "ls", "--s3", "--s3-bucket=ab"])
            ),
            "invalid --s3-bucket \"ab\": S3 bucket names"
        );
        assert_eq!(
            super::as_typed(
                "invalid --etcd-s3-timeout \"x\"",
                &argv(&["etcdsnap", "etcd-snapshot", "ls", "--s3-timeout", "x"])
            ),
            "invalid --s3-timeout \"x\""
        );
        // Typed with the server spelling: left as it is.
        let same = "invalid etcd-s3-bucket \"ab\"";
        assert_eq!(
            super::as_typed(
                same,
                &argv(&["etcdsnap", "etcd-snapshot", "ls", "--etcd-s3-bucket=ab"])
            ),
            same
        );
    }
}
