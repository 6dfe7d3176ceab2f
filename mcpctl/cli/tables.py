"""Tables as kubectl prints them: columns two spaces apart, one line per row, never a wrapped
cell. At a terminal a row is fitted to its width by cutting the widest cells with an ellipsis
(`-o wide`, `describe` or `-o yaml` show them whole); piped, nothing is cut.

Cells are stored text, often a server's: control characters (an escape sequence could
rewrite the terminal) are shown as U+FFFD, line breaks and tabs as spaces.
"""

from __future__ import annotations

import re
import shutil
import sys

from rich.cells import cell_len, set_cell_size

GAP = "  "
ELLIPSIS = "…"
MIN_CELL = 5  # a cut cell keeps at least this much (or its header's width, if smaller)
_SPACES = re.compile(r"[\t\n\r\v\f]")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def terminal_width() -> int | None:
    """The terminal's width, or None when the output is not a terminal (piped: no cutting)."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def one_line(cell: str) -> str:
    return _CONTROLS.sub("\ufffd", _SPACES.sub(" ", cell))


def render(headers: list[str], rows: list[list[str]], width: int | None) -> list[str]:
    """The table's lines, each at most `width` cells wide (when it is not None)."""
    table = [[one_line(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(cell_len(row[i]) for row in table) for i in range(len(headers))]
    if width is not None:
        widths = _fitted(widths, [cell_len(h) for h in headers], width)
    lines = []
    for row in table:
        cells = [_cut(cell, size) for cell, size in zip(row, widths, strict=True)]
        lines.append(GAP.join(cells).rstrip())
    return lines


def _fitted(widths: list[int], headers: list[int], width: int) -> list[int]:
    """Narrow the widest columns, one cell at a time, until the row fits (or cannot shrink);
    the first column (the name, what a row is looked up by) only when no other can."""
    widths = list(widths)
    floors = [min(w, max(MIN_CELL, h)) for w, h in zip(widths, headers, strict=True)]
    excess = sum(widths) + len(GAP) * (len(widths) - 1) - width
    while excess > 0:
        shrinkable = [i for i, w in enumerate(widths) if i and w > floors[i]]
        shrinkable = shrinkable or ([0] if widths[0] > floors[0] else [])
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return widths


def _cut(cell: str, size: int) -> str:
    if cell_len(cell) <= size:
        return set_cell_size(cell, size)  # padded
    return set_cell_size(cell, size - 1) + ELLIPSIS
