"""One workload on one peer, run in the peers' venv; its result as one JSON line on stdout.

    .venv-peers/bin/python -m bench.peers.agent --system rq --workload w2 --tasks 20000

Theory of operation (``bench.peers.run`` starts this once per system x workload x run, in a
process group of its own, and kills the group afterwards whatever happened):

- The recording DB is flushed and the peer's queues cleaned before and after.
- Producers: ``--clients`` producers (forked processes by default, or threads of this
  process with ``--producers threads``), each making its own client after the fork and calling
  the peer's enqueue (``.delay()``, ``enqueue()``, ``.send()``) one task at a time. Every task
  is sent to exactly one producer: task g goes to producer g mod clients.
- W1a: closed loop, no worker running; tasks/s = tasks / (first call to last return), with the
  latency of every call.
- W2: workers are started and warmed up (``4 x concurrency`` counted tasks, waited for), then
  the producers enqueue ``--tasks`` ``count`` tasks; tasks/s = tasks / (first enqueue to the
  wall time the last task's handler recorded); then the RSS of every worker process and its
  children (``/proc/<pid>/status`` VmRSS).
- W3: workers started and warmed up, then ``rate x duration`` ``pickup`` tasks on a fixed
  schedule (task g due at start + g / rate, whatever the answers); each carries time.time() of
  its enqueue call, and its handler records now - that; p50/p95/p99 of those.
- A drain ends when every enqueued task is counted, or when nothing changed for ``--stall`` s
  (what is missing is ``lost``). A worker that exits is an error, with its log's tail.
- Progress goes to stderr at least once a second. SIGTERM (the harness interrupted) stops the
  workers and cleans the queues before exiting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import multiprocessing.synchronize
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from ctypes import c_double, c_longlong
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from types import FrameType
from typing import IO, Any

from bench.peers import jobs, procs, systems

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = "p" * 100  # the 100-byte payload of design.md §4
WORKLOADS = ("w1a", "w2", "w3")
READY_TIMEOUT = 60.0
WARMUP_TIMEOUT = 60.0
TICK = 0.02
_FAILED_START = 100  # a producer whose first 100 calls all fail stops (the peer is down)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest rank, as ``taskd.bench.stats.percentile``; None when there are none."""
    if not sorted_values:
        return None
    return sorted_values[max(1, math.ceil(q / 100.0 * len(sorted_values))) - 1]


@dataclass(frozen=True, slots=True)
class Plan:
    kind: str  # noop | count | pickup
    total: int  # tasks over all producers
    producers: int
    rate: float = 0.0  # > 0: open loop, task g due at start + g / rate
    key: str = jobs.DONE  # the counter of ``count`` tasks

    def share(self, index: int) -> range:
        return range(index, self.total, self.producers)

    def args(self) -> tuple[object, ...]:
        if self.kind == "count":
            return (self.key, self.total, PAYLOAD)
        if self.kind == "pickup":
            return (time.time(), PAYLOAD)
        return (PAYLOAD,)


@dataclass(slots=True)
class Sent:
    """What one producer did."""

    calls: int = 0  # enqueue calls that returned
    errors: int = 0
    error: str = ""  # the first error
    first: float = math.inf  # time.time() when its first call started
    last: float = 0.0  # time.time() when its last successful call returned
    latencies_ms: list[float] = field(default_factory=list)


def _produce(
    peer: systems.Peer,
    plan: Plan,
    index: int,
    progress: Any,  # RawArray of c_longlong: -1 until ready, then calls done
    go: multiprocessing.synchronize.Event,
    start: Synchronized[float],
    out: multiprocessing.Queue[tuple[int, Sent]],
) -> None:
    report = Sent()
    try:
        send = peer.sender(plan.kind)
        # One untimed noop first: the client's lazy set-up (Celery's app finalisation, the
        # connection, queue declarations) is paid before "go", not by the first measured tasks.
        peer.sender("noop")(PAYLOAD)
    except Exception as exc:  # reported, not raised: the parent says which peer failed how
        report.error = f"{type(exc).__name__}: {exc}"
        progress[index] = 0
        out.put((index, report))
        return
    progress[index] = 0
    go.wait()
    for g in plan.share(index):
        if plan.rate > 0:
            delay = start.value + g / plan.rate - time.time()
            if delay > 0:
                time.sleep(delay)
        args = plan.args()
        began = time.time()
        t0 = time.perf_counter()
        report.first = min(report.first, began)
        try:
            send(*args)
        except Exception as exc:  # counted, never fatal, as in taskd bench
            report.errors += 1
            report.error = report.error or f"{type(exc).__name__}: {exc}"
            if report.calls == 0 and report.errors >= _FAILED_START:
                break
            continue
        report.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
        report.calls += 1
        report.last = time.time()
        progress[index] = report.calls
    out.put((index, report))


