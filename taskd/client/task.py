"""The task as an SDK user sees it: a frozen view built from the ``taskd.v1.Task`` message.

Theory of operation: ``Task.from_proto`` is the one translation from the wire to the view;
nothing else in the SDK reads ``pb.Task`` fields. Payloads and results stay the bytes taskd
stores (taskd never interprets them); ``json()`` and ``result`` decode them when asked.
Times are timezone-aware UTC datetimes, ``None`` when unset (the wire's 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

from taskd.api.taskd import v1 as pb


class Priority(IntEnum):
    """The named priorities of design.md §2; any int 0..9 is accepted too (9 runs first)."""

    LOWEST = 0
    LOW = 2
    NORMAL = 5
    HIGH = 7
    CRITICAL = 9


class TaskState(StrEnum):
    """design.md §2 states; compares equal to the lowercase names (``state == "queued"``)."""

    PENDING = "pending"
    BLOCKED = "blocked"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def done(self) -> bool:
        """Terminal: succeeded, failed or canceled."""
        return self in _TERMINAL


_TERMINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED})
_FROM_PB = {pb.TaskState[s.name]: s for s in TaskState}
TO_PB = {s: pb.TaskState[s.name] for s in TaskState}


def _when(millis: int) -> datetime | None:
    if not millis:
        return None
    try:
        return datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, OSError, ValueError):  # a time outside datetime's range
        return datetime.max.replace(tzinfo=UTC) if millis > 0 else datetime.min.replace(tzinfo=UTC)


def _priority(value: int) -> Priority | int:
    try:
        return Priority(value)
    except ValueError:
        return value


def _decode(data: bytes) -> Any:
    """JSON if ``data`` parses as JSON (empty → None), else the text, else the bytes."""
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


@dataclass(frozen=True, slots=True)
class Attempt:
    """One ended attempt of a task: its number, when it ran, how it ended and why."""

    attempt: int
    outcome: str  # succeeded, failed, timeout, lease expired, worker lost, canceled
    error: str = ""
    worker: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    log: str = ""  # a successful run's stderr tail (local --exec executors)

    @classmethod
    def from_proto(cls, msg: pb.TaskAttempt) -> Attempt:
        return cls(
            attempt=msg.attempt,
            outcome=msg.outcome,
            error=msg.error,
            worker=msg.worker,
            log=msg.log,
            started_at=_when(msg.started_at_ms),
            finished_at=_when(msg.finished_at_ms),
        )


@dataclass(frozen=True, slots=True)
class Task:
    """One task: what was submitted, and where it is now."""

    id: str
    queue: str
    name: str
    priority: Priority | int
    state: TaskState
    payload: bytes = b""
    result_bytes: bytes = b""
    error: str = ""
    attempt: int = 0
    max_retries: int = 3
    timeout: float = 1800.0
    worker: str = ""
    run_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    depends_on: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    idempotency_key: str = ""
    duplicate: bool = False  # a submit that returned an earlier task with the same key
    attempts: tuple[Attempt, ...] = ()  # ended attempts, oldest first (the node keeps 20)

    @classmethod
    def from_proto(cls, msg: pb.Task, *, duplicate: bool = False) -> Task:
        return cls(
            id=msg.id,
            queue=msg.queue,
            name=msg.name,
            priority=_priority(msg.priority),
            state=_FROM_PB.get(msg.state, TaskState.PENDING),
            payload=bytes(msg.payload),
            result_bytes=bytes(msg.result),
            error=msg.error,
            attempt=msg.attempt,
            max_retries=msg.max_retries,
            timeout=msg.timeout_seconds,
            worker=msg.worker,
            run_at=_when(msg.run_at_ms),
            created_at=_when(msg.created_at_ms),
            started_at=_when(msg.started_at_ms),
            finished_at=_when(msg.finished_at_ms),
            depends_on=tuple(msg.depends_on),
            labels=dict(msg.labels),
            idempotency_key=msg.idempotency_key,
            duplicate=duplicate,
            attempts=tuple(Attempt.from_proto(a) for a in msg.attempts),
        )

    @property
    def done(self) -> bool:
        """The task is terminal (succeeded, failed or canceled)."""
        return self.state.done

    @property
    def succeeded(self) -> bool:
        return self.state is TaskState.SUCCEEDED

    def json(self) -> Any:
        """The payload parsed as JSON (None for an empty payload); ValueError if it is not."""
        return json.loads(self.payload) if self.payload else None

    @property
    def result(self) -> Any:
        """The result: its JSON value when it parses as JSON, else its text, else its bytes;
        None when there is none (yet)."""
        return _decode(self.result_bytes)

    def result_json(self) -> Any:
        """The result parsed as JSON (None when empty); ValueError if it is not JSON."""
        return json.loads(self.result_bytes) if self.result_bytes else None


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One state change seen by ``watch``: the task as it is now, in the state it moved to."""

    task: Task
    previous: TaskState | None

    @classmethod
    def from_proto(cls, msg: pb.TaskEvent) -> TaskEvent:
        task = Task.from_proto(msg.task if msg.task is not None else pb.Task())
        return cls(task=task, previous=_FROM_PB.get(msg.previous))
