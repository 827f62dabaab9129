"""Printing answers: JSON for programs (``--json``), plain tables and lines for people.

Nothing here imports more than the stdlib's json: a client call's budget is 200 ms, and
importing rich alone cost ~40 ms of it (tables: ``taskd.cli.table``). The stdlib's json, not
orjson, for the same reason (orjson's import alone costs ~20 ms, more than all the JSON a
command handles).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from taskd.cli.table import DIM, RESET, clean, styled


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def line(text: str, *, dim: bool = False) -> None:
    """One plain line for people (dim on a terminal if asked; control characters escaped)."""
    shown = clean(text)
    if dim and styled(sys.stdout):
        shown = f"{DIM}{shown}{RESET}"
    sys.stdout.write(shown + "\n")
    sys.stdout.flush()
