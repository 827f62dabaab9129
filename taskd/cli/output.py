"""Printing answers: JSON for programs (``--json``), rich tables for people.

rich is imported only when a table is printed, so ``--json`` calls and errors stay fast; the
stdlib's json, not orjson, for the same reason (orjson's import alone costs ~20 ms, more than
all the JSON a command handles).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def console() -> Console:
    from rich.console import Console  # noqa: PLC0415  # rich costs ~50 ms: only for tables

    out = Console(soft_wrap=True)
    if not out.is_terminal:  # piped: never truncate columns to a guessed 80-column width
        out = Console(soft_wrap=True, width=1000)
    return out


def line(text: str, *, dim: bool = False) -> None:
    """One plain line for people (no markup, no highlighting)."""
    console().print(text, style="dim" if dim else None, highlight=False, markup=False)
