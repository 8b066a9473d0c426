#!/usr/bin/env bash
# S3: `etcdsnap etcd-snapshot save` alone vs `save --s3` and `save --snapshot-compress --s3`
# (upload included) to s3s-fs on loopback (plain HTTP), and K3s's sequence by hand (etcdctl
# save, zip -6, boto3 upload), on a >= 1 GiB database; the same two uploads to moto over HTTPS
# (private CA) for the TLS path; then `etcdsnap etcd-snapshot ls --s3` of a folder of 10,000
# objects vs a bare paginated ListObjectsV2 by boto3.
#
#   bench/s3.sh                        # N=3 save rounds, NLS=5 ls rounds, temp dir removed at exit
#   BENCH_DIR=/var/tmp/es-bench bench/s3.sh    # reuse/keep a filled data dir (same as save.sh)
#   S3_CONCURRENCY=8 MOTO=0 bench/s3.sh        # parts in flight; no moto rounds
#   S3_CHECKSUM=none bench/s3.sh               # --s3-checksum for the uploads
#
# Targets: save+upload <= 1.5x save alone (medians); save+zip+upload <= 1.15x save alone once
# s3s-fs's CompleteMultipartUpload (a copy of every part, which S3 does not do) is subtracted,
# and <= 0.35x etcdctl save + zip -6 + boto3 upload; server RSS growth during each upload
# <= 64 MiB; ls of 10,000 objects <= 1.2x boto3. The moto rounds are for information.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

N=${N:-3}
NLS=${NLS:-5}
NOBJ=${NOBJ:-10000}
TARGET_DB=${BENCH_DB_BYTES:-1127428915} # 1.05 GiB
AK=benchaccesskey SK=benchsecretkey0123456789 BUCKET=bench-bucket
export S3_CONCURRENCY=${S3_CONCURRENCY:-} # parts in flight; empty = etcdsnap's default (4)
MOTO=${MOTO:-1}                           # 0: no moto (HTTPS) rounds
need_bins
CONC=()
if [[ -n $S3_CONCURRENCY ]]; then
    save_has_flag --s3-upload-concurrency ||
        die "S3_CONCURRENCY is set but this etcdsnap has no --s3-upload-concurrency"
    CONC=(--s3-upload-concurrency "$S3_CONCURRENCY")
fi
S3_CHECKSUM=${S3_CHECKSUM:-} # --s3-checksum auto|sha256|crc64nvme|none; empty = the server's default
if [[ -n $S3_CHECKSUM ]]; then
    save_has_flag --s3-checksum || die "S3_CHECKSUM is set but this etcdsnap has no --s3-checksum"
    CONC+=(--s3-checksum "$S3_CHECKSUM")
fi
command -v zip >/dev/null || die "zip is needed (ci/install-deps.sh test installs it)"
if [[ $MOTO == 1 ]] && { [[ ! -x ${MOTO_SERVER_BIN:-} ]] || ! command -v openssl >/dev/null; }; then
    log "no moto_server or openssl: no HTTPS rounds"
    MOTO=0
fi

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
echo "upload:   8 MiB parts in flight: ${S3_CONCURRENCY:-the server default (4)} (boto3: ${S3_CONCURRENCY:-4}); checksum: ${S3_CHECKSUM:-the server default}"
echo

wait_port() { # PORT PID LOG NAME
    local i
    for ((i = 0; i < 200; i++)); do
        python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
            "$1" 2>/dev/null && return
        kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "$4 exited"; }
        sleep 0.1
    done
    die "$4 does not listen on $1 after 20 s"
}

S3_PORT=$(free_port)
# Debug logging of s3s-fs gives one timestamped line per part written (lib/s3s_phases.py).
RUST_LOG=s3s_fs=debug "$S3S_FS_BIN" --host 127.0.0.1 --port "$S3_PORT" --access-key "$AK" --secret-key "$SK" \
    "$S3DATA" >"$BENCH_TMP/s3s-fs.log" 2>&1 </dev/null &
S3_PID=$!
track "$S3_PID"
wait_port "$S3_PORT" "$S3_PID" "$BENCH_TMP/s3s-fs.log" s3s-fs
S3_EP=http://127.0.0.1:$S3_PORT
log "s3s-fs pid $S3_PID on $S3_EP, data $S3DATA"

