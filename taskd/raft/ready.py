"""What the core hands its driver (``Ready``) and what it reports (``RaftStatus``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from taskd.raft.types import Entry, HardState, Message, ReadState, SnapshotMeta, SoftState


@dataclass(frozen=True, slots=True)
class Ready:
    """Work for the driver. Install ``snapshot`` first when set (restore the state machine
    from the staged file, make it the durable base of the disk log with no entries, then
    ``snapshot_installed``); persist ``hard_state`` and ``entries_to_persist`` (fsync first
    when ``must_sync``; then ``persisted``), send ``messages`` only after that, apply
    ``committed_entries`` (then ``advance``). ``entries_to_persist`` may start at or below the
    last index on disk: they replace the disk's entries from their first index on.
    ``soft_state`` is set when role or leader changed."""

    hard_state: HardState | None
    entries_to_persist: list[Entry]
    messages: list[Message]
    committed_entries: list[Entry]
    soft_state: SoftState | None = None
    snapshot: SnapshotMeta | None = None
    must_sync: bool = False
    read_states: list[ReadState] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MemberStatus:
    id: str
    role: str  # "leader" | "follower" | "learner"
    match_index: int  # as the leader knows it (0 elsewhere; a node knows its own)
    reachable: bool  # heard from within the last election timeout


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """What ``GET /api/v1/cluster`` shows. ``leader`` is the leader's member id (the node
    layer names members by their gRPC address), or None while there is no leader."""

    id: str
    role: str  # "leader" | "follower" | "candidate" (design.md §3)
    term: int
    leader: str | None
    commit_index: int
    applied_index: int
    members: list[MemberStatus]