class Fleet:
    """``plan.producers`` producers, forked processes or threads, started together by ``go``."""

    def __init__(self, peer: systems.Peer, plan: Plan, mode: str) -> None:
        ctx = multiprocessing.get_context("fork")
        self.plan = plan
        self.progress = ctx.RawArray(c_longlong, [-1] * plan.producers)
        self.go = ctx.Event()
        self.start_at: Synchronized[float] = ctx.Value(c_double, 0.0)
        self.out: multiprocessing.Queue[tuple[int, Sent]] = ctx.Queue()
        self.reports: dict[int, Sent] = {}
        args = (peer, plan)
        self.runners: list[multiprocessing.context.ForkProcess | threading.Thread] = []
        for i in range(plan.producers):
            rest = (i, self.progress, self.go, self.start_at, self.out)
            if mode == "threads":
                self.runners.append(threading.Thread(target=_produce, args=(*args, *rest)))
            else:
                self.runners.append(ctx.Process(target=_produce, args=(*args, *rest)))
        for runner in self.runners:
            runner.daemon = True
            runner.start()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while any(v < 0 for v in self.progress):
            self.poll()
            if time.monotonic() > deadline:
                raise RuntimeError(f"producers not connected within {READY_TIMEOUT:g} s")
            time.sleep(TICK)

    def start(self, lead: float = 0.0) -> None:
        """Go: an open-loop schedule starts ``lead`` s from now."""
        self.start_at.value = time.time() + lead
        self.go.set()

    @property
    def calls(self) -> int:
        return sum(max(0, v) for v in self.progress)

    def poll(self) -> bool:
        """Collect the reports that came in; True when every producer has reported."""
        with contextlib.suppress(queue.Empty):
            while len(self.reports) < len(self.runners):
                index, report = self.out.get(timeout=0.001)
                self.reports[index] = report
        return len(self.reports) == len(self.runners)

    def close(self) -> Sent:
        """Join the producers; their reports merged (latencies sorted)."""
        for runner in self.runners:
            runner.join(timeout=10.0)
            if isinstance(runner, multiprocessing.process.BaseProcess) and runner.is_alive():
                runner.kill()
        total = Sent()
        latencies: list[float] = []
        for report in self.reports.values():
            total.calls += report.calls
            total.errors += report.errors
            total.error = total.error or report.error
            total.first = min(total.first, report.first)
            total.last = max(total.last, report.last)
            latencies.extend(report.latencies_ms)
        total.latencies_ms = sorted(latencies)
        if not total.calls and total.error:
            raise RuntimeError(f"every enqueue failed: {total.error}")
        return total


