"""Write the web app's icons (PNG 192/512, maskable 512, and the SVG) with the standard
library only: the glyph is drawn from distance functions, so no image library is needed.

Run once after changing the design:  python static_pwa/icons/make_icons.py
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLUE = (11, 87, 164)
WHITE = (255, 255, 255)
GOLD = (255, 200, 61)

# The glyph in a unit square: a trunk with two branches, a node at each tip (Branchline).
SEGMENTS = [((0.5, 0.76), (0.5, 0.30)), ((0.5, 0.56), (0.27, 0.35)), ((0.5, 0.56), (0.73, 0.35))]
STROKE = 0.035
NODES = [((0.5, 0.27), 0.075, WHITE), ((0.26, 0.33), 0.07, WHITE), ((0.74, 0.33), 0.07, WHITE),
         ((0.5, 0.77), 0.085, GOLD)]
CORNER = 0.22


def _seg_dist(px: float, py: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    k = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - ax - k * dx, py - ay - k * dy)


def _cover(d: float, px: float) -> float:
    """Coverage of a pixel whose centre is `d` (signed, in units) from an edge."""
    return max(0.0, min(1.0, 0.5 - d / px))


def _rounded_box(x: float, y: float, r: float) -> float:
    qx, qy = abs(x - 0.5) - (0.5 - r), abs(y - 0.5) - (0.5 - r)
    return math.hypot(max(qx, 0.0), max(qy, 0.0)) + min(max(qx, qy), 0.0) - r


def _blend(under: tuple[float, ...], over: tuple[float, ...], alpha: float
           ) -> tuple[float, ...]:
    return tuple(u * (1 - alpha) + o * alpha for u, o in zip(under, over, strict=True))


def render(size: int, maskable: bool) -> bytes:
    """RGBA rows of the icon at `size` pixels; maskable: full bleed, glyph in the safe zone."""
    px = 1.0 / size
    scale = 0.78 if maskable else 1.0
    rows = bytearray()
    for j in range(size):
        rows.append(0)  # PNG filter type 0 for this row
        for i in range(size):
            x, y = (i + 0.5) * px, (j + 0.5) * px
            bg = 1.0 if maskable else _cover(_rounded_box(x, y, CORNER), px)
            gx, gy = 0.5 + (x - 0.5) / scale, 0.5 + (y - 0.5) / scale
            gpx = px / scale
            ink = max(_cover(_seg_dist(gx, gy, a, b) - STROKE, gpx) for a, b in SEGMENTS)
            rgb = _blend(BLUE, WHITE, ink)
            for (cx, cy), rad, fill in NODES:
                cov = _cover(math.hypot(gx - cx, gy - cy) - rad, gpx)
                if cov:
                    rgb = _blend(rgb, fill, cov)
            rows += bytes((*(round(c) for c in rgb), round(255 * bg)))
    return bytes(rows)


def png(size: int, rgba_rows: bytes) -> bytes:
    """A PNG file (8-bit RGBA, no interlace) from filtered scanlines."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rgba_rows, 9)) + chunk(b"IEND", b""))


def svg() -> str:
    """The same glyph as SVG (512 units)."""
    u = 512
    hexc = "#{:02x}{:02x}{:02x}".format
    lines = "".join(
        f'<line x1="{a[0]*u:g}" y1="{a[1]*u:g}" x2="{b[0]*u:g}" y2="{b[1]*u:g}"/>'
        for a, b in SEGMENTS)
    nodes = "".join(f'<circle cx="{c[0]*u:g}" cy="{c[1]*u:g}" r="{r*u:g}" fill="{hexc(*f)}"/>'
                    for c, r, f in NODES)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {u} {u}" role="img" '
            f'aria-label="Branchline">'
            f'<rect width="{u}" height="{u}" rx="{CORNER*u:g}" fill="{hexc(*BLUE)}"/>'
            f'<g stroke="#ffffff" stroke-width="{2*STROKE*u:g}" stroke-linecap="round">{lines}</g>'
            f'{nodes}</svg>\n')


def main() -> None:
    """Write icon-192.png, icon-512.png, icon-maskable-512.png and icon.svg here."""
    for name, size, maskable in (("icon-192.png", 192, False), ("icon-512.png", 512, False),
                                 ("icon-maskable-512.png", 512, True)):
        (HERE / name).write_bytes(png(size, render(size, maskable)))
    (HERE / "icon.svg").write_text(svg(), encoding="utf-8")


if __name__ == "__main__":
    main()
