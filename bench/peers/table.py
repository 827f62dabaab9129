"""The peers' table: medians over runs, ratios to taskd, the issue's targets, text and Markdown.

Pure functions of measures (what ``bench.peers.run`` parsed from the agent's and from
``taskd bench``'s JSON). Every ratio says how much better taskd did, so > 1 always means taskd
is better: tasks/s is taskd ÷ peer; p50, p99 and RSS are peer ÷ taskd. A ratio needs both
figures, from the same run's medians.

Targets (the issue): W1a enqueue tasks/s ≥ 1.5x each Celery's, and W3 pickup p50 ≤ each
Celery's, both in the same run.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

SYSTEMS = ("celery-redis", "celery-rabbitmq", "rq", "dramatiq-redis", "dramatiq-rabbitmq", "taskd")
WORKLOADS = ("w1a", "w2", "w3")
CELERY = ("celery-redis", "celery-rabbitmq")
W1A_TARGET = 1.5
START = "<!-- peers-table:start -->"
END = "<!-- peers-table:end -->"
HEADERS = (
    "system", "workload", "tasks/s", "p50 ms", "p95 ms", "p99 ms", "RSS MB",
    "ratio tasks/s", "ratio p50", "ratio p99", "ratio RSS",
)  # fmt: skip
NAMES = {"w1a": "W1a enqueue", "w2": "W2 end to end", "w3": "W3 pickup"}


@dataclass(frozen=True, slots=True)
class Measure:
    system: str
    workload: str
    tasks: int = 0
    tasks_per_second: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    rss_mb: float | None = None
    errors: int = 0
    lost: int = 0
    failed: str = ""  # why there is no figure (the agent or taskd bench failed)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Measure:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in body.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Meta:
    """What the Markdown block says about where and how its numbers were made."""

    when: str  # "2026-12-03 14:05 UTC"
    machine: str  # uname -m
    cores: int
    cpu: str  # /proc/cpuinfo's model name
    python: str
    command: str
    runs: int
    settings: Mapping[str, Any]  # tasks, clients, producers, rate, duration, concurrency
    versions: Mapping[str, str] = field(default_factory=dict)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def medians(runs: Sequence[Sequence[Measure]]) -> list[Measure]:
    """One measure per (system, workload): the median of each figure over the runs that
    produced one; failed only when every run failed."""
    groups: dict[tuple[str, str], list[Measure]] = {}
    for run in runs:
        for m in run:
            groups.setdefault((m.system, m.workload), []).append(m)
    out = []
    for (system, workload), group in groups.items():
        ok = [m for m in group if not m.failed]
        if not ok:
            out.append(group[-1])
            continue

        def mid(name: str, ok: list[Measure] = ok) -> float | None:
            return _median([getattr(m, name) for m in ok])

        out.append(
            Measure(
                system,
                workload,
                tasks=round(mid("tasks") or 0),
                tasks_per_second=mid("tasks_per_second") or 0.0,
                p50_ms=mid("p50_ms"),
                p95_ms=mid("p95_ms"),
                p99_ms=mid("p99_ms"),
                rss_mb=mid("rss_mb"),
                errors=max(m.errors for m in ok),
                lost=max(m.lost for m in ok),
            )
        )
    return ordered(out)


def ordered(measures: Sequence[Measure]) -> list[Measure]:
    """By workload, then system (taskd last), so that each peer sits above taskd's row."""

    def key(m: Measure) -> tuple[int, int, str]:
        w = WORKLOADS.index(m.workload) if m.workload in WORKLOADS else len(WORKLOADS)
        s = SYSTEMS.index(m.system) if m.system in SYSTEMS else len(SYSTEMS)
        return w, s, m.system

    return sorted(measures, key=key)


def better(taskd: float | None, peer: float | None, *, higher_is_better: bool) -> float | None:
    """How many times better taskd's figure is than the peer's (> 1: taskd better)."""
    if taskd is None or peer is None or taskd <= 0 or peer <= 0:
        return None
    return taskd / peer if higher_is_better else peer / taskd


@dataclass(frozen=True, slots=True)
class Row:
    measure: Measure
    rate: float | None = None  # taskd ÷ peer tasks/s
    p50: float | None = None  # peer ÷ taskd
    p99: float | None = None
    rss: float | None = None