if [[ $MOTO == 1 ]]; then
    # moto over HTTPS with a certificate from a private CA made here (etcdsnap is given the CA
    # with --s3-endpoint-ca; boto3 reads it from AWS_CA_BUNDLE). moto keeps objects in memory.
    PKI=$BENCH_TMP/moto-pki
    mkdir -p "$PKI"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=etcdsnap-bench-ca -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 \
        -keyout "$PKI/srv.key" -out "$PKI/srv.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$PKI/ext"
    openssl x509 -req -in "$PKI/srv.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
        -days 2 -extfile "$PKI/ext" -out "$PKI/srv.crt" 2>/dev/null
    MOTO_PORT=$(free_port)
    "$MOTO_SERVER_BIN" -H 127.0.0.1 -p "$MOTO_PORT" -c "$PKI/srv.crt" -k "$PKI/srv.key" \
        >"$BENCH_TMP/moto.log" 2>&1 </dev/null &
    MOTO_PID=$!
    track "$MOTO_PID"
    wait_port "$MOTO_PORT" "$MOTO_PID" "$BENCH_TMP/moto.log" moto_server
    MOTO_EP=https://127.0.0.1:$MOTO_PORT
    AWS_CA_BUNDLE=$PKI/ca.crt "$MOTO_PYTHON" "$BENCH_LIB/s3tool.py" "$MOTO_EP" "$AK" "$SK" "$BUCKET" mkbucket >/dev/null
    log "moto_server pid $MOTO_PID on $MOTO_EP (private CA $PKI/ca.crt)"
fi

start_server "$BENCH_TMP"
fill_db "$TARGET_DB"
DB_BYTES=$(db_size)
log "db size $DB_BYTES bytes ($((DB_BYTES / 1048576)) MiB)"
((DB_BYTES >= 1073741824 || TARGET_DB < 1073741824)) || die "db is only $DB_BYTES bytes (< 1 GiB)"
SNAPDIR=$DATA/server/db/snapshots

S3FLAGS=(--s3 --s3-endpoint "127.0.0.1:$S3_PORT" --s3-insecure --s3-bucket "$BUCKET"
    --s3-access-key "$AK" --s3-secret-key "$SK" --s3-region us-east-1
    --s3-bucket-lookup-type path)
UP=(--s3-folder snaps "${CONC[@]}") # the saves' own S3 flags (folder, concurrency, checksum)
MOTOFLAGS=()
[[ $MOTO != 1 ]] || MOTOFLAGS=(--s3 --s3-endpoint "127.0.0.1:$MOTO_PORT" --s3-endpoint-ca "$PKI/ca.crt"
    --s3-bucket "$BUCKET" --s3-access-key "$AK" --s3-secret-key "$SK" --s3-region us-east-1
    --s3-bucket-lookup-type path "${UP[@]}")
s3tool() { "$MOTO_PYTHON" "$BENCH_LIB/s3tool.py" "$S3_EP" "$AK" "$SK" "$BUCKET" "$@"; }
motool() { AWS_CA_BUNDLE=$PKI/ca.crt "$MOTO_PYTHON" "$BENCH_LIB/s3tool.py" "$MOTO_EP" "$AK" "$SK" "$BUCKET" "$@"; }
OUT=$BENCH_TMP/out
mkdir -p "$OUT"

