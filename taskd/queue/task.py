"""The task record the scheduler keeps, and the scheduler's configuration."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from taskd.queue.commands import State

MAX_ATTEMPTS_KEPT = 20  # a task's history keeps its last attempts
MAX_ATTEMPT_ERROR = 4096  # characters of each attempt's error that the history keeps

# Shared by every task that has nothing in them (most tasks): one object each instead of an
# empty set (216 bytes) and an empty dict (64 bytes) per task. Never mutated: a task that must
# wait gets a set of its own (``waiting_on = {...}``), and labels never change.
NO_WAIT: frozenset[str] = frozenset()
NO_LABELS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Attempt:
    """One ended attempt, as the task's history keeps it."""

    number: int  # the task's ``attempt`` then (1 for the first; restarts after a Retry)
    started_at: float
    finished_at: float
    outcome: str  # succeeded, failed, timeout, lease expired, worker lost, canceled
    error: str  # "" when it succeeded; clipped to MAX_ATTEMPT_ERROR
    worker: str
    log: str = ""  # a successful run's stderr tail (local executors); clipped likewise


@dataclass(slots=True)
class Task:
    """One task. Owned and mutated only by the scheduler; readers must not change it."""

    id: str
    queue: str
    name: str
    priority: int
    payload: bytes
    timeout: float
    max_retries: int
    run_at: float
    depends_on: tuple[str, ...]
    idempotency_key: str
    labels: Mapping[str, str]  # NO_LABELS when it has none
    created_at: float
    seq: int  # submission order: FIFO among equal priorities
    state: State = State.QUEUED
    attempt: int = 0  # attempts started so far (1 while the first one runs)
    result: bytes | None = None
    error: str = ""
    worker: str = ""
    started_at: float = 0.0  # start of the current or last attempt
    finished_at: float = 0.0
    epoch: int = 0  # fencing epoch of the current (or last) lease
    lease_deadline: float = 0.0  # while running: lease expiry
    timeout_deadline: float = 0.0  # while running: started_at + timeout
    # unfinished dependency ids: a set of its own while there are any, else the shared NO_WAIT
    waiting_on: set[str] | frozenset[str] = NO_WAIT
    canceled_by: str = ""  # the dependency whose failure or cancellation canceled this task
    size: int = 0  # bytes counted against max_bytes (holdings.task_size); derived, not stored
    attempts: tuple[Attempt, ...] = ()  # ended attempts, oldest first


def end_attempt(task: Task, outcome: str, error: str, now: float, log: str = "") -> None:
    """Add the attempt that is ending now to ``task``'s history (bounded: the last
    ``MAX_ATTEMPTS_KEPT``, each error and log clipped to ``MAX_ATTEMPT_ERROR`` characters)."""
    ended = Attempt(
        task.attempt, task.started_at, now, outcome, error[:MAX_ATTEMPT_ERROR], task.worker,
        log[-MAX_ATTEMPT_ERROR:],
    )  # fmt: skip
    task.attempts = (*task.attempts[-(MAX_ATTEMPTS_KEPT - 1) :], ended)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Settings every replica must share: they shape state, so they travel through the log.

    A scheduler starts with the defaults below (or what its snapshot recorded) and changes
    them only by applying ``SetConfig`` (or the older ``SetLimits``); the constructor argument
    is for tests and tools that build a scheduler outside a log.
    """

    retention: float = 7 * 24 * 3600.0  # keep terminal tasks this long, then forget them
    backoff_base: float = 1.0  # retry n waits uniform(0, min(cap, base * 2**(n-1)))
    backoff_cap: float = 300.0
    max_queue_depth: int = 1_000_000  # non-terminal tasks per queue; beyond it Submit → QUEUE_FULL
    # Node-wide bounds on every held task, finished ones included (see holdings.py): reaching
    # one evicts the oldest finished tasks early; unfinished ones alone → Submit → NODE_FULL.
    max_tasks: int = 10_000_000
    max_bytes: int = 16 << 30  # payloads, results, errors, labels, ids, names, keys

    def validate(self) -> None:
        found = self.problem()
        if found is not None:
            raise ValueError(found[1])

    def problem(self) -> tuple[str, str] | None:
        """The first setting that is out of range, as (field, message); None when all fit."""
        for name in ("retention", "backoff_base", "backoff_cap"):
            value = getattr(self, name)
            if type(value) not in (float, int) or not -math.inf < value < math.inf:
                return name, f"{name} must be a finite number of seconds"
        for name in ("max_queue_depth", "max_tasks", "max_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                return name, f"{name} must be >= 1"
        if self.retention < 0:
            return "retention", "retention must be >= 0"
        if self.backoff_base <= 0 or self.backoff_cap < self.backoff_base:
            return "backoff_base", "need 0 < backoff_base <= backoff_cap"
        return None
