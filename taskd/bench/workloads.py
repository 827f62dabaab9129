"""The workloads of design.md §4, each driven from the parent over forked client fleets.

- W1 submit (a: unary Submit, b: SubmitBatch of ``batch``, c: REST POST): closed loop,
  ``clients`` calls in flight; tasks/s and per-call latency. ``w1a@RATE``: unary Submit offered
  open loop at ``rate``/s for ``duration`` s; latency from each call's scheduled time.
- W2 end-to-end: stream workers connect first, then ``tasks`` no-op tasks are submitted in
  batches; tasks/s from the first submit to the last accepted result.
- W3 pickup: stream workers, then unary submits open loop at ``rate``/s for ``duration`` s;
  latency from the submit (a timestamp in the payload) to the worker receiving the task.
- The SDK's figures (taskd/bench/sdk.py): ``sdk-submit`` is W1a through one
  ``TaskSchedulerClient`` shared by ``clients`` threads in one process; ``w2-sdk`` and
  ``w3-sdk`` are W2 and W3 drained by the SDK ``Worker`` instead of the protocol-only worker.

Every workload has its own queue (``<run queue>-<workload>``), so afterwards the node's queue
stats tell whether every acknowledged task is there ("lost" counts those that are not; for W2
those that did not end ``succeeded``; for W3 those no worker received in time).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console

from taskd.bench import admin
from taskd.bench.fleet import Fleet, Role, fork_context
from taskd.bench.report import ProgressLine
from taskd.bench.sdk import run_sdk_workers, sdk_submit
from taskd.bench.stats import ChildReport, WorkloadResult, merge
from taskd.bench.submit import Producer, closed_loop, open_loop
from taskd.bench.worker import WorkerPlan, run_workers

READY_TIMEOUT = 30.0
TICK = 0.2


@dataclass(frozen=True, slots=True)
class Settings:
    target: admin.Target  # the first member: probes and queue stats go here
    queue: str
    tasks: int
    clients: int
    procs: int
    duration: float
    rate: float
    batch: int = 100
    workers: int = 4
    capacity: int = 256
    drain_timeout: float = 30.0  # W2/W3: give up when no result arrived for this long
    members: tuple[admin.Target, ...] = ()  # every member clients spread over (default: target)

    @property
    def targets(self) -> tuple[admin.Target, ...]:
        return self.members or (self.target,)


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def starts(shares: list[int]) -> list[int]:
    """The index of each share's first item: [3, 3, 2] -> [0, 3, 6]."""
    return [sum(shares[:i]) for i in range(len(shares))]


class Run:
    """One workload's fleets, its shared go/stop events and its progress line."""

    def __init__(self, settings: Settings, console: Console, name: str) -> None:
        self.settings = settings
        self.console = console
        self.name = name
        self.queue = f"{settings.queue}-{name.replace('@', '-at-')}"
        self.ctx = fork_context()
        self.go = self.ctx.Event()
        self.stop = self.ctx.Event()
        self.fleets: list[Fleet] = []

    def fleet(self, count: int, role_for: Callable[[int], Role]) -> Fleet:
        fleet = Fleet(role_for, count, go=self.go, stop=self.stop, ctx=self.ctx)
        self.fleets.append(fleet)
        fleet.start()
        return fleet

    @property
    def processes(self) -> int:
        return sum(f.count for f in self.fleets)

    def wait_ready(self, *fleets: Fleet) -> None:
        end = time.monotonic() + READY_TIMEOUT
        while not all(f.ready for f in fleets) and time.monotonic() < end:
            time.sleep(0.01)

    def producers(self, api: str, *, stamped: bool = False, procs: int = 0) -> list[Producer]:
        s = self.settings
        procs = max(1, min(procs or s.procs, s.clients))
        shares = split(s.clients, procs)
        return [
            Producer(
                s.targets,
                self.queue,
                api,
                clients,
                batch=s.batch,
                stamped=stamped,
                seed=i,
                first=first,
            )
            for i, (clients, first) in enumerate(zip(shares, starts(shares), strict=True))
        ]

    def close(self) -> list[list[ChildReport]]:
        self.stop.set()
        return [fleet.collect(timeout=10.0) for fleet in self.fleets]

    def kill(self) -> None:
        self.stop.set()
        for fleet in self.fleets:
            fleet.kill()

    def lost(self, acknowledged: int, notes: dict[str, object]) -> int:
        """Acknowledged tasks the node's queue stats do not hold."""
        try:
            counts = admin.queue_counts(self.settings.target, self.queue)
        except admin.Unreachable as exc:
            notes["verify"] = f"could not read queue stats: {exc}"
            return 0
        notes["states"] = counts
        return max(0, acknowledged - sum(counts.values()))


