#!/usr/bin/env bash
# Runs the whole test suite: unit tests and integration tests against real etcd 3.4 and 3.5,
# s3s-fs, moto, azurite and fake-gcs-server. Installs what the tests need first
# (ci/install-deps.sh test; idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
ci/install-deps.sh test
# shellcheck disable=SC1090
source <(ci/install-deps.sh --env)
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
