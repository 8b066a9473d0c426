#!/usr/bin/env bash
# Local snapshot save: etcdsnap server + `etcdsnap etcd-snapshot save` against
# `etcdctl snapshot save` from the same etcd 3.5 member, on a >= 1 GiB database.
#
#   bench/save.sh                      # N=3 rounds; all in a temp dir removed at exit
#   N=5 BENCH_DB_BYTES=2147483648 bench/save.sh
#   BENCH_DIR=/var/tmp/es-bench bench/save.sh   # keep/reuse the filled data dir (fill once)
#
# The compressed save is interleaved with K3s's sequence done by hand (etcdctl save, zip -6).
#
# Targets (medians): uncompressed save <= 1.0x etcdctl; compressed save <= 1.05x uncompressed
# save and <= 0.35x etcdctl save + zip -6, >= 150 MB/s of raw database; etcdsnap server RSS
# growth during a save <= 64 MiB.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

N=${N:-3}
TARGET_DB=${BENCH_DB_BYTES:-1127428915} # 1.05 GiB
need_bins

bench_tmp save
OUT=$BENCH_TMP/out RES=$BENCH_TMP/save-results.jsonl LOGS=$BENCH_TMP/logs
mkdir -p "$OUT" "$LOGS"
: >"$RES"

echo "== etcdsnap bench/save.sh  $(date -u +%FT%TZ)"
machine_conditions
echo "etcdsnap: $ETCDSNAP ($("$ETCDSNAP" --version))"
echo "etcd:     $ETCD35_BIN ($("$ETCD35_BIN" --version | head -1))"
echo

start_server "$BENCH_TMP"
fill_db "$TARGET_DB"
DB_BYTES=$(db_size)
log "db size $DB_BYTES bytes ($((DB_BYTES / 1048576)) MiB)"
((DB_BYTES >= 1073741824 || TARGET_DB < 1073741824)) || die "db is only $DB_BYTES bytes (< 1 GiB)"
SNAPDIR=$DATA/server/db/snapshots

settle() { sync; sleep 1; }

# record KIND ROUND EXTRA_JSON MEASURE_JSON: appends one JSON line.
record() {
    python3 -c 'import json,sys; r=json.loads(sys.argv[4]); r.update(kind=sys.argv[1], round=int(sys.argv[2])); r.update(json.loads(sys.argv[3])); print(json.dumps(r))' \
        "$1" "$2" "$3" "$4" >>"$RES"
}

run_etcdctl() { # ROUND
    local r=$1 j size
    rm -f "$OUT"/etcdctl.db*
    settle
    j=$(measure --pid "server=$SERVER_PID" --pid "etcd=$ETCD_PID" \
        --out "$LOGS/etcdctl-$r.out" --err "$LOGS/etcdctl-$r.err" -- \
        "$ETCDCTL35_BIN" --endpoints "$ETCD_EP" --cacert "$TLS/server-ca.crt" \
        --cert "$TLS/client.crt" --key "$TLS/client.key" snapshot save "$OUT/etcdctl.db")
    size=$(stat -c %s "$OUT/etcdctl.db" 2>/dev/null || echo 0)
    record etcdctl "$r" "{\"file_bytes\": $size}" "$j"
    log "etcdctl round $r: $(python3 -c 'import json,sys; print("%.2f s rc=%d" % (json.loads(sys.argv[1])["seconds"], json.loads(sys.argv[1])["rc"]))' "$j")"
    rm -f "$OUT"/etcdctl.db*
}

