#!/usr/bin/env bash
# Reading a >= 1 GiB snapshot without restoring it, against etcd's own tool on the same file,
# interleaved, N rounds, page cache dropped before each run when permitted:
#   etcdsnap etcd-snapshot status FILE -w json   vs  etcdutl snapshot status FILE -w json
#   etcdsnap etcd-snapshot inspect FILE --keys-only -o json   (against the same etcdutl time)
# with the peak RSS of every etcdsnap run, and a check that both tools report the same hash,
# revision, key count and size.
#
#   bench/inspect.sh                               # N=3; everything in a temp dir removed at exit
#   BENCH_DIR=/var/tmp/es-inspect bench/inspect.sh   # keep/reuse the filled data dir
#
# Targets: status <= 1.0x etcdutl with peak RSS <= 64 MiB; inspect --keys-only < 2x etcdutl.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

N=${N:-3}
TARGET_DB=${BENCH_DB_BYTES:-1127428915} # 1.05 GiB
need_bins

bench_tmp inspect
OUT=$BENCH_TMP/out RES=$BENCH_TMP/inspect-results.jsonl LOGS=$BENCH_TMP/logs
mkdir -p "$OUT" "$LOGS"
: >"$RES"

echo "== etcdsnap bench/inspect.sh  $(date -u +%FT%TZ)"
machine_conditions
echo "etcdsnap: $ETCDSNAP ($("$ETCDSNAP" --version))"
echo "etcdutl:  $ETCDUTL35_BIN ($("$ETCDUTL35_BIN" version | head -1))"
echo

SNAP=$OUT/bench.db
if [[ ! -f $SNAP ]]; then
    start_server "$BENCH_TMP"
    fill_db "$TARGET_DB"
    log "db size $(db_size) bytes"
    SNAPDIR=$DATA/server/db/snapshots
    rm -f "$SNAPDIR"/*
    "$ETCDSNAP" etcd-snapshot save -d "$DATA" --etcd-server "$SUPERVISOR" --name raw >/dev/null
    mv "$SNAPDIR"/raw-* "$SNAP"
    stop_pid "$SERVER_PID"
    stop_pid "$ETCD_PID"
fi
log "snapshot $SNAP: $(stat -c %s "$SNAP") bytes"

settle() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; sleep 1; }
record() {
    python3 -c 'import json,sys; r=json.loads(sys.argv[3]); r.update(kind=sys.argv[1], round=int(sys.argv[2])); print(json.dumps(r))' \
        "$1" "$2" "$3" >>"$RES"
}
secs() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print("%.2f s rc=%d rss %.1f MiB" % (j["seconds"], j["rc"], j["cmd_rss_max_kib"]/1024))' "$1"; }
CFG=$BENCH_TMP/empty.yaml
: >"$CFG"
export ETCDSNAP_CONFIG_FILE=$CFG

for ((r = 1; r <= N; r++)); do
    settle
    j=$(measure --out "$LOGS/etcdsnap-status-$r.json" --err "$LOGS/etcdsnap-status-$r.err" -- \
        "$ETCDSNAP" etcd-snapshot status "$SNAP" -w json)
    record etcdsnap-status "$r" "$j"
    log "etcdsnap status round $r: $(secs "$j")"
    settle
    j=$(measure --out "$LOGS/etcdutl-status-$r.json" --err "$LOGS/etcdutl-status-$r.err" -- \
        "$ETCDUTL35_BIN" snapshot status "$SNAP" -w json)
    record etcdutl-status "$r" "$j"
    log "etcdutl status round $r: $(secs "$j")"
    settle
    j=$(measure --out "$LOGS/etcdsnap-keys-$r.json" --err "$LOGS/etcdsnap-keys-$r.err" -- \
        "$ETCDSNAP" etcd-snapshot inspect "$SNAP" --keys-only -o json)
    record etcdsnap-keys "$r" "$j"
    log "etcdsnap inspect --keys-only round $r: $(secs "$j")"
done

python3 - "$RES" "$LOGS" <<'PY'
import json, os, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bad = [r for r in recs if r["rc"] != 0]
if bad:
    print("FAILED runs:", [(r["kind"], r["round"], r["rc"]) for r in bad]); sys.exit(1)
ours = json.load(open(os.path.join(sys.argv[2], "etcdsnap-status-1.json")))
theirs = json.load(open(os.path.join(sys.argv[2], "etcdutl-status-1.json")))
for k in ("hash", "revision", "totalKey", "totalSize"):
    if ours.get(k) != theirs.get(k):
        print(f"MISMATCH {k}: etcdsnap {ours.get(k)!r}, etcdutl {theirs.get(k)!r}"); sys.exit(1)
print(f"same figures: hash {theirs['hash']}, revision {theirs['revision']}, {theirs['totalKey']} keys, {theirs['totalSize']} bytes")
def k(kind): return [r for r in recs if r["kind"] == kind]
def med(kind): return statistics.median(r["seconds"] for r in k(kind))
def rng(kind): s = [r["seconds"] for r in k(kind)]; return f"{min(s):.2f}-{max(s):.2f}"
print()
print(f"{'operation':40} {'median s':>9} {'min-max':>12} {'peak RSS MiB':>13}")
for kind in ("etcdsnap-status", "etcdutl-status", "etcdsnap-keys"):
    rss = max(r["cmd_rss_max_kib"] for r in k(kind)) / 1024
    print(f"{kind:40} {med(kind):9.2f} {rng(kind):>12} {rss:13.1f}")
rs = med("etcdsnap-status") / med("etcdutl-status")
rk = med("etcdsnap-keys") / med("etcdutl-status")
rss = max(r["cmd_rss_max_kib"] for r in k("etcdsnap-status")) / 1024
print()
print(f"status / etcdutl status:             {rs:.2f}  (target <= 1.0)  {'pass' if rs <= 1.0 else 'MISS'}")
print(f"peak RSS of etcdsnap status:         {rss:.1f} MiB  (target <= 64)  {'pass' if rss <= 64 else 'MISS'}")
print(f"inspect --keys-only / etcdutl status: {rk:.2f}  (target < 2)  {'pass' if rk < 2 else 'MISS'}")
PY
