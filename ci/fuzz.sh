#!/usr/bin/env bash
# Runs every fuzz target briefly from its committed corpus and fails on a crash, a timeout or
# running out of memory. Stable Rust only: libFuzzer needs -Zsanitizer and friends, which
# RUSTC_BOOTSTRAP=1 unlocks on a stable compiler; cargo-fuzz comes from
# `ci/install-deps.sh fuzz` (run here, idempotent).
#   ci/fuzz.sh                 every target for FUZZ_SECONDS (default 10) seconds each
#   ci/fuzz.sh names cron      only these targets
#   FUZZ_RUNS=1000000 ci/fuzz.sh   each target until it has run that many inputs (no time limit
#                              unless FUZZ_SECONDS is also set)
# Targets run two at a time (FUZZ_JOBS). The build is made for a quick smoke run: no
# AddressSanitizer (safe Rust; FUZZ_SANITIZER=address brings it back), 16 codegen units, line
# tables only. It goes to FUZZ_TARGET_DIR, default CARGO_TARGET_DIR when set, else a cache in
# the deps dir that outlives checkouts: a cold build takes several minutes, a build after a
# change to the crates about one. The committed corpora are read, never changed: new inputs go
# to a temporary directory that is removed at the end, a crashing input to fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/install-deps.sh fuzz
# shellcheck disable=SC1090
source <(ci/install-deps.sh --env)
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
runs=${FUZZ_RUNS:-}
if [ -n "$runs" ]; then seconds=${FUZZ_SECONDS:-0}; else seconds=${FUZZ_SECONDS:-10}; fi
jobs=${FUZZ_JOBS:-2}
sanitizer=${FUZZ_SANITIZER:-none}
# Absolute: the build runs from fuzz/.
target_dir=$(realpath -m "${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$ETCDSNAP_DEPS_DIR/fuzz-target}}")
triple=$(rustc -vV | sed -n 's/^host: //p')
all=(names config_file snapshot_request cron go_duration zip_restore bbolt_reader kube_object)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

# Inputs longer than these are cut; the readers' seeds are real snapshots of about 20 KiB.
max_len() {
  case $1 in
    zip_restore | bbolt_reader) echo 65536 ;;
    *) echo 4096 ;;
  esac
}

started=$(date +%s)
# On tmpfs when there is one: the targets write files on every run, into TMPDIR (see below).
scratch=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if ! (cd fuzz && "$CARGO_FUZZ_BIN" fuzz build --sanitizer "$sanitizer" --codegen-units 16 \
  --target "$triple" --target-dir "$target_dir") >"$scratch/build.log" 2>&1; then
  tail -n 60 "$scratch/build.log" >&2
  echo "fuzz: the fuzz targets do not build" >&2
  exit 1
fi
bin_dir=$target_dir/$triple/release
echo "fuzz: built in $(($(date +%s) - started)) s (into $bin_dir)"

# One target: its log goes to $scratch/<target>.log, its verdict to $scratch/<target>.rc.
run_one() {
  local t=$1 rc=0
  mkdir -p "$scratch/corpus/$t" "$scratch/artifacts/$t" "$scratch/tmp/$t"
  # The committed corpus is read; what the run finds goes to the scratch corpus (listed first).
  # A target's scratch files outlive it (fuzz/src/lib.rs): they go to TMPDIR, removed with
  # the rest.
  TMPDIR=$scratch/tmp/$t "$bin_dir/$t" "$scratch/corpus/$t" "fuzz/corpus/$t" \
    -max_total_time="$seconds" ${runs:+-runs="$runs"} -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=512 \
    -artifact_prefix="$scratch/artifacts/$t/" -print_final_stats=1 \
    >"$scratch/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$scratch/$t.rc"
}

for t in "${targets[@]}"; do
  [ -x "$bin_dir/$t" ] || {
    echo "fuzz: no target $t (targets: ${all[*]})" >&2
    exit 2
  }
done
pids=()
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run_one "$t" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || true; done

failed=()
for t in "${targets[@]}"; do
  log=$scratch/$t.log
  if [ "$(cat "$scratch/$t.rc")" = 0 ]; then
    done_runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    secs=$(awk '/stat::slowest_unit_time_sec/ {next} /Done [0-9]+ runs in [0-9]+ second/ {print $(NF-1)}' "$log")
    echo "fuzz: $t ok: ${done_runs:-?} runs in ${secs:-$seconds} s, ${cov:-cov: ?} edges"
  else
    echo "fuzz: $t FAILED; the end of its log:" >&2
    tail -n 40 "$log" >&2
    mkdir -p "fuzz/artifacts/$t"
    cp -r "$scratch/artifacts/$t/." "fuzz/artifacts/$t/" 2>/dev/null || true
    echo "fuzz: $t: the crashing input is kept in fuzz/artifacts/$t/; reproduce with" >&2
    echo "  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t artifacts/$t/<file>)" >&2
    failed+=("$t")
  fi
done
echo "fuzz: ${#targets[@]} targets in $(($(date +%s) - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
