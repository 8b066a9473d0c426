#!/usr/bin/env bash
# Restore of a >= 1 GiB snapshot: `etcdsnap server --cluster-reset --cluster-reset-restore-path`
# against the same work done by hand, interleaved, N rounds:
#   local:  etcdsnap reset from the raw file   vs  etcdutl snapshot restore of that file
#   S3 zip: etcdsnap reset from a bare S3 name  vs  boto3 download + unzip + etcdutl restore
# on s3s-fs over plain HTTP. Also the peak RSS of the etcdsnap process in each reset.
#
#   bench/restore.sh                            # N=3; everything in a temp dir removed at exit
#   BENCH_DIR=/var/tmp/es-restore bench/restore.sh   # keep/reuse the filled data dir
#
# Targets: local <= 1.15x etcdutl; S3 zip <= 1.15x download+unzip+etcdutl; peak RSS <= 64 MiB.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

N=${N:-3}
TARGET_DB=${BENCH_DB_BYTES:-1127428915} # 1.05 GiB
need_bins
command -v unzip >/dev/null || die "unzip is needed (ci/install-deps.sh test installs it)"

bench_tmp restore
OUT=$BENCH_TMP/out RES=$BENCH_TMP/restore-results.jsonl LOGS=$BENCH_TMP/logs S3DATA=$BENCH_TMP/s3
mkdir -p "$OUT" "$LOGS" "$S3DATA/bench"
: >"$RES"
AK=benchak SK=benchsecretkey0123456789

echo "== etcdsnap bench/restore.sh  $(date -u +%FT%TZ)"
machine_conditions
echo "etcdsnap: $ETCDSNAP ($("$ETCDSNAP" --version))"
echo "etcd:     $ETCD35_BIN ($("$ETCD35_BIN" --version | head -1)); etcdutl $ETCDUTL35_BIN"
echo

S3_PORT=$(free_port)
"$S3S_FS_BIN" --host 127.0.0.1 --port "$S3_PORT" --access-key "$AK" --secret-key "$SK" \
    "$S3DATA" >"$BENCH_TMP/s3s-fs.log" 2>&1 </dev/null &
S3_PID=$!
track "$S3_PID"
S3_EP=http://127.0.0.1:$S3_PORT
S3FLAGS=(--s3-endpoint "127.0.0.1:$S3_PORT" --s3-insecure --s3-bucket bench --s3-folder snaps
    --s3-access-key "$AK" --s3-secret-key "$SK")

