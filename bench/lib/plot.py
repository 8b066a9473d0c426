#!/usr/bin/env python3
"""SVG plot of save time against database size, from the save-results.jsonl of several runs.

usage: plot.py OUT.svg TITLE RESULTS.jsonl...

One line per kind of save (median seconds of its rounds; a bar from the fastest to the slowest
round), x = the raw snapshot size of that run (median file size of the uncompressed etcdsnap
save). Plain SVG written here, no plotting library.
"""

import math
import sys
from xml.sax.saxutils import escape

sys.path.insert(0, __import__("os").path.dirname(__file__))
from report import by_kind, load, med  # noqa: E402

KINDS = [  # kind, label, colour, dashed
    ("etcdctl", "etcdctl snapshot save", "#555555", False),
    ("etcdsnap", "etcdsnap save", "#1f77b4", False),
    ("etcdsnap-zip", "etcdsnap save, zip", "#2ca02c", False),
    ("etcdsnap-zstd", "etcdsnap save, zstd", "#9467bd", False),
    ("etcdctl-zip", "etcdctl save + zip -6", "#d62728", True),
    ("etcdctl-zstd", "etcdctl save + zstd -3 -T0", "#ff7f0e", True),
]
W, H = 760, 460
L, R, T, B = 70, 230, 40, 60  # margins: the legend sits in the right one


def ticks(hi):
    """Round tick values from 0 to at least hi."""
    raw = hi / 5 if hi > 0 else 1
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(math.ceil(hi / step)) + 1)]


def main():
    out, title, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    series = {k: [] for k, *_ in KINDS}  # kind -> [(x MB, median s, min s, max s)]
    for p in paths:
        recs = [r for r in load(p) if r.get("rc") == 0]
        raw = med(r["file_bytes"] for r in by_kind(recs, "etcdsnap"))
        if not raw or math.isnan(raw):
            continue
        for k in series:
            s = [r["seconds"] for r in by_kind(recs, k)]
            if s:
                series[k].append((raw / 1e6, med(s), min(s), max(s)))
    pts = [p for v in series.values() for p in v]
    if not pts:
        sys.exit("plot.py: no results to plot")
    xt = ticks(max(p[0] for p in pts))
    yt = ticks(max(p[3] for p in pts))
    pw, ph = W - L - R, H - T - B
    X = lambda v: L + v / xt[-1] * pw
    Y = lambda v: T + ph - v / yt[-1] * ph
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L + pw / 2}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>']
    for v in xt:
        svg.append(f'<line x1="{X(v):.1f}" y1="{T}" x2="{X(v):.1f}" y2="{T + ph}" stroke="#e5e5e5"/>')
        svg.append(f'<text x="{X(v):.1f}" y="{T + ph + 16}" text-anchor="middle">{v:g}</text>')
    for v in yt:
        svg.append(f'<line x1="{L}" y1="{Y(v):.1f}" x2="{L + pw}" y2="{Y(v):.1f}" stroke="#e5e5e5"/>')
        svg.append(f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    svg.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    svg.append(f'<text x="{L + pw / 2}" y="{H - 18}" text-anchor="middle">database (raw snapshot) size, MB</text>')
    svg.append(f'<text x="18" y="{T + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 18 {T + ph / 2})">seconds (median of rounds; bar = min to max)</text>')
    ly = T + 10
    for k, label, colour, dashed in KINDS:
        pts = sorted(series[k])
        if not pts:
            continue
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        if len(pts) > 1:
            line = " ".join(f"{X(x):.1f},{Y(m):.1f}" for x, m, _, _ in pts)
            svg.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for x, m, lo, hi in pts:
            svg.append(f'<line x1="{X(x):.1f}" y1="{Y(lo):.1f}" x2="{X(x):.1f}" y2="{Y(hi):.1f}" '
                       f'stroke="{colour}"/>')
            svg.append(f'<circle cx="{X(x):.1f}" cy="{Y(m):.1f}" r="3.5" fill="{colour}">'
                       f'<title>{escape(label)}: {x:.0f} MB, {m:.2f} s</title></circle>')
        lx = L + pw + 16
        svg.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="2"{dash}/>')
        svg.append(f'<circle cx="{lx + 12}" cy="{ly}" r="3.5" fill="{colour}"/>')
        svg.append(f'<text x="{lx + 32}" y="{ly + 4}">{escape(label)}</text>')
        ly += 22
    svg.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
