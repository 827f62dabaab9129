"""What the event stream costs the node: its CPU at ~10,000 transitions/s with and without
subscribers.

    .venv/bin/python -m bench.monitor [--rate 10000] [--subscribers 3] [--window 5] [--runs 1]

Theory of operation: one fresh node per run (``bench.nodes``, a one-member cluster on the
durable default store). Stream workers (``taskd.bench.worker``: every assignment answered
with success at once) drain one queue while a producer process submits ``SubmitBatch``
calls of ``--batch`` tasks open loop at ``--rate / 3`` tasks/s: each task makes three
transitions (submitted → queued, leased → running, completed → succeeded), so the node
makes ``--rate`` transitions/s if it keeps up. After ``--warmup`` seconds, three windows of
``--window`` seconds each, under the same load throughout:

1. no subscriber;
2. ``--subscribers`` WebSocket clients (trio-websocket, in a process of their own) reading
   ``/api/v1/events`` with no filter, as the monitor page does; the window starts once every
   one has its snapshot, plus one settling second;
3. no subscriber again (they disconnected a second before).

For each window: the node's CPU (utime + stime from ``/proc/<pid>/stat``) as a percentage of
one core, and the transitions the node made (``taskd_task_transitions_total`` of
``/metrics``). The stream's cost is window 2's CPU minus the mean of windows 1 and 3 (the
mean cancels a steady drift, such as the node holding more finished tasks as time goes by);
the target is at most 5 % of one core. Per subscriber: the messages/s and bytes/s it read in
window 2, and whether the node closed it (a client too slow to keep up gets 1013).

Client processes (producer, workers, subscribers) share the machine with the node, so on a
2-core box compare runs on the same machine only, with nothing else running. ``--runs N``
repeats everything on a fresh node each time and prints the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing.connection
import multiprocessing.synchronize
import statistics
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import orjson
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from bench.nodes import BenchCluster
from chaos.cluster import process_cpu_seconds
from taskd.bench import admin
from taskd.bench.fleet import Child, Fleet, fork_context
from taskd.bench.stats import ChildReport
from taskd.bench.submit import Caller, Producer, open_callers
from taskd.bench.worker import WorkerPlan, run_workers
from taskd.bench.workloads import split

TRANSITIONS_PER_TASK = 3  # queued, running, succeeded
TARGET_PERCENT = 5.0  # of one core: the stream's cost at 10,000 transitions/s with 3 pages
MAX_IN_FLIGHT = 4  # SubmitBatch calls per producer connection; beyond it the client lags
READY_TIMEOUT = 30.0
SETTLE = 1.0  # seconds after subscribers connect or leave before a window starts
QUEUE = "monitor-bench"

Arrival = tuple[float, int, str]  # (time.monotonic(), bytes, message type)


# ---- the load -------------------------------------------------------------------------------


async def paced_batches(plan: Producer, tasks_per_second: float, child: Child) -> ChildReport:
    """SubmitBatch calls of ``plan.batch`` tasks at ``tasks_per_second``, open loop, until the
    workload says stop (at most ``MAX_IN_FLIGHT`` calls per connection outstanding)."""
    report = ChildReport()
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    interval = plan.batch / tasks_per_second

    async def one(call: Caller) -> None:
        started = loop.time()
        error = await call(plan.batch)
        ended = loop.time()
        if error is None:
            report.done += plan.batch
            report.latencies_ms.append((ended - started) * 1000.0)
            report.last = max(report.last, ended)
            child.advance(plan.batch)
        else:
            report.error(error)
            child.failed()

    async with AsyncExitStack() as stack:
        callers = await open_callers(stack, plan)
        await child.ready_and_wait_for_go()
        start = report.first = loop.time()
        i = 0
        while not child.stopping:
            await asyncio.sleep(max(0.0, start + i * interval - loop.time()))
            i += 1
            if len(pending) >= MAX_IN_FLIGHT * len(callers):
                report.error("CLIENT_BACKLOG")  # the node is not keeping up: skip this call
                child.failed()
                continue
            task = asyncio.create_task(one(callers[i % len(callers)]))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    return report


# ---- the subscribers ------------------------------------------------------------------------


async def _subscribe(
    url: str,
    count: int,
    ready: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
) -> tuple[list[list[Arrival]], list[str]]:
    arrivals: list[list[Arrival]] = [[] for _ in range(count)]
    endings = ["open"] * count
    have_snapshot = [False] * count

    async def one(i: int) -> None:
        log = arrivals[i]
        async with open_websocket_url(url, max_message_size=1 << 26) as ws:
            try:
                while True:
                    text = await ws.get_message()
                    data = text.encode() if isinstance(text, str) else text
                    kind = str(orjson.loads(data)["type"])  # parsed, as a page would
                    log.append((time.monotonic(), len(data), kind))
                    if kind == "snapshot" and not have_snapshot[i]:
                        have_snapshot[i] = True
                        if all(have_snapshot):
                            ready.set()
            except ConnectionClosed as exc:
                reason = exc.reason
                said = f"{reason.code} {reason.reason or ''}".strip() if reason else "no reason"
                endings[i] = f"closed by the node: {said}"

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)
        # a process-shared Event cannot be awaited: poll it
        while not stop.is_set():  # noqa: ASYNC110
            await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    return arrivals, endings


def _subscribers_main(
    url: str,
    count: int,
    ready: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    conn: multiprocessing.connection.Connection,
) -> None:
    try:
        conn.send(trio.run(_subscribe, url, count, ready, stop))
    except BaseException as exc:  # a crash is a result to show, never a hung run
        conn.send(([[] for _ in range(count)], [f"client crashed: {exc!r}"] * count))
    conn.close()


class Subscribers:
    """``count`` stream readers in a forked process, from ``start`` until ``stop``."""

    def __init__(self, url: str, count: int) -> None:
        ctx = fork_context()
        self.ready, self._stop = ctx.Event(), ctx.Event()
        self._receive, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_subscribers_main,
            args=(url, count, self.ready, self._stop, send),
            daemon=True,
        )
        self._proc.start()
        send.close()
        if not self.ready.wait(READY_TIMEOUT):
            self.stop()
            raise RuntimeError(f"the {count} subscribers did not all get a snapshot in time")

    def stop(self) -> tuple[list[list[Arrival]], list[str]]:
        self._stop.set()
        result: tuple[list[list[Arrival]], list[str]] = ([], [])
        if self._receive.poll(10.0):
            result = self._receive.recv()
        self._proc.join(5.0)
        if self._proc.is_alive():
            self._proc.kill()
        return result


# ---- measuring --------------------------------------------------------------------------------


@dataclass(slots=True)
class Window:
    subscribers: int
    start: float
    seconds: float
    cpu_seconds: float
    transitions: float

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_seconds / self.seconds

    @property
    def transitions_per_second(self) -> float:
        return self.transitions / self.seconds


def transitions_total(url: str) -> float:
    """``taskd_task_transitions_total`` summed over its labels."""
    text = httpx.get(f"{url}/metrics", timeout=5.0).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("taskd_task_transitions_total{")
    )


def measure(pid: int, url: str, seconds: float, subscribers: int) -> Window:
    cpu, transitions, start = process_cpu_seconds(pid), transitions_total(url), time.monotonic()
    time.sleep(seconds)
    cpu_end, transitions_end = process_cpu_seconds(pid), transitions_total(url)
    end = time.monotonic()
    return Window(subscribers, start, end - start, cpu_end - cpu, transitions_end - transitions)


@dataclass(slots=True)
class RunResult:
    offered_per_second: float
    windows: list[Window]
    per_subscriber: list[dict[str, float]] = field(default_factory=list)
    endings: list[str] = field(default_factory=list)
    client_errors: dict[str, int] = field(default_factory=dict)
    backlog: int = 0  # tasks queued or running when the load stopped

    def figures(self) -> dict[str, float]:
        quiet = [w for w in self.windows if w.subscribers == 0]
        [watched] = [w for w in self.windows if w.subscribers > 0]
        quiet_cpu = statistics.fmean(w.cpu_percent for w in quiet)
        return {
            "transitions_per_s_0": statistics.fmean(w.transitions_per_second for w in quiet),
            "transitions_per_s_n": watched.transitions_per_second,
            "cpu_percent_0": quiet_cpu,
            "cpu_percent_n": watched.cpu_percent,
            "cpu_us_per_transition_0": statistics.fmean(
                1e6 * w.cpu_seconds / max(1.0, w.transitions) for w in quiet
            ),
            "cpu_us_per_transition_n": 1e6 * watched.cpu_seconds / max(1.0, watched.transitions),
            "cost_percent": watched.cpu_percent - quiet_cpu,
            "messages_per_s": statistics.fmean(s["messages_per_s"] for s in self.per_subscriber),
            "bytes_per_s": statistics.fmean(s["bytes_per_s"] for s in self.per_subscriber),
            "transitions_messages_per_s": statistics.fmean(
                s["transitions_messages_per_s"] for s in self.per_subscriber
            ),
        }


def _read_rates(arrivals: list[Arrival], window: Window) -> dict[str, float]:
    inside = [a for a in arrivals if window.start <= a[0] < window.start + window.seconds]
    return {
        "messages_per_s": len(inside) / window.seconds,
        "bytes_per_s": sum(a[1] for a in inside) / window.seconds,
        "transitions_messages_per_s": sum(a[2] == "transitions" for a in inside) / window.seconds,
    }


def run_once(args: argparse.Namespace, number: int) -> RunResult:
    tasks_per_second = args.rate / TRANSITIONS_PER_TASK
    with BenchCluster(1) as cluster:
        member = cluster.members[0]
        node = cluster.cluster.node(member)
        url = cluster.url(member)
        pid = node.pid
        if pid is None:
            raise RuntimeError("the node is not running")
        target = admin.Target("127.0.0.1", node.spec.grpc_port, url)
        ctx = fork_context()
        go, stop = ctx.Event(), ctx.Event()
        shares = split(args.workers, args.worker_procs)
        worker_plans = [
            WorkerPlan((target,), QUEUE, n, args.capacity, stamped=False) for n in shares
        ]
        workers = Fleet(
            lambda i: functools.partial(run_workers, worker_plans[i]),
            len(worker_plans),
            go=go,
            stop=stop,
            ctx=ctx,
        )
        producer = Producer((target,), QUEUE, "batch", args.clients, batch=args.batch)
        producers = Fleet(
            lambda i: functools.partial(paced_batches, producer, tasks_per_second),
            1,
            go=go,
            stop=stop,
            ctx=ctx,
        )
        fleets = (workers, producers)
        try:
            for fleet in fleets:
                fleet.start()
            _wait(lambda: all(f.ready for f in fleets), "the client processes to connect")
            _wait(
                lambda: admin.stream_workers(target, QUEUE) >= args.workers,
                "the stream workers to register",
            )
            go.set()
            print(
                f"run {number}: {args.rate:,.0f} transitions/s offered "
                f"({tasks_per_second:,.0f} tasks/s); warming up {args.warmup:g} s",
                file=sys.stderr,
            )
            time.sleep(args.warmup)
            windows = [measure(pid, url, args.window, 0)]
            print(f"run {number}: {args.subscribers} subscribers connect", file=sys.stderr)
            subscribers = Subscribers(
                f"{url.replace('http', 'ws', 1)}/api/v1/events", args.subscribers
            )
            time.sleep(SETTLE)
            windows.append(measure(pid, url, args.window, args.subscribers))
            arrivals, endings = subscribers.stop()
            time.sleep(SETTLE)
            windows.append(measure(pid, url, args.window, 0))
            stop.set()
            reports = [fleet.collect(timeout=10.0) for fleet in fleets]
            counts = admin.queue_counts(target, QUEUE)
        finally:
            stop.set()
            for fleet in fleets:
                fleet.kill()
    errors: dict[str, int] = {}
    for report in (r for fleet_reports in reports for r in fleet_reports):
        for name, n in report.errors.items():
            errors[name] = errors.get(name, 0) + n
    return RunResult(
        args.rate,
        windows,
        [_read_rates(a, windows[1]) for a in arrivals],
        endings,
        errors,
        counts.get("queued", 0) + counts.get("running", 0),
    )


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {READY_TIMEOUT:g} s")
        time.sleep(0.05)


# ---- the report -------------------------------------------------------------------------------


def show(args: argparse.Namespace, results: list[RunResult]) -> None:
    figures = [r.figures() for r in results]
    med = {key: statistics.median(f[key] for f in figures) for key in figures[0]}
    runs = f"median of {len(results)} runs" if len(results) > 1 else "1 run"
    print(
        f"\nevent stream cost: {args.rate:,.0f} transitions/s offered, {args.window:g} s "
        f"windows, {runs}"
    )
    print(f"{'case':<16}{'transitions/s':>15}{'node CPU % of a core':>23}{'CPU us/transition':>19}")
    for label, key in (("0 subscribers", "0"), (f"{args.subscribers} subscribers", "n")):
        print(
            f"{label:<16}{med[f'transitions_per_s_{key}']:>15,.0f}"
            f"{med[f'cpu_percent_{key}']:>23.1f}{med[f'cpu_us_per_transition_{key}']:>19.1f}"
        )
    verdict = "met" if med["cost_percent"] <= TARGET_PERCENT else "missed"
    print(
        f"{'difference':<16}{'':>15}{med['cost_percent']:>+23.1f}   "
        f"target <= {TARGET_PERCENT:g} — {verdict}"
    )
    print(
        f"per subscriber: {med['messages_per_s']:.1f} messages/s "
        f"({med['transitions_messages_per_s']:.1f} transitions), "
        f"{med['bytes_per_s'] / 1000:,.1f} kB/s"
    )
    if len(results) > 1:
        costs = ", ".join(f"{f['cost_percent']:+.1f}" for f in figures)
        print(f"difference per run: {costs}")
    for i, r in enumerate(results, start=1):
        achieved = min(w.transitions_per_second for w in r.windows)
        notes = []
        if achieved < 0.9 * args.rate:
            notes.append(
                f"the node made only {achieved:,.0f} transitions/s in a window: it, or the "
                "clients on the same cores, did not keep up with the offered load, so the CPU "
                "figures are not at that rate; lower --rate or use an idle machine"
            )
        if r.backlog:
            notes.append(f"{r.backlog:,} tasks were still queued or running at the end")
        if any(e != "open" for e in r.endings):
            notes.append(f"subscribers: {', '.join(r.endings)}")
        if r.client_errors:
            notes.append(f"client errors: {r.client_errors}")
        for note in notes:
            print(f"run {i}: {note}")


def as_json(results: list[RunResult]) -> bytes:
    body = [
        {
            **asdict(r),
            "windows": [
                {
                    **asdict(w),
                    "cpu_percent": w.cpu_percent,
                    "transitions_per_second": w.transitions_per_second,
                }
                for w in r.windows
            ],
            "figures": r.figures(),
        }
        for r in results
    ]
    return orjson.dumps({"runs": body}, option=orjson.OPT_INDENT_2) + b"\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.monitor", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--rate", type=float, default=10_000, help="transitions/s offered (10000)")
    p.add_argument("--subscribers", type=int, default=3, help="stream readers in window 2 (3)")
    p.add_argument("--window", type=float, default=5.0, help="seconds per window (5)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before (3)")
    p.add_argument("--runs", type=int, default=1, help="fresh node per run; medians (1)")
    p.add_argument("--batch", type=int, default=100, help="tasks per SubmitBatch (100)")
    p.add_argument("--clients", type=int, default=4, help="producer connections (4)")
    p.add_argument("--workers", type=int, default=4, help="stream worker connections (4)")
    p.add_argument("--worker-procs", type=int, default=1, help="processes they share (1)")
    p.add_argument("--capacity", type=int, default=256, help="each worker's capacity (256)")
    p.add_argument("--json", action="store_true", help="every window as JSON on stdout")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.window <= 0 or args.warmup < 0:
        p.error("--rate and --window must be > 0, --warmup >= 0")
    if min(args.subscribers, args.runs, args.batch, args.clients, args.workers) < 1:
        p.error("--subscribers, --runs, --batch, --clients and --workers must be at least 1")
    if not 1 <= args.worker_procs <= args.workers:
        p.error("--worker-procs must be 1 to --workers")
    results = [run_once(args, n) for n in range(1, args.runs + 1)]
    if args.json:
        sys.stdout.buffer.write(as_json(results))
    else:
        show(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
