#!/usr/bin/env python3
"""Fill an etcd with Kubernetes-like JSON values until its database reaches a target size.

usage: fill.py ETCDCTL ENDPOINT CACERT CERT KEY TARGET_BYTES [VALUE_BYTES] [WORKERS] [DATA]

Each value is a ~1 MiB ConfigMap-shaped JSON document: repeated field names and label text
(compressible, like real objects) mixed with random UUIDs, hex ids, timestamps and short base64
blobs (not compressible); zlib level 1 shrinks it about 4x. Values go in through
`etcdctl put KEY` with the value on stdin, a few in parallel.
DATA `random` (default `json`) fills with values of random bytes instead: incompressible, the
case where a compressor, not the etcd stream, sets the pace of a compressed save.
Prints progress lines and finally the db size reported by `etcdctl endpoint status`.
"""

import base64
import json
import os
import random
import subprocess
import sys
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor


TEMPLATES = 48
_cache = {}


def make_value(i, size):
    """Value number i: one of TEMPLATES distinct random documents, renamed. Deflate's window
    is 32 KiB, so sharing text between 1 MiB values does not change the compression ratio,
    and generating 1100 distinct documents in Python would take minutes."""
    t = i % TEMPLATES
    if t not in _cache:
        _cache[t] = _make_doc(t, size)
    return _cache[t].replace(b'"bench-TEMPLATE"', f'"bench-{i:05d}"'.encode(), 1)


def random_value(i, size):
    """Incompressible value: os.urandom bytes (compression ratio 1.00 at best)."""
    return os.urandom(size)


def _make_doc(i, size):
    rnd = random.Random(i)
    items = {}
    n = 0
    while True:
        k = f"entry-{n:05d}-{rnd.getrandbits(32):08x}"
        items[k] = {
            "uid": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "resourceVersion": str(rnd.randrange(10**6, 10**9)),
            "creationTimestamp": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(1.7e9 + rnd.randrange(10**7))
            ),
            "labels": {
                "app.kubernetes.io/name": "bench-workload",
                "app.kubernetes.io/managed-by": "etcdsnap-bench",
                "pod-template-hash": f"{rnd.getrandbits(40):010x}",
            },
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": True,
                 "blockOwnerDeletion": True,
                 "uid": str(uuid.UUID(int=rnd.getrandbits(128), version=4))}
            ],
            "checksum": base64.b64encode(rnd.randbytes(40)).decode(),
            "status": {"phase": rnd.choice(["Running", "Pending", "Succeeded"]),
                       "conditions": [{"type": "Ready", "status": "True"},
                                      {"type": "Initialized", "status": "True"}]},
        }
        n += 1
        if n % 64 == 0:
            doc = json.dumps(_wrap(i, items), separators=(",", ":"))
            if len(doc) >= size:
                return doc.encode()


def _wrap(i, items):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "bench-TEMPLATE", "namespace": "bench"},
        "data": {"items": items},
    }


def main():
    etcdctl, ep, ca, cert, key, target = sys.argv[1:7]
    target = int(target)
    size = int(sys.argv[7]) if len(sys.argv) > 7 else 1_000_000
    workers = int(sys.argv[8]) if len(sys.argv) > 8 else 4
    data = sys.argv[9] if len(sys.argv) > 9 else "json"
    value = {"json": make_value, "random": random_value}[data]
    base = [etcdctl, "--endpoints", ep, "--cacert", ca, "--cert", cert, "--key", key,
            "--command-timeout", "60s"]
    env = dict(os.environ, ETCDCTL_API="3")

    sample = value(0, size)
    ratio = len(sample) / len(zlib.compress(sample, 1))
    print(f"{data} values of {len(sample)} bytes, zlib-1 ratio {ratio:.2f}", flush=True)

    def db_size():
        out = subprocess.check_output(base + ["endpoint", "status", "-w", "json"], env=env)
        return json.loads(out)[0]["Status"]["dbSize"]

    def put(i):
        v = value(i, size)
        subprocess.run(base + ["put", f"/registry/configmaps/bench/bench-{i:05d}"],
                       input=v, env=env, check=True, stdout=subprocess.DEVNULL)
        return len(v)

    t0 = time.monotonic()
    i, written = 0, 0
    # Rough count first (values are ~size bytes; bbolt adds little for large values), then
    # top up until the reported db size reaches the target.
    while True:
        cur = db_size()
        if cur >= target:
            break
        need = max(8, int((target - cur) / size * 1.02) + 1)
        with ThreadPoolExecutor(workers) as ex:
            for n in ex.map(put, range(i, i + need)):
                written += n
        i += need
        print(f"  {i} values put, {written / 2**20:.0f} MiB, db {db_size() / 2**20:.0f} MiB, "
              f"{time.monotonic() - t0:.0f} s", flush=True)
    print(f"FILLED values={i} bytes={written} db_size={cur} seconds={time.monotonic() - t0:.1f}",
          flush=True)


if __name__ == "__main__":
    main()
