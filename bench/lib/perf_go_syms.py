#!/usr/bin/env python3
"""CPU share by function of a stripped Go binary in a perf profile.

usage: perf_go_syms.py PERF_DATA GO_BINARY [TOP]

perf cannot name symbols of a stripped Go binary, but Go keeps its own symbol table
(pclntab): `go tool addr2line` maps the addresses perf reports (relative to the non-PIE load
address 0x400000) to functions. Kernel samples are summed into one line.
"""

import collections
import re
import subprocess
import sys


def main():
    data, binary = sys.argv[1], sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    name = binary.rsplit("/", 1)[-1]
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                          "--sort", "dso,sym"], capture_output=True, text=True).stdout
    rows = []
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
        if m:
            rows.append((float(m[1]), m[2], m[4]))
    addrs = [s for _, d, s in rows if d == name and s.startswith("0x")]
    names = {}
    if addrs:
        inp = "".join(f"{int(a, 16) + 0x400000:#x}\n" for a in addrs)
        out = subprocess.run(["go", "tool", "addr2line", binary], input=inp,
                             capture_output=True, text=True).stdout.split("\n")
        names = dict(zip(addrs, out[0::2]))
    agg = collections.Counter()
    for pct, dso, sym in rows:
        if dso == name:
            agg[names.get(sym, sym)] += pct
        elif "kernel" in dso:
            agg["[kernel]"] += pct
        else:
            agg[f"[{dso}] {sym}"] += pct
    for k, v in agg.most_common(top):
        print(f"    {v:6.2f}%  {k}")


if __name__ == "__main__":
    main()
