"""Error codes: the one list of what can go wrong for a client, and the one table that maps each
code to its HTTP status and its gRPC status.

Theory of operation: a refusal anywhere in taskd carries a code string (``CallerError.code``;
the scheduler's ``RejectCode`` values are a subset). The REST layer answers
``{"error": {"code", "message", "field"}}`` with ``http_status(code)``; the gRPC layer answers
``grpc_status(code)`` with the same message. A test checks that every code the scheduler can
return has a row here, so a new rejection cannot fall through to a default.
"""

from __future__ import annotations

from enum import StrEnum

from grpclib.const import Status

from taskd.errors import ClusterError, NotLeader


class ErrorCode(StrEnum):
    INVALID = "invalid"  # the request is wrong: a field, a type, a format
    TOO_LARGE = "too_large"  # a body, payload or message over its limit
    NOT_FOUND = "not_found"  # an unknown id or route
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"  # an illegal transition or a stale lease epoch
    QUEUE_FULL = "queue_full"  # --max-queue-depth
    NODE_FULL = "node_full"  # --max-tasks / --max-memory
    NOT_LEADER = "not_leader"  # retry on the leader
    UNAVAILABLE = "unavailable"  # no leader, store stopped, disk refusing writes
    INTERNAL = "internal"  # a bug: the node logged the details


_TABLE: dict[ErrorCode, tuple[int, Status]] = {
    ErrorCode.INVALID: (400, Status.INVALID_ARGUMENT),
    ErrorCode.TOO_LARGE: (413, Status.INVALID_ARGUMENT),
    ErrorCode.NOT_FOUND: (404, Status.NOT_FOUND),
    ErrorCode.METHOD_NOT_ALLOWED: (405, Status.UNIMPLEMENTED),
    ErrorCode.CONFLICT: (409, Status.FAILED_PRECONDITION),
    ErrorCode.QUEUE_FULL: (429, Status.RESOURCE_EXHAUSTED),
    ErrorCode.NODE_FULL: (429, Status.RESOURCE_EXHAUSTED),
    ErrorCode.NOT_LEADER: (503, Status.UNAVAILABLE),
    ErrorCode.UNAVAILABLE: (503, Status.UNAVAILABLE),
    ErrorCode.INTERNAL: (500, Status.INTERNAL),
}


def http_status(code: str) -> int:
    """The HTTP status of ``code`` (400 for a code this table does not know)."""
    try:
        return _TABLE[ErrorCode(code)][0]
    except ValueError:
        return 400


def grpc_status(code: str) -> Status:
    """The gRPC status of ``code`` (INVALID_ARGUMENT for a code this table does not know)."""
    try:
        return _TABLE[ErrorCode(code)][1]
    except ValueError:
        return Status.INVALID_ARGUMENT


def cluster_hint(exc: ClusterError, leader: str | None) -> str | None:
    """The leader a client should go to: the one the error names, else the one this member
    knows of (None when unknown, or when this member leads)."""
    if isinstance(exc, NotLeader) and exc.leader_hint:
        return exc.leader_hint
    return leader


def cluster_message(exc: ClusterError, leader: str | None) -> str:
    """What went wrong and what to do next, for a 503 / UNAVAILABLE."""
    if isinstance(exc, NotLeader):
        if leader:
            return f"this node is not the leader; retry, or send it to the leader at {leader}"
        return (
            "no leader is known yet (an election or a takeover is under way, or this node "
            "cannot reach a majority of the cluster or its database); retry shortly"
        )
    text = str(exc) or "the cluster cannot take requests now"
    if "read it back" in text:  # an unknown outcome: retrying blindly could do it twice
        return f"{text} (the leader is {leader})" if leader else text
    if leader:
        return f"{text}; retry, or send it to the leader at {leader}"
    return f"{text}; retry shortly"
