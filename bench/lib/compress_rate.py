#!/usr/bin/env python3
"""In-memory compressor speeds on a file's own bytes: the compressor side of the limits the
bench scripts compare compressed saves with.

usage: compress_rate.py FILE [--deflate-level N] [--zstd-level N] [--text]
       compress_rate.py --show RATES.json     # the --text line of figures measured before

Reads up to 256 MiB of FILE into memory, then times on one core:
  * raw deflate at --deflate-level (default 1) with Python's zlib, 1 MiB at a time;
  * zstd at --zstd-level (default 3): with the `zstandard` module if it is importable, else with
    the `zstd` command's own benchmark (`zstd -bN -T1` on a copy of the sample in $TMPDIR or
    /var/tmp), else not measured.
Prints one JSON line ({"sample_bytes", "deflate_level", "deflate_mbps", "deflate_ratio",
"zstd_level", "zstd_mbps", "zstd_ratio", "zstd_tool"}; MB = 10^6 bytes), or with --text one
line a person reads.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import zlib

SAMPLE = 256 << 20
CHUNK = 1 << 20


def deflate_rate(data, level):
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    out = 0
    t0 = time.monotonic()
    for i in range(0, len(data), CHUNK):
        out += len(c.compress(data[i:i + CHUNK]))
    out += len(c.flush())
    dt = time.monotonic() - t0
    return len(data) / dt / 1e6, len(data) / max(out, 1)


def zstd_rate(data, level):
    """(MB/s, ratio, tool) or (None, None, None) when no zstd implementation is found."""
    try:
        import zstandard
    except ImportError:
        zstandard = None
    if zstandard is not None:
        c = zstandard.ZstdCompressor(level=level, threads=0).compressobj()
        out = 0
        t0 = time.monotonic()
        for i in range(0, len(data), CHUNK):
            out += len(c.compress(data[i:i + CHUNK]))
        out += len(c.flush())
        dt = time.monotonic() - t0
        return len(data) / dt / 1e6, len(data) / max(out, 1), "python zstandard"
    if not shutil.which("zstd"):
        return None, None, None
    tmpdir = os.environ.get("TMPDIR", "/var/tmp")
    with tempfile.NamedTemporaryFile(dir=tmpdir, prefix="compress-rate.") as f:
        f.write(data)
        f.flush()
        # -q prints one line: "-3   <compressed bytes> (<ratio>) <c MB/s> MB/s <d MB/s> MB/s  name"
        out = subprocess.run(["zstd", f"-b{level}", "-T1", "-i2", "-q", f.name],
                             capture_output=True, text=True, check=True).stdout
    m = re.search(r"^\s*-?\d+#?\s+(\d+)\s+\(x?([\d.]+)\)\s+([\d.]+) MB/s", out, re.M)
    if not m:
        raise SystemExit(f"cannot read zstd -b output: {out!r}")
    return float(m[3]), float(m[2]), "zstd -b -T1"


def text(r):
    z = (f"zstd-{r['zstd_level']} {r['zstd_mbps']:.0f} MB/s, ratio {r['zstd_ratio']:.2f} ({r['zstd_tool']})"
         if r["zstd_mbps"] else f"zstd-{r['zstd_level']} not measured (no zstandard module, no zstd command)")
    return (f"deflate-{r['deflate_level']} {r['deflate_mbps']:.0f} MB/s, ratio {r['deflate_ratio']:.2f} "
            f"(python zlib); {z}; one core, in memory, first {r['sample_bytes'] / 1e6:.0f} MB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file", nargs="?")
    ap.add_argument("--deflate-level", type=int, default=1)
    ap.add_argument("--zstd-level", type=int, default=3)
    ap.add_argument("--text", action="store_true")
    ap.add_argument("--show", metavar="RATES.json")
    a = ap.parse_args()
    if a.show:
        with open(a.show) as f:
            print(text(json.load(f)))
        return
    if not a.file:
        ap.error("FILE is needed")
    with open(a.file, "rb") as f:
        data = f.read(SAMPLE)
    d_mbps, d_ratio = deflate_rate(data, a.deflate_level)
    z_mbps, z_ratio, tool = zstd_rate(data, a.zstd_level)
    res = {"sample_bytes": len(data), "deflate_level": a.deflate_level, "deflate_mbps": d_mbps,
           "deflate_ratio": d_ratio, "zstd_level": a.zstd_level, "zstd_mbps": z_mbps,
           "zstd_ratio": z_ratio, "zstd_tool": tool}
    print(text(res) if a.text else json.dumps(res))


if __name__ == "__main__":
    main()