class Workers:
    """The peer's worker processes, logging to one file; killed with their children."""

    def __init__(self, commands: list[list[str]], env: dict[str, str]) -> None:
        self._log: IO[bytes] = tempfile.NamedTemporaryFile(prefix="taskd-peers-", suffix=".log")
        self.procs = [
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=procs.die_with_parent,
            )
            for command in commands
        ]

    def check(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a worker exited with {proc.returncode}:\n{self.tail()}")

    def tail(self, size: int = 3000) -> str:
        self._log.flush()
        return Path(self._log.name).read_bytes()[-size:].decode(errors="replace")

    def rss_mb(self) -> float:
        return procs.tree_rss_mb(p.pid for p in self.procs)

    def close(self) -> None:
        for proc in self.procs:
            procs.kill_tree(proc.pid)
        for proc in self.procs:
            proc.wait()
        self._log.close()


@dataclass(frozen=True, slots=True)
class Options:
    system: str
    tasks: int
    clients: int
    producers: str  # processes | threads
    rate: float
    duration: float
    concurrency: int
    stall: float


def _produce_all(peer: systems.Peer, plan: Plan, o: Options, label: str) -> Sent:
    """Run a fleet to its end, showing progress; its merged report."""
    fleet = Fleet(peer, plan, o.producers)
    fleet.wait_ready()
    fleet.start(lead=0.05 if plan.rate else 0.0)
    began, shown = time.monotonic(), 0.0
    while not fleet.poll():
        if time.monotonic() - shown >= 1.0:
            shown = time.monotonic()
            _show(label, fleet.calls, plan.total, shown - began)
        time.sleep(TICK)
    _show(label, fleet.calls, plan.total, time.monotonic() - began)
    return fleet.close()


def _show(label: str, sent: int, total: int, elapsed: float, done: int | None = None) -> None:
    """``enqueued 5,000/20,000 (2,345/s)``, or with ``done``: the rate is of completions."""
    count = sent if done is None else done
    rate = f"{count / elapsed:,.0f}/s" if elapsed > 0 else "-"
    drained = "" if done is None else f", done {done:,}"
    say(f"  {label}: enqueued {sent:,}/{total:,}{drained} ({rate})")


def _warm_up(peer: systems.Peer, workers: Workers, o: Options, label: str) -> None:
    """Until the workers have run ``4 x concurrency`` tasks: they are consuming."""
    n = max(8, 4 * o.concurrency)
    _produce_all(peer, Plan("count", n, 1, key=jobs.WARM), o, f"{label} warm-up")
    deadline = time.monotonic() + WARMUP_TIMEOUT
    while jobs.counted(jobs.WARM) < n:
        workers.check()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the workers ran {jobs.counted(jobs.WARM)} of {n} warm-up tasks in "
                f"{WARMUP_TIMEOUT:g} s:\n{workers.tail()}"
            )
        time.sleep(TICK)


def _drain(
    fleet: Fleet, workers: Workers, done: Callable[[], int], o: Options, label: str
) -> tuple[int, float]:
    """Until every enqueued task is done or nothing moved for ``o.stall`` s: (done, when)."""
    began = shown = time.monotonic()
    last_done, last_change = -1, time.time()
    while True:
        finished = fleet.poll()
        count = done()
        if count != last_done:
            last_done, last_change = count, time.time()
        if time.monotonic() - shown >= 1.0:
            shown = time.monotonic()
            _show(label, fleet.calls, fleet.plan.total, shown - began, count)
        if finished and count >= fleet.calls:
            return count, last_change
        if finished and time.time() - last_change > o.stall:
            say(f"  {label}: nothing done for {o.stall:g} s; {fleet.calls - count:,} missing")
            return count, last_change
        workers.check()
        time.sleep(TICK)


