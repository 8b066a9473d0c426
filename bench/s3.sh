#!/usr/bin/env bash
# S3: `etcdsnap etcd-snapshot save` alone vs `save --s3` (upload included) to s3s-fs on
# loopback (plain HTTP), on a >= 1 GiB database; then `etcdsnap etcd-snapshot ls --s3` of a
# folder of 10,000 objects vs a bare paginated ListObjectsV2 by boto3.
#
#   bench/s3.sh                        # N=3 save rounds, NLS=5 ls rounds, temp dir removed at exit
#   BENCH_DIR=/var/tmp/es-bench bench/s3.sh    # reuse/keep a filled data dir (same as save.sh)
#
# Targets: save+upload <= 1.5x save alone (medians); server RSS growth during save+upload
# <= 64 MiB; ls of 10,000 objects <= 1.2x boto3.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

N=${N:-3}
NLS=${NLS:-5}
NOBJ=${NOBJ:-10000}
TARGET_DB=${BENCH_DB_BYTES:-1127428915} # 1.05 GiB
AK=benchaccesskey SK=benchsecretkey0123456789 BUCKET=bench-bucket
need_bins

bench_tmp s3
RES=$BENCH_TMP/s3-results.jsonl LOGS=$BENCH_TMP/logs S3DATA=$BENCH_TMP/s3data
mkdir -p "$LOGS"
rm -rf "$S3DATA"
mkdir -p "$S3DATA/$BUCKET"
: >"$RES"

echo "== etcdsnap bench/s3.sh  $(date -u +%FT%TZ)"
machine_conditions
echo "etcdsnap: $ETCDSNAP ($("$ETCDSNAP" --version))"
echo "s3s-fs:   $S3S_FS_BIN"
echo

S3_PORT=$(free_port)
# Debug logging of s3s-fs gives one timestamped line per part written (lib/s3s_phases.py).
RUST_LOG=s3s_fs=debug "$S3S_FS_BIN" --host 127.0.0.1 --port "$S3_PORT" --access-key "$AK" --secret-key "$SK" \
    "$S3DATA" >"$BENCH_TMP/s3s-fs.log" 2>&1 </dev/null &
S3_PID=$!
track "$S3_PID"
for ((i = 0; i < 100; i++)); do
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
        "$S3_PORT" 2>/dev/null && break
    kill -0 "$S3_PID" 2>/dev/null || { cat "$BENCH_TMP/s3s-fs.log" >&2; die "s3s-fs exited"; }
    sleep 0.1
done
S3_EP=http://127.0.0.1:$S3_PORT
log "s3s-fs pid $S3_PID on $S3_EP, data $S3DATA"

start_server "$BENCH_TMP"
fill_db "$TARGET_DB"
DB_BYTES=$(db_size)
log "db size $DB_BYTES bytes ($((DB_BYTES / 1048576)) MiB)"
((DB_BYTES >= 1073741824 || TARGET_DB < 1073741824)) || die "db is only $DB_BYTES bytes (< 1 GiB)"
SNAPDIR=$DATA/server/db/snapshots

S3FLAGS=(--s3 --s3-endpoint "127.0.0.1:$S3_PORT" --s3-insecure --s3-bucket "$BUCKET"
    --s3-access-key "$AK" --s3-secret-key "$SK" --s3-region us-east-1
    --s3-bucket-lookup-type path)
s3tool() { "$MOTO_PYTHON" "$BENCH_LIB/s3tool.py" "$S3_EP" "$AK" "$SK" "$BUCKET" "$@"; }

