#!/usr/bin/env bash
# Builds the Debian package target/debian/etcdsnap_<version>-1_<arch>.deb with cargo-deb:
#   packaging/build-deb.sh [cargo-deb arguments...]
# The release binary is built first; the man pages, the completion scripts and the unit (with
# ExecStart=/usr/bin/etcdsnap, Debian's path) are generated from it into
# <target>/release/packaging/, where [package.metadata.deb] in crates/etcdsnap/Cargo.toml finds
# them. cargo-deb comes from PATH (`cargo install cargo-deb --locked`) or from the deps dir
# (`ci/install-deps.sh deb`). Honours CARGO_TARGET_DIR.
#
# The package installs the unit without enabling or starting it, and depends on no etcd package
# (it never pulls in a host etcd service): put an etcd binary on PATH or set etcd-binary in
# /etc/etcdsnap/config.yaml, then `systemctl enable --now etcdsnap`.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v cargo-deb >/dev/null; then
  cargo_deb=cargo-deb
else
  # shellcheck disable=SC1090
  source <(ci/install-deps.sh --env)
  cargo_deb=$CARGO_DEB_BIN
  [ -x "$cargo_deb" ] || {
    echo "build-deb.sh: cargo-deb is missing: run ci/install-deps.sh deb (or cargo install cargo-deb --locked)" >&2
    exit 1
  }
fi

target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -p etcdsnap
bin=$target/release/etcdsnap
out=$target/release/packaging
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" man --dir "$out/man" >/dev/null
gzip -9n "$out"/man/*.1
"$bin" completion bash >"$out/completions/etcdsnap"
"$bin" completion zsh >"$out/completions/_etcdsnap"
"$bin" completion fish >"$out/completions/etcdsnap.fish"
sed 's#^ExecStart=/usr/local/bin/etcdsnap #ExecStart=/usr/bin/etcdsnap #' \
  packaging/etcdsnap.service >"$out/etcdsnap.service"
grep -q '^ExecStart=/usr/bin/etcdsnap server' "$out/etcdsnap.service"

"$cargo_deb" -p etcdsnap --no-build "$@"
