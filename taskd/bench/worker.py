"""A lean stream worker for W2 and W3: take every task, succeed at once, count the acks.

It speaks ``WorkerService.Work`` directly: ``WorkerHello(worker, queues, capacity)``, then for
each item of every ``Assignment`` a ``TaskResult(id, lease, success=True)`` straight away; the
node answers each result with a ``ResultAck`` once the completion is durable. No handler, no
heartbeats (a no-op finishes well within the lease), nothing but the protocol, so the numbers
are the node's. A stream that breaks is counted (UNAVAILABLE) and opened again until ``stop``.

Given a cluster, stream k of the role (over all its child processes) connects to member
``k % members``, round robin. With ``stamped`` payloads (W3) the pickup latency of each item
is ``now - payload["t"]``: producers and workers share the machine's wall clock.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import betterproto2
import orjson
from grpclib.client import Channel

from taskd.api.taskd import v1 as pb
from taskd.bench.admin import Target
from taskd.bench.fleet import Child
from taskd.bench.stats import ChildReport
from taskd.bench.submit import grpc_error_name

_STOP_POLL = 0.05
_RECONNECT = 0.2


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    targets: tuple[Target, ...]  # the members; stream k of this child uses ``target_for(k)``
    queue: str
    connections: int  # streams in this child process
    capacity: int  # per stream
    stamped: bool  # measure pickup latency from the payload's "t"
    progress: str = "acked"  # what advances the progress line: "acked" or "received"
    first: int = 0  # the role-wide index of this child's first stream (round robin)

    def target_for(self, stream: int) -> Target:
        return self.targets[(self.first + stream) % len(self.targets)]


class StreamWorker:
    def __init__(
        self, plan: WorkerPlan, name: str, report: ChildReport, child: Child, target: Target
    ) -> None:
        self.plan = plan
        self.target = target
        self.name = name
        self.report = report  # shared by the process's workers: ``pickups`` spans them all
        self.child = child

    async def run(self) -> None:
        while not self.child.stopping:
            try:
                await self._session()
            except Exception as exc:  # counted, then reconnect: the run goes on
                self.report.error(grpc_error_name(exc))
                self.child.failed()
                await asyncio.sleep(_RECONNECT)

    async def _session(self) -> None:
        outbox: asyncio.Queue[pb.WorkerMessage | None] = asyncio.Queue()
        hello = pb.WorkerHello(
            worker=self.name, queues=[self.plan.queue], capacity=self.plan.capacity
        )

        async def messages() -> AsyncIterator[pb.WorkerMessage]:
            yield pb.WorkerMessage(hello=hello)
            while (message := await outbox.get()) is not None:
                yield message

        async def watch_stop() -> None:
            # a process-shared Event cannot be awaited: poll it
            while not self.child.stopping:  # noqa: ASYNC110
                await asyncio.sleep(_STOP_POLL)
            outbox.put_nowait(None)  # end our side; the node then ends its side

        channel = Channel(self.target.grpc_host, self.target.grpc_port)
        stopper = asyncio.create_task(watch_stop())
        try:
            async for message in pb.WorkerServiceStub(channel).work(messages()):
                kind, value = betterproto2.which_one_of(message, "kind")
                if isinstance(value, pb.Assignment):
                    for item in value.items:
                        self._take(item)
                    # one message for the whole assignment, as a busy SDK worker would send
                    results = pb.TaskResults(
                        ids=[item.id for item in value.items],
                        leases=[item.lease for item in value.items],
                        success=[True] * len(value.items),
                    )
                    outbox.put_nowait(pb.WorkerMessage(results=results))
                elif isinstance(value, pb.ResultAck):
                    self._acked(value)
                elif isinstance(value, pb.ResultAcks):
                    for task_id, lease in zip(value.ids, value.leases, strict=True):
                        self._acked(pb.ResultAck(id=task_id, lease=lease, accepted=True))
                    for ack in value.rejected:
                        self._acked(ack)
                elif kind == "revocation":
                    self.report.extra["revoked"] += 1
        finally:
            stopper.cancel()
            channel.close()

    def _take(self, item: pb.WorkItem) -> None:
        now = time.time()
        if item.id in self.report.pickups:  # at-least-once: a re-delivery is not a pickup
            self.report.extra["redelivered"] += 1
            return
        self.report.extra["received"] += 1
        latency = math.nan
        if self.plan.stamped:
            try:
                latency = (now - float(orjson.loads(item.payload)["t"])) * 1000.0
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                self.report.extra["unstamped"] += 1
        self.report.pickups[item.id] = latency
        if self.plan.progress == "received":
            self.child.advance(1)

    def _acked(self, ack: pb.ResultAck) -> None:
        if not ack.accepted:
            self.report.extra["rejected"] += 1
            return
        self.report.done += 1
        self.report.last = time.monotonic()
        if self.plan.progress == "acked":
            self.child.advance(1)


async def run_workers(plan: WorkerPlan, child: Child) -> ChildReport:
    """``plan.connections`` streams in this process until the workload says stop."""
    report = ChildReport()
    workers = [
        StreamWorker(plan, f"bench-{os.getpid()}-{i}", report, child, plan.target_for(i))
        for i in range(plan.connections)
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    await asyncio.sleep(0)  # let every stream send its hello before we say ready
    child.ready()
    await asyncio.gather(*tasks)
    return report
