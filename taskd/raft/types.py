"""Raft's vocabulary: log entries, the hard state, snapshot metadata and peer messages.

Theory of operation: these are the values that cross the boundary between the pure core and
its driver, and between the driver and the disk. They are small frozen, slotted dataclasses:
nothing mutates them after creation, so the core can hand the same ``Entry`` objects to the
disk writer and to the state machine without copying.

Every entry has a kind (``EntryKind``): a command for the state machine (``NORMAL``), Raft's
own no-op that a new leader appends (``NOOP``), or a membership change (``CONF_CHANGE``). The
kind travels on disk as the record's type byte (``records``), so the kind values are the record
types. ``data`` is never inspected to tell them apart, except that a ``CONF_CHANGE`` entry's data
is the FULL new configuration (``encode_conf``/``decode_conf``), not a delta.

``Message`` is what members exchange: (pre-)vote requests and answers, appends, heartbeats and
their answers, snapshot offers and the leader's "campaign now" (``TIMEOUT_NOW``).
"""

from __future__ import annotations

import json
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
class ConfState:
    """A cluster configuration: the members that vote and the learners that only receive
    the log (a new member catches up as a learner before it is promoted)."""

    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        members = (*self.voters, *self.learners)
        if len(set(members)) != len(members):
            raise ValueError(
                f"a configuration names each member once: voters {list(self.voters)!r}, "
                f"learners {list(self.learners)!r}"
            )

    @property
    def members(self) -> tuple[str, ...]:
        return (*self.voters, *self.learners)

    def __contains__(self, member: object) -> bool:
        return member in self.voters or member in self.learners


def encode_conf(conf: ConfState) -> bytes:
    """The data of a ``CONF_CHANGE`` entry: the full configuration, as compact JSON."""
    body = {"voters": list(conf.voters), "learners": list(conf.learners)}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_conf(data: bytes) -> ConfState:
    """The configuration a ``CONF_CHANGE`` entry carries. Raises ValueError when ``data`` is
    not one (a corrupt entry: the log cannot be trusted past it)."""
    try:
        body = json.loads(data)
        voters, learners = body["voters"], body["learners"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a configuration-change entry: {data[:80]!r}") from exc
    if not all(isinstance(m, str) for m in (*voters, *learners)):
        raise ValueError(f"a configuration names members by string: {data[:80]!r}")
    return ConfState(tuple(voters), tuple(learners))


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """The last log position a snapshot covers, and the configuration as of that position
    (empty ``voters``: not known, e.g. a snapshot written before membership existed)."""

    index: int
    term: int
    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()

    @property
    def conf(self) -> ConfState:
        return ConfState(self.voters, self.learners)


class MessageKind(Enum):
    """The messages of the Raft paper and dissertation (pre-vote, heartbeats, transfer)."""

    VOTE = "vote"
    VOTE_RESPONSE = "vote_response"
    PRE_VOTE = "pre_vote"
    PRE_VOTE_RESPONSE = "pre_vote_response"
    APPEND = "append"
    APPEND_RESPONSE = "append_response"
    HEARTBEAT = "heartbeat"
    HEARTBEAT_RESPONSE = "heartbeat_response"
    SNAPSHOT = "snapshot"
    TIMEOUT_NOW = "timeout_now"


# ``Message.context`` of a ``VOTE`` for a campaign that a leader asked for (``TIMEOUT_NOW``):
# voters grant it even while they still hear from that leader.
CAMPAIGN_TRANSFER = 1


@dataclass(frozen=True, slots=True)
class Message:
    """A message between members.

    - ``APPEND``: ``index``/``log_term`` are the position just before ``entries``, ``commit``
      the leader's commit index. ``APPEND_RESPONSE``: ``index`` is the highest index the
      sender now matches; with ``reject``, ``index`` is the position refused and
      ``reject_hint``/``log_term`` the follower's guess of where the logs agree (its last
      index at or below the refused one whose term is at most the leader's ``log_term``).
    - ``HEARTBEAT``: ``commit`` (at most what the follower matches) and ``context``, the id
      of a ReadIndex round, echoed by ``HEARTBEAT_RESPONSE``.
    - ``VOTE``/``PRE_VOTE``: the candidate's last position; ``context == CAMPAIGN_TRANSFER``
      marks a campaign asked for by the leader. A pre-vote carries the term the candidate
      would campaign in, without having taken it.
    - ``SNAPSHOT``: ``snapshot`` names the snapshot (the driver carries its data).
    - ``TIMEOUT_NOW``: the leader asks the receiver to campaign at once.
    """

    kind: MessageKind
    src: str
    dst: str
    term: int
    index: int = 0
    log_term: int = 0
    commit: int = 0
    entries: tuple[Entry, ...] = field(default=())
    reject: bool = False
    reject_hint: int = 0
    context: int = 0
    snapshot: SnapshotMeta | None = None


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
