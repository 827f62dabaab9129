"""The SDK's errors: what a caller of ``taskd.client`` can catch.

Theory of operation: every failure the SDK reports is a ``TaskdClientError`` (itself a
``taskd.errors.TaskdError``, the project's one root). Caller faults — ``InvalidArgument``
(naming the field), ``NotFound``, ``Conflict``, ``TooLarge`` — are distinct from cluster
faults — ``Overloaded``, ``Unavailable`` (with the leader hint when a member named one),
``DeadlineExceeded`` — so an application can retry only what retrying can fix.
``from_grpc`` translates a grpclib failure where it enters the SDK; no grpclib type is ever
raised to a user.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from grpclib.const import Status

from taskd.errors import TaskdError

# "retry, or send it to the leader at 127.0.0.1:50052" (taskd/node/api/codes.py): the hint in
# the text, for a reply whose trailer was lost on the way (a proxy dropping unknown headers).
_LEADER_IN_TEXT = re.compile(r"the leader at (\S+)$")
LEADER_KEY = "x-taskd-leader"


class TaskdClientError(TaskdError):
    """Root of every error the SDK raises."""


class InvalidArgument(TaskdClientError, ValueError):
    """The request is wrong; ``field`` names the offending field ("" when it is not one)."""

    def __init__(self, message: str, field: str = "") -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class TooLarge(InvalidArgument):
    """A payload, batch or message over the node's limit."""


class NotFound(TaskdClientError, LookupError):
    """No task with this id (or it is past the node's retention)."""


class Conflict(TaskdClientError):
    """An illegal transition, e.g. cancelling a task that already finished."""


class Overloaded(TaskdClientError):
    """The queue or node is full (HTTP 429 / RESOURCE_EXHAUSTED): slow down and retry."""


class Unavailable(TaskdClientError):
    """No member could take the call: node down, no leader yet, or store unavailable.

    ``leader_hint``: the leader's gRPC address when the member that answered named one.
    """

    def __init__(self, message: str, leader_hint: str | None = None) -> None:
        self.leader_hint = leader_hint
        super().__init__(message)


class DeadlineExceeded(TaskdClientError, TimeoutError):
    """The call (or ``wait``) did not finish within its deadline."""


class TaskFailed(TaskdClientError):
    """Raised by ``wait(..., raise_on_failure=True)``: the task ended failed or canceled.

    ``task`` is the finished task (its ``error`` says why).
    """

    def __init__(self, task: Any) -> None:
        self.task = task
        super().__init__(f"task {task.id} {task.state.value}: {task.error or 'no error given'}")


def _split_field(message: str) -> tuple[str, str]:
    """``"tasks[0].priority: must be 0..9"`` → (field, text). A node's INVALID_ARGUMENT names
    the field before the first ": " (taskd/node/api/grpc/handlers.py)."""
    head, sep, rest = message.partition(": ")
    if sep and head and " " not in head:
        return head, rest
    return "", message


def leader_hint(message: str, trailers: Mapping[str, str] | None) -> str | None:
    """The leader an UNAVAILABLE names: its trailer ``x-taskd-leader``, else its text."""
    if trailers:
        hint = trailers.get(LEADER_KEY)
        if hint:
            return hint
    found = _LEADER_IN_TEXT.search(message)
    return found.group(1) if found else None


def from_status(
    status: Status, message: str | None, trailers: Mapping[str, str] | None = None
) -> TaskdClientError:
    """The SDK error for a gRPC status a node answered with."""
    text = message or status.name.lower().replace("_", " ")
    if status is Status.INVALID_ARGUMENT:
        field, rest = _split_field(text)
        if "bytes" in rest and ("the limit is" in rest or "at most" in rest):
            return TooLarge(rest, field)
        return InvalidArgument(rest, field)
    if status is Status.NOT_FOUND:
        return NotFound(text)
    if status is Status.FAILED_PRECONDITION:
        return Conflict(text)
    if status is Status.RESOURCE_EXHAUSTED:
        return Overloaded(text)
    if status is Status.UNAVAILABLE:
        return Unavailable(text, leader_hint(text, trailers))
    if status is Status.DEADLINE_EXCEEDED:
        return DeadlineExceeded(text)
    return TaskdClientError(f"{status.name}: {text}")


def trailers_of(metadata: Any) -> dict[str, str]:
    """grpclib's metadata (a multidict of str or bytes values) as a plain str dict."""
    if not metadata:
        return {}
    out: dict[str, str] = {}
    for key, value in metadata.items():
        out[str(key)] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return out
