#!/usr/bin/env python3
"""Phases of each multipart upload as s3s-fs saw them, from its log (RUST_LOG=s3s_fs=debug).

usage: s3s_phases.py S3S_FS_LOG

For every upload id: the key, the number of parts, the time from the first to the last
UploadPart written, and the time from the last UploadPart to the last part copied by
CompleteMultipartUpload (s3s-fs re-reads every part, MD5s it and copies it into the final
file, one 64 KiB async read/write at a time: a cost real S3 does not have).
Also a library: uploads(log) gives the same figures to the scripts' reports.
"""

import re
import sys
from datetime import datetime

TS = re.compile(r"^\s*(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\s+DEBUG s3s_fs::s3: write file, (.*)$")
UID = re.compile(r"\.upload_id-([0-9a-f-]{36})\.part-(\d+)")
KEY = re.compile(r'upload_id: "([0-9a-f-]{36})"')


def ts(s):
    return datetime.strptime(s[:26], "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def uploads(path):
    """One dict per multipart upload in the log, in the order they started: key, parts, parts_s
    (first to last UploadPart written), complete_s (last UploadPart to the end of
    CompleteMultipartUpload's copy; nan when it did not complete)."""
    ups = {}
    keys = {}
    for line in open(path, errors="replace"):
        m = TS.match(line)
        if m:
            t, rest = ts(m[1]), m[2]
            u = UID.search(rest)
            if not u:
                continue
            d = ups.setdefault(u[1], {"parts": set(), "first": None, "last_part": None,
                                       "complete_end": None})
            if rest.startswith("path:"):
                d["parts"].add(int(u[2]))
                d["first"] = d["first"] or t
                d["last_part"] = t
            elif rest.startswith("from:"):
                d["complete_end"] = t
            continue
        k = KEY.search(line)
        if k and 'key: "' in line:
            keys[k[1]] = line.split('key: "', 1)[1].split('"', 1)[0]
    out = []
    for uid, d in ups.items():
        if not d["last_part"]:
            continue
        comp = d["complete_end"] - d["last_part"] if d["complete_end"] else float("nan")
        out.append({"key": keys.get(uid, uid), "parts": len(d["parts"]),
                    "parts_s": d["last_part"] - d["first"], "complete_s": comp})
    return out


def main():
    print(f"{'key':58} {'parts':>5} {'parts s':>8} {'complete s':>10}")
    for u in uploads(sys.argv[1]):
        print(f"{u['key']:58} {u['parts']:5d} {u['parts_s']:8.2f} {u['complete_s']:10.2f}")


if __name__ == "__main__":
    main()
