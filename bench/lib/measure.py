#!/usr/bin/env python3
"""Run one command, timing it and sampling the memory of other processes meanwhile.

usage: measure.py [--pid NAME=PID ...] [--interval S] [--reset-hwm] -- CMD ARGS...

Prints one JSON object on stdout:
  {"rc": 0, "seconds": 12.3, "child_cpu_seconds": 0.4, "cmd_rss_max_kib": 9000,
   "pids": {"server": {"rss_before_kib": ..., "rss_max_kib": ..., "rss_growth_kib": ...,
                       "hwm_before_kib": ..., "hwm_after_kib": ..., "samples": ...}, ...}}

The command's stdout/stderr go to the files named by --out/--err (default /dev/null), so the
figure is the command alone (no Python start-up inside the measured interval: the clock starts
right before fork/exec and stops when the child is reaped).

With --reset-hwm, `5` is written to /proc/PID/clear_refs before the command so that VmHWM is
the peak during this command only (Linux >= 4.0, needs permission on the process).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time


def read_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", action="append", default=[], help="NAME=PID")
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--reset-hwm", action="store_true")
    ap.add_argument("--out", default="/dev/null")
    ap.add_argument("--err", default="/dev/null")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command")
    pids = dict(p.split("=", 1) for p in a.pid)

    hwm_reset = {}
    if a.reset_hwm:
        for name, pid in pids.items():
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")
                hwm_reset[name] = True
            except OSError:
                hwm_reset[name] = False

    before = {n: read_status(p) for n, p in pids.items()}
    cpu_before = {n: cpu_seconds(p) for n, p in pids.items()}
    peak = {n: before[n].get("VmRSS", 0) for n in pids}
    samples = {n: 0 for n in pids}
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            for n, p in pids.items():
                rss = read_status(p).get("VmRSS")
                if rss is not None:
                    samples[n] += 1
                    if rss > peak[n]:
                        peak[n] = rss
            stop.wait(a.interval)

    cmd_peak = [0]
    cmd_pid = [None]

    def cmd_sampler():
        # The command's own RSS (not its children's): VmHWM read just before it exits is
        # not reachable, so sample VmRSS like the others.
        while not stop.is_set():
            if cmd_pid[0] is not None:
                st = read_status(cmd_pid[0])
                cmd_peak[0] = max(cmd_peak[0], st.get("VmHWM", 0), st.get("VmRSS", 0))
            stop.wait(a.interval)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    th2 = threading.Thread(target=cmd_sampler, daemon=True)
    th2.start()
    with open(a.out, "wb") as out, open(a.err, "wb") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        cmd_pid[0] = p.pid
        rc = p.wait()
        t1 = time.monotonic()
    stop.set()
    th.join()
    th2.join()
    after = {n: read_status(p) for n, p in pids.items()}
    cpu_after = {n: cpu_seconds(p) for n, p in pids.items()}

    res = {"rc": rc, "seconds": t1 - t0, "pids": {}, "cmd_rss_max_kib": cmd_peak[0],
           "child_cpu_seconds": sum(os.times()[2:4])}
    for n in pids:
        b = before[n].get("VmRSS", 0)
        res["pids"][n] = {
            "rss_before_kib": b,
            "rss_max_kib": peak[n],
            "rss_growth_kib": peak[n] - b,
            "rss_after_kib": after[n].get("VmRSS", 0),
            "hwm_before_kib": before[n].get("VmHWM", 0),
            "hwm_after_kib": after[n].get("VmHWM", 0),
            "hwm_reset": hwm_reset.get(n, False),
            "samples": samples[n],
            "cpu_seconds": cpu_after[n] - cpu_before[n],
        }
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    main()
