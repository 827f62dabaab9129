"""The node's side of one remote worker's stream (``WorkerService.Work``), without a transport.

Theory of operation: the node's gRPC handler owns the stream and only translates messages. It
starts ``run(send)`` with ``nursery.start``, then feeds each received message to ``hello``,
``on_result``, ``on_heartbeat`` or ``on_credit``, and calls ``close`` when the worker ends its
side (or lets ``run`` be cancelled when the stream breaks). ``run`` pushes ``Outbound``
messages through ``send``: the handler maps them to ``NodeMessage`` protobufs.

Invariants:
- In flight (leased to this worker, no result yet, not revoked) never exceeds the capacity the
  worker last announced: free slots are leased in one ``lease`` call per queue, as many as
  ``min(free, backlog)``, and go out together in one ``Assignment``.
- Every lease is reported exactly once by this session: a result, a revocation (the node took
  it back; nothing to report), or, when the stream ends, a failure ``worker lost``, so the
  task retries at once instead of waiting for its lease to expire.
- A hello that lists what the worker holds (``held``, from its earlier streams) releases, as
  ``worker lost``, every other lease under its name before this session leases anything: an
  assignment that was lost with a broken stream (the node restarted, the leader died while
  it was in flight) runs again now, not after a whole lease period. Leases this session
  hands out come later, so they are never among them.
- An Assignment is queued before any Revocation or ResultAck of its tasks (one FIFO outbox).
Results are reported concurrently (bounded by ``max_reports``), each acked once durable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from taskd.errors import CallerError, TaskdError
from taskd.exec.work import Report, WorkerHandle, WorkerRegistry, WorkItem, WorkSource

log = logging.getLogger(__name__)

WORKER_LOST = "worker lost"
_LEASE_RETRY = 0.5  # after a lease error, or a backlog that a lease did not find
_RECLAIM_TRY = 2.0  # seconds one check of a reconnected worker's leases may take


@dataclass(frozen=True, slots=True)
class Assignment:
    items: tuple[WorkItem, ...]
    lease_seconds: float  # heartbeat well within this


@dataclass(frozen=True, slots=True)
class Revocation:
    id: str
    lease: int
    reason: str  # "timeout", "canceled", "lease expired"


@dataclass(frozen=True, slots=True)
class ResultAck:
    id: str
    lease: int
    accepted: bool
    error: str = ""  # why not


Outbound = Assignment | Revocation | ResultAck


class StreamSession:
    def __init__(
        self,
        source: WorkSource,
        registry: WorkerRegistry,
        *,
        lease_ttl: float = 30.0,
        max_reports: int = 256,
    ) -> None:
        self._source = source
        self._registry = registry
        self.lease_ttl = lease_ttl
        self._handle: WorkerHandle | None = None
        self._capacity = 0
        self._held: dict[str, int] = {}  # task id -> epoch, in flight on the worker
        self._outbox: trio.MemorySendChannel[Outbound] | None = None
        self._reports: trio.Nursery | None = None
        self._report_slots = trio.Semaphore(max_reports)
        self._wake: trio.CancelScope | None = None
        self._poked = False  # a poke since the push loop last looked (it may not be waiting)
        self._closed = False
        self._lease_error: str | None = None  # the last lease refusal, logged once
        self._reclaim: set[tuple[str, int]] | None = None  # what the hello said it holds
        self._heartbeat_error: str | None = None  # the last heartbeat refusal, logged once

    @property
    def in_flight(self) -> int:
        return len(self._held)

    def hello(
        self,
        worker: str,
        queues: Sequence[str],
        capacity: int,
        held: Sequence[tuple[str, int]] | None = None,
    ) -> None:
        """``held``: every (task id, epoch) the worker still runs from earlier streams, when it
        says that is all it holds (its other leases are released); None: it does not say."""
        if self._handle is not None:
            raise CallerError("invalid", "hello was already sent on this stream", "hello")
        if not worker:
            raise CallerError("invalid", "a worker name is required", "hello.worker")
        if not queues or any(not q for q in queues):
            raise CallerError("invalid", "name at least one queue, none empty", "hello.queues")
        self._check_capacity(capacity, "hello.capacity")
        self._capacity = capacity
        self._reclaim = set(held) if held is not None else None
        self._handle = self._registry.join(worker, "stream", queues, capacity, holder=self)
        self._poke()

    def heard(self) -> None:
        """The worker sent a message (any kind): it counts as its heartbeat."""
        if self._handle is not None:
            self._handle.heard()

    def on_credit(self, capacity: int) -> None:
        self._check_capacity(capacity, "credit.capacity")
        self._capacity = capacity
        if self._handle is not None:
            self._handle.set_capacity(capacity)
        self._poke()

    async def on_result(
        self,
        id: str,
        lease: int,
        success: bool,
        result: bytes,
        error: str,
        retry_delay: float = 0.0,
    ) -> None:
        """Take one result; it is reported (and acked) concurrently with later messages."""
        await self.on_results([Report(id, lease, success, result, error, retry_delay)])

    async def on_results(self, reports: Sequence[Report]) -> None:
        """Take results that arrived together: one durability round reports them all."""
        for report in reports:
            if self._held.get(report.task_id) == report.epoch:
                self._release(report.task_id)
        await self._report_slots.acquire()  # backpressure on a flood of results
        if self._reports is None:
            await self._report(reports)
        else:
            self._reports.start_soon(self._report, reports)

    async def on_heartbeat(self, ids: Sequence[str], leases: Sequence[int]) -> None:
        if len(ids) != len(leases):
            raise CallerError("invalid", "ids and leases differ in length", "heartbeat.leases")
        for task_id, epoch in zip(ids, leases, strict=True):
            try:
                alive = await self._source.heartbeat(task_id, epoch)
            except TaskdError as exc:  # not stale as far as we know: the worker retries later
                if str(exc) != self._heartbeat_error:  # a full disk refuses them all: say it once
                    log.warning("heartbeat of %s failed: %s", task_id, exc)
                    self._heartbeat_error = str(exc)
                continue
            self._heartbeat_error = None
            if not alive:
                self.revoke(task_id, epoch, "lease expired")

    def revoke(self, task_id: str, epoch: int, reason: str) -> None:
        """The node took this lease back: tell the worker, and free the slot."""
        if self._held.get(task_id) != epoch:
            return
        self._release(task_id)
        self._queue(Revocation(task_id, epoch, reason))

    def close(self) -> None:
        """The worker ended its side: ``run`` reports what is left and returns."""
        self._closed = True
        self._poke()

    async def run(
        self,
        send: Callable[[Outbound], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        outbox, sendable = trio.open_memory_channel[Outbound](math.inf)
        self._outbox = outbox
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_all, sendable, send)
                async with trio.open_nursery() as reports:
                    self._reports = reports
                    task_status.started()
                    await self._push()
                self._reports = None  # later results are reported inline, unacked
                self._outbox = None  # every ack is queued: let the sender finish and stop
                outbox.close()
        finally:
            self._reports = None
            self._outbox = None
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self.lease_ttl):
                await self._release_all()

    async def _push(self) -> None:
        rotation = 0
        while not self._closed:
            self._poked = False
            if self._reclaim is not None and self._handle is not None:
                await self._release_unheld(self._handle.name, self._reclaim)
                self._reclaim = None
            free = self._capacity - len(self._held)
            if self._handle is not None and free > 0:
                queues = self._handle.queues
                items: list[WorkItem] = []
                promised = False
                for i in range(len(queues)):
                    queue = queues[(rotation + i) % len(queues)]
                    want = min(free - len(items), self._source.backlog(queue))
                    if want > 0:
                        promised = True
                        items += await self._lease(queue, want)
                rotation += 1
                if items:
                    self._take(items)
                    continue
                if promised:  # the backlog promised work the lease did not find
                    await trio.sleep(_LEASE_RETRY)
                    continue
            if self._poked:  # something changed while this pass awaited: look again
                continue
            with trio.CancelScope() as self._wake:
                if self._handle is not None and free > 0:
                    await self._source.wait_for_work(self._handle.queues)
                else:
                    await trio.sleep_forever()  # until hello, credit, a result or a revocation
            self._wake = None

    async def _lease(self, queue: str, want: int) -> list[WorkItem]:
        assert self._handle is not None
        try:
            items = await self._source.lease(queue, self._handle.name, want)
        except TaskdError as exc:
            # The store may refuse for a long time (a full disk): say so once, not per retry.
            if str(exc) != self._lease_error:
                log.warning("cannot lease from %s (retrying): %s", queue, exc)
                self._lease_error = str(exc)
            return []
        self._lease_error = None
        return items

    def _take(self, items: list[WorkItem]) -> None:
        assert self._handle is not None
        for item in items:
            self._held[item.id] = item.epoch
            self._handle.started(item.id, item.epoch)
        self._queue(Assignment(tuple(items), self.lease_ttl))

    async def _report(self, reports: Sequence[Report]) -> None:
        try:
            # a report already under way is finished even if the stream breaks meanwhile
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self.lease_ttl):
                accepted = await self._source.report_many(reports)
            for report, ok in zip(reports, accepted, strict=True):
                self._queue(
                    ResultAck(report.task_id, report.epoch, ok, "" if ok else "stale lease")
                )
        except TaskdError as exc:
            for report in reports:
                self._queue(ResultAck(report.task_id, report.epoch, False, str(exc)))
        finally:
            self._report_slots.release()

    async def _release_unheld(self, worker: str, held: set[tuple[str, int]]) -> None:
        """Fail, as ``worker lost``, the leases under ``worker``'s name it does not hold.

        A worker often reconnects while its cluster has no leader (it left the member that
        died): the check is tried again until a read barrier answers, for up to a lease
        period (after which those leases lapse by themselves anyway)."""
        deadline = trio.current_time() + self.lease_ttl
        error = "no answer"
        while not self._closed and (left := deadline - trio.current_time()) > 0:
            try:
                # a try at a time, so that a stream that ends meanwhile is not held up
                with trio.move_on_after(min(left, _RECLAIM_TRY)):
                    leases = await self._source.leases_of(worker)
                    break
            except TaskdError as exc:
                error = str(exc)
                await trio.sleep(min(_LEASE_RETRY, max(0.0, deadline - trio.current_time())))
        else:
            if not self._closed:  # they lapse after their lease instead
                log.warning("cannot check the leases of reconnected worker %s: %s", worker, error)
            return
        lost = [lease for lease in leases if lease not in held]
        if not lost:
            return
        log.info(
            "worker %s reconnected without %d of its leases (lost with its last stream): "
            "releasing them",
            worker,
            len(lost),
            extra={"fields": {"worker": worker, "tasks": [task_id for task_id, _ in lost]}},
        )
        async with trio.open_nursery() as nursery:
            for task_id, epoch in lost:
                nursery.start_soon(self._lost, task_id, epoch)

    async def _release_all(self) -> None:
        held, self._held = self._held, {}
        async with trio.open_nursery() as nursery:
            for task_id, epoch in held.items():
                nursery.start_soon(self._lost, task_id, epoch)
        if self._handle is not None:
            self._handle.leave()

    async def _lost(self, task_id: str, epoch: int) -> None:
        try:
            await self._source.fail(task_id, epoch, WORKER_LOST)
        except TaskdError as exc:  # its lease will lapse instead
            log.warning("cannot release %s: %s", task_id, exc)

    @staticmethod
    async def _send_all(
        sendable: trio.MemoryReceiveChannel[Outbound],
        send: Callable[[Outbound], Awaitable[None]],
    ) -> None:
        async for message in sendable:
            await send(message)

    def _queue(self, message: Outbound) -> None:
        if self._outbox is not None:
            self._outbox.send_nowait(message)

    def _release(self, task_id: str) -> None:
        del self._held[task_id]
        if self._handle is not None:
            self._handle.finished(task_id)
        self._poke()

    def _poke(self) -> None:
        self._poked = True
        if self._wake is not None:
            self._wake.cancel()

    @staticmethod
    def _check_capacity(capacity: int, field: str) -> None:
        if not 0 <= capacity <= 10_000:
            raise CallerError("invalid", f"capacity must be 0..10000, not {capacity}", field)
