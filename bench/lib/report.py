#!/usr/bin/env python3
"""Tables and target checks over the JSON lines the bench scripts record.

Each record: {"kind": ..., "round": n, "seconds": s, "rc": 0, "pids": {...}, ...extra}.
Used as a library by the `report_*` snippets in the scripts: load(), med(), table(), Verdicts.
"""

import json
import statistics


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def by_kind(recs, kind):
    return [r for r in recs if r["kind"] == kind]


def med(xs):
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def mib(kib):
    return kib / 1024


def rss_growth(recs, p="server"):
    """Largest RSS growth of process p over runs, MiB: max(sampled VmRSS, VmHWM) - VmRSS before."""
    return max(max(mib(r["pids"][p]["rss_growth_kib"]),
                   mib(r["pids"][p]["hwm_after_kib"] - r["pids"][p]["rss_before_kib"])) for r in recs)


def table(headers, rows):
    cols = [headers] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    line = "+-" + "-+-".join("-" * x for x in w) + "-+"
    out = [line, "| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(headers)) + " |", line]
    for r in cols[1:]:
        out.append("| " + " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i])
                                     for i, c in enumerate(r)) + " |")
    out.append(line)
    return "\n".join(out)


def cpu(d):
    """CPU seconds (user+sys) of a process during the run, or of the measured command."""
    v = d.get("cpu_seconds", d.get("child_cpu_seconds"))
    return "-" if v is None else f"{v:.2f}"


def rounds_table(recs, kinds, extra=None):
    """One row per run: kind, round, seconds, rc, RSS figures of every sampled process."""
    extra = extra or []
    pids = []
    for r in recs:
        for p in r.get("pids", {}):
            if p not in pids:
                pids.append(p)
    headers = ["kind", "round", "seconds", "rc", "cmd CPU s"] + [h for h, _ in extra]
    for p in pids:
        headers += [f"{p} RSS before MiB", f"{p} RSS growth MiB", f"{p} HWM MiB", f"{p} CPU s"]
    rows = []
    for r in recs:
        if r["kind"] not in kinds:
            continue
        row = [r["kind"], r["round"], f"{r['seconds']:.2f}", r["rc"], cpu(r)]
        row += [f(r) for _, f in extra]
        for p in pids:
            d = r.get("pids", {}).get(p)
            if d:
                row += [f"{mib(d['rss_before_kib']):.1f}", f"{mib(d['rss_growth_kib']):.1f}",
                        f"{mib(d['hwm_after_kib']):.1f}", cpu(d)]
            else:
                row += ["-", "-", "-", "-"]
        rows.append(row)
    return table(headers, rows)


class Verdicts:
    def __init__(self):
        self.rows = []

    def check(self, name, value, op, target, unit=""):
        ok = {"<=": value <= target, "<": value < target, ">=": value >= target,
              ">": value > target}[op]
        self.rows.append([name, f"{value:.3f}{unit}", f"{op} {target}{unit}",
                          "PASS" if ok else "FAIL"])
        return ok

    def __str__(self):
        return table(["target", "measured", "required", "result"], self.rows)
