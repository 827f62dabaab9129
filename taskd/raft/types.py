"""Raft's vocabulary: log entries, the hard state, snapshot metadata and peer messages.

Theory of operation: these are the values that cross the boundary between the pure core and
its driver, and between the driver and the disk. They are small frozen, slotted dataclasses:
nothing mutates them after creation, so the core can hand the same ``Entry`` objects to the
disk writer and to the state machine without copying.

``Message`` is the shape peers will exchange; a one-member cluster never sends one yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. ``data`` is opaque to Raft; empty ``data`` is a leader's no-op."""

    term: int
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before a node answers anyone: current term, vote, commit index.

    ``commit`` is persisted opportunistically: in the ``hardstate`` file whenever term or
    vote are written, and with the disk log's durable mark after every round; recovery
    hands back the larger. Raft re-derives the commit index after a restart, so a stale
    value is safe; one past the log is capped by the log (``RaftLog``).
    """

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """The last log position a snapshot covers."""

    index: int
    term: int


class MessageKind(Enum):
    """The messages of the Raft paper. None is sent yet: there are no peers."""

    VOTE = "vote"
    VOTE_RESPONSE = "vote_response"
    APPEND = "append"
    APPEND_RESPONSE = "append_response"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True, slots=True)
class Message:
    """A message between members. Fields beyond the envelope arrive with replication."""

    kind: MessageKind
    src: str
    dst: str
    term: int
    index: int = 0
    log_term: int = 0
    commit: int = 0
    entries: tuple[Entry, ...] = field(default=())
    reject: bool = False
