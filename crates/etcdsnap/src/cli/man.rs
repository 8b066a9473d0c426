//! `etcdsnap man --dir DIR` (hidden, for packaging): one roff man page per command, generated
//! from the command definition: `etcdsnap.1`, `etcdsnap-server.1`,
//! `etcdsnap-etcd-snapshot-save.1`, ... Hidden subcommands get no page.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes every page into `dir` (created if missing) and returns their paths, sorted.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = super::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    write_tree(&cmd, dir, &mut pages)?;
    pages.sort();
    Ok(pages)
}

/// One page for `cmd` and each visible subcommand below it. Every page's footer names
/// `etcdsnap <version>` (subcommands carry no version of their own).
fn write_tree(cmd: &clap::Command, dir: &Path, pages: &mut Vec<PathBuf>) -> Result<()> {
    let man = clap_mangen::Man::new(cmd.clone())
        .source(format!("etcdsnap {}", env!("CARGO_PKG_VERSION")))
        .manual("etcdsnap manual");
    let path = man
        .generate_to(dir)
        .with_context(|| format!("writing a man page to {}", dir.display()))?;
    pages.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub, dir, pages)?;
    }
    Ok(())
}

/// Writes the pages and prints their paths, one a line.
pub fn run(dir: &Path) -> Result<()> {
    for p in write_all(dir)? {
        println!("{}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_all(dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "etcdsnap.1",
            "etcdsnap-server.1",
            "etcdsnap-etcd-snapshot.1",
            "etcdsnap-etcd-snapshot-save.1",
            "etcdsnap-member-remove.1",
            "etcdsnap-completion.1",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("-man")), "{names:?}");
        let server = std::fs::read_to_string(dir.path().join("etcdsnap-server.1")).unwrap();
        assert!(server.starts_with(".ie"), "{}", &server[..80]);
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            server.contains(&format!(
                ".TH etcdsnap-server 1  \"etcdsnap {version}\" \"etcdsnap manual\""
            )),
            "{server}"
        );
        assert!(server.contains("etcd\\-s3\\-bucket"), "{server}");
    }
}
