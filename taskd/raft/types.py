"""Raft's vocabulary: log entries, the hard state, snapshot metadata and peer messages.

Theory of operation: these are the values that cross the boundary between the pure core and
its driver, and between the driver and the disk. They are small frozen, slotted dataclasses:
nothing mutates them after creation, so the core can hand the same ``Entry`` objects to the
disk writer and to the state machine without copying.

Every entry has a kind (``EntryKind``): a command for the state machine (``NORMAL``), Raft's
own no-op that a new leader appends (``NOOP``), or a membership change (``CONF_CHANGE``; none is
proposed yet). The kind travels on disk as the record's type byte (``records``), so the kind
values are the record types. ``data`` is never inspected to tell them apart.

``Message`` is what members exchange: vote requests and answers, appends and their answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum


class EntryKind(IntEnum):
    """What an entry is. The values are the record types of the disk format."""

    NORMAL = 1  # a command for the state machine
    NOOP = 2  # a new leader's first entry: commits its term, applies to nothing
    CONF_CHANGE = 3  # a membership change: Raft's own, never handed to the state machine


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. ``data`` is opaque to Raft; ``kind`` says whose entry it is."""

    term: int
    index: int
    data: bytes
    kind: EntryKind = EntryKind.NORMAL


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
    """The messages of the Raft paper."""

    VOTE = "vote"
    VOTE_RESPONSE = "vote_response"
    APPEND = "append"
    APPEND_RESPONSE = "append_response"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True, slots=True)
class Message:
    """A message between members. For ``APPEND``: ``index``/``log_term`` are the position
    just before ``entries`` and ``commit`` the leader's commit index; for ``VOTE``: the
    candidate's last position; for answers, ``index`` is the highest index the sender
    matches and ``reject`` says no."""

    kind: MessageKind
    src: str
    dst: str
    term: int
    index: int = 0
    log_term: int = 0
    commit: int = 0
    entries: tuple[Entry, ...] = field(default=())
    reject: bool = False


@dataclass(frozen=True, slots=True)
class SoftState:
    """What a node is right now, not persisted: its role and the leader it knows of."""

    role: str
    leader: str | None


@dataclass(frozen=True, slots=True)
class ReadState:
    """The answer to ``RaftCore.read_index(ctx)``: once ``index`` is applied, a read sees
    everything committed before the request was made (a linearizable read)."""

    index: int
    ctx: object
