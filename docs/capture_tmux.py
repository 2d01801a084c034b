"""Screenshot a real terminal: a tmux pane (colours included) to an SVG, and a PNG of it.

What the README shows is captured from an actual run in tmux, not from a scripted fake one:

    tmux -L shots new-session -d -s m -x 120 -y 40 \\
        'tuigpt configs/train_cpu_optimized.yaml --data_path=../shared/data/tinyshakespeare.txt'
    # ... let it train a few hundred iterations ...
    python docs/capture_tmux.py shots m docs/screenshots/monitor-cpu-120x40 "tuigpt · CPU run · 120x40"

    # or from a `tmux capture-pane -p -e` file taken on another machine:
    python docs/capture_tmux.py --ansi pane.ansi 120x40 docs/screenshots/monitor-gpu-120x40 "tuigpt · H200 · 120x40"

The pane's text and colours are read with ``tmux capture-pane -e`` (the colours the terminal was sent:
256 colours when TERM=xterm-256color and COLORTERM is unset, as in most tmux setups), rendered by rich's SVG
export, then to PNG with docs/svg_to_png.py.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.terminal_theme import TerminalTheme
from rich.text import Text

HERE = Path(__file__).resolve().parent
# a dark terminal with xterm's 16 colours (the 256-colour cube and greys are standard)
XTERM_DARK = TerminalTheme((12, 12, 12), (229, 229, 229), [
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205), (0, 205, 205), (229, 229, 229),
    (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0), (92, 92, 255), (255, 0, 255), (0, 255, 255),
    (255, 255, 255)])


def capture(socket: str, target: str) -> tuple[list[str], int, int]:
    tmux = ["tmux", "-L", socket]
    size = subprocess.run([*tmux, "display", "-p", "-t", target, "#{pane_width} #{pane_height}"], check=True,
                          capture_output=True, text=True).stdout.split()
    lines = subprocess.run([*tmux, "capture-pane", "-p", "-e", "-t", target], check=True, capture_output=True,
                           text=True).stdout.splitlines()
    return lines, int(size[0]), int(size[1])


def decode(lines: list[str], height: int) -> list[Text]:
    """The pane's ``height`` lines as styled text. One decoder for the whole pane: capture-pane -e writes only
    what changed since the cell before, across line ends too, so a line decoded on its own loses the background
    its first cells carry over (the black boxes behind the chart's bold EMA cells in the first screenshots)."""
    decoded = list(Text.from_ansi("\n".join(lines), no_wrap=True).split("\n", allow_blank=True))
    return (decoded + [Text() for _ in range(height)])[:height]


def main(argv: list[str]) -> int:
    if argv[0] == "--ansi":  # a capture-pane -e file taken elsewhere (e.g. on a lent GPU machine), WIDTHxHEIGHT
        width, height = (int(n) for n in argv[2].split("x"))
        lines, out = Path(argv[1]).read_text().splitlines(), Path(argv[3])
        title = argv[4] if len(argv) > 4 else "tuigpt"
    else:
        socket, target, out = argv[0], argv[1], Path(argv[2])
        title = argv[3] if len(argv) > 3 else "tuigpt"
        lines, width, height = capture(socket, target)
    console = Console(record=True, width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", legacy_windows=False)
    for line in decode(lines, height):
        console.print(line, crop=True, overflow="crop", no_wrap=True)
    svg = out.with_suffix(".svg")
    svg.parent.mkdir(parents=True, exist_ok=True)
    console.save_svg(str(svg), title=title, theme=XTERM_DARK)
    subprocess.run([sys.executable, str(HERE / "svg_to_png.py"), str(svg), str(out.with_suffix(".png"))], check=True)
    print(f"wrote {svg} and its PNG ({width}x{height})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