def _producers_only(
    run: Run, count: int, role_for: Callable[[int], Role], expected: int, note: str = ""
) -> ChildReport:
    """Run ``count`` producer processes until they are done, showing progress; their total."""
    try:
        fleet = run.fleet(count, role_for)
        run.wait_ready(fleet)
        with ProgressLine(run.console, run.name, expected, run.processes) as line:
            start = time.monotonic()
            run.go.set()
            while not fleet.poll():
                line.update(fleet.progress, fleet.errors, time.monotonic() - start, note)
                time.sleep(TICK)
            line.update(fleet.progress, fleet.errors, time.monotonic() - start, note)
        [reports] = run.close()
    finally:
        run.kill()
    return merge(reports)


def w1(
    settings: Settings, console: Console, name: str, api: str, description: str
) -> WorkloadResult:
    run = Run(settings, console, name)
    plans = run.producers(api)
    shares = split(settings.tasks, len(plans))
    total = _producers_only(
        run,
        len(plans),
        lambda i: functools.partial(closed_loop, plans[i], shares[i]),
        settings.tasks,
    )
    notes: dict[str, object] = {"clients": settings.clients, "queue": run.queue}
    return _result(run, name, description, total, notes)


def w1_sdk(settings: Settings, console: Console) -> WorkloadResult:
    """W1a as an application makes it: ``submit_task`` from ``clients`` threads of one process
    sharing one ``TaskSchedulerClient`` (which coalesces them)."""
    run = Run(settings, console, "sdk-submit")
    [plan] = run.producers("sdk", procs=1)
    total = _producers_only(
        run, 1, lambda i: functools.partial(sdk_submit, plan, settings.tasks), settings.tasks
    )
    notes: dict[str, object] = {
        "threads": settings.clients,
        "submit_batch_calls": total.extra.get("batches", 0),
        "queue": run.queue,
    }
    description = (
        f"SDK submit_task, one task per call, from {settings.clients} threads sharing one client"
    )
    return _result(run, "sdk-submit", description, total, notes)


def w1_open(settings: Settings, console: Console) -> WorkloadResult:
    name = f"w1a@{settings.rate:g}"
    run = Run(settings, console, name)
    plans = run.producers("unary")
    rates = [settings.rate * p.clients / settings.clients for p in plans]
    expected = sum(int(r * settings.duration) for r in rates)
    total = _producers_only(
        run,
        len(plans),
        lambda i: functools.partial(open_loop, plans[i], rates[i], settings.duration),
        expected,
        "offered",
    )
    notes: dict[str, object] = {"offered_per_second": settings.rate, "queue": run.queue}
    description = (
        f"unary Submit offered open loop at {settings.rate:g}/s for {settings.duration:g} s"
    )
    return _result(run, name, description, total, notes)


def _result(
    run: Run, name: str, description: str, total: ChildReport, notes: dict[str, object]
) -> WorkloadResult:
    """A producer workload's result: its tasks, span, latencies, errors and losses."""
    return WorkloadResult(
        name,
        description,
        total.done,
        _span(total),
        list(total.latencies_ms),
        run.processes,
        dict(total.errors),
        run.lost(total.done, notes),
        notes,
    )


def _span(total: ChildReport) -> float:
    return max(0.0, total.last - total.first) if total.done else 0.0


def _start_workers(run: Run, *, stamped: bool, sdk: bool = False) -> Fleet:
    s = run.settings
    procs = max(1, min(s.procs, s.workers))
    progress = "received" if stamped else "acked"
    shares = split(s.workers, procs)
    plans = [
        WorkerPlan(s.targets, run.queue, n, s.capacity, stamped, progress, first)
        for n, first in zip(shares, starts(shares), strict=True)
    ]
    role = run_sdk_workers if sdk else run_workers
    workers = run.fleet(procs, lambda i: functools.partial(role, plans[i]))
    run.wait_ready(workers)
    # every member has its streams registered before the first task goes out
    end = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < end:
        try:
            if sum(admin.stream_workers(t, run.queue) for t in s.targets) >= s.workers:
                break
        except admin.Unreachable:
            pass
        time.sleep(0.05)
    return workers