def rows(measures: Sequence[Measure]) -> list[Row]:
    taskd = {m.workload: m for m in measures if m.system == "taskd" and not m.failed}
    out = []
    for m in ordered(measures):
        t = taskd.get(m.workload)
        if m.system == "taskd" or t is None or m.failed:
            out.append(Row(m))
            continue
        out.append(
            Row(
                m,
                rate=better(t.tasks_per_second, m.tasks_per_second, higher_is_better=True),
                p50=better(t.p50_ms, m.p50_ms, higher_is_better=False),
                p99=better(t.p99_ms, m.p99_ms, higher_is_better=False),
                rss=better(t.rss_mb, m.rss_mb, higher_is_better=False),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    met: bool | None  # None: not measured in this run
    detail: str


def targets(measures: Sequence[Measure]) -> list[Target]:
    found = {(m.system, m.workload): m for m in measures if not m.failed}
    out = []
    for peer in CELERY:
        name = f"W1a enqueue tasks/s ≥ {W1A_TARGET:g}x {peer}'s"
        t, p = found.get(("taskd", "w1a")), found.get((peer, "w1a"))
        ratio = None
        if t is not None and p is not None:
            ratio = better(t.tasks_per_second, p.tasks_per_second, higher_is_better=True)
        if t is None or p is None or ratio is None:
            out.append(Target(name, None, "not measured"))
        else:
            detail = (
                f"taskd {t.tasks_per_second:,.0f}/s vs {p.tasks_per_second:,.0f}/s = {ratio:.2f}x"
            )
            out.append(Target(name, ratio >= W1A_TARGET, detail))
    for peer in CELERY:
        name = f"W3 pickup p50 ≤ {peer}'s"
        t, p = found.get(("taskd", "w3")), found.get((peer, "w3"))
        if t is None or p is None or t.p50_ms is None or p.p50_ms is None:
            out.append(Target(name, None, "not measured"))
        else:
            detail = f"taskd {_ms(t.p50_ms)} ms vs {_ms(p.p50_ms)} ms"
            out.append(Target(name, t.p50_ms <= p.p50_ms, detail))
    return out


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def cells(row: Row) -> list[str]:
    m = row.measure
    if m.failed:
        return [m.system, NAMES.get(m.workload, m.workload), "failed", *["-"] * 8]
    return [
        m.system,
        NAMES.get(m.workload, m.workload),
        f"{m.tasks_per_second:,.0f}",
        _ms(m.p50_ms),
        _ms(m.p95_ms),
        _ms(m.p99_ms),
        "-" if m.rss_mb is None else f"{m.rss_mb:,.1f}",
        _x(row.rate),
        _x(row.p50),
        _x(row.p99),
        _x(row.rss),
    ]


def verdict(target: Target) -> str:
    word = {True: "met", False: "missed", None: "not measured"}[target.met]
    return f"{target.name}: {word}" + ("" if target.met is None else f" ({target.detail})")


def remarks(measures: Sequence[Measure]) -> list[str]:
    """Failures, errors and lost tasks, one line each (no news is no line)."""
    out = []
    for m in ordered(measures):
        what = f"{m.system} {m.workload}"
        if m.failed:
            out.append(f"{what}: failed: {m.failed}")
            continue
        if m.errors:
            out.append(f"{what}: {m.errors:,} failed enqueue calls")
        if m.lost:
            out.append(f"{what}: {m.lost:,} enqueued tasks never completed")
    return out


RATIOS = "Ratios: > 1 means taskd is better (tasks/s: taskd ÷ peer; p50, p99, RSS: peer ÷ taskd)."
DURABILITY = (
    "Durability differs: taskd answers a submit once the task is fsynced to disk; the peers' "
    "brokers here keep nothing on disk (Redis without AOF, as these machines run it) or publish "
    "without confirms (RabbitMQ), so what they acknowledged is lost if the broker crashes."
)


def legend(workloads: Sequence[str], s: Mapping[str, Any]) -> list[str]:
    """What each workload present did, with this run's numbers."""
    out = []
    if "w1a" in workloads:
        out.append(
            f"W1a: {s['tasks']:,} enqueues, one task per call, from {s['clients']} producer "
            f"{s['producers']} (taskd: {s['clients']} gRPC clients, unary Submit), no worker "
            "running; latency per call."
        )
    if "w2" in workloads:
        out.append(
            f"W2: {s['tasks']:,} no-op tasks enqueued the same way, drained by the peer's "
            f"workers ({s['concurrency']} processes: Celery prefork, RQ {s['rq_worker']} "
            "workers, Dramatiq x 8 threads; each task INCRs a Redis counter) or by taskd's 4 "
            "stream workers (SubmitBatch of 100); tasks/s from the first enqueue to the last "
            "completion; RSS then: the peer's worker processes with their children, summed, "
            "or the taskd node."
        )
    if "w3" in workloads:
        out.append(
            f"W3: {s['rate']:g} tasks/s offered for {s['duration']:g} s; latency from the "
            "enqueue call (its time in the payload) to the handler starting (taskd: to its "
            "stream worker receiving the task)."
        )
    return [*out, RATIOS, DURABILITY]


def text(measures: Sequence[Measure], settings: Mapping[str, Any]) -> str:
    """An aligned plain-text table, its legend, the targets and the remarks."""
    body = [list(HEADERS), *(cells(r) for r in rows(measures))]
    widths = [max(len(line[i]) for line in body) for i in range(len(HEADERS))]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if i < 2 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out = [line(body[0]), line(["-" * w for w in widths]), *(line(v) for v in body[1:])]
    present = [w for w in WORKLOADS if any(m.workload == w for m in measures)]
    out += ["", *legend(present, settings), ""]
    out += [*(verdict(t) for t in targets(measures)), *remarks(measures)]
    return "\n".join(out) + "\n"


def markdown(measures: Sequence[Measure], meta: Meta) -> str:
    """The generated block for the READMEs (without the markers)."""
    versions = ", ".join(f"{k} {v}" for k, v in sorted(meta.versions.items()))
    runs = "one run" if meta.runs == 1 else f"medians of {meta.runs} runs"
    present = [w for w in WORKLOADS if any(m.workload == w for m in measures)]
    out = [
        f"Generated {meta.when} by `{meta.command}` ({runs}) on {meta.machine}, "
        f"{meta.cores} cores ({meta.cpu}), {meta.python}" + (f"; {versions}." if versions else "."),
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(HEADERS) - 2)) + "|",
        *("| " + " | ".join(cells(r)) + " |" for r in rows(measures)),
        "",
        " ".join(legend(present, meta.settings)),
        "",
        *(f"- {verdict(t)}" for t in targets(measures)),
        *(f"- {r}" for r in remarks(measures)),
    ]
    return "\n".join(out).rstrip() + "\n"


def replace_block(document: str, block: str) -> str:
    """``document`` with what lies between the markers replaced by ``block``."""
    start, end = document.find(START), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {START} ... {END} block")
    head = document[: start + len(START)]
    return f"{head}\n{block.rstrip()}\n{document[end:]}"
