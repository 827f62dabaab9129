"""HTTP workers in the worker registry, although they hold no connection.

An HTTP worker exists, as far as ``GET /api/v1/workers`` is concerned, from its first lease
call until it has made no call for twice the HTTP lease time. Each leased task is recorded as
running on it until it completes or fails it (or the scheduler takes the lease back).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from taskd.exec.work import WorkerHandle, WorkerRegistry, WorkItem


class HttpWorkerTracker:
    def __init__(
        self,
        registry: WorkerRegistry,
        lease_ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.expire_after = 2 * lease_ttl
        self.clock = clock
        self._handles: dict[str, WorkerHandle] = {}
        self._last_seen: dict[str, float] = {}

    def leased(self, worker: str, queue: str, capacity: int, items: Sequence[WorkItem]) -> None:
        handle = self._handles.get(worker)
        if handle is None:
            handle = self._handles[worker] = self.registry.join(worker, "http", [queue], capacity)
        elif queue not in handle.queues:
            handle.queues = (*handle.queues, queue)
        handle.set_capacity(max(handle.capacity, capacity))
        self._last_seen[worker] = self.clock()
        handle.heard()
        for item in items:
            handle.started(item.id, item.epoch)

    def reported(self, task_id: str) -> None:
        """A complete or fail call for ``task_id`` was accepted."""
        holder = self.registry.holder_of(task_id)
        handle = self._handles.get(holder) if holder else None
        if handle is not None and handle.kind == "http":
            handle.finished(task_id)
            handle.heard()
            self._last_seen[handle.name] = self.clock()

    def prune(self) -> None:
        """Forget HTTP workers that stopped calling."""
        now = self.clock()
        for worker, seen in list(self._last_seen.items()):
            if now - seen > self.expire_after:
                self._handles.pop(worker).leave()
                del self._last_seen[worker]