def _drain(run: Run, line: ProgressLine, producers: Fleet, workers: Fleet, start: float) -> None:
    """Until the producers are done and the workers have every acknowledged task (or stall)."""
    last_progress, last_change = -1, time.monotonic()
    while True:
        done = workers.progress
        now = time.monotonic()
        if done != last_progress:
            last_progress, last_change = done, now
        finished = producers.poll()
        note = f"submitted {producers.progress:,}"
        line.update(done, producers.errors + workers.errors, now - start, note)
        if finished and done >= producers.progress:
            return
        if finished and now - last_change > run.settings.drain_timeout:
            return
        time.sleep(TICK)


def w2(settings: Settings, console: Console, *, sdk: bool = False) -> WorkloadResult:
    name = "w2-sdk" if sdk else "w2"
    run = Run(settings, console, name)
    plans = run.producers("batch")
    shares = split(settings.tasks, len(plans))
    worker_reports, producer_reports = _with_workers(
        run,
        console,
        settings.tasks,
        len(plans),
        lambda i: functools.partial(closed_loop, plans[i], shares[i]),
        stamped=False,
        sdk=sdk,
    )
    done, submitted = merge(worker_reports), merge(producer_reports)
    notes: dict[str, object] = {
        "submitted": submitted.done,
        "workers": settings.workers,
        "capacity": settings.capacity,
        "queue": run.queue,
        **done.extra,
    }
    lost = _not_succeeded(run, submitted.done, notes)
    seconds = max(0.0, done.last - submitted.first) if done.done else 0.0
    errors = dict(submitted.errors + done.errors)
    kind = "SDK Workers (async no-op handler)" if sdk else "stream workers"
    description = (
        f"{submitted.done:,} no-op tasks in SubmitBatch of {settings.batch}, drained by "
        f"{settings.workers} {kind}; first submit to last accepted result"
    )
    return WorkloadResult(
        name, description, done.done, seconds, [], run.processes, errors, lost, notes
    )


def _with_workers(
    run: Run,
    console: Console,
    expected: int,
    producer_count: int,
    role_for: Callable[[int], Role],
    *,
    stamped: bool,
    sdk: bool = False,
) -> tuple[list[ChildReport], list[ChildReport]]:
    """Start stream workers, then producers; show progress until drained; both reports."""
    try:
        workers = _start_workers(run, stamped=stamped, sdk=sdk)
        producers = run.fleet(producer_count, role_for)
        run.wait_ready(producers)
        with ProgressLine(console, run.name, expected, run.processes) as line:
            start = time.monotonic()
            run.go.set()
            _drain(run, line, producers, workers, start)
        worker_reports, producer_reports = run.close()
    finally:
        run.kill()
    return worker_reports, producer_reports


def _not_succeeded(run: Run, submitted: int, notes: dict[str, object]) -> int:
    try:
        counts = admin.queue_counts(run.settings.target, run.queue)
    except admin.Unreachable as exc:
        notes["verify"] = f"could not read queue stats: {exc}"
        return 0
    notes["states"] = counts
    return max(0, submitted - counts.get("succeeded", 0))


def w3(settings: Settings, console: Console, *, sdk: bool = False) -> WorkloadResult:
    name = "w3-sdk" if sdk else "w3"
    run = Run(settings, console, name)
    plans = run.producers("unary", stamped=True)
    rates = [settings.rate * p.clients / settings.clients for p in plans]
    worker_reports, producer_reports = _with_workers(
        run,
        console,
        sum(int(r * settings.duration) for r in rates),
        len(plans),
        lambda i: functools.partial(open_loop, plans[i], rates[i], settings.duration),
        stamped=True,
        sdk=sdk,
    )
    picked, submitted = merge(worker_reports), merge(producer_reports)
    received = len(picked.pickups)  # distinct tasks: a redelivery elsewhere is not a pickup
    latencies = sorted(ms for ms in picked.pickups.values() if not math.isnan(ms))
    notes: dict[str, object] = {
        "submitted": submitted.done,
        "offered_per_second": settings.rate,
        "queue": run.queue,
        **picked.extra,
        "received": received,
    }
    receiver = "an SDK Worker's handler starting" if sdk else "a stream worker receiving"
    description = (
        f"unary Submit open loop at {settings.rate:g}/s for {settings.duration:g} s; "
        f"latency = submit to {receiver} the task"
    )
    return WorkloadResult(
        name,
        description,
        received,
        _span(submitted),
        latencies,
        run.processes,
        dict(submitted.errors + picked.errors),
        max(0, submitted.done - received),
        notes,
    )


WORKLOADS: tuple[str, ...] = ("w1a", "w1b", "w1c", "w2", "w3")