run_etcdctl_zip() { # ROUND: K3s's sequence done by hand, etcdctl snapshot save then zip -6
    local r=$1 j size
    rm -f "$OUT"/etcdctl.db*
    settle
    j=$(measure --pid "server=$SERVER_PID" --pid "etcd=$ETCD_PID" \
        --out "$LOGS/etcdctl-zip-$r.out" --err "$LOGS/etcdctl-zip-$r.err" -- \
        bash -c '"$1" --endpoints "$2" --cacert "$3/server-ca.crt" --cert "$3/client.crt" \
            --key "$3/client.key" snapshot save "$4" && zip -q -6 -j "$4.zip" "$4"' _ \
        "$ETCDCTL35_BIN" "$ETCD_EP" "$TLS" "$OUT/etcdctl.db")
    size=$(stat -c %s "$OUT/etcdctl.db.zip" 2>/dev/null || echo 0)
    record etcdctl-zip "$r" "{\"file_bytes\": $size}" "$j"
    log "etcdctl+zip round $r: $(python3 -c 'import json,sys; print("%.2f s rc=%d" % (json.loads(sys.argv[1])["seconds"], json.loads(sys.argv[1])["rc"]))' "$j")"
    rm -f "$OUT"/etcdctl.db*
}

run_etcdsnap() { # KIND ROUND [save flags...]
    local kind=$1 r=$2 j size f
    shift 2
    rm -f "$SNAPDIR"/*
    settle
    j=$(measure --pid "server=$SERVER_PID" --pid "etcd=$ETCD_PID" \
        --out "$LOGS/$kind-$r.out" --err "$LOGS/$kind-$r.err" -- \
        "$ETCDSNAP" etcd-snapshot save -d "$DATA" --etcd-server "$SUPERVISOR" "$@")
    f=$(ls "$SNAPDIR" | grep -v '\.part$' | head -1 || true)
    size=$(stat -c %s "$SNAPDIR/$f" 2>/dev/null || echo 0)
    record "$kind" "$r" "{\"file_bytes\": $size, \"file\": \"$f\"}" "$j"
    log "$kind round $r: $(python3 -c 'import json,sys; print("%.2f s rc=%d" % (json.loads(sys.argv[1])["seconds"], json.loads(sys.argv[1])["rc"]))' "$j") $f $size bytes"
    if [[ $kind == etcdsnap-zip && $r == 1 ]]; then
        # Check once (untimed) that the zip is a complete archive of the whole database.
        python3 -c 'import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); i=z.infolist()[0]; print("zip entry", i.filename, i.file_size, "bytes; CRC ok" if z.testzip() is None else "BAD CRC")' \
            "$SNAPDIR/$f" >"$LOGS/zipcheck.txt" 2>&1 || true
        log "zip check: $(cat "$LOGS/zipcheck.txt")"
    fi
    rm -f "$SNAPDIR"/*
}

log "warm-up (untimed): one etcdctl snapshot save"
etcdctl_ snapshot save "$OUT/warm.db" >/dev/null 2>&1 || die "warm-up etcdctl save failed"
rm -f "$OUT"/warm.db*

for ((r = 1; r <= N; r++)); do
    if ((r % 2)); then
        run_etcdctl "$r"
        run_etcdsnap etcdsnap "$r"
    else
        run_etcdsnap etcdsnap "$r"
        run_etcdctl "$r"
    fi
done
for ((r = 1; r <= N; r++)); do
    if ((r % 2)); then
        run_etcdctl_zip "$r"
        run_etcdsnap etcdsnap-zip "$r" --snapshot-compress
    else
        run_etcdsnap etcdsnap-zip "$r" --snapshot-compress
        run_etcdctl_zip "$r"
    fi
done

echo
echo "== results (db size $DB_BYTES bytes = $((DB_BYTES / 1048576)) MiB, N=$N, medians)"
python3 - "$RES" "$DB_BYTES" "$BENCH_LIB" <<'EOF'
import sys
sys.path.insert(0, sys.argv[3])
from report import *
recs = load(sys.argv[1]); db = int(sys.argv[2])
mb = lambda r: f"{r['file_bytes'] / 1e6:.1f}"
print(rounds_table(recs, ["etcdctl", "etcdsnap", "etcdctl-zip", "etcdsnap-zip"], [("file MB", mb)]))
ctl, snap, z = by_kind(recs, "etcdctl"), by_kind(recs, "etcdsnap"), by_kind(recs, "etcdsnap-zip")
cz = by_kind(recs, "etcdctl-zip")
m_cz = med(r["seconds"] for r in cz)
bad = [r for r in recs if r["rc"] != 0]
if bad:
    print(f"!! {len(bad)} run(s) failed: " + ", ".join(f"{r['kind']}#{r['round']}" for r in bad))
raw = med(r["file_bytes"] for r in snap) or db
m_ctl, m_snap, m_z = med(r["seconds"] for r in ctl), med(r["seconds"] for r in snap), med(r["seconds"] for r in z)
zsize = med(r["file_bytes"] for r in z)
srv = lambda rs: max(mib(r["pids"]["server"]["rss_growth_kib"]) for r in rs)
srv_hwm = lambda rs: max(mib(r["pids"]["server"]["hwm_after_kib"] - r["pids"]["server"]["rss_before_kib"]) for r in rs)
etcd = lambda rs: max(mib(r["pids"]["etcd"]["rss_growth_kib"]) for r in rs)
print()
print(table(["measure", "etcdctl", "etcdsnap", "etcdsnap --snapshot-compress"], [
    ["median seconds", f"{m_ctl:.2f}", f"{m_snap:.2f}", f"{m_z:.2f}"],
    ["min / max seconds", f"{min(r['seconds'] for r in ctl):.2f} / {max(r['seconds'] for r in ctl):.2f}",
     f"{min(r['seconds'] for r in snap):.2f} / {max(r['seconds'] for r in snap):.2f}",
     f"{min(r['seconds'] for r in z):.2f} / {max(r['seconds'] for r in z):.2f}"],
    ["throughput (raw db) MB/s", f"{raw / m_ctl / 1e6:.0f}", f"{raw / m_snap / 1e6:.0f}", f"{raw / m_z / 1e6:.0f}"],
    ["output MB (median)", f"{med(r['file_bytes'] for r in ctl) / 1e6:.1f}", f"{raw / 1e6:.1f}", f"{zsize / 1e6:.1f}"],
    ["size ratio raw/output", "1.00", "1.00", f"{raw / zsize:.2f}" if zsize else "-"],
    ["server RSS growth MiB (max of rounds, sampled 50 ms)", f"{srv(ctl):.1f}", f"{srv(snap):.1f}", f"{srv(z):.1f}"],
    ["server VmHWM - RSS before MiB (max of rounds)", f"{srv_hwm(ctl):.1f}", f"{srv_hwm(snap):.1f}", f"{srv_hwm(z):.1f}"],
    ["etcd child RSS growth MiB (info)", f"{etcd(ctl):.1f}", f"{etcd(snap):.1f}", f"{etcd(z):.1f}"],
    ["CPU s per save: server / etcd child / CLI (medians)"] +
    [" / ".join(f"{med(r['pids'][p].get('cpu_seconds', 0) for r in rs):.2f}" for p in ("server", "etcd"))
     + f" / {med(r.get('child_cpu_seconds', 0) for r in rs):.2f}" for rs in (ctl, snap, z)],
]))
print()
print(f"etcdctl snapshot save + zip -6 (K3s's sequence by hand): median {m_cz:.2f} s, "
      f"min / max {min(r['seconds'] for r in cz):.2f} / {max(r['seconds'] for r in cz):.2f} s, "
      f"zip {med(r['file_bytes'] for r in cz) / 1e6:.1f} MB")
v = Verdicts()
v.check("save time etcdsnap/etcdctl (medians)", m_snap / m_ctl, "<=", 1.0)
v.check("compressed save / uncompressed save (medians)", m_z / m_snap, "<=", 1.05)
v.check("compressed save / (etcdctl save + zip -6) (medians)", m_z / m_cz, "<=", 0.35)
v.check("compressed save throughput MB/s", raw / m_z / 1e6, ">=", 150)
v.check("server RSS growth, uncompressed save MiB", max(srv(snap), srv_hwm(snap)), "<=", 64)
v.check("server RSS growth, compressed save MiB", max(srv(z), srv_hwm(z)), "<=", 64)
print()
print(v)
print("all runs succeeded" if not bad else "SOME RUNS FAILED")
EOF
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