settle() { sync; sleep 1; }
record() { # KIND ROUND EXTRA_JSON MEASURE_JSON
    python3 -c 'import json,sys; r=json.loads(sys.argv[4]); r.update(kind=sys.argv[1], round=int(sys.argv[2])); r.update(json.loads(sys.argv[3])); print(json.dumps(r))' \
        "$1" "$2" "$3" "$4" >>"$RES"
}
secs() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.2f s rc=%d" % (d["seconds"], d["rc"]))' "$1"; }
clean_outputs() {
    rm -f "$SNAPDIR"/* "$OUT"/*
    rm -rf "${S3DATA:?}/$BUCKET/snaps" "$S3DATA/$BUCKET/boto3" "$S3DATA/$BUCKET/seq"
    [[ $MOTO != 1 ]] || motool delete "" >/dev/null
}
PIDS=(--pid "server=$SERVER_PID" --pid "etcd=$ETCD_PID" --pid "s3s-fs=$S3_PID")
[[ $MOTO != 1 ]] || PIDS+=(--pid "moto=$MOTO_PID")

# run_save KIND ROUND [flags]: one etcdsnap save. KIND is save, save+s3 or save+zip+s3, with a
# moto: prefix for the HTTPS rounds; after an upload to s3s-fs its copy (a plain file in
# s3s-fs's data dir) is compared byte for byte with the local file, untimed.
run_save() {
    local kind=$1 r=$2 j f size s3size=0 same=null
    shift 2
    clean_outputs
    settle
    j=$(measure "${PIDS[@]}" --out "$LOGS/$kind-$r.out" --err "$LOGS/$kind-$r.err" -- \
        "$ETCDSNAP" etcd-snapshot save -d "$DATA" --etcd-server "$SUPERVISOR" "$@")
    f=$(snapshot_file "$SNAPDIR")
    size=$(stat -c %s "$SNAPDIR/$f" 2>/dev/null || echo 0)
    if [[ $kind == save+*s3 ]]; then
        s3size=$(stat -c %s "$S3DATA/$BUCKET/snaps/$f" 2>/dev/null || echo 0)
        if cmp -s "$SNAPDIR/$f" "$S3DATA/$BUCKET/snaps/$f"; then same=true; else same=false; fi
    fi
    if [[ $kind == *s3 ]] && grep -qi 'warn\|fail\|error' "$LOGS/$kind-$r.out" "$LOGS/$kind-$r.err"; then
        log "$kind round $r printed: $(cat "$LOGS/$kind-$r.out" "$LOGS/$kind-$r.err")"
    fi
    record "$kind" "$r" "{\"file_bytes\": $size, \"s3_bytes\": $s3size, \"s3_identical\": $same, \"key\": \"snaps/$f\"}" "$j"
    log "$kind round $r: $(secs "$j") $f local $size, s3 $s3size bytes, identical: $same"
    if [[ $kind == save ]]; then
        # Reference (info): the same file uploaded by boto3 (same part size and concurrency).
        local k ep ca
        for k in boto3-upload moto:boto3-upload; do
            ep=$S3_EP ca=()
            if [[ $k == moto:* ]]; then
                [[ $MOTO == 1 ]] || continue
                ep=$MOTO_EP ca=(env "AWS_CA_BUNDLE=$PKI/ca.crt")
            fi
            settle
            j=$(measure "${PIDS[@]}" --out "$LOGS/$k-$r.out" --err "$LOGS/$k-$r.err" -- \
                "${ca[@]}" "$MOTO_PYTHON" "$BENCH_LIB/s3tool.py" \
                "$ep" "$AK" "$SK" "$BUCKET" upload "$SNAPDIR/$f" "boto3/$f")
            record "$k" "$r" "$(cat "$LOGS/$k-$r.out" 2>/dev/null || echo '{}')" "$j"
            log "$k round $r: $(secs "$j") $(cat "$LOGS/$k-$r.out")"
        done
    fi
    clean_outputs
}

# run_seq ROUND: K3s's sequence by hand, etcdctl snapshot save, zip -6, boto3 upload_file.
run_seq() {
    local r=$1 j f=$OUT/etcdctl.db key=seq/r$1-etcdctl.db.zip
    clean_outputs
    settle
    in_sequence "$ETCDCTL35_BIN" --endpoints "$ETCD_EP" --cacert "$TLS/server-ca.crt" \
        --cert "$TLS/client.crt" --key "$TLS/client.key" snapshot save "$f" \
        ';;' zip -q -6 -j "$f.zip" "$f" \
        ';;' "$MOTO_PYTHON" "$BENCH_LIB/s3tool.py" "$S3_EP" "$AK" "$SK" "$BUCKET" upload "$f.zip" "$key"
    j=$(measure "${PIDS[@]}" --out "$LOGS/seq-$r.out" --err "$LOGS/seq-$r.err" -- "${SEQ[@]}")
    record etcdctl+zip+boto3 "$r" "{\"file_bytes\": $(stat -c %s "$f.zip" 2>/dev/null || echo 0), \"key\": \"$key\"}" "$j"
    log "etcdctl+zip+boto3 round $r: $(secs "$j")"
    clean_outputs
}

run_kind() { # KIND ROUND
    case $1 in
    save) run_save save "$2" ;;
    save+s3) run_save save+s3 "$2" "${S3FLAGS[@]}" "${UP[@]}" ;;
    save+zip+s3) run_save save+zip+s3 "$2" --snapshot-compress "${S3FLAGS[@]}" "${UP[@]}" ;;
    seq) run_seq "$2" ;;
    moto:save+s3) run_save moto:save+s3 "$2" "${MOTOFLAGS[@]}" ;;
    moto:save+zip+s3) run_save moto:save+zip+s3 "$2" --snapshot-compress "${MOTOFLAGS[@]}" ;;
    esac
}

log "warm-up (untimed): one save --s3"
"$ETCDSNAP" etcd-snapshot save -d "$DATA" --etcd-server "$SUPERVISOR" "${S3FLAGS[@]}" "${UP[@]}" \
    >"$LOGS/warm.out" 2>&1 || { cat "$LOGS/warm.out" >&2; die "warm-up save --s3 failed"; }
cat "$LOGS/warm.out" >&2
if [[ $MOTO == 1 ]]; then
    log "warm-up (untimed): one save --s3 to moto over HTTPS"
    "$ETCDSNAP" etcd-snapshot save -d "$DATA" --etcd-server "$SUPERVISOR" "${MOTOFLAGS[@]}" \
        >"$LOGS/warm-moto.out" 2>&1 || { cat "$LOGS/warm-moto.out" >&2; die "warm-up save --s3 to moto failed"; }
    cat "$LOGS/warm-moto.out" >&2
fi
clean_outputs

KINDS=(save save+s3 save+zip+s3 seq)
[[ $MOTO != 1 ]] || KINDS+=(moto:save+s3 moto:save+zip+s3)
log "kinds: ${KINDS[*]} (order reversed every other round)"
for ((r = 1; r <= N; r++)); do
    if ((r % 2)); then
        for ((k = 0; k < ${#KINDS[@]}; k++)); do run_kind "${KINDS[k]}" "$r"; done
    else
        for ((k = ${#KINDS[@]} - 1; k >= 0; k--)); do run_kind "${KINDS[k]}" "$r"; done
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
python3 - "$RES" "$DB_BYTES" "$BENCH_LIB" "$NOBJ" "$BENCH_TMP/s3s-fs.log" <<'EOF'
import math, sys
sys.path.insert(0, sys.argv[3])
from report import *
from s3s_phases import uploads
recs = load(sys.argv[1]); db = int(sys.argv[2]); nobj = int(sys.argv[4])
recs = [r for r in recs if r["round"] > 0]
# s3s-fs's CompleteMultipartUpload time of each run's upload (by key), from its debug log.
complete = {u["key"]: u["complete_s"] for u in uploads(sys.argv[5])}
for r in recs:
    c = complete.get(r.get("key"), float("nan")) if r["kind"] in ("save+s3", "save+zip+s3", "etcdctl+zip+boto3") else float("nan")
    r["complete_s"] = c
f = lambda k: (lambda r: f"{r.get(k, 0) / 1e6:.1f}" if r.get(k) else "-")
same = lambda r: {True: "yes", False: "NO"}.get(r.get("s3_identical"), "-")
comp = lambda r: "-" if math.isnan(r["complete_s"]) else f"{r['complete_s']:.2f}"
kinds = ["save", "save+s3", "save+zip+s3", "etcdctl+zip+boto3", "boto3-upload",
         "moto:save+s3", "moto:save+zip+s3", "moto:boto3-upload"]
print(rounds_table(recs, kinds, [("local MB", f("file_bytes")), ("S3 MB", f("s3_bytes")),
                                 ("S3 copy = local", same), ("s3s-fs complete s", comp)]))
inproc = lambda r: f"{r['inproc_seconds']:.3f}" if "inproc_seconds" in r else "-"
print(rounds_table(recs, ["etcdsnap-ls", "boto3-ls", "etcdsnap-ls-json"],
                   [("rows/keys", lambda r: r.get("rows", r.get("keys", "-"))),
                    ("boto3 in-process s", inproc)]))
bad = [r for r in recs if r["rc"] != 0]
if bad:
    print(f"!! {len(bad)} run(s) failed: " + ", ".join(f"{r['kind']}#{r['round']}" for r in bad))
R = {k: by_kind(recs, k) for k in kinds if by_kind(recs, k)}
m = {k: med(r["seconds"] for r in rs) for k, rs in R.items()}
# Seconds without s3s-fs's completion copy, per run, then the median.
adj = {k: med(r["seconds"] - (0 if math.isnan(r["complete_s"]) else r["complete_s"]) for r in rs)
       for k, rs in R.items()}
mc = {k: med(r["complete_s"] for r in rs) for k, rs in R.items()}
raw = med(r["file_bytes"] for r in R["save"])
srv = rss_growth
cpu = lambda rs, p: f"{med(r['pids'][p].get('cpu_seconds', 0) for r in rs):.2f}" if p in rs[0]["pids"] else "-"
names = {"save": "save alone", "save+s3": "save --s3", "save+zip+s3": "save + zip + upload",
         "etcdctl+zip+boto3": "etcdctl + zip -6 + boto3", "boto3-upload": "boto3 upload_file (info)",
         "moto:save+s3": "moto TLS: save --s3", "moto:save+zip+s3": "moto TLS: save + zip + upload",
         "moto:boto3-upload": "moto TLS: boto3 upload_file"}
cols = [k for k in kinds if k in R]
print()
print(table(["save measure"] + [names[k] for k in cols], [
    ["median seconds"] + [f"{m[k]:.2f}" for k in cols],
    ["s3s-fs CompleteMultipartUpload s (median)"] + ["-" if math.isnan(mc[k]) else f"{mc[k]:.2f}" for k in cols],
    ["median seconds without it"] + [f"{adj[k]:.2f}" for k in cols],
    ["MB/s of raw db"] + [f"{raw / m[k] / 1e6:.0f}" for k in cols],
    ["output MB (median)"] + [f"{med(r.get('file_bytes', 0) for r in R[k]) / 1e6:.1f}" if "file_bytes" in R[k][0] else "-" for k in cols],
    ["server RSS growth MiB (max of rounds; max(sampled, HWM))"] + [f"{srv(R[k]):.1f}" if "server" in R[k][0]["pids"] else "-" for k in cols],
    ["CPU s: server / etcd / s3s-fs / moto / client (medians)"] +
    [" / ".join(cpu(R[k], p) for p in ("server", "etcd", "s3s-fs", "moto")) +
     f" / {med(r.get('child_cpu_seconds', 0) for r in R[k]):.2f}" for k in cols],
]))
print()
ratio = lambda a, b: f"{m[a] / m[b]:.3f} raw, {adj[a] / adj[b]:.3f} without s3s-fs's completion copy"
for a, b in (("save+s3", "save"), ("save+zip+s3", "save"), ("save+zip+s3", "etcdctl+zip+boto3"),
             ("moto:save+s3", "save"), ("moto:save+zip+s3", "save")):
    if a in R and b in R:
        print(f"{names[a]} / {names[b]}: " + (f"{m[a] / m[b]:.3f}" if a.startswith("moto") else ratio(a, b)))
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
v.check("save+upload / save alone (medians)", m["save+s3"] / m["save"], "<=", 1.5)
v.check("save+zip+upload without s3s-fs's completion / save alone", adj["save+zip+s3"] / adj["save"], "<=", 1.15)
v.check("save+zip+upload / (etcdctl + zip -6 + boto3 upload)", m["save+zip+s3"] / m["etcdctl+zip+boto3"], "<=", 0.35)
for k in ("save+s3", "save+zip+s3", "moto:save+s3", "moto:save+zip+s3"):
    if k in R:
        v.check(f"server RSS growth during {names[k]} MiB", srv(R[k]), "<=", 64)
v.check("S3 copies differing from the local file",
        sum(r.get("s3_identical") is False for r in R["save+s3"] + R["save+zip+s3"]), "<=", 0)
v.check("ls: etcdsnap whole process / boto3 in-process listing", m_ls / m_bl_in, "<=", 1.2)
v.check("ls: etcdsnap whole process / boto3 whole process (fair)", m_ls / m_bl_whole, "<=", 1.2)
print()
print(v)
print("all runs succeeded" if not bad else "SOME RUNS FAILED")
EOF
echo
echo "== multipart uploads as s3s-fs saw them (snaps/ = etcdsnap, boto3/ = boto3 upload_file, seq/ = etcdctl + zip + boto3;"
echo "   'complete s' = CompleteMultipartUpload re-copying all parts, an s3s-fs cost)"
python3 "$BENCH_LIB/s3s_phases.py" "$BENCH_TMP/s3s-fs.log"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
