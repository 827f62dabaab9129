"""RaftCore: the Raft state machine, without I/O, clock or randomness (etcd-io/raft style).

Theory of operation: the driver owns the disk, the network and the clock; the core owns the
decisions. Inputs are ``propose``, ``tick(now)``, ``step(message)`` and the driver's
acknowledgements ``persisted(index)`` (entries are on disk) and ``advance(ready)`` (the
committed entries of that ``Ready`` were applied). Output is ``ready()``: the hard state and
entries to persist, messages to send once they are durable, and committed entries to apply.

The driver's loop, in order: take a ``Ready``; apply its committed entries and ``advance``;
persist its hard state and entries (fsync) and call ``persisted``; only then send its
messages. Committed entries are always already durable locally.

Roles move only along ``TRANSITIONS``, one table keyed by (role, event).

Invariants: the term never goes backwards; at most one vote per term; an entry is committed
only once a quorum of voters has it on disk, and a leader commits by counting only entries of
its own term (Raft §5.4.2; the no-op it appends at the start of its term gets it there).

Not here yet (a later issue): peers. A one-member cluster elects itself on its first tick,
in a term one above anything it has seen, and commits each entry as soon as it is persisted.
Vote requests, log replication, randomised election timeouts (their seed will be an
argument), leader leases, snapshots sent to followers and membership changes will slot in
behind ``step``/``tick``/``messages`` without changing the driver's loop. Until then the
constructor refuses any voter set other than the node itself, and ``step`` drops messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from taskd.errors import NotLeader
from taskd.raft.raftlog import RaftLog
from taskd.raft.types import Entry, HardState, Message, SnapshotMeta


class Role(Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Event(Enum):
    ELECTION_TIMEOUT = "election timeout"
    WON_ELECTION = "won election"
    HIGHER_TERM = "saw a higher term"


TRANSITIONS: dict[tuple[Role, Event], Role] = {
    (Role.FOLLOWER, Event.ELECTION_TIMEOUT): Role.CANDIDATE,
    (Role.CANDIDATE, Event.ELECTION_TIMEOUT): Role.CANDIDATE,
    (Role.CANDIDATE, Event.WON_ELECTION): Role.LEADER,
    (Role.FOLLOWER, Event.HIGHER_TERM): Role.FOLLOWER,
    (Role.CANDIDATE, Event.HIGHER_TERM): Role.FOLLOWER,
    (Role.LEADER, Event.HIGHER_TERM): Role.FOLLOWER,
}


@dataclass(frozen=True, slots=True)
class Ready:
    """Work for the driver. Persist ``hard_state`` and ``entries_to_persist`` (then
    ``persisted``), send ``messages`` only after that, apply ``committed_entries`` (then
    ``advance``)."""

    hard_state: HardState | None
    entries_to_persist: list[Entry]
    messages: list[Message]
    committed_entries: list[Entry]


@dataclass(frozen=True, slots=True)
class MemberStatus:
    id: str
    role: str
    match_index: int
    reachable: bool


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """What ``GET /api/v1/cluster`` shows. ``leader`` is the leader's member id (the node
    layer names members by their gRPC address), or None while there is no leader."""

    id: str
    role: str
    term: int
    leader: str | None
    commit_index: int
    applied_index: int
    members: list[MemberStatus]


class RaftCore:
    def __init__(
        self,
        node_id: str,
        voters: Sequence[str],
        *,
        hard_state: HardState | None = None,
        snapshot: SnapshotMeta | None = None,
        entries: Sequence[Entry] = (),
    ) -> None:
        if list(voters) != [node_id]:
            raise NotImplementedError(
                f"only a one-member cluster is implemented; got voters {list(voters)!r} for "
                f"node {node_id!r}"
            )
        hs = hard_state or HardState()
        self.id = node_id
        self.voters = tuple(voters)
        self.log = RaftLog(snapshot or SnapshotMeta(0, 0), entries, hs.commit)
        # An entry's term may be ahead of the saved term if a crash came between the two.
        self.term = max(hs.term, self.log.last_term)
        self.vote = hs.vote if hs.term == self.term else None
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.match: dict[str, int] = {node_id: self.log.stable}
        self._saved = HardState(hs.term, hs.vote, hs.commit)  # last hard state handed out

    # -- inputs ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Time passes. Without peers there is nobody to wait for: campaign at once."""
        del now  # election timeouts arrive with peers
        if self.role is not Role.LEADER:
            self._campaign()

    def step(self, message: Message) -> None:
        """A message from a peer. A one-member cluster has none: messages from non-voters
        are dropped, as Raft drops them."""
        if message.src not in self.voters or message.dst != self.id:
            return
        raise NotImplementedError("messages between members arrive with replication")

    def propose(self, data: bytes) -> int:
        """Append ``data`` to the log as the leader; returns its index."""
        return self.propose_many((data,)).start

    def propose_many(self, items: Sequence[bytes]) -> range:
        """Append one entry per item; returns their indexes."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        first = self.log.append(self.term, items)
        return range(first, first + len(items))

    def persisted(self, index: int) -> None:
        """The driver has fsynced every entry up to ``index``."""
        self.log.stable_to(index)
        self.match[self.id] = index
        if self.role is Role.LEADER:
            self._maybe_commit()

    def discard_unpersisted(self) -> int:
        """The driver could not persist what it was handed (a full disk) and cut the disk back
        to what was durable: forget every entry not yet persisted, so that the log continues
        from what is on disk and none of them can ever commit, and hand the hard state out
        again with the next ``Ready`` (it may not have reached the disk either; writing it
        twice is harmless). Returns how many entries were dropped."""
        dropped = self.log.truncate_unstable()
        self._saved = HardState(term=-1)  # no real term is -1: the next ready() re-sends it
        return dropped

    def advance(self, ready: Ready) -> None:
        """The driver applied ``ready.committed_entries``."""
        if ready.committed_entries:
            self.log.applied_to(ready.committed_entries[-1].index)

    def compact(self, index: int, term: int) -> None:
        """A durable snapshot covers the log up to ``index``: forget those entries."""
        self.log.compact(SnapshotMeta(index, term))

    # -- outputs --------------------------------------------------------------------------

    def has_ready(self) -> bool:
        log = self.log
        return (
            self._hard_state_changed()
            or log.handed < log.last_index
            or min(log.committed, log.stable) > log.applying
        )

    def ready(self, max_entries: int | None = None) -> Ready:
        """Collect the work accumulated since the last call (at most ``max_entries`` new
        entries to persist). Each piece of work is handed out once."""
        hard_state = None
        if self._hard_state_changed():
            hard_state = HardState(self.term, self.vote, self.log.committed)
            self._saved = hard_state
        return Ready(
            hard_state=hard_state,
            entries_to_persist=self.log.take_unstable(max_entries),
            messages=[],
            committed_entries=self.log.take_committed(),
        )

    def status(self) -> RaftStatus:
        return RaftStatus(
            id=self.id,
            role=self.role.value,
            term=self.term,
            leader=self.leader,
            commit_index=self.log.committed,
            applied_index=self.log.applied,
            members=[
                MemberStatus(
                    id=member,
                    role=self.role.value if member == self.id else Role.FOLLOWER.value,
                    match_index=self.match.get(member, 0),
                    reachable=member == self.id,
                )
                for member in self.voters
            ],
        )

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def applied_index(self) -> int:
        return self.log.applied

    def term_at(self, index: int) -> int:
        return self.log.term_at(index)

    # -- transitions ----------------------------------------------------------------------

    def _become(self, event: Event) -> None:
        try:
            self.role = TRANSITIONS[(self.role, event)]
        except KeyError:
            raise AssertionError(f"no transition from {self.role} on {event}") from None

    def _campaign(self) -> None:
        self._become(Event.ELECTION_TIMEOUT)
        self.term += 1
        self.vote = self.id
        self.leader = None
        votes = {self.id}
        if len(votes) * 2 > len(self.voters):
            self._become(Event.WON_ELECTION)
            self.leader = self.id
            # Raft's no-op: lets this term commit, and with it every earlier entry.
            self.log.append(self.term, (b"",))

    def _maybe_commit(self) -> None:
        matched = sorted((self.match.get(v, 0) for v in self.voters), reverse=True)
        quorum_index = matched[len(self.voters) // 2]
        if quorum_index > self.log.committed and self.log.term_at(quorum_index) == self.term:
            self.log.commit_to(quorum_index)

    def _hard_state_changed(self) -> bool:
        return self.term != self._saved.term or self.vote != self._saved.vote
