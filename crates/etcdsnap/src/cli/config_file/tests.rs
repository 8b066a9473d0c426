//! Tests of config-file layering, from finding the file to the argv clap sees.

use super::expand::*;
use super::*;
use std::ffi::{OsStr, OsString};
use std::path::Path;

use clap::value_parser;
use clap::{Arg, ArgAction, Command};

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

fn expand(path: &[&str], argv: &[&str], config: &[(&str, &str)]) -> (Vec<OsString>, Vec<String>) {
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

#[test]
fn a_key_twice_in_one_file_warns_and_the_later_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    write(&file, "name: a\nnode-label: x\nname: b\n");
    write(&dir.path().join("config.yaml.d/10.yaml"), "node-label: y\n");
    let loaded = load_config(&ConfigSource {
        path: file.clone(),
        explicit: true,
    })
    .unwrap();
    assert_eq!(loaded.args, pairs(&[("name", "b"), ("node-label", "y")]));
    // A key replaced by a later file is layering, not a mistake; twice in one file is.
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("key name is given twice; the later value wins"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn append_to_a_single_value_flag_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    write(&file, "etcd-snapshot-retention+: 3\n");
    let loaded = load_config(&ConfigSource {
        path: file,
        explicit: true,
    })
    .unwrap();
    let err = check_single_values(&crate::cli::command(), &["server"], &loaded)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("etcd-snapshot-retention+: appends to a list, but --etcd-snapshot-retention takes one value"),
        "{err}"
    );
    // A list flag appends as before.
    write(&dir.path().join("config.yaml"), "node-label+: a=b\n");
    let loaded = load_config(&ConfigSource {
        path: dir.path().join("config.yaml"),
        explicit: true,
    })
    .unwrap();
    check_single_values(&crate::cli::command(), &["server"], &loaded).unwrap();
}

#[test]
fn an_oversized_file_or_alias_bomb_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    write(&file, &"# padding\n".repeat(200_000));
    let err = format!("{:#}", load(&file, true).unwrap_err());
    assert!(err.contains("may be at most 1048576 bytes"), "{err}");
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("b{}", i - 1)
        };
        bomb.push_str(&format!(
            "b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    write(&file, &bomb);
    let err = format!("{:#}", load(&file, true).unwrap_err());
    assert!(
        err.contains("expands to too many YAML nodes (aliases or nesting)"),
        "{err}"
    );
}
