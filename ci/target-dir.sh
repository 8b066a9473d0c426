#!/usr/bin/env bash
# Prints cargo's target directory (CARGO_TARGET_DIR or the build.target-dir setting honoured).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
