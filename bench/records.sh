#!/usr/bin/env bash
# ETCDSnapshotFile records at scale: 10,000 local files and 10,000 S3 objects (hard links of one
# real snapshot, in the snapshot dir and in s3s-fs's bucket), then
#   * reconcile (an `etcd-snapshot ls --s3`, which reconciles after listing): wall time, and the
#     S3 requests it made, counted from s3s-fs's request log (no per-object request);
#   * `kubectl get etcdsnapshotfile` of all 20,000: as kubectl pages by default (Table pages
#     of 500, limit/continue), in one Table (`--chunk-size=0`, streamed by the server), one
#     page of 500, N rounds each; then the same through a relay that serves every page from
#     memory (bench/lib/page_cache.py), which leaves kubectl's own time;
#   * the server's RSS when idle with no records, and its peak (VmHWM) over the whole run.
#
#   bench/records.sh              # N=3; COUNT=10000 files and as many objects
#
# Targets: get <= 1 s; reconcile of 10,000 + 10,000 <= 5 s with no per-object S3 request;
# RSS <= 64 MiB above idle throughout.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

N=${N:-3}
COUNT=${COUNT:-10000}
need_bins
[[ -x ${KUBECTL_BIN:-} ]] || die "KUBECTL_BIN is not set: run ci/install-deps.sh test"
bench_tmp records
S3DATA=$BENCH_TMP/s3
mkdir -p "$S3DATA/bench/snaps"
AK=benchak SK=benchsecretkey0123456789

echo "== etcdsnap bench/records.sh  $(date -u +%FT%TZ)"
machine_conditions
echo "etcdsnap: $ETCDSNAP ($("$ETCDSNAP" --version)); kubectl $("$KUBECTL_BIN" version --client 2>/dev/null | head -1)"
echo

S3_PORT=$(free_port)
RUST_LOG=s3s::service=debug "$S3S_FS_BIN" --host 127.0.0.1 --port "$S3_PORT" --access-key "$AK" \
    --secret-key "$SK" "$S3DATA" >"$BENCH_TMP/s3s-fs.log" 2>&1 </dev/null &
track $!
S3FLAGS=(--s3 --s3-endpoint "127.0.0.1:$S3_PORT" --s3-insecure --s3-bucket bench --s3-folder snaps
    --s3-access-key "$AK" --s3-secret-key "$SK")

start_server "$BENCH_TMP"
rss() { awk -v k="$2" '$1 == k":" {print $2}' /proc/"$1"/status; } # KiB
IDLE_KIB=$(rss "$SERVER_PID" VmRSS)
SNAPDIR=$DATA/server/db/snapshots
KC=(--kubeconfig "$BENCH_TMP/kubeconfig.yaml")
CLI=(-d "$DATA" --etcd-server "$SUPERVISOR")

"$ETCDSNAP" etcd-snapshot save "${CLI[@]}" --name seed >/dev/null
SEED=$(ls "$SNAPDIR" | grep -m1 '^seed-')
log "linking $COUNT files and $COUNT objects to $SEED ($(stat -c %s "$SNAPDIR/$SEED") bytes)"
python3 - "$SNAPDIR/$SEED" "$SNAPDIR" "$S3DATA/bench/snaps" "$COUNT" <<'PY'
import os, sys
seed, local, remote, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
for i in range(n):
    t = 1700000000 + i
    os.link(seed, os.path.join(local, f"on-demand-bench-{t}"))
    os.link(seed, os.path.join(remote, f"on-demand-other-{t}"))
PY
rm "$SNAPDIR/$SEED"

requests() { grep -c 's3s::service: req:' "$BENCH_TMP/s3s-fs.log" || true; }
count_records() { "$KUBECTL_BIN" "${KC[@]}" get etcdsnapshotfile -o name | wc -l; }

