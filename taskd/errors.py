"""The one root of taskd's exceptions.

Caller faults (bad input, unknown ids, illegal transitions) are told apart from cluster faults
(no leader here, store unavailable), so the API layers can map each to the right status code.
Third-party errors are translated into these where they enter taskd.
"""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class TaskdError(Exception):
    """Root of every error taskd raises on purpose."""


class ClusterError(TaskdError):
    """The cluster cannot take this request right now; the caller may retry."""


class NotLeader(ClusterError):
    """This node is not the leader. ``leader_hint`` names the leader when known."""

    def __init__(self, leader_hint: str | None = None) -> None:
        self.leader_hint = leader_hint
        hint = f"; the leader is {leader_hint}" if leader_hint else "; no leader is known yet"
        super().__init__(f"this node is not the leader{hint}")


class Unavailable(ClusterError):
    """The store cannot accept writes (disk error, shutting down, no quorum)."""


class StorageFault(Unavailable):
    """The store's disk cannot take writes (full, read-only, failing): an operator must act.

    The message says what is wrong and what to do. ``resumes_by_itself`` is True when writes
    come back without a restart once the cause is gone (space freed), False when only a restart
    after fixing the disk brings them back (a failed fsync, an I/O error, a read-only mount).
    """

    def __init__(self, message: str, *, resumes_by_itself: bool) -> None:
        self.resumes_by_itself = resumes_by_itself
        super().__init__(message)


class CallerError(TaskdError):
    """The request is wrong; retrying it unchanged will fail the same way."""

    def __init__(self, code: str, message: str, field: str = "") -> None:
        self.code = code
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class StartupError(TaskdError):
    """The node cannot start (a port is taken, the data dir is locked); the message says why."""


def first_of(exc: BaseException, kind: type[E]) -> E | None:
    """``exc`` if it is a ``kind``, else the first ``kind`` inside (nested) exception groups.

    trio nurseries wrap what their tasks raise in groups; start-up code uses this to find the
    error worth one line to the user (a taken port, a locked data dir) among them.
    """
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_of(inner, kind)
            if found is not None:
                return found
    return None
