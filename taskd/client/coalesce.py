"""Concurrent ``submit_task`` calls become one ``SubmitBatch``, each caller keeping its own
answer.

Theory of operation: a submit joins the pending list. At most one send is in flight unless
the list fills (``max_batch`` tasks or ``max_bytes`` of payload). With none in flight, the
list is sent once it holds as many submits as are expected — the callers of the batch just
answered plus those that were waiting (a lone caller pays no linger: that is itself) — or
after ``linger`` seconds. So under load the callers a batch answers come back to share the
next one with those who waited, instead of the first of them leaving alone: closed-loop
callers settle into one batch per round trip.

A list of one is sent as a unary ``Submit`` (its caller gets the node's full task back);
longer lists as ``SubmitBatch``, whose answer carries ids only, so each caller gets the task
as submitted (id from the node; its state the one a fresh task of that spec enters). A
duplicate (same idempotency key as an earlier task) is read back with ``Get`` so its caller
sees the earlier task.

A batch is all or nothing on the node, but its callers are unrelated: when a node refuses a
batch because of one task (an INVALID_ARGUMENT naming ``tasks[i]``), that caller gets the
error (its field renamed to the argument it passed) and the others are sent again without it;
any other refusal of a batch (queue full, unknown dependency, batch too big) is retried as one
unary call per task, so each caller gets its own answer. Every spec carries an idempotency key
(the SDK sets one when the caller gave none), so a batch re-sent after a lost answer never
makes a second task.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from taskd.api.taskd import v1 as pb
from taskd.client.errors import (
    DeadlineExceeded,
    InvalidArgument,
    TaskdClientError,
    TooLarge,
    Unavailable,
)
from taskd.client.specs import batch_index, caller_field
from taskd.client.task import Task, TaskState

SUBMIT = "/taskd.v1.TaskService/Submit"
SUBMIT_BATCH = "/taskd.v1.TaskService/SubmitBatch"

Unary = Callable[[pb.TaskSpec, float], Awaitable[Task]]
Batch = Callable[[list[pb.TaskSpec], float], Awaitable[pb.SubmitBatchResponse]]
Read = Callable[[str, float], Awaitable[Task]]


@dataclass(slots=True)
class _Pending:
    spec: pb.TaskSpec
    future: asyncio.Future[Task]
    deadline: float


def for_caller(exc: TaskdClientError, *, keep_index: bool = False) -> TaskdClientError:
    """An InvalidArgument whose field is named as the caller passed it (``timeout``, not
    ``task.timeout_seconds``)."""
    if isinstance(exc, InvalidArgument) and exc.field:
        kind = TooLarge if isinstance(exc, TooLarge) else InvalidArgument
        return kind(exc.message, caller_field(exc.field, keep_index=keep_index))
    return exc


def as_submitted(task_id: str, spec: pb.TaskSpec, refs: Mapping[str, str] | None = None) -> Task:
    """The task a SubmitBatch made from ``spec``, as it is at submission (``refs``: the
    batch's refs to the ids they were given, so ``depends_on`` names ids)."""
    if spec.depends_on:
        state = TaskState.BLOCKED
    elif spec.delay_seconds > 0 or spec.run_at_ms:
        state = TaskState.PENDING
    else:
        state = TaskState.QUEUED
    return Task.from_proto(
        pb.Task(
            id=task_id,
            queue=spec.queue or "default",
            name=spec.name,
            priority=5 if spec.priority is None else spec.priority,
            payload=spec.payload,
            timeout_seconds=1800.0 if spec.timeout_seconds is None else spec.timeout_seconds,
            max_retries=3 if spec.max_retries is None else spec.max_retries,
            run_at_ms=spec.run_at_ms,
            depends_on=[(refs or {}).get(d, d) for d in spec.depends_on],
            idempotency_key=spec.idempotency_key,
            labels=dict(spec.labels),
            state=pb.TaskState[state.name],
        )
    )


class Coalescer:
    """Pending submits of one client, and the sends that carry them (on the engine's loop)."""

    def __init__(
        self,
        unary: Unary,
        batch: Batch,
        read: Read,
        *,
        linger: float = 0.001,
        max_batch: int = 100,
        max_bytes: int = 512 * 1024,
    ) -> None:
        self._unary = unary
        self._batch = batch
        self._read = read
        self.linger = linger
        self.max_batch = max_batch
        self.max_bytes = max_bytes
        self._pending: list[_Pending] = []
        self._pending_bytes = 0
        self._inflight = 0
        self._expect = 1  # submits a send waits for (up to linger) when none is in flight
        self._timer: asyncio.TimerHandle | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self.batches_sent = 0  # SubmitBatch calls made (for tests and the bench)

    async def submit(self, spec: pb.TaskSpec, deadline: float) -> Task:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Task] = loop.create_future()
        self._pending.append(_Pending(spec, future, deadline))
        self._pending_bytes += len(spec.payload)
        self._kick()
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.cancel()  # still pending: it is dropped before sending; sent: harmless
            raise

    def _kick(self) -> None:
        if not self._pending:
            return
        full = len(self._pending) >= self.max_batch or self._pending_bytes >= self.max_bytes
        if full or (self._inflight == 0 and len(self._pending) >= self._expect):
            self._flush()
        elif self._timer is None and self._inflight == 0:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        group: list[_Pending] = []
        size = 0
        while self._pending and len(group) < self.max_batch:
            entry = self._pending[0]
            if group and size + len(entry.spec.payload) > self.max_bytes:
                break
            self._pending.pop(0)
            self._pending_bytes -= len(entry.spec.payload)
            if entry.future.done():  # its caller gave up before it was sent
                continue
            group.append(entry)
            size += len(entry.spec.payload)
        if group:
            self._inflight += 1
            send = asyncio.get_running_loop().create_task(self._send(group))
            self._sends.add(send)
            send.add_done_callback(self._sends.discard)
        if self._pending:
            self._kick()

    async def _send(self, group: list[_Pending]) -> None:
        try:
            await self._deliver(group)
        except BaseException as exc:  # a bug or a cancel: no caller may wait forever
            for entry in group:
                if not entry.future.done():
                    entry.future.set_exception(
                        exc if isinstance(exc, Exception) else TaskdClientError("client closed")
                    )
            if not isinstance(exc, Exception):
                raise
        finally:
            self._inflight -= 1
            # the callers just answered are likely to submit again at once: wait for them
            # (up to ``linger``) so they share the next batch with those already pending
            self._expect = min(self.max_batch, len(group) + len(self._pending))
            self._kick()

    async def _deliver(self, group: list[_Pending]) -> None:
        if len(group) == 1:
            await self._one(group[0])
            return
        deadline = max(entry.deadline for entry in group)
        try:
            self.batches_sent += 1
            reply = await self._batch([entry.spec for entry in group], deadline)
        except InvalidArgument as exc:
            index = batch_index(exc.field)
            if index is not None and 0 <= index < len(group):
                _settle(group[index], error=for_caller(exc))
                await self._deliver([e for i, e in enumerate(group) if i != index])
                return
            await asyncio.gather(*(self._one(entry) for entry in group))
            return
        except TaskdClientError as exc:
            if _about_the_cluster(exc):
                for entry in group:
                    _settle(entry, error=exc)
                return
            await asyncio.gather(*(self._one(entry) for entry in group))
            return
        reads = []
        for entry, task_id, duplicate in zip(group, reply.ids, reply.duplicate, strict=False):
            if duplicate:
                reads.append(self._read_back(entry, task_id))
            else:
                _settle(entry, task=as_submitted(task_id, entry.spec))
        if len(reply.ids) != len(group):
            for entry in group[len(reply.ids) :]:
                _settle(entry, error=TaskdClientError("the node answered fewer ids than sent"))
        await asyncio.gather(*reads)

    async def _one(self, entry: _Pending) -> None:
        try:
            task = await self._unary(entry.spec, entry.deadline)
        except TaskdClientError as exc:
            _settle(entry, error=for_caller(exc))
        else:
            _settle(entry, task=task)

    async def _read_back(self, entry: _Pending, task_id: str) -> None:
        try:
            task = await self._read(task_id, entry.deadline)
        except TaskdClientError as exc:
            _settle(entry, error=exc)
        else:
            _settle(entry, task=_duplicate(task))


def _duplicate(task: Task) -> Task:
    return dataclasses.replace(task, duplicate=True)


def _about_the_cluster(exc: TaskdClientError) -> bool:
    """Errors every task of the batch would meet alone too (no member, no time left)."""
    return isinstance(exc, Unavailable | DeadlineExceeded)


def _settle(entry: _Pending, *, task: Task | None = None, error: Exception | None = None) -> None:
    if entry.future.done():
        return
    if error is not None:
        entry.future.set_exception(error)
    else:
        assert task is not None
        entry.future.set_result(task)