start_server "$BENCH_TMP"
fill_db "$TARGET_DB"
DB_BYTES=$(db_size)
log "db size $DB_BYTES bytes ($((DB_BYTES / 1048576)) MiB)"
SNAPDIR=$DATA/server/db/snapshots
rm -f "$SNAPDIR"/*
"$ETCDSNAP" etcd-snapshot save -d "$DATA" --etcd-server "$SUPERVISOR" --name raw >/dev/null
"$ETCDSNAP" etcd-snapshot save -d "$DATA" --etcd-server "$SUPERVISOR" --name zip \
    --snapshot-compress --s3 "${S3FLAGS[@]}" >/dev/null
RAW=$(ls "$SNAPDIR" | grep '^raw-')
ZIP=$(ls "$SNAPDIR" | grep '^zip-.*\.zip$')
cp "$SNAPDIR/$RAW" "$OUT/$RAW"
rm -f "$SNAPDIR/$ZIP" # the S3 restore must download it
[[ -f $S3DATA/bench/snaps/$ZIP ]] || die "the zip did not reach s3s-fs"
log "snapshots: $RAW ($(stat -c %s "$OUT/$RAW") bytes), $ZIP in S3 ($(stat -c %s "$S3DATA/bench/snaps/$ZIP") bytes)"
stop_pid "$SERVER_PID"
stop_pid "$ETCD_PID"
TOKEN=$(cat "$DATA/server/token")
PEER_URL=https://127.0.0.1:$PEER_PORT

settle() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; sleep 1; }
record() {
    python3 -c 'import json,sys; r=json.loads(sys.argv[3]); r.update(kind=sys.argv[1], round=int(sys.argv[2])); print(json.dumps(r))' \
        "$1" "$2" "$3" >>"$RES"
}
secs() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print("%.2f s rc=%d rss %.1f MiB" % (j["seconds"], j["rc"], j["cmd_rss_max_kib"]/1024))' "$1"; }
# Each reset leaves the previous data in etcd-old-*: remove it between rounds (disk space).
tidy() { rm -rf "$DATA"/server/db/etcd-old-* "$DATA"/server/tls-* "$DATA/server/db/reset-flag" "$OUT/restored"; }

run_local() {
    local r=$1 j
    tidy; settle
    j=$(measure --out "$LOGS/etcdsnap-local-$r.out" --err "$LOGS/etcdsnap-local-$r.err" -- \
        "$ETCDSNAP" server -d "$DATA" --node-name bench --bind-address 127.0.0.1 \
        --https-listen-port "$HTTPS_PORT" --etcd-client-port "$CLIENT_PORT" --etcd-peer-port "$PEER_PORT" \
        --etcd-binary "$ETCD35_BIN" --token "$TOKEN" --cluster-reset \
        --cluster-reset-restore-path "$OUT/$RAW")
    record etcdsnap-local "$r" "$j"
    log "etcdsnap local round $r: $(secs "$j")"
    tidy; settle
    j=$(measure --out "$LOGS/etcdutl-$r.out" --err "$LOGS/etcdutl-$r.err" -- \
        "$ETCDUTL35_BIN" snapshot restore "$OUT/$RAW" --name m --data-dir "$OUT/restored" \
        --initial-cluster "m=$PEER_URL" --initial-advertise-peer-urls "$PEER_URL")
    record etcdutl "$r" "$j"
    log "etcdutl round $r: $(secs "$j")"
}

by_hand_s3() { # the sequence an operator types: download, unzip, restore
    "$MOTO_PYTHON" "$BENCH_LIB/s3tool.py" "$S3_EP" "$AK" "$SK" bench download "snaps/$ZIP" "$OUT/$ZIP" >/dev/null &&
        unzip -q -o "$OUT/$ZIP" -d "$OUT" &&
        "$ETCDUTL35_BIN" snapshot restore "$OUT/${ZIP%.zip}" --name m --data-dir "$OUT/restored" \
            --initial-cluster "m=$PEER_URL" --initial-advertise-peer-urls "$PEER_URL"
}
export -f by_hand_s3
export S3_EP AK SK ZIP OUT PEER_URL MOTO_PYTHON BENCH_LIB ETCDUTL35_BIN

run_s3() {
    local r=$1 j
    tidy; rm -f "$SNAPDIR/$ZIP"; settle
    j=$(measure --out "$LOGS/etcdsnap-s3-$r.out" --err "$LOGS/etcdsnap-s3-$r.err" -- \
        "$ETCDSNAP" server -d "$DATA" --node-name bench --bind-address 127.0.0.1 \
        --https-listen-port "$HTTPS_PORT" --etcd-client-port "$CLIENT_PORT" --etcd-peer-port "$PEER_PORT" \
        --etcd-binary "$ETCD35_BIN" --token "$TOKEN" --cluster-reset \
        --etcd-s3 --etcd-s3-endpoint "127.0.0.1:$S3_PORT" --etcd-s3-insecure --etcd-s3-bucket bench \
        --etcd-s3-folder snaps --etcd-s3-access-key "$AK" --etcd-s3-secret-key "$SK" \
        --cluster-reset-restore-path "$ZIP")
    record etcdsnap-s3 "$r" "$j"
    log "etcdsnap S3 zip round $r: $(secs "$j")"
    tidy; rm -f "$OUT/$ZIP" "$OUT/${ZIP%.zip}"; settle
    j=$(measure --out "$LOGS/byhand-$r.out" --err "$LOGS/byhand-$r.err" -- bash -c by_hand_s3)
    record by-hand-s3 "$r" "$j"
    log "download+unzip+etcdutl round $r: $(secs "$j")"
    rm -f "$OUT/$ZIP" "$OUT/${ZIP%.zip}"
}

for ((r = 1; r <= N; r++)); do
    run_local "$r"
    run_s3 "$r"
done
tidy

python3 - "$RES" "$BENCH_LIB" <<'PY'
import json, statistics, sys
sys.path.insert(0, sys.argv[2])
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def k(kind): return [r for r in recs if r["kind"] == kind]
bad = [r for r in recs if r["rc"] != 0]
if bad:
    print("FAILED runs:", [(r["kind"], r["round"], r["rc"]) for r in bad]); sys.exit(1)
def med(kind): return statistics.median(r["seconds"] for r in k(kind))
def rng(kind): s = [r["seconds"] for r in k(kind)]; return f"{min(s):.2f}-{max(s):.2f}"
print()
print(f"{'operation':40} {'median s':>9} {'min-max':>12}")
for kind in ("etcdsnap-local", "etcdutl", "etcdsnap-s3", "by-hand-s3"):
    print(f"{kind:40} {med(kind):9.2f} {rng(kind):>12}")
rl = med("etcdsnap-local") / med("etcdutl")
rs = med("etcdsnap-s3") / med("by-hand-s3")
rss = max(r["cmd_rss_max_kib"] for r in k("etcdsnap-local") + k("etcdsnap-s3")) / 1024
print()
print(f"local restore / etcdutl:                {rl:.2f}  (target <= 1.15)  {'pass' if rl <= 1.15 else 'MISS'}")
print(f"S3 zip restore / download+unzip+etcdutl: {rs:.2f}  (target <= 1.15)  {'pass' if rs <= 1.15 else 'MISS'}")
print(f"peak RSS of etcdsnap during a reset:     {rss:.1f} MiB  (target <= 64)  {'pass' if rss <= 64 else 'MISS'}")
PY