def _result(
    peer: systems.Peer, workload: str, tasks: int, seconds: float, latencies: list[float]
) -> dict[str, Any]:
    def ms(q: float) -> float | None:
        value = percentile(latencies, q)
        return None if value is None else round(value, 3)

    return {
        "system": peer.name,
        "workload": workload,
        "tasks": tasks,
        "seconds": round(seconds, 3),
        "tasks_per_second": round(tasks / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": ms(50),
        "p95_ms": ms(95),
        "p99_ms": ms(99),
        "samples": len(latencies),
        "rss_mb": None,
        "errors": 0,
        "lost": 0,
        "notes": {},
    }


def w1a(peer: systems.Peer, o: Options, env: dict[str, str]) -> dict[str, Any]:
    del env
    label = f"{peer.name} w1a"
    say(f"{label}: {o.tasks:,} enqueues from {o.clients} producer {o.producers}, no worker")
    sent = _produce_all(peer, Plan("noop", o.tasks, o.clients), o, label)
    result = _result(peer, "w1a", sent.calls, sent.last - sent.first, sent.latencies_ms)
    result.update(errors=sent.errors, lost=0)
    result["notes"] = {"producers": f"{o.clients} {o.producers}", "first_error": sent.error}
    return result


def w2(peer: systems.Peer, o: Options, env: dict[str, str]) -> dict[str, Any]:
    label = f"{peer.name} w2"
    note = peer.workers_note(o.concurrency)
    say(f"{label}: starting workers ({note})")
    workers = Workers(peer.worker_commands(o.concurrency), env)
    try:
        _warm_up(peer, workers, o, label)
        say(f"{label}: {o.tasks:,} tasks from {o.clients} producer {o.producers}, drained")
        fleet = Fleet(peer, Plan("count", o.tasks, o.clients), o.producers)
        fleet.wait_ready()
        fleet.start()
        done, last_change = _drain(fleet, workers, lambda: jobs.counted(jobs.DONE), o, label)
        end = jobs.ended(jobs.DONE) or last_change
        rss = workers.rss_mb()
        sent = fleet.close()
    finally:
        workers.close()
    result = _result(peer, "w2", done, end - sent.first, [])
    result.update(rss_mb=round(rss, 1), errors=sent.errors, lost=max(0, sent.calls - done))
    result["notes"] = {
        "workers": note,
        "completion": "the handler's INCR of a Redis counter; the last one stores its time",
        "rss": "VmRSS of the worker processes and their children, summed, after the drain",
        "first_error": sent.error,
    }
    return result


def w3(peer: systems.Peer, o: Options, env: dict[str, str]) -> dict[str, Any]:
    label = f"{peer.name} w3"
    note = peer.workers_note(o.concurrency)
    total = int(o.rate * o.duration)
    say(f"{label}: starting workers ({note})")
    workers = Workers(peer.worker_commands(o.concurrency), env)
    try:
        _warm_up(peer, workers, o, label)
        say(f"{label}: {o.rate:g} tasks/s for {o.duration:g} s from {o.clients} producers")
        fleet = Fleet(peer, Plan("pickup", total, o.clients, rate=o.rate), o.producers)
        fleet.wait_ready()
        fleet.start(lead=0.05)
        received, _ = _drain(fleet, workers, jobs.picked, o, label)
        latencies = sorted(jobs.pickups_ms())
        sent = fleet.close()
    finally:
        workers.close()
    result = _result(peer, "w3", received, sent.last - sent.first, latencies)
    result.update(errors=sent.errors, lost=max(0, sent.calls - received))
    result["notes"] = {
        "workers": note,
        "offered_per_second": o.rate,
        "latency": "enqueue call (time.time() in the payload) to the handler starting",
        "first_error": sent.error,
    }
    return result


RUNNERS: dict[str, Callable[[systems.Peer, Options, dict[str, str]], dict[str, Any]]] = {
    "w1a": w1a,
    "w2": w2,
    "w3": w3,
}


def clean(peer: systems.Peer) -> None:
    jobs.flush()
    peer.clean()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.peers.agent", description=__doc__)
    p.add_argument("--system", required=True, choices=systems.SYSTEMS)
    p.add_argument("--workload", required=True, choices=WORKLOADS)
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--producers", choices=("processes", "threads"), default="processes")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    p.add_argument("--stall", type=float, default=30.0)
    p.add_argument("--rq-worker", choices=tuple(systems.RQ_WORKERS), default="simple")
    p.add_argument("--redis-url", default=jobs.DEFAULT_REDIS)
    p.add_argument("--amqp-url", default=jobs.DEFAULT_AMQP)
    p.add_argument("--queue", default=jobs.DEFAULT_QUEUE)
    return p


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the workers' and the queues' cleanup


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    broker = "redis" if args.system == "rq" or args.system.endswith("-redis") else "rabbitmq"
    settings = jobs.Settings(args.redis_url, args.amqp_url, args.queue, broker)
    try:
        settings.validate()
    except ValueError as exc:
        say(f"bench.peers.agent: {exc}")
        return 2
    os.environ.update(settings.to_env())  # before the peer's module reads them; workers too
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    options = Options(
        args.system,
        args.tasks,
        args.clients,
        args.producers,
        args.rate,
        args.duration,
        args.concurrency,
        args.stall,
    )
    peer = systems.load(args.system, settings, rq_worker=args.rq_worker)
    clean(peer)
    try:
        result = RUNNERS[args.workload](peer, options, env)
        result["versions"] = peer.versions()
    finally:
        procs.kill_descendants(os.getpid())  # producers and workers, whatever stopped us
        clean(peer)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
