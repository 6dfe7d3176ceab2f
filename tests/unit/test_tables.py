"""Tables never wrap a cell (issue 20): at a terminal of 60, 80 or 200 columns each row is one
line at most that wide, the widest cells cut with an ellipsis; piped, nothing is cut. Before,
rich folded long names, UUIDs and timestamps over several lines, even when piped."""

from __future__ import annotations

import pytest
from rich.cells import cell_len

from mcpctl.cli.tables import render

HEADERS = ["NAME", "STATUS", "READY", "LAST ERROR"]
ROWS = [
    ["time", "RUNNING", "1/1", "-"],
    ["a-server-with-a-rather-long-name-indeed", "ERROR", "0/1", "exited with code 3: " * 12],
    ["日本語のサーバー", "STARTING", "0/2", "crash loop: Traceback (most recent call last) ..."],
]


@pytest.mark.parametrize("width", [60, 80, 200])
def test_at_a_terminal_each_row_is_one_line_no_wider_than_it(width: int) -> None:
    lines = render(HEADERS, ROWS, width)
    assert len(lines) == 1 + len(ROWS)  # one line a row: nothing wrapped
    assert all(cell_len(line) <= width for line in lines), [cell_len(x) for x in lines]
    assert lines[0].split() == ["NAME", "STATUS", "READY", "LAST", "ERROR"]
    if width >= 80:
        assert lines[1].split()[:3] == ["time", "RUNNING", "1/1"]  # short cells are whole
        assert lines[2].startswith(ROWS[1][0] + " ")  # the name is cut last
    if width < 200:
        assert "…" in lines[2]


def test_piped_nothing_is_cut_and_columns_align() -> None:
    lines = render(HEADERS, ROWS, None)
    assert len(lines) == 4 and "…" not in "".join(lines)
    assert ROWS[1][3].strip() in lines[2]
    status = lines[0].index("STATUS")
    assert lines[1][status:].startswith("RUNNING") and lines[2][status:].startswith("ERROR")


def test_stored_text_cannot_break_a_line_or_drive_the_terminal() -> None:
    lines = render(["NAME", "DESCRIPTION"], [["x", "one\ntwo\r\x1b[2J\x07three\tfour"]], None)
    assert len(lines) == 2
    assert "\x1b" not in lines[1] and "\x07" not in lines[1] and "\n" not in lines[1]
    assert "one two" in lines[1] and "three four" in lines[1]


def test_a_terminal_too_narrow_for_the_headers_still_gets_one_line_a_row() -> None:
    lines = render(HEADERS, ROWS, 20)
    assert len(lines) == 4
