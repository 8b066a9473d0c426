# shellcheck shell=bash
# Shared helpers of the bench scripts; sourced, not run.
#
# Every process a script starts is registered with `track PID` and stopped by PID (TERM, then
# KILL after a grace period) in the EXIT trap, together with the etcd child of the server.
# Nothing is ever killed by name.

BENCH_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_ROOT=$(cd "$BENCH_LIB/.." && pwd)
REPO_ROOT=$(cd "$BENCH_ROOT/.." && pwd)

# shellcheck disable=SC1090
source <("$REPO_ROOT/ci/install-deps.sh" --env)
export ETCDCTL_API=3

ETCDSNAP=${ETCDSNAP_BIN:-$REPO_ROOT/target/release/etcdsnap}
PY=${MOTO_PYTHON:-python3} # has boto3; also fine for the stdlib-only helpers

TRACKED_PIDS=()
SERVER_ARGS=()
track() { TRACKED_PIDS+=("$1"); }

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

stop_pid() { # stop_pid PID: TERM, wait up to 15 s, then KILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    # Newest first: the etcd child (tracked after the server) goes after the server had its
    # chance to stop it cleanly.
    for ((i = ${#TRACKED_PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${TRACKED_PIDS[i]}"
    done
    for pid in "${TRACKED_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n ${BENCH_TMP:-} && -z ${BENCH_KEEP:-} && -d $BENCH_TMP ]]; then
        rm -rf "$BENCH_TMP"
    elif [[ -n ${BENCH_TMP:-} ]]; then
        log "kept $BENCH_TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

need_bins() {
    [[ -x $ETCDSNAP ]] || die "no $ETCDSNAP: run 'cargo build --release -p etcdsnap' first"
    for v in ETCD35_BIN ETCDCTL35_BIN S3S_FS_BIN MOTO_PYTHON; do
        [[ -x ${!v:-} ]] || die "$v is not set or not executable: run ci/install-deps.sh"
    done
}

# start_server DIR: starts `etcdsnap server` on free loopback ports with data in DIR/data.
# Sets SERVER_PID, ETCD_PID, HTTPS_PORT, CLIENT_PORT, PEER_PORT, DATA, ETCD_EP, SUPERVISOR.
# Ports are remembered in DIR/ports so that a kept DIR (BENCH_DIR) restarts the same member.
# Extra server flags may be set in the SERVER_ARGS array.
start_server() {
    local dir=$1 i
    DATA=$dir/data
    mkdir -p "$DATA"
    if [[ -f $dir/ports ]]; then
        read -r HTTPS_PORT CLIENT_PORT PEER_PORT <"$dir/ports"
    else
        HTTPS_PORT=$(free_port) CLIENT_PORT=$(free_port) PEER_PORT=$(free_port)
        echo "$HTTPS_PORT $CLIENT_PORT $PEER_PORT" >"$dir/ports"
    fi
    "$ETCDSNAP" server -d "$DATA" --bind-address 127.0.0.1 \
        --https-listen-port "$HTTPS_PORT" --etcd-client-port "$CLIENT_PORT" \
        --etcd-peer-port "$PEER_PORT" --etcd-binary "$ETCD35_BIN" --etcd-disable-snapshots \
        --node-name bench --write-kubeconfig "$dir/kubeconfig.yaml" "${SERVER_ARGS[@]}" \
        >>"$dir/server.log" 2>&1 </dev/null &
    SERVER_PID=$!
    track "$SERVER_PID"
    ETCD_EP=https://127.0.0.1:$CLIENT_PORT
    SUPERVISOR=https://127.0.0.1:$HTTPS_PORT
    TLS=$DATA/server/tls/etcd
    for ((i = 0; i < 600; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -30 "$dir/server.log" >&2; die "server exited"; }
        if [[ -f $DATA/server/token ]] && etcdctl_ endpoint health >/dev/null 2>&1 &&
            "$ETCDSNAP" etcd-snapshot ls -d "$DATA" --etcd-server "$SUPERVISOR" >/dev/null 2>&1; then
            break
        fi
        sleep 0.2
    done
    ((i < 600)) || { tail -30 "$dir/server.log" >&2; die "server not ready after 120 s"; }
    ETCD_PID=$(cat /proc/"$SERVER_PID"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -m1 . || true)
    [[ -n $ETCD_PID ]] || die "cannot find the etcd child of server $SERVER_PID"
    track "$ETCD_PID"
    log "server pid $SERVER_PID (supervisor $SUPERVISOR), etcd pid $ETCD_PID ($ETCD_EP)"
}

etcdctl_() {
    "$ETCDCTL35_BIN" --endpoints "$ETCD_EP" --cacert "$TLS/server-ca.crt" \
        --cert "$TLS/client.crt" --key "$TLS/client.key" "$@"
}

db_size() { etcdctl_ endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])'; }

# fill_db TARGET_BYTES: fills etcd until its db size is at least TARGET_BYTES, with values of
# the kind BENCH_DATA names (json, the default: Kubernetes-like, about 4x compressible; random:
# incompressible). The kind is remembered in DATA/bench-data so that a kept dir (BENCH_DIR)
# filled with one kind is never topped up or measured as the other.
BENCH_DATA=${BENCH_DATA:-json}
fill_db() {
    local target=$1 cur had
    [[ $BENCH_DATA == json || $BENCH_DATA == random ]] || die "BENCH_DATA must be json or random"
    cur=$(db_size)
    if [[ -f $DATA/bench-data ]]; then
        had=$(<"$DATA/bench-data")
    elif ((cur < 8 << 20)); then
        had=$BENCH_DATA # a fresh db
    else
        had=json # filled before the mark existed
    fi
    [[ $had == "$BENCH_DATA" ]] ||
        die "$DATA holds $had values, BENCH_DATA=$BENCH_DATA: use another BENCH_DIR"
    echo "$BENCH_DATA" >"$DATA/bench-data"
    if ((cur >= target)); then
        log "db already $((cur / 1048576)) MiB >= target ($BENCH_DATA values), not filling"
        return
    fi
    log "filling etcd with $BENCH_DATA values to >= $((target / 1048576)) MiB (now $((cur / 1048576)) MiB)"
    python3 "$BENCH_LIB/fill.py" "$ETCDCTL35_BIN" "$ETCD_EP" "$TLS/server-ca.crt" \
        "$TLS/client.crt" "$TLS/client.key" "$target" 1000000 4 "$BENCH_DATA" >&2
}

# save_has_flag FLAG: whether this etcdsnap's `etcd-snapshot save` takes FLAG (an older build
# may not; the scripts then skip what needs it).
save_has_flag() { "$ETCDSNAP" etcd-snapshot save --help 2>&1 | grep -q -- "$1"; }

# snapshot_file DIR: the name of the one finished snapshot in DIR (not a .part), or nothing.
snapshot_file() {
    local p
    for p in "$1"/*; do
        [[ -f $p && $p != *.part ]] && { basename "$p"; return; }
    done
}

# in_sequence CMD1... ';;' CMD2... [';;' ...]: sets SEQ to one command line (bash -c) that runs
# CMD1, then CMD2 if CMD1 succeeded, and so on; for timing a sequence as one measured command.
in_sequence() {
    # shellcheck disable=SC2016,SC2034
    SEQ=(bash -c 'c=(); for a; do if [[ $a == ";;" ]]; then "${c[@]}" || exit; c=(); else c+=("$a"); fi; done; "${c[@]}"' _ "$@")
}

# measure [--pid n=PID ...] -- CMD...: JSON figures of one run (see lib/measure.py).
measure() { python3 "$BENCH_LIB/measure.py" --reset-hwm "$@"; }

machine_conditions() {
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "top CPU consumers now (not ours included):"
    ps -eo pid,pcpu,rss,etimes,comm --sort=-pcpu | head -8 | sed 's/^/  /'
}

# bench_tmp NAME: sets BENCH_TMP to $BENCH_DIR (kept and reused) or a new temp dir.
bench_tmp() {
    if [[ -n ${BENCH_DIR:-} ]]; then
        BENCH_TMP=$BENCH_DIR BENCH_KEEP=1
        mkdir -p "$BENCH_TMP"
    else
        BENCH_TMP=$(mktemp -d "/var/tmp/etcdsnap-bench-$1.XXXXXX")
    fi
}
