"""Tables for people: what ``taskd list``, ``get``, ``queues``, ``workers`` and ``cluster`` print.

Theory of operation: a ``Table`` collects rows of strings and renders them in the look rich
gives a default table (a heavy rule around the header, a light box around the body), or, with
``box=False``, as aligned columns without lines (``taskd get``'s key/value list). It uses only
the stdlib: importing and laying out a rich table costs ~75 ms of CPU, more than all the rest
of a client call, whose budget is 200 ms (issue 8).

Cells never wrap or get cut (ids are copied from here); a wide table wraps as the terminal
wraps long lines. Widths count East Asian wide characters as two columns and combining marks
as none. Control characters in a cell are shown escaped (``\\x1b``), so a task name cannot
move the cursor or recolour the terminal. Headers (and a box-less table's first column) are
bold on a terminal, unless ``NO_COLOR`` is set or ``TERM=dumb``; nothing is styled when the
output is piped.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

BOLD, DIM, RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"


def styled(out: TextIO) -> bool:
    """Whether ``out`` is a terminal that takes styles."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


def clean(text: str) -> str:
    """``text`` with control characters escaped (a cell or a line must not drive the terminal)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def width(text: str) -> int:
    """Terminal columns ``text`` takes."""
    if text.isascii():
        return len(text)
    import unicodedata  # noqa: PLC0415  # only for non-ASCII cells

    total = 0
    for c in text:
        if unicodedata.combining(c):
            continue
        total += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return total


class Table:
    # Not a dataclass: importing dataclasses imports inspect, ~8 ms of a client call.
    __slots__ = ("box", "headers", "rows")

    def __init__(self, headers: tuple[str, ...] = (), *, box: bool = True) -> None:
        self.headers = headers
        self.box = box
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: str) -> None:
        self.rows.append(tuple(clean(cell) for cell in cells))

    def lines(self, *, style: bool = False) -> list[str]:
        columns = max([len(self.headers), *(len(row) for row in self.rows)], default=0)
        grid = [self._padded(row, columns) for row in self.rows]
        heads = self._padded(tuple(clean(h) for h in self.headers), columns)
        widths = [
            max([width(heads[i]) if self.box else 0, *(width(row[i]) for row in grid)])
            for i in range(columns)
        ]
        if not self.box:
            return [self._plain_row(row, widths, style) for row in grid]
        return [
            "┏" + "┳".join("━" * (w + 2) for w in widths) + "┓",
            "┃"
            + "┃".join(
                self._cell(h, w, BOLD if style else "") for h, w in zip(heads, widths, strict=True)
            )
            + "┃",
            "┡" + "╇".join("━" * (w + 2) for w in widths) + "┩",
            *(
                "│" + "│".join(self._cell(c, w) for c, w in zip(row, widths, strict=True)) + "│"
                for row in grid
            ),
            "└" + "┴".join("─" * (w + 2) for w in widths) + "┘",
        ]

    def show(self, out: TextIO | None = None) -> None:
        stream = out or sys.stdout
        stream.write("\n".join(self.lines(style=styled(stream))) + "\n")
        stream.flush()

    @staticmethod
    def _padded(row: tuple[str, ...], columns: int) -> tuple[str, ...]:
        return row + ("",) * (columns - len(row))

    @staticmethod
    def _cell(text: str, size: int, style: str = "") -> str:
        shown = f"{style}{text}{RESET}" if style and text else text
        return f" {shown}{' ' * (size - width(text))} "

    @staticmethod
    def _plain_row(row: tuple[str, ...], widths: list[int], style: bool) -> str:
        cells = []
        for i, (text, size) in enumerate(zip(row, widths, strict=True)):
            shown = f"{BOLD}{text}{RESET}" if style and i == 0 and text else text
            last = i == len(row) - 1
            cells.append(shown if last else shown + " " * (size - width(text)))
        return "  ".join(cells)
