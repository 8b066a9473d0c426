#!/usr/bin/env python3
"""Check that a snapshot file holds a whole etcd snapshot: its raw bytes end with the SHA-256 of
everything before them (the trailer etcd appends to the stream).

usage: snapcheck.py FILE

FILE.zip is read through its single entry (zipfile also checks the entry's CRC), FILE.zst through
`zstd -dc` (which checks the frame's checksum when there is one), anything else as it is. The
bytes are streamed, never held whole. Prints one line and exits 1 when the check fails.
"""

import hashlib
import subprocess
import sys
import zipfile

CHUNK = 1 << 20


def chunks(path):
    if path.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            entries = z.infolist()
            if len(entries) != 1:
                raise SystemExit(f"{path}: {len(entries)} entries, expected 1")
            with z.open(entries[0]) as f:
                while b := f.read(CHUNK):
                    yield b
    elif path.endswith(".zst"):
        p = subprocess.Popen(["zstd", "-dc", "--", path], stdout=subprocess.PIPE)
        while b := p.stdout.read(CHUNK):
            yield b
        if p.wait() != 0:
            raise SystemExit(f"{path}: zstd -d failed (exit {p.returncode})")
    else:
        with open(path, "rb") as f:
            while b := f.read(CHUNK):
                yield b


def main():
    path = sys.argv[1]
    h = hashlib.sha256()
    tail = b""  # the last 32 bytes seen, held back from the hash until more arrive
    n = 0
    for b in chunks(path):
        n += len(b)
        b = tail + b
        h.update(b[:-32])
        tail = b[-32:]
    ok = n > 32 and h.digest() == tail
    print(f"{path}: {n} raw bytes, sha256 trailer {'ok' if ok else 'WRONG'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
