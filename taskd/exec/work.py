"""The seam between execution and the node: leased work in, results out, revocations in.

Theory of operation: executors (``LocalExecutor``) and remote-worker sessions
(``StreamSession``) never see the scheduler. They lease ``WorkItem``s from a ``WorkSource``
(the node: it proposes a ``Lease`` command and returns once it is durable), report each
attempt's end with the lease's fencing ``epoch``, and are told through ``revoke`` when one of
their tasks left RUNNING for another reason (canceled, timed out by the scheduler, lease
expired). The node calls ``WorkerRegistry.revoke`` for every such state change; the registry
routes it to whichever holder runs that task. A stale epoch anywhere is harmless: the node
rejects stale results (``False``), and holders ignore revocations for epochs they do not hold.

The registry also answers ``GET /api/v1/workers``: every live local executor, stream worker
and HTTP worker, with its queues, capacity and running task ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

WorkerKind = Literal["local", "stream", "http"]


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One leased attempt of a task."""

    id: str
    queue: str
    name: str
    payload: bytes
    attempt: int  # 1 for the first run
    epoch: int  # fencing epoch of this lease: send it back with the result
    timeout: float  # seconds this attempt may run
    dependency_results: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Report:
    """How one attempt ended, as its holder tells it."""

    task_id: str
    epoch: int
    success: bool
    result: bytes = b""  # when success
    error: str = ""  # when not
    retry_delay: float = 0.0  # when not: > 0 asks for the next attempt that much later


class WorkSource(Protocol):
    """What the node offers executors. Every async call returns once its command is durable."""

    async def lease(self, queue: str, worker: str, max: int) -> list[WorkItem]:
        """Lease up to ``max`` runnable tasks of ``queue``; ``[]`` when none is runnable."""
        ...

    async def complete(self, task_id: str, epoch: int, result: bytes, *, log: str = "") -> bool:
        """Report success (``log``: the run's stderr tail, for the attempt history);
        ``False`` when the lease is stale (the result is ignored)."""
        ...

    async def fail(self, task_id: str, epoch: int, error: str) -> bool:
        """Report failure (the node's backoff decides when it retries); ``False`` when the
        lease is stale."""
        ...

    async def report_many(self, reports: Sequence[Report]) -> list[bool]:
        """``complete``/``fail`` for several attempts, made durable together, in order."""
        ...

    async def heartbeat(self, task_id: str, epoch: int) -> bool:
        """Extend the lease; ``False`` when it is stale (the holder must stop)."""
        ...

    async def leases_of(self, worker: str, queue: str | None = None) -> list[tuple[str, int]]:
        """(task id, epoch) of every running attempt leased to ``worker`` (from ``queue``
        only, if given), as of a read barrier (every lease acknowledged before the call is
        in it)."""
        ...

    async def wait_for_work(self, queues: Sequence[str]) -> None:
        """Return when one of ``queues`` may have runnable tasks.

        Level-triggered: returns at once if ``backlog`` of one of them is above zero, else
        waits until one rises. May return spuriously. Callers cancel it to stop waiting.
        """
        ...

    def backlog(self, queue: str) -> int:
        """Runnable tasks of ``queue`` that a ``lease`` would hand out now (0 when paused)."""
        ...


class Revocable(Protocol):
    """Anything that holds leases: told to drop one the node no longer considers its own."""

    def revoke(self, task_id: str, epoch: int, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker as ``GET /api/v1/workers`` shows it."""

    name: str
    kind: WorkerKind
    queues: tuple[str, ...]
    capacity: int
    running: tuple[str, ...]
    last_seen: float | None = None  # epoch seconds of its last message; None: in process


class WorkerHandle:
    """A registered worker. Its owner keeps it current and calls ``leave`` when it goes."""

    def __init__(
        self,
        registry: WorkerRegistry,
        name: str,
        kind: WorkerKind,
        queues: Sequence[str],
        capacity: int,
        holder: Revocable | None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.queues = tuple(queues)
        self.capacity = capacity
        self.holder = holder  # None for HTTP workers: they learn of revocations from a 409
        self.running: dict[str, int] = {}  # task id -> epoch
        self._registry = registry
        # epoch seconds the worker was last heard from (a message, a lease call); local
        # executors run inside the node and are never "heard from": None
        self.last_seen: float | None = None if kind == "local" else registry.clock()

    def heard(self) -> None:
        """The worker just said something: it is alive now."""
        self.last_seen = self._registry.clock()

    def set_capacity(self, capacity: int) -> None:
        self.capacity = capacity

    def started(self, task_id: str, epoch: int) -> None:
        self.running[task_id] = epoch
        self._registry._holders[task_id] = self

    def finished(self, task_id: str) -> None:
        self.running.pop(task_id, None)
        if self._registry._holders.get(task_id) is self:
            del self._registry._holders[task_id]

    def leave(self) -> None:
        for task_id in list(self.running):
            self.finished(task_id)
        self._registry._handles.discard(self)

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            self.name,
            self.kind,
            self.queues,
            self.capacity,
            tuple(sorted(self.running)),
            self.last_seen,
        )


class WorkerRegistry:
    """Live workers of this node, and which of them holds each running task."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # epoch seconds, for ``WorkerHandle.last_seen``
        self._handles: set[WorkerHandle] = set()
        self._holders: dict[str, WorkerHandle] = {}

    def join(
        self,
        name: str,
        kind: WorkerKind,
        queues: Sequence[str],
        capacity: int,
        holder: Revocable | None = None,
    ) -> WorkerHandle:
        handle = WorkerHandle(self, name, kind, queues, capacity, holder)
        self._handles.add(handle)
        return handle

    def workers(self) -> list[WorkerInfo]:
        return sorted((h.info() for h in self._handles), key=lambda w: (w.name, w.kind))

    def consumers(self) -> dict[str, int]:
        """Live workers (local executors, stream and HTTP workers) per queue they serve."""
        counts: dict[str, int] = {}
        for handle in self._handles:
            for queue in handle.info().queues:
                counts[queue] = counts.get(queue, 0) + 1
        return counts

    def holder_of(self, task_id: str) -> str | None:
        handle = self._holders.get(task_id)
        return handle.name if handle else None

    def revoke(self, task_id: str, epoch: int, reason: str) -> bool:
        """Route a revocation to the holder of ``task_id`` at ``epoch``; False if none."""
        handle = self._holders.get(task_id)
        if handle is None or handle.running.get(task_id) != epoch:
            return False
        if handle.holder is None:
            handle.finished(task_id)
        else:
            handle.holder.revoke(task_id, epoch, reason)
        return True
