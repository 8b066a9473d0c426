#!/usr/bin/env bash
# The main job: installs etcd and the build tools, builds etcdsnap, and runs a server with an
# embedded etcd 3.5 that takes scheduled snapshots. Extra arguments go to `etcdsnap server`,
# e.g. `ci/run-server.sh --etcd-snapshot-schedule-cron '*/5 * * * *' --etcd-snapshot-compress`.
# Data: ETCDSNAP_DATA_DIR, default /var/lib/etcdsnap (root) or ~/.etcdsnap.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/install-deps.sh >/dev/null
# shellcheck disable=SC1090
source <(ci/install-deps.sh --env)
cargo build --release -p etcdsnap
exec target/release/etcdsnap server --etcd-binary "$ETCD35_BIN" "$@"
