"""``WorkSource`` over the node's service: how executors and worker streams get work.

One class serves both kinds of holder; they differ only in lease length. Local executors
live in this process and enforce timeouts themselves, so their leases last as long as any
attempt may (the scheduler still ends each attempt at its own timeout), and a restarted node
releases its previous process's ones at once (``ReleaseWorker`` of ``local@<node id>``, see
``taskd.node.runner``); until that is written, the gate keeps local executors from leasing.
Remote workers hold short leases that heartbeats extend, so a vanished worker's tasks come
back after ``--worker-lease`` seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import trio

from taskd.errors import CallerError
from taskd.exec.work import Report, WorkItem
from taskd.node.app.service import NodeService

LOCAL_LEASE = 8 * 24 * 3600.0  # longer than the longest allowed timeout (7 days)
_GATE_WAIT = 1.0  # seconds a lease waits, finding nothing, while the gate is closed


class ServiceSource:
    def __init__(
        self, service: NodeService, *, lease_ttl: float, gate: Callable[[], bool] | None = None
    ) -> None:
        self.service = service
        self.lease_ttl = lease_ttl
        # leases wait for this (the leader's takeover is written): until then ``lease`` finds
        # nothing
        self._gate = gate

    async def lease(self, queue: str, worker: str, max: int) -> list[WorkItem]:
        if self._gate is not None and not self._gate():
            await trio.sleep(_GATE_WAIT)  # the executor asks again right after
            return []
        return await self.service.lease(queue, worker, max, self.lease_ttl)

    async def complete(self, task_id: str, epoch: int, result: bytes, *, log: str = "") -> bool:
        return await _settled(self.service.complete(task_id, epoch, result, log=log))

    async def fail(self, task_id: str, epoch: int, error: str) -> bool:
        return await _settled(self.service.fail(task_id, epoch, error))

    async def report_many(self, reports: Sequence[Report]) -> list[bool]:
        return await self.service.report_many(reports)

    async def heartbeat(self, task_id: str, epoch: int) -> bool:
        return await _settled(self.service.heartbeat(task_id, epoch, self.lease_ttl))

    async def leases_of(self, worker: str, queue: str | None = None) -> list[tuple[str, int]]:
        await self.service.fresh()
        return [
            (task.id, task.epoch)
            for task in self.service.scheduler.running_for(worker)
            if queue is None or task.queue == queue
        ]

    async def wait_for_work(self, queues: Sequence[str]) -> None:
        await self.service.wait_for_work(queues)

    def backlog(self, queue: str) -> int:
        return self.service.backlog(queue)


async def _settled(call: Awaitable[object]) -> bool:
    """True when the store accepted the report; False when the lease was stale or gone."""
    try:
        await call
    except CallerError as exc:
        if exc.code in ("conflict", "not_found"):
            return False
        raise
    return True
