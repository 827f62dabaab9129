"""What the user sees: a live progress line per workload, then one table (or JSON).

Progress and the table go to stderr when ``--json`` puts the JSON on stdout, so both can be
watched and piped at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import orjson
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from taskd.bench.stats import WorkloadResult


class ProgressLine:
    """``w1a  12,345/100,000 tasks  4,321/s  3.2 s  errors 0`` refreshed in place."""

    def __init__(self, console: Console, name: str, total: int | None, processes: int) -> None:
        self.name = name
        self.total = total
        self.processes = processes
        self._console = console
        self._last = Text(f"{name}: starting")
        # Not a terminal (CI, a pipe): no redrawing, only the last state once, on its own line.
        self._live = (
            Live(self._last, console=console, refresh_per_second=4) if console.is_terminal else None
        )

    def __enter__(self) -> ProgressLine:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, exc, tb)
        else:
            self._console.print(self._last)

    def update(self, done: int, errors: int, elapsed: float, note: str = "") -> None:
        total = f"/{self.total:,}" if self.total else ""
        rate = done / elapsed if elapsed > 0 else 0.0
        line = Text.assemble(
            (f"{self.name:<9}", "bold cyan"),
            f"{done:,}{total} tasks  {rate:,.0f}/s  {elapsed:.1f} s  ",
            (f"errors {errors:,}", "red" if errors else "dim"),
            f"  [{self.processes} client processes]",
            f"  {note}" if note else "",
        )
        self._last = line
        if self._live is not None:
            self._live.update(line)


def console(*, stderr: bool) -> Console:
    """A console that, when it is not a terminal, is wide enough for the whole table."""
    out = Console(stderr=stderr)
    if not out.is_terminal:
        out.width = max(out.width, 160)
    return out


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


def _errors(errors: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(errors.items())) or "0"


def table(results: Sequence[WorkloadResult]) -> Table:
    out = Table(title="taskd bench", title_justify="left")
    for column in ("workload", "tasks", "seconds", "tasks/s", "p50 ms", "p95 ms", "p99 ms"):
        out.add_column(column, justify="left" if column == "workload" else "right")
    out.add_column("errors")
    out.add_column("lost", justify="right")
    out.add_column("procs", justify="right")
    for r in results:
        out.add_row(
            r.name,
            f"{r.tasks:,}",
            f"{r.seconds:,.2f}",
            f"{r.rate:,.0f}",
            _ms(r.p(50)),
            _ms(r.p(95)),
            _ms(r.p(99)),
            _errors(r.errors),
            Text(f"{r.lost:,}", style="bold red" if r.lost else ""),
            str(r.client_processes),
        )
    return out


def legend(results: Sequence[WorkloadResult]) -> str:
    return "\n".join(f"  {r.name}: {r.description}" for r in results)


def as_json(results: Sequence[WorkloadResult], header: Mapping[str, Any]) -> bytes:
    body = {**header, "workloads": [r.to_json() for r in results]}
    return orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
