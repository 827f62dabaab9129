"""The scheduler's state transitions, written as data.

Theory of operation: ``TRANSITIONS`` is the one table of every legal move of a task, keyed by
(current state, trigger) and giving the set of states the trigger may lead to. ``None`` as a
key state means "not yet created"; ``None`` as a target means "forgotten" (retention passed).
A trigger is a command kind (``CANCEL``, ``LEASE``, ...) or an internal consequence of one
(``DEPS_MET`` when a task's last dependency succeeds, ``DEP_ENDED`` when one fails).

The scheduler checks every move it makes against this table (a move missing from it is a bug
and raises ``InvariantError``) and decides whether a client's command is legal in the task's
current state by looking the pair up (missing → CONFLICT). ``docs/state-machine.md`` is
generated from this table by ``python -m taskd.queue.diagram``.
"""

from __future__ import annotations

from enum import StrEnum

from taskd.queue.commands import State


class Trigger(StrEnum):
    SUBMIT = "submit"
    RUN_AT = "run_at reached"
    DEPS_MET = "dependencies succeeded"
    LEASE = "lease"
    HEARTBEAT = "heartbeat"
    COMPLETE = "complete"
    FAIL = "fail"
    TIMEOUT = "timeout"
    LEASE_EXPIRED = "lease expired"
    WORKER_LOST = "worker lost"
    CANCEL = "cancel"
    DEP_ENDED = "dependency failed or canceled"
    RETRY = "retry"
    DEP_RETRIED = "dependency retried"
    FORGET = "retention passed"


class InvariantError(RuntimeError):
    """The scheduler's own bookkeeping is inconsistent: a bug, never a caller's fault."""


_P, _B, _Q, _R = State.PENDING, State.BLOCKED, State.QUEUED, State.RUNNING
_S, _F, _C = State.SUCCEEDED, State.FAILED, State.CANCELED
_ATTEMPT_ENDED = frozenset({_P, _F})  # retried after a backoff, or retries exhausted

TRANSITIONS: dict[tuple[State | None, Trigger], frozenset[State | None]] = {
    (None, Trigger.SUBMIT): frozenset({_B, _C, _P, _Q}),
    (_P, Trigger.RUN_AT): frozenset({_Q}),
    (_B, Trigger.DEPS_MET): frozenset({_Q, _P}),
    (_Q, Trigger.LEASE): frozenset({_R}),
    (_R, Trigger.HEARTBEAT): frozenset({_R}),
    (_R, Trigger.COMPLETE): frozenset({_S}),
    (_R, Trigger.FAIL): _ATTEMPT_ENDED,
    (_R, Trigger.TIMEOUT): _ATTEMPT_ENDED,
    (_R, Trigger.LEASE_EXPIRED): _ATTEMPT_ENDED,
    (_R, Trigger.WORKER_LOST): _ATTEMPT_ENDED,
    (_P, Trigger.CANCEL): frozenset({_C}),
    (_B, Trigger.CANCEL): frozenset({_C}),
    (_Q, Trigger.CANCEL): frozenset({_C}),
    (_R, Trigger.CANCEL): frozenset({_C}),
    (_B, Trigger.DEP_ENDED): frozenset({_C}),
    (_F, Trigger.RETRY): frozenset({_Q, _B, _P}),
    (_C, Trigger.RETRY): frozenset({_Q, _B, _P}),
    (_C, Trigger.DEP_RETRIED): frozenset({_B}),
    (_S, Trigger.FORGET): frozenset({None}),
    (_F, Trigger.FORGET): frozenset({None}),
    (_C, Trigger.FORGET): frozenset({None}),
}


LEGAL: frozenset[tuple[State | None, Trigger, State | None]] = frozenset(
    (state, trigger, new) for (state, trigger), targets in TRANSITIONS.items() for new in targets
)  # the table flattened, for one-lookup checks on hot paths


def allowed(state: State | None, trigger: Trigger) -> bool:
    """Whether ``trigger`` may act on a task in ``state`` at all."""
    return (state, trigger) in TRANSITIONS


def check(state: State | None, trigger: Trigger, new: State | None) -> None:
    """Raise ``InvariantError`` unless the table allows ``state --trigger--> new``."""
    if (state, trigger, new) not in LEGAL:
        raise InvariantError(f"illegal transition {state} --{trigger.value}--> {new}")