settle() { sync; sleep 1; }
record() { # KIND ROUND EXTRA_JSON MEASURE_JSON
    python3 -c 'import json,sys; r=json.loads(sys.argv[4]); r.update(kind=sys.argv[1], round=int(sys.argv[2])); r.update(json.loads(sys.argv[3])); print(json.dumps(r))' \
        "$1" "$2" "$3" "$4" >>"$RES"
}
secs() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.2f s rc=%d" % (d["seconds"], d["rc"]))' "$1"; }
clean_outputs() { rm -f "$SNAPDIR"/*; rm -rf "${S3DATA:?}/$BUCKET/snaps" "$S3DATA/$BUCKET/boto3"; }

run_save() { # KIND ROUND [flags]
    local kind=$1 r=$2 j f size
    shift 2
    clean_outputs
    settle
    j=$(measure --pid "server=$SERVER_PID" --pid "etcd=$ETCD_PID" --pid "s3s-fs=$S3_PID" \
        --out "$LOGS/$kind-$r.out" --err "$LOGS/$kind-$r.err" -- \
        "$ETCDSNAP" etcd-snapshot save -d "$DATA" --etcd-server "$SUPERVISOR" "$@")
    f=$(ls "$SNAPDIR" | grep -v '\.part$' | head -1 || true)
    size=$(stat -c %s "$SNAPDIR/$f" 2>/dev/null || echo 0)
    local s3size=0 same=null
    if [[ $kind == save+s3 ]]; then
        s3size=$(stat -c %s "$S3DATA/$BUCKET/snaps/$f" 2>/dev/null || echo 0)
        # Untimed: the S3 copy (s3s-fs keeps it as a plain file) must be byte-identical.
        if cmp -s "$SNAPDIR/$f" "$S3DATA/$BUCKET/snaps/$f"; then same=true; else same=false; fi
        if grep -qi 'warn\|fail\|error' "$LOGS/$kind-$r.out" "$LOGS/$kind-$r.err"; then
            log "save+s3 round $r printed: $(cat "$LOGS/$kind-$r.out" "$LOGS/$kind-$r.err")"
        fi
    fi
    record "$kind" "$r" "{\"file_bytes\": $size, \"s3_bytes\": $s3size, \"s3_identical\": $same}" "$j"
    log "$kind round $r: $(secs "$j") $f local $size, s3 $s3size bytes, identical: $same"
    if [[ $kind == save ]]; then
        # Reference (info): the same file uploaded by boto3 (8 MiB parts, 2 in flight).
        settle
        j=$(measure --pid "s3s-fs=$S3_PID" --out "$LOGS/boto3-upload-$r.out" \
            --err "$LOGS/boto3-upload-$r.err" -- \
            "$MOTO_PYTHON" "$BENCH_LIB/s3tool.py" "$S3_EP" "$AK" "$SK" "$BUCKET" upload \
            "$SNAPDIR/$f" "boto3/$f")
        record boto3-upload "$r" "$(cat "$LOGS/boto3-upload-$r.out" 2>/dev/null || echo '{}')" "$j"
        log "boto3 upload round $r: $(secs "$j") $(cat "$LOGS/boto3-upload-$r.out")"
    fi
    clean_outputs
}

log "warm-up (untimed): one save --s3"
"$ETCDSNAP" etcd-snapshot save -d "$DATA" --etcd-server "$SUPERVISOR" "${S3FLAGS[@]}" \
    --s3-folder snaps >"$LOGS/warm.out" 2>&1 || { cat "$LOGS/warm.out" >&2; die "warm-up save --s3 failed"; }
cat "$LOGS/warm.out" >&2
clean_outputs

for ((r = 1; r <= N; r++)); do
    if ((r % 2)); then
        run_save save "$r"
        run_save save+s3 "$r" "${S3FLAGS[@]}" --s3-folder snaps
    else
        run_save save+s3 "$r" "${S3FLAGS[@]}" --s3-folder snaps
        run_save save "$r"
    fi
done

# ---- ls of a folder of NOBJ objects ----
# s3s-fs keeps object OBJ of bucket B in DATA_DIR/B/OBJ, so the objects are plain files.
log "creating $NOBJ objects in s3://$BUCKET/many/"
python3 - "$S3DATA/$BUCKET/many" "$NOBJ" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
body = b"x" * 200
for i in range(n):
    # Snapshot-like names with distinct timestamps: every object is listed as a snapshot.
    with open(os.path.join(d, f"on-demand-bench-{1700000000 + 60 * i}"), "wb") as f:
        f.write(body)
EOF
COUNT=$(s3tool count many/ | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"])')
log "boto3 ListObjectsV2 sees $COUNT objects under many/"
((COUNT == NOBJ)) || die "expected $NOBJ objects, listing shows $COUNT"
rm -f "$SNAPDIR"/*

run_ls() { # ROUND
    local r=$1 j rows
    j=$(measure --pid "server=$SERVER_PID" --pid "s3s-fs=$S3_PID" \
        --out "$LOGS/ls-$r.out" --err "$LOGS/ls-$r.err" -- \
        "$ETCDSNAP" etcd-snapshot ls -d "$DATA" --etcd-server "$SUPERVISOR" "${S3FLAGS[@]}" \
        --s3-folder many)
    rows=$(grep -c 's3://' "$LOGS/ls-$r.out" || true)
    record etcdsnap-ls "$r" "{\"rows\": $rows}" "$j"
    log "etcdsnap ls round $r: $(secs "$j"), $rows S3 rows"
}
run_boto3_ls() { # ROUND
    local r=$1 j
    j=$(measure --pid "s3s-fs=$S3_PID" --out "$LOGS/boto3-ls-$r.out" --err "$LOGS/boto3-ls-$r.err" -- \
        "$MOTO_PYTHON" "$BENCH_LIB/s3tool.py" "$S3_EP" "$AK" "$SK" "$BUCKET" list many/)
    record boto3-ls "$r" "$(cat "$LOGS/boto3-ls-$r.out" 2>/dev/null || echo '{}')" "$j"
    log "boto3 ls round $r: whole process $(secs "$j"), $(cat "$LOGS/boto3-ls-$r.out")"
}
# One untimed run of each first (s3s-fs directory cache, server S3 client cache).
run_ls 0
run_boto3_ls 0
for ((r = 1; r <= NLS; r++)); do
    if ((r % 2)); then run_ls "$r"; run_boto3_ls "$r"; else run_boto3_ls "$r"; run_ls "$r"; fi
done
# Info: `ls -o json` asks the server for node metadata (a HEAD per object not in its cache).
for r in 1 2; do
    j=$(measure --pid "server=$SERVER_PID" --out "$LOGS/ls-json-$r.out" --err "$LOGS/ls-json-$r.err" -- \
        "$ETCDSNAP" etcd-snapshot ls -o json -d "$DATA" --etcd-server "$SUPERVISOR" "${S3FLAGS[@]}" \
        --s3-folder many)
    record etcdsnap-ls-json "$r" "{}" "$j"
    log "etcdsnap ls -o json run $r: $(secs "$j")"
done

echo
echo "== results (db size $DB_BYTES bytes = $((DB_BYTES / 1048576)) MiB, N=$N save rounds, $NLS ls rounds, medians)"
python3 - "$RES" "$DB_BYTES" "$BENCH_LIB" "$NOBJ" <<'EOF'
import sys
sys.path.insert(0, sys.argv[3])
from report import *
recs = load(sys.argv[1]); db = int(sys.argv[2]); nobj = int(sys.argv[4])
recs = [r for r in recs if r["round"] > 0]
f = lambda k: (lambda r: f"{r.get(k, 0) / 1e6:.1f}" if r.get(k) else "-")
same = lambda r: {True: "yes", False: "NO"}.get(r.get("s3_identical"), "-")
print(rounds_table(recs, ["save", "save+s3", "boto3-upload"],
                   [("local MB", f("file_bytes")), ("S3 MB", f("s3_bytes")), ("S3 copy = local", same)]))
inproc = lambda r: f"{r['inproc_seconds']:.3f}" if "inproc_seconds" in r else "-"
print(rounds_table(recs, ["etcdsnap-ls", "boto3-ls", "etcdsnap-ls-json"],
                   [("rows/keys", lambda r: r.get("rows", r.get("keys", "-"))),
                    ("boto3 in-process s", inproc)]))
bad = [r for r in recs if r["rc"] != 0]
if bad:
    print(f"!! {len(bad)} run(s) failed: " + ", ".join(f"{r['kind']}#{r['round']}" for r in bad))
save, s3, up = by_kind(recs, "save"), by_kind(recs, "save+s3"), by_kind(recs, "boto3-upload")
raw = med(r["file_bytes"] for r in save)
m_save, m_s3, m_up = (med(r["seconds"] for r in x) for x in (save, s3, up))
srv = lambda rs: max(max(mib(r["pids"]["server"]["rss_growth_kib"]),
                         mib(r["pids"]["server"]["hwm_after_kib"] - r["pids"]["server"]["rss_before_kib"])) for r in rs)
print()
print(table(["save measure", "save alone", "save --s3", "upload part (diff)", "boto3 upload_file (info)"], [
    ["median seconds", f"{m_save:.2f}", f"{m_s3:.2f}", f"{m_s3 - m_save:.2f}", f"{m_up:.2f}"],
    ["MB/s of raw db", f"{raw / m_save / 1e6:.0f}", f"{raw / m_s3 / 1e6:.0f}",
     f"{raw / (m_s3 - m_save) / 1e6:.0f}" if m_s3 > m_save else "-", f"{raw / m_up / 1e6:.0f}"],
    ["server RSS growth MiB (max of rounds; max(sampled, HWM))", f"{srv(save):.1f}", f"{srv(s3):.1f}", "", ""],
    ["CPU s: server / etcd / s3s-fs / client (medians)"] +
    [" / ".join(f"{med(r['pids'][p].get('cpu_seconds', 0) for r in rs):.2f}" if p in rs[0]['pids'] else "-"
                for p in ("server", "etcd", "s3s-fs")) + f" / {med(r.get('child_cpu_seconds', 0) for r in rs):.2f}"
     for rs in (save, s3)] + ["", f"- / - / {med(r['pids']['s3s-fs'].get('cpu_seconds', 0) for r in up):.2f} / {med(r.get('child_cpu_seconds', 0) for r in up):.2f}"],
    ["s3s-fs RSS growth MiB (info)", f"{max(mib(r['pids']['s3s-fs']['rss_growth_kib']) for r in save):.1f}",
     f"{max(mib(r['pids']['s3s-fs']['rss_growth_kib']) for r in s3):.1f}", "",
     f"{max(mib(r['pids']['s3s-fs']['rss_growth_kib']) for r in up):.1f}"],
]))
ls, bl, lj = by_kind(recs, "etcdsnap-ls"), by_kind(recs, "boto3-ls"), by_kind(recs, "etcdsnap-ls-json")
m_ls = med(r["seconds"] for r in ls)
m_bl_whole = med(r["seconds"] for r in bl)
m_bl_in = med(r["inproc_seconds"] for r in bl)
m_imp = med(r["import_seconds"] for r in bl)
print()
print(table([f"ls of {nobj} objects", "median seconds", "note"], [
    ["etcdsnap etcd-snapshot ls --s3 (whole CLI process)", f"{m_ls:.3f}",
     "process start + TLS + token + server lists S3 + table render"],
    ["boto3 list_objects_v2 paginator (in-process)", f"{m_bl_in:.3f}", "client creation + pages, no interpreter start/import"],
    ["boto3 whole `python s3tool.py list` process", f"{m_bl_whole:.3f}", f"includes interpreter start + import boto3 ({m_imp:.3f} s)"],
    ["etcdsnap ls -o json (info; HEAD per uncached object)",
     " / ".join(f"{r['seconds']:.3f}" for r in lj), "1st run, 2nd run"],
    ["rows printed by etcdsnap ls / keys seen by boto3", f"{med(r['rows'] for r in ls):.0f} / {med(r['keys'] for r in bl):.0f}", ""],
]))
v = Verdicts()
v.check("save+upload / save alone (medians)", m_s3 / m_save, "<=", 1.5)
v.check("server RSS growth during save+upload MiB", srv(s3), "<=", 64)
v.check("S3 copies differing from the local file", sum(r.get("s3_identical") is False for r in s3), "<=", 0)
v.check("ls: etcdsnap whole process / boto3 in-process listing", m_ls / m_bl_in, "<=", 1.2)
v.check("ls: etcdsnap whole process / boto3 whole process (fair)", m_ls / m_bl_whole, "<=", 1.2)
print()
print(v)
print("all runs succeeded" if not bad else "SOME RUNS FAILED")
EOF
echo
echo "== multipart uploads as s3s-fs saw them (snaps/ = etcdsnap, boto3/ = boto3 upload_file;"
echo "   'complete s' = CompleteMultipartUpload re-copying all parts, an s3s-fs cost)"
python3 "$BENCH_LIB/s3s_phases.py" "$BENCH_TMP/s3s-fs.log"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
