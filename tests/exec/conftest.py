"""A WorkSource that really behaves: an in-memory queue that honours lease epochs.

It keeps FIFO queues, gives every lease a fresh epoch, rejects stale completions, failures
and heartbeats, retries failed attempts while retries remain, and wakes ``wait_for_work``
callers when work becomes runnable (level-triggered, like the node). Tests wait on its
``changed`` condition instead of sleeping.
"""

from __future__ import annotations

import builtins
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
import trio

from taskd.errors import Unavailable
from taskd.exec.work import Report, WorkItem
from taskd.queue.commands import State


@dataclass
class FakeTask:
    id: str
    queue: str
    payload: bytes
    timeout: float
    max_retries: int
    name: str = ""
    state: State = State.QUEUED
    attempt: int = 0
    epoch: int = 0
    worker: str = ""
    result: bytes | None = None
    error: str = ""
    errors: list[str] = field(default_factory=list)  # every failed attempt's error


class FakeSource:
    def __init__(self) -> None:
        self.tasks: dict[str, FakeTask] = {}
        self.queues: dict[str, deque[str]] = {}
        self.lease_calls: list[tuple[str, int, int]] = []  # (queue, max, handed out)
        self.reports: list[tuple[str, str, int, bool]] = []  # (kind, id, epoch, accepted)
        self.logs: dict[str, str] = {}  # task id -> the stderr tail its completion carried
        self.max_running = 0  # most tasks leased and not yet reported, at any lease
        # Set by a test to the executor's own count of attempts in flight: an attempt's slot
        # is free once its process ended, before its report lands (by design), so on a
        # loaded machine ``max_running`` may briefly pass the executor's concurrency.
        self.in_flight: Callable[[], int] | None = None
        self.max_in_flight = 0  # most attempts in flight right after a lease handed them out
        self._changed = trio.Event()
        self._seq = 0
        self.leases_of_refusals = 0  # leases_of raises Unavailable this many times first
        self.lose_lease_answers = 0  # leases granted whose answer is then lost (Unavailable)

    # ---- what tests drive -----------------------------------------------------------
    def submit(
        self, queue: str = "q", payload: bytes = b"", *, timeout: float = 30.0, retries: int = 0
    ) -> str:
        self._seq += 1
        task_id = f"t{self._seq:04d}"
        self.tasks[task_id] = FakeTask(task_id, queue, payload, timeout, retries)
        self.queues.setdefault(queue, deque()).append(task_id)
        self._notify()
        return task_id

    def cancel(self, task_id: str) -> int:
        """Cancel a running task; returns the epoch the holder must drop."""
        task = self.tasks[task_id]
        assert task.state is State.RUNNING
        task.state = State.CANCELED
        self._notify()
        return task.epoch

    def running(self) -> int:
        return sum(t.state is State.RUNNING for t in self.tasks.values())

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()

    async def settled(self, *task_ids: str) -> None:
        await self.until(lambda: all(self.tasks[t].state.terminal for t in task_ids))

    # ---- WorkSource -----------------------------------------------------------------
    async def lease(self, queue: str, worker: str, max: int) -> list[WorkItem]:
        await trio.lowlevel.checkpoint()  # "durable": a real node awaits its log here
        waiting = self.queues.get(queue, deque())
        items = []
        while waiting and len(items) < max:
            task = self.tasks[waiting.popleft()]
            task.state, task.worker = State.RUNNING, worker
            task.attempt += 1
            task.epoch += 1
            items.append(
                WorkItem(
                    task.id,
                    queue,
                    task.name,
                    task.payload,
                    task.attempt,
                    task.epoch,
                    task.timeout,
                    {},
                )
            )
        self.lease_calls.append((queue, max, len(items)))
        if items and self.lose_lease_answers:
            self.lose_lease_answers -= 1
            raise Unavailable("the answer was lost (simulated): the outcome is unknown")
        self.max_running = builtins.max(self.max_running, self.running())
        if self.in_flight is not None:
            in_flight = self.in_flight() + len(items)
            self.max_in_flight = builtins.max(self.max_in_flight, in_flight)
        self._notify()
        return items

    async def complete(self, task_id: str, epoch: int, result: bytes, *, log: str = "") -> bool:
        await trio.lowlevel.checkpoint()
        task = self.tasks[task_id]
        ok = task.state is State.RUNNING and task.epoch == epoch
        if ok:
            task.state, task.result = State.SUCCEEDED, result
            self.logs[task_id] = log
        self.reports.append(("complete", task_id, epoch, ok))
        self._notify()
        return ok

    async def fail(self, task_id: str, epoch: int, error: str) -> bool:
        await trio.lowlevel.checkpoint()
        task = self.tasks[task_id]
        ok = task.state is State.RUNNING and task.epoch == epoch
        if ok:
            task.error = error
            task.errors.append(error)
            if task.attempt <= task.max_retries:
                task.state = State.QUEUED
                self.queues[task.queue].append(task_id)
            else:
                task.state = State.FAILED
        self.reports.append(("fail", task_id, epoch, ok))
        self._notify()
        return ok

    async def report_many(self, reports: Sequence[Report]) -> list[bool]:
        return [
            await (
                self.complete(r.task_id, r.epoch, r.result)
                if r.success
                else self.fail(r.task_id, r.epoch, r.error)
            )
            for r in reports
        ]

    async def heartbeat(self, task_id: str, epoch: int) -> bool:
        await trio.lowlevel.checkpoint()
        task = self.tasks[task_id]
        return task.state is State.RUNNING and task.epoch == epoch

    async def leases_of(self, worker: str, queue: str | None = None) -> list[tuple[str, int]]:
        await trio.lowlevel.checkpoint()  # a real node waits for its read barrier here
        if self.leases_of_refusals:
            self.leases_of_refusals -= 1
            raise Unavailable("no leader yet")
        return [
            (t.id, t.epoch)
            for t in self.tasks.values()
            if t.state is State.RUNNING and t.worker == worker and queue in (None, t.queue)
        ]

    async def wait_for_work(self, queues: Sequence[str]) -> None:
        while not any(self.backlog(q) for q in queues):
            await self._changed.wait()

    def backlog(self, queue: str) -> int:
        return len(self.queues.get(queue, ()))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()
