#!/usr/bin/env bash
# The main job: installs only what the server needs (ci/install-deps.sh runtime: protoc, etcd 3.5
# in the deps dir), builds the etcdsnap binary, and runs a server with an embedded etcd 3.5 that
# takes scheduled snapshots. Extra arguments go to `etcdsnap server`, e.g.
# `ci/run-server.sh --etcd-snapshot-schedule-cron '*/5 * * * *' --etcd-snapshot-compress`.
# Data: ETCDSNAP_DATA_DIR, default /var/lib/etcdsnap (root) or ~/.etcdsnap. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/install-deps.sh runtime
# shellcheck disable=SC1090
source <(ci/install-deps.sh --env)
cargo build --release --locked -p etcdsnap --bin etcdsnap
exec "$(ci/target-dir.sh)/release/etcdsnap" server --etcd-binary "$ETCD35_BIN" "$@"
