"""What one workload measured, and how latencies become percentiles.

Latencies travel between processes as ``array('d')`` of milliseconds (compact to pickle).
Errors are counted by gRPC status name (``UNAVAILABLE``, ``RESOURCE_EXHAUSTED``, ...) or, for
REST, by the status the HTTP code stands for; a connection that fails counts as UNAVAILABLE.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

HTTP_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    409: "FAILED_PRECONDITION",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}


def http_error_name(status: int) -> str:
    return HTTP_STATUS_NAMES.get(status, f"HTTP_{status}")


def percentile(sorted_values: array[float] | list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values; NaN when there are none."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(slots=True)
class ChildReport:
    """What one client process sends back when it is done."""

    done: int = 0  # calls' tasks that the node acknowledged (or worker items acknowledged)
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    errors: Counter[str] = field(default_factory=Counter)
    first: float = math.inf  # time.monotonic() of its first request
    last: float = 0.0  # time.monotonic() of its last acknowledged answer
    extra: Counter[str] = field(default_factory=Counter)  # role-specific counts
    pickups: dict[str, float] = field(default_factory=dict)  # W3: task id -> latency ms

    def error(self, name: str, count: int = 1) -> None:
        self.errors[name] += count


@dataclass(slots=True)
class WorkloadResult:
    name: str
    description: str
    tasks: int  # tasks acknowledged (W1), or completed (W2), or picked up (W3)
    seconds: float
    latencies_ms: list[float]
    client_processes: int
    errors: Mapping[str, int] = field(default_factory=dict)
    lost: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds if self.seconds > 0 else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def to_json(self) -> dict[str, Any]:
        def ms(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 3)

        return {
            "workload": self.name,
            "description": self.description,
            "tasks": self.tasks,
            "seconds": round(self.seconds, 3),
            "tasks_per_second": round(self.rate, 1),
            "p50_ms": ms(self.p(50)),
            "p95_ms": ms(self.p(95)),
            "p99_ms": ms(self.p(99)),
            "samples": len(self.latencies_ms),
            "errors": dict(self.errors),
            "lost": self.lost,
            "client_processes": self.client_processes,
            **self.notes,
        }


def merge(reports: Iterable[ChildReport]) -> ChildReport:
    """One report for a whole fleet: counts added, latencies sorted, the widest time span."""
    total = ChildReport()
    latencies: list[float] = []
    for report in reports:
        total.done += report.done
        latencies.extend(report.latencies_ms)
        total.errors.update(report.errors)
        total.extra.update(report.extra)
        total.first = min(total.first, report.first)
        total.last = max(total.last, report.last)
        for task_id, ms in report.pickups.items():  # a task two processes got: the first pickup
            total.pickups[task_id] = min(ms, total.pickups.get(task_id, ms))
    latencies.sort()
    total.latencies_ms = array("d", latencies)
    return total
