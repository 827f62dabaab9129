"""Commands the scheduler accepts, and what applying one returns.

Theory of operation: every change to scheduler state is one of the frozen commands below,
applied with ``Scheduler.apply(command, now, entropy)``. The node's leader builds commands
(stamping ids, time and entropy), the log replicates them, and every replica applies them in
the same order with the same arguments, so every replica reaches the same state. A command
is validated whole before anything changes: a bad one yields an ``Outcome`` whose
``rejection`` names the field, and the state is untouched.

Times are float seconds since the Unix epoch, taken from ``now`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # task.py imports State from here; the annotation alone needs the type
    from taskd.queue.task import SchedulerConfig


class State(StrEnum):
    PENDING = "pending"  # waiting for run_at or a retry backoff
    BLOCKED = "blocked"  # waiting for dependencies
    QUEUED = "queued"  # runnable
    RUNNING = "running"  # leased
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retries exhausted: the dead-letter list
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELED})

DEFAULT_QUEUE = "default"
DEFAULT_PRIORITY = 5
DEFAULT_TIMEOUT = 1800.0
DEFAULT_MAX_RETRIES = 3


class TaskSpec(NamedTuple):
    """A task as a client asked for it, already type-checked by the API layer.

    ``depends_on`` holds task ids or, inside one ``Submit`` batch, the ``ref`` of another
    spec of the same batch. ``run_at`` is absolute (the API layer turns ``delay`` into it).

    A NamedTuple rather than a frozen dataclass: it is just as immutable, and building one
    costs 0.3 µs instead of 1.5 µs. Each submitted task builds two (API layer, log decode),
    which was 5 % of the node's CPU in the W1b benchmark.
    """

    queue: str = DEFAULT_QUEUE
    name: str = ""
    priority: int = DEFAULT_PRIORITY
    payload: bytes = b""
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    run_at: float = 0.0  # 0: runnable now
    depends_on: tuple[str, ...] = ()
    idempotency_key: str = ""
    labels: tuple[tuple[str, str], ...] = ()  # sorted pairs, so specs hash and compare
    ref: str = ""


# ---- commands -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    """Submit a batch, all or nothing. ``ids[i]`` is the id for ``specs[i]`` (leader-made ULIDs)."""

    specs: tuple[TaskSpec, ...]
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cancel:
    task_id: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Re-queue a failed or canceled task for a fresh set of attempts."""

    task_id: str


@dataclass(frozen=True, slots=True)
class PauseQueue:
    queue: str


@dataclass(frozen=True, slots=True)
class ResumeQueue:
    queue: str


@dataclass(frozen=True, slots=True)
class Lease:
    """Hand up to ``max`` runnable tasks of ``queue`` to ``worker`` for ``lease_ttl`` seconds."""

    queue: str
    worker: str
    max: int
    lease_ttl: float


@dataclass(frozen=True, slots=True)
class Heartbeat:
    task_id: str
    epoch: int
    lease_ttl: float


@dataclass(frozen=True, slots=True)
class Complete:
    """An attempt succeeded with ``result``; ``log``: its stderr tail, kept in the attempt
    history (a local executor's runs; empty from workers)."""

    task_id: str
    epoch: int
    result: bytes
    log: str = ""


@dataclass(frozen=True, slots=True)
class Fail:
    """An attempt failed. ``retryable=False`` sends it straight to ``failed``.

    ``retry_delay`` > 0: the worker asked for the next attempt no earlier than that many
    seconds from now, instead of the scheduler's backoff (retries are still counted and bounded
    by ``max_retries``); 0: the backoff.
    """

    task_id: str
    epoch: int
    error: str
    retryable: bool = True
    retry_delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Tick:
    """Fire every timer due at ``now``: delays, backoffs, lease expiries, timeouts, retention."""


@dataclass(frozen=True, slots=True)
class ReleaseWorker:
    """A worker is gone: expire every lease it holds now (the attempt fails and may retry)."""

    worker: str


