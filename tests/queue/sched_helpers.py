"""A small harness around ``Scheduler`` so tests read as Given / When / Expect."""

from __future__ import annotations

from typing import Any

from taskd.queue.commands import (
    Cancel,
    Command,
    Complete,
    Fail,
    Heartbeat,
    Lease,
    Leased,
    Outcome,
    RejectCode,
    Retry,
    State,
    Submit,
    TaskSpec,
    Tick,
)
from taskd.queue.scheduler import Scheduler
from taskd.queue.task import SchedulerConfig, Task


class Harness:
    def __init__(self, config: SchedulerConfig | None = None, now: float = 1000.0) -> None:
        self.s = Scheduler(config or SchedulerConfig())
        self.now = now
        self.entropy = 0x1234_5678_9ABC_DEF0
        self._next_id = 0

    def new_id(self) -> str:
        self._next_id += 1
        return f"T{self._next_id:06d}"

    def apply(self, command: Command) -> Outcome:
        return self.s.apply(command, self.now, self.entropy)

    def ok(self, command: Command) -> Outcome:
        out = self.apply(command)
        assert out.ok, out.rejection
        return out

    def rejected(self, command: Command, code: RejectCode, field: str = "") -> Outcome:
        before = self.s.snapshot()
        out = self.apply(command)
        assert out.rejection is not None, f"expected {code}, got {out}"
        assert out.rejection.code is code, out.rejection
        if field:
            assert out.rejection.field == field, out.rejection
        assert out.events == []
        assert self.s.snapshot() == before, "a rejected command changed state"
        return out

    def batch(self, *specs: TaskSpec) -> Submit:
        return Submit(tuple(specs), tuple(self.new_id() for _ in specs))

    def submit(self, **fields: Any) -> str:
        reply = self.ok(self.batch(TaskSpec(**fields))).reply
        assert isinstance(reply, tuple)
        task_id, duplicate = reply[0]
        assert not duplicate
        return str(task_id)

    def lease(
        self, queue: str = "default", n: int = 1, worker: str = "w1", ttl: float = 30.0
    ) -> list[Leased]:
        reply = self.ok(Lease(queue, worker, n, ttl)).reply
        assert isinstance(reply, tuple)
        return list(reply)

    def lease_one(self, queue: str = "default", worker: str = "w1", ttl: float = 30.0) -> Leased:
        (leased,) = self.lease(queue, 1, worker, ttl)
        return leased

    def complete(self, leased: Leased, result: bytes = b"ok") -> Outcome:
        return self.ok(Complete(leased.task_id, leased.epoch, result))

    def fail(self, leased: Leased, error: str = "boom", retryable: bool = True) -> Outcome:
        return self.ok(Fail(leased.task_id, leased.epoch, error, retryable))

    def heartbeat(self, leased: Leased, ttl: float = 30.0) -> Outcome:
        return self.apply(Heartbeat(leased.task_id, leased.epoch, ttl))

    def cancel(self, task_id: str) -> Outcome:
        return self.apply(Cancel(task_id))

    def retry(self, task_id: str) -> Outcome:
        return self.apply(Retry(task_id))

    def tick(self, at: float | None = None) -> Outcome:
        if at is not None:
            self.now = at
        return self.ok(Tick())

    def run(self, queue: str = "default") -> str:
        """Lease and complete the next task of ``queue``; returns its id."""
        leased = self.lease_one(queue)
        self.complete(leased)
        return leased.task_id

    def task(self, task_id: str) -> Task:
        task = self.s.get(task_id)
        assert task is not None, f"{task_id} is not held"
        return task

    def state(self, task_id: str) -> State:
        return self.task(task_id).state


def spec(**fields: Any) -> TaskSpec:
    return TaskSpec()._replace(**fields)
