"""The SDK's side of the benchmarks: what an application using ``taskd.client`` gets.

- ``sdk_submit`` (workload ``sdk-submit``): in each client process, one ``TaskSchedulerClient``
  shared by ``clients`` threads, each calling ``submit_task`` in a closed loop, one task per
  call, as a web application's request threads would. The client coalesces the concurrent
  calls into SubmitBatch calls by itself; compare with W1a (one unary Submit per task).
- ``run_sdk_workers`` (workloads ``w2-sdk`` and ``w3-sdk``): the SDK ``Worker`` (one gRPC stream
  per Worker, capacity-based flow control, an ``async def`` no-op handler) in place of the lean
  protocol-only stream worker of ``taskd.bench.worker``. Progress counts the results the node
  acknowledged (``Worker.stats.acked``); W3's pickup is the handler's start.

Given a cluster, each process's client knows every member (the SDK fails over between them);
worker ``k`` of the role is told member ``k % members`` first.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable

import orjson

from taskd.bench.fleet import Child
from taskd.bench.stats import ChildReport
from taskd.bench.submit import Producer, payload
from taskd.bench.worker import WorkerPlan
from taskd.client import TaskdClientError, TaskSchedulerClient, Worker
from taskd.client.worker.job import WorkerTask

_POLL = 0.05


async def sdk_submit(plan: Producer, tasks: int, child: Child) -> ChildReport:
    """Submit ``tasks`` tasks from ``plan.clients`` threads sharing one client."""
    report = ChildReport()
    lock = threading.Lock()
    left = [tasks]
    servers = [plan.target_for(k).grpc_address for k in range(len(plan.targets))]
    client = TaskSchedulerClient(servers, call_timeout=30.0)

    def thread(seed: int) -> None:
        rng = random.Random(seed)
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            start = time.monotonic()
            try:
                client.submit_task(
                    payload(plan.payload_size, plan.stamped),
                    queue=plan.queue,
                    priority=rng.randint(0, 9),
                )
            except TaskdClientError as exc:
                with lock:
                    report.error(type(exc).__name__.upper())
                    child.failed()
                continue
            end = time.monotonic()
            with lock:
                report.first = min(report.first, start)
                report.done += 1
                report.latencies_ms.append((end - start) * 1000.0)
                report.last = end
                child.advance(1)

    def run_all() -> None:
        threads = [
            threading.Thread(target=thread, args=(plan.seed * 1000 + i,), daemon=True)
            for i in range(plan.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    try:
        client.get_task("00000000000000000000000000", call_timeout=5.0)  # connect first
    except TaskdClientError:
        pass  # NotFound is the expected answer; anything else shows up in the run
    await child.ready_and_wait_for_go()
    try:
        await asyncio.to_thread(run_all)
    finally:
        client.close()
    report.extra["batches"] = client.batches_sent
    return report


async def run_sdk_workers(plan: WorkerPlan, child: Child) -> ChildReport:
    """``plan.connections`` SDK Workers in this process (``plan.capacity`` handlers each)."""
    report = ChildReport()
    workers = []
    for i in range(plan.connections):
        first = plan.target_for(i)
        others = [t for t in plan.targets if t is not first]
        worker = Worker(
            queues=[plan.queue],
            concurrency=plan.capacity,
            servers=[t.grpc_address for t in (first, *others)],
        )
        worker.task()(_handler(plan, report, child))
        workers.append(worker)
    runs = [asyncio.create_task(w.run_async()) for w in workers]
    acked = 0
    ready = False
    while not child.stopping:
        await asyncio.sleep(_POLL)
        if not ready and all(w.stats.connects for w in workers):
            child.ready()
            ready = True
        now = sum(w.stats.acked for w in workers)
        if now != acked:
            if plan.progress == "acked":
                child.advance(now - acked)
            report.done, report.last, acked = now, time.monotonic(), now
    for w in workers:
        w.stop()
    await asyncio.gather(*runs, return_exceptions=True)
    report.extra["connects"] = sum(w.stats.connects for w in workers)
    return report


def _handler(
    plan: WorkerPlan, report: ChildReport, child: Child
) -> Callable[[WorkerTask], Awaitable[None]]:
    async def no_op(task: WorkerTask) -> None:
        if task.id in report.pickups:  # at-least-once: a re-delivery is not a pickup
            report.extra["redelivered"] += 1
            return
        latency = math.nan
        if plan.stamped:
            try:
                latency = (time.time() - float(orjson.loads(task.payload)["t"])) * 1000.0
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                report.extra["unstamped"] += 1
        report.pickups[task.id] = latency
        report.extra["received"] += 1
        if plan.progress == "received":
            child.advance(1)

    return no_op
