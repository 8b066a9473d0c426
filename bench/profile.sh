#!/usr/bin/env bash
# Where the time and memory of a save go: CPU profiles (perf, self time by symbol) of the
# etcdsnap server and of the etcd child during one uncompressed and one compressed save, then a
# run of consecutive saves printing the server's RSS after each (growth that does not level off
# would be a leak). Needs a data dir filled by save.sh or s3.sh:
#
#   BENCH_DIR=/var/tmp/es-bench bench/save.sh      # once (keeps the dir)
#   BENCH_DIR=/var/tmp/es-bench bench/profile.sh   # REPEAT=8 consecutive saves by default
#   FLAME=1 BENCH_DIR=/var/tmp/es-bench bench/profile.sh   # + a flame graph of the server per save
#
# With FLAME=1 the server is recorded with call graphs (`perf record --call-graph dwarf`: the
# release build has no frame pointers) and each save gets PROF/<save>-server-flame.svg through
# `perf script | inferno-collapse-perf | inferno-flamegraph` (`cargo install inferno`); without
# inferno on PATH the script prints that command instead.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

REPEAT=${REPEAT:-8}
FLAME=${FLAME:-}
[[ -n ${BENCH_DIR:-} && -d ${BENCH_DIR}/data ]] || die "set BENCH_DIR to a data dir kept by save.sh/s3.sh"
command -v perf >/dev/null || die "perf not found"
need_bins
BENCH_TMP=$BENCH_DIR BENCH_KEEP=1
PROF=$BENCH_TMP/profile
mkdir -p "$PROF"

echo "== etcdsnap bench/profile.sh  $(date -u +%FT%TZ)"
machine_conditions
start_server "$BENCH_TMP"
SNAPDIR=$DATA/server/db/snapshots
echo "db size $(db_size) bytes"

save() { "$ETCDSNAP" etcd-snapshot save -d "$DATA" --etcd-server "$SUPERVISOR" "$@" >/dev/null; }

# profile NAME [save flags]: perf of server and etcd during one save, top symbols by self time.
profile() {
    local name=$1 p1 p2 t0 t1 graph=()
    shift
    [[ -z $FLAME ]] || graph=(--call-graph "dwarf,16384")
    rm -f "$SNAPDIR"/*
    sync
    perf record -F 499 "${graph[@]}" -o "$PROF/$name-server.data" -p "$SERVER_PID" >/dev/null 2>&1 &
    p1=$!
    track "$p1"
    perf record -F 499 -o "$PROF/$name-etcd.data" -p "$ETCD_PID" >/dev/null 2>&1 &
    p2=$!
    track "$p2"
    sleep 1
    t0=$(date +%s.%N)
    save "$@"
    t1=$(date +%s.%N)
    kill -INT "$p1" "$p2"
    wait "$p1" "$p2" 2>/dev/null || true
    echo
    echo "---- $name save: $(python3 -c "print(f'{$t1 - $t0:.2f}')") s"
    for who in server etcd; do
        echo "-- $who: CPU share by binary/library (kernel = syscalls, copies, TCP)"
        perf report -i "$PROF/$name-$who.data" --stdio --no-children -g none --sort dso 2>/dev/null |
            grep -v '^#' | grep -v '^$' | sed -n 1,5p || true
        if [[ $who == etcd ]]; then # stripped Go binary: names from Go's own symbol table
            if command -v go >/dev/null; then
                echo "-- etcd: top functions by self CPU (perf + go tool addr2line)"
                python3 "$BENCH_LIB/perf_go_syms.py" "$PROF/$name-etcd.data" "$ETCD35_BIN" 12 || true
            fi
            continue
        fi
        echo "-- $who: top symbols by self CPU (perf, 499 Hz)"
        perf report -i "$PROF/$name-$who.data" --stdio --no-children -g none --sort dso,symbol 2>/dev/null |
            grep -v '^#' | grep -v '^$' | sed -n 1,18p | cut -c1-120 || true
    done
    if [[ -n $FLAME ]]; then
        if command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; then
            perf script -i "$PROF/$name-server.data" 2>/dev/null | inferno-collapse-perf |
                inferno-flamegraph --title "etcdsnap server, $name save" >"$PROF/$name-server-flame.svg"
            echo "-- server flame graph: $PROF/$name-server-flame.svg"
        else
            echo "-- no inferno on PATH (cargo install inferno); the flame graph is:"
            echo "   perf script -i $PROF/$name-server.data | inferno-collapse-perf | inferno-flamegraph >$PROF/$name-server-flame.svg"
        fi
    fi
    rm -f "$SNAPDIR"/*
}

profile raw
profile zip --snapshot-compress
if save_has_flag --snapshot-compress-format; then
    profile zstd --snapshot-compress --snapshot-compress-format=zstd
fi

echo
echo "---- $REPEAT consecutive uncompressed saves: server RSS after each (MiB)"
printf '%-6s %-10s %-10s\n' save seconds "RSS MiB"
printf '%-6s %-10s %-10.1f\n' 0 - "$(awk '/VmRSS/ {print $2/1024}' /proc/"$SERVER_PID"/status)"
for ((i = 1; i <= REPEAT; i++)); do
    rm -f "$SNAPDIR"/*
    t0=$(date +%s.%N)
    save
    t1=$(date +%s.%N)
    printf '%-6s %-10.2f %-10.1f\n' "$i" "$(python3 -c "print($t1 - $t0)")" \
        "$(awk '/VmRSS/ {print $2/1024}' /proc/"$SERVER_PID"/status)"
done
rm -f "$SNAPDIR"/*