# The reconcile that follows an `ls` may outlive the answer (the answer waits at most 5 s), so
# its duration is read from the server's own histogram once its count has gone up.
reconciles() { curl -sk "$SUPERVISOR/metrics" | awk -v k="etcdsnap_etcd_snapshot_reconcile_duration_seconds_$1{status=\"success\"}" '$1 == k {print $2}'; }
revision() { etcdctl_ endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])'; }
for ((r = 1; r <= N; r++)); do
    rev0=$(revision)
    before=$(requests)
    n0=$(reconciles count) s0=$(reconciles sum)
    t0=$(date +%s.%N)
    "$ETCDSNAP" etcd-snapshot ls "${CLI[@]}" "${S3FLAGS[@]}" >/dev/null
    t1=$(date +%s.%N)
    while [[ $(reconciles count) == "$n0" ]]; do sleep 0.2; done
    took=$(python3 -c "print('%.2f' % ($(reconciles sum) - $s0))")
    made=$(($(requests) - before))
    log "reconcile round $r ($([[ $r == 1 ]] && echo 'creates every record' || echo 'all in sync')): $took s (the ls answered in $(python3 -c "print('%.2f' % ($t1 - $t0))") s), $made S3 requests, $(($(revision) - rev0)) etcd writes, server peak RSS so far $(($(rss "$SERVER_PID" VmHWM) / 1024)) MiB"
done
have=$(count_records)
log "records: $have (want $((2 * COUNT)))"
((have == 2 * COUNT)) || die "wrong number of records"

for ((r = 1; r <= N; r++)); do
    t0=$(date +%s.%N)
    rows=$("$KUBECTL_BIN" "${KC[@]}" get etcdsnapshotfile --chunk-size=0 | wc -l)
    t1=$(date +%s.%N)
    "$KUBECTL_BIN" "${KC[@]}" get --raw "/apis/k3s.cattle.io/v1/etcdsnapshotfiles?limit=500" >"$BENCH_TMP/page.json"
    t2=$(date +%s.%N)
    page=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(len(j["items"]), bool(j["metadata"].get("continue")))' "$BENCH_TMP/page.json")
    t3=$(date +%s.%N)
    paged=$("$KUBECTL_BIN" "${KC[@]}" get etcdsnapshotfile --chunk-size=500 -o name | wc -l)
    t4=$(date +%s.%N)
    default_rows=$("$KUBECTL_BIN" "${KC[@]}" get etcdsnapshotfile | wc -l)
    t5=$(date +%s.%N)
    log "get round $r: plain \`kubectl get etcdsnapshotfile\` (Table pages of 500): $((default_rows - 1)) rows in $(python3 -c "print('%.2f' % ($t5 - $t4))") s; all $((rows - 1)) rows in one Table $(python3 -c "print('%.2f' % ($t1 - $t0))") s; one page of 500: $(python3 -c "print('%.2f' % ($t2 - $t1))") s (items, continue: $page); -o name paged by 500: $paged in $(python3 -c "print('%.2f' % ($t4 - $t3))") s"
done
# kubectl's own share: the same `kubectl get` through a relay that answers every page from
# memory (bench/lib/page_cache.py), so that only kubectl's work remains.
RELAY_PORT=$(free_port)
python3 "$(dirname "$0")/lib/page_cache.py" "$SUPERVISOR" "$RELAY_PORT" \
    "$(awk '/token:/ {print $2}' "$BENCH_TMP/kubeconfig.yaml")" >"$BENCH_TMP/relay.log" 2>&1 &
track $!
sleep 1
printf 'apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: http://127.0.0.1:%s\n  name: relay\ncontexts:\n- context:\n    cluster: relay\n    user: relay\n  name: relay\ncurrent-context: relay\nusers:\n- name: relay\n  user: {}\n' \
    "$RELAY_PORT" >"$BENCH_TMP/relay.yaml"
RC=(--kubeconfig "$BENCH_TMP/relay.yaml")
"$KUBECTL_BIN" "${RC[@]}" get etcdsnapshotfile >/dev/null
"$KUBECTL_BIN" "${RC[@]}" get etcdsnapshotfile --chunk-size=0 >/dev/null
for ((r = 1; r <= N; r++)); do
    t0=$(date +%s.%N)
    "$KUBECTL_BIN" "${RC[@]}" get etcdsnapshotfile >/dev/null
    t1=$(date +%s.%N)
    "$KUBECTL_BIN" "${RC[@]}" get etcdsnapshotfile --chunk-size=0 >/dev/null
    t2=$(date +%s.%N)
    log "kubectl alone (every page served from memory): plain get $(python3 -c "print('%.2f' % ($t1 - $t0))") s; one Table $(python3 -c "print('%.2f' % ($t2 - $t1))") s"
done
PEAK_KIB=$(rss "$SERVER_PID" VmHWM)
echo
echo "server RSS: idle $((IDLE_KIB / 1024)) MiB, peak $((PEAK_KIB / 1024)) MiB, peak above idle $(((PEAK_KIB - IDLE_KIB) / 1024)) MiB (target <= 64)"
