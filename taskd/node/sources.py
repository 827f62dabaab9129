"""``WorkSource`` for executors inside this node: the service, with stale results as ``False``.

Local leases last the task's timeout plus a margin: the executor enforces the timeout itself
and no heartbeats are needed while the node lives; if the node dies, the next start releases
them at once (``ReleaseWorker``).
"""

from __future__ import annotations

from collections.abc import Sequence

from taskd.errors import CallerError
from taskd.exec.work import WorkItem
from taskd.node.service import NodeService


class LocalSource:
    def __init__(self, service: NodeService, *, lease_margin: float = 30.0) -> None:
        self.service = service
        self.lease_margin = lease_margin

    async def lease(self, queue: str, worker: str, max: int) -> list[WorkItem]:
        # The TTL must cover the longest timeout among what is handed out; the scheduler
        # bounds each attempt by its own timeout anyway, so a generous TTL is safe.
        return await self.service.lease(queue, worker, max, 7 * 24 * 3600.0 + self.lease_margin)

    async def complete(self, task_id: str, epoch: int, result: bytes) -> bool:
        return await self._settle(self.service.complete(task_id, epoch, result))

    async def fail(self, task_id: str, epoch: int, error: str) -> bool:
        return await self._settle(self.service.fail(task_id, epoch, error))

    async def heartbeat(self, task_id: str, epoch: int) -> bool:
        return await self._settle(self.service.heartbeat(task_id, epoch, 7 * 24 * 3600.0))

    async def wait_for_work(self, queues: Sequence[str]) -> None:
        await self.service.wait_for_work(queues)

    def backlog(self, queue: str) -> int:
        return self.service.backlog(queue)

    @staticmethod
    async def _settle(call: object) -> bool:
        try:
            await call  # type: ignore[misc]  # a coroutine from the service
        except CallerError as exc:
            if exc.code in ("conflict", "not_found"):
                return False  # stale lease, or the task was canceled and forgotten
            raise
        return True