@dataclass(frozen=True, slots=True)
class RenewLeases:
    """A new leader took over: give every running lease at least ``lease_ttl`` more seconds.

    Workers lost contact while there was no leader; a new leader may extend a lease, never
    shorten it (design.md §1 "Time").
    """

    lease_ttl: float


@dataclass(frozen=True, slots=True)
class SetConfig:
    """Every setting that shapes the scheduler's decisions, from this point of the log on.

    The node proposes one at start-up when its flags (or this machine's memory) ask for a
    ``SchedulerConfig`` other than the one in effect, so a replica decides every command under
    the configuration logged before it, whatever flags it was started with, and a replay
    decides every earlier command as it was first decided.
    """

    config: SchedulerConfig


@dataclass(frozen=True, slots=True)
class SetLimits:
    """The bounds part of ``SetConfig`` (per-queue depth, node-wide tasks and bytes) alone.

    Logs written before ``SetConfig`` existed carry these (codec kind 12); they still apply.
    The node proposes ``SetConfig`` now.
    """

    max_queue_depth: int
    max_tasks: int
    max_bytes: int


Command = (
    Submit
    | Cancel
    | Retry
    | PauseQueue
    | ResumeQueue
    | Lease
    | Heartbeat
    | Complete
    | Fail
    | Tick
    | ReleaseWorker
    | RenewLeases
    | SetConfig
    | SetLimits
)


# ---- outcomes -------------------------------------------------------------------------


class RejectCode(StrEnum):
    INVALID = "invalid"  # HTTP 400 / INVALID_ARGUMENT
    NOT_FOUND = "not_found"  # 404 / NOT_FOUND
    CONFLICT = "conflict"  # 409 / FAILED_PRECONDITION: illegal transition, stale lease
    QUEUE_FULL = "queue_full"  # 429 / RESOURCE_EXHAUSTED
    NODE_FULL = "node_full"  # 429 / RESOURCE_EXHAUSTED: max_tasks or max_bytes node-wide


@dataclass(frozen=True, slots=True)
class Rejection:
    code: RejectCode
    message: str
    field: str = ""  # e.g. "tasks[3].depends_on[0]"


@dataclass(frozen=True, slots=True)
class StateChanged:
    """One task moved from ``previous`` (None when it was just created) to ``current``.

    ``epoch`` is the lease epoch that the change ended or began: when ``previous`` is RUNNING,
    every holder of that epoch must stop (its lease is gone).
    """

    task_id: str
    queue: str
    previous: State | None
    current: State
    epoch: int


@dataclass(frozen=True, slots=True)
class Revoked:
    """A lease ended without its holder asking: whoever holds ``epoch`` of the task must stop.

    ``reason`` is "canceled", "timeout", "lease expired" or "worker lost". A worker's own
    ``Complete`` or ``Fail`` ends its lease too, but revokes nothing: it already stopped.
    """

    task_id: str
    epoch: int
    reason: str


@dataclass(frozen=True, slots=True)
class Leased:
    """One task handed out by a ``Lease`` command."""

    task_id: str
    epoch: int
    attempt: int
    deadline: float  # lease expiry; heartbeats push it out


@dataclass(slots=True)
class Outcome:
    """What one ``apply`` did.

    ``reply`` depends on the command: ``Submit`` → tuple of (task_id, duplicate) per spec;
    ``Lease`` → tuple of ``Leased``; ``Cancel``/``Retry``/``Complete``/``Fail``/``Heartbeat``
    → the task id; others → None. ``events`` lists every state change, in order.
    ``evicted`` names the finished tasks forgotten before their retention ended to keep the
    node within ``max_tasks`` / ``max_bytes``, oldest first. ``revoked`` lists the leases
    the command took from their holders (see ``Revoked``), in the order they ended.
    ``forgotten`` names the finished tasks a ``Tick`` forgot at the end of their retention.
    """

    rejection: Rejection | None = None
    reply: object = None
    events: list[StateChanged] = field(default_factory=list)
    evicted: tuple[str, ...] = ()
    revoked: tuple[Revoked, ...] = ()
    forgotten: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.rejection is None
