"""Render a Textual SVG screenshot to PNG with every character in its own cell.

librsvg ignores ``textLength``, so runs of glyphs the fallback font draws wider than a cell (braille, block
elements) would spill over their neighbours. This places each character at its cell's x, then calls
``rsvg-convert``.

    python docs/svg_to_png.py docs/screenshots/monitor-cpu-120x40.svg [OUT.png]
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
import tempfile
from pathlib import Path

TEXT = re.compile(r'<text ([^>]*?)x="([\d.]+)"([^>]*?)textLength="([\d.]+)"([^>]*)>([^<]*)</text>')


def per_cell(svg: str) -> str:
    def place(m: re.Match[str]) -> str:
        before, x, middle, length, after, body = m.groups()
        chars = html.unescape(body)
        if not chars:
            return m.group(0)
        cell = float(length) / len(chars)
        spans = "".join(f'<tspan x="{float(x) + k * cell:.1f}">{html.escape(c)}</tspan>'
                        for k, c in enumerate(chars) if not c.isspace() and c != "\xa0")
        return f"<text {before}{middle}{after}>{spans}</text>"

    return TEXT.sub(place, svg)


def main(argv: list[str]) -> int:
    src = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else src.with_suffix(".png")
    with tempfile.NamedTemporaryFile("w", suffix=".svg", delete=False) as tmp:
        tmp.write(per_cell(src.read_text(encoding="utf-8")))
    subprocess.run(["rsvg-convert", tmp.name, "-o", str(out)], check=True)
    Path(tmp.name).unlink()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
