"""RaftCore: the Raft state machine, without I/O, clock or randomness (etcd-io/raft style).

Theory of operation: the driver owns the disk, the network and the clock; the core owns the
decisions. Inputs are ``propose``/``propose_many``, ``tick()`` (one logical tick: the driver
turns its clock into ticks), ``step(message)``, ``read_index(ctx)`` and the driver's
acknowledgements ``persisted(term, index)`` (entries are on disk) and ``advance(ready)`` (the
committed entries of that ``Ready`` were applied). Output is ``ready()``: the soft state when
it changed, the hard state and entries to persist (``must_sync``: fsync them before sending
the messages and before answering anyone), the messages, the committed entries to apply and
the read states. ``Ready.snapshot`` is always None today (nothing installs or sends one).

The driver's loop, in order: take a ``Ready``; apply its committed entries and ``advance``;
persist its hard state and entries (fsync when ``must_sync``; entries that start at or below
the disk's last index replace the disk's suffix from there) and call ``persisted``; only then
send its messages. Committed entries are always already durable locally.

Configuration is a frozen ``RaftConfig``: election timeout and heartbeat in ticks and a seed.
The election timeout of each term is drawn from ``[election_ticks, 2 * election_ticks)`` by a
small deterministic generator seeded with ``seed``, so the same seed and the same inputs give
the same decisions, tick for tick (give each member its own seed).

Roles move only along ``TRANSITIONS``, one table keyed by (role, event).

What is implemented: a one-member cluster elects itself on its first tick, in a term one
above anything it has seen, appends a ``NOOP`` entry and commits each entry as soon as it is
persisted; ``read_index`` is answered as soon as the leader has committed an entry of its own
term (at once, after its no-op). With peers in ``voters``: a follower or candidate campaigns
after its randomised timeout (vote requests to every peer), grants at most one vote per term
to a candidate whose log is at least as up to date, becomes leader on a quorum of votes
(appending its no-op), steps down on any higher term, and as a follower takes a leader's
appends: it checks the entry before them, cuts its uncommitted tail at the first conflicting
term, appends the rest and follows the leader's commit index. What is not implemented yet
(issue 7): the leader's side of replication (it sends no appends or heartbeats and ignores
their answers, so with peers it commits nothing), ``read_index`` on a leader with peers
(raises ``NotImplementedError``), snapshots sent to followers and membership changes.

Invariants: the term never goes backwards; at most one vote per term; an entry is committed
only once a quorum of voters has it on disk, and a leader commits by counting only entries of
its own term (Raft §5.4.2; the no-op it appends at the start of its term gets it there); a
committed entry is never cut; an acknowledgement for an entry that was since replaced by
another term's is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from taskd.errors import NotLeader
from taskd.raft.raftlog import RaftLog
from taskd.raft.types import (
    ConfState,
    Entry,
    HardState,
    Message,
    MessageKind,
    ReadState,
    SnapshotMeta,
    SoftState,
)


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Event(Enum):
    ELECTION_TIMEOUT = "election timeout"
    WON_ELECTION = "won election"
    HIGHER_TERM = "saw a higher term"
    LEADER_SEEN = "heard from the leader of its term"


TRANSITIONS: dict[tuple[Role, Event], Role] = {
    (Role.FOLLOWER, Event.ELECTION_TIMEOUT): Role.CANDIDATE,
    (Role.CANDIDATE, Event.ELECTION_TIMEOUT): Role.CANDIDATE,
    (Role.CANDIDATE, Event.WON_ELECTION): Role.LEADER,
    (Role.FOLLOWER, Event.HIGHER_TERM): Role.FOLLOWER,
    (Role.CANDIDATE, Event.HIGHER_TERM): Role.FOLLOWER,
    (Role.LEADER, Event.HIGHER_TERM): Role.FOLLOWER,
    (Role.FOLLOWER, Event.LEADER_SEEN): Role.FOLLOWER,
    (Role.CANDIDATE, Event.LEADER_SEEN): Role.FOLLOWER,
}


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """How the core counts time, in ticks of the driver's clock, and the seed of its
    randomised election timeouts; how much a leader sends per message and per follower; when
    a learner is promoted; whether pre-vote and check-quorum are on."""

    election_ticks: int = 10
    heartbeat_ticks: int = 1
    seed: int = 0
    promote_lag: int = 1000  # a learner this close to the leader's last index becomes a voter
    max_append_entries: int = 1024  # per APPEND message
    max_append_bytes: int = 1 << 20  # per APPEND message (at least one entry is always sent)
    max_inflight: int = 64  # unacknowledged APPEND messages per follower (pipelining)
    pre_vote: bool = True
    check_quorum: bool = True

    def __post_init__(self) -> None:
        if self.heartbeat_ticks < 1 or self.election_ticks <= self.heartbeat_ticks:
            raise ValueError(
                f"need 1 <= heartbeat_ticks < election_ticks, got heartbeat "
                f"{self.heartbeat_ticks} and election {self.election_ticks}"
            )
        for name in ("max_append_entries", "max_append_bytes", "max_inflight"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.promote_lag < 0:
            raise ValueError(f"promote_lag must be at least 0, got {self.promote_lag}")


class _SplitMix64:
    """A tiny deterministic generator (SplitMix64): the core may not use ``random``."""

    __slots__ = ("_state",)
    _MASK = (1 << 64) - 1

    def __init__(self, seed: int) -> None:
        self._state = seed & self._MASK

    def below(self, bound: int) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & self._MASK
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self._MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self._MASK
        return (z ^ (z >> 31)) % bound


@dataclass(frozen=True, slots=True)
class Ready:
    """Work for the driver. Persist ``hard_state`` and ``entries_to_persist`` (fsync first when
    ``must_sync``; then ``persisted``), send ``messages`` only after that, apply
    ``committed_entries`` (then ``advance``). ``entries_to_persist`` may start at or below the
    last index on disk: they replace the disk's entries from their first index on.
    ``soft_state`` is set when role or leader changed; ``snapshot`` is always None today."""

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
        learners: Sequence[str] = (),
        config: RaftConfig | None = None,
        hard_state: HardState | None = None,
        snapshot: SnapshotMeta | None = None,
        entries: Sequence[Entry] = (),
    ) -> None:
        if node_id not in voters or len(set(voters)) != len(voters):
            raise ValueError(f"voters {list(voters)!r} must name {node_id!r} once, no duplicates")
        hs = hard_state or HardState()
        self.id = node_id
        self.voters = tuple(voters)
        self.peers = tuple(v for v in voters if v != node_id)
        self.config = config or RaftConfig()
        self._rand = _SplitMix64(self.config.seed)
        self.log = RaftLog(snapshot or SnapshotMeta(0, 0), entries, hs.commit)
        # An entry's term may be ahead of the saved term if a crash came between the two.
        self.term = max(hs.term, self.log.last_term)
        self.vote = hs.vote if hs.term == self.term else None
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.match: dict[str, int] = {node_id: self.log.stable}
        self.votes: dict[str, bool] = {}  # this term's answers, while a candidate
        self.elapsed = 0  # ticks since the last reset (heard from a leader, voted, campaigned)
        self.timeout = self._random_timeout()
        self._saved = HardState(hs.term, hs.vote, hs.commit)  # last hard state handed out
        self._soft = SoftState(self.role.value, self.leader)  # last soft state handed out
        self._messages: list[Message] = []
        self._read_states: list[ReadState] = []
        self._pending_reads: list[object] = []  # waiting for this term's first commit

    # -- inputs ---------------------------------------------------------------------------

    def tick(self) -> None:
        """One logical tick. Alone, a node need not wait for anybody: it campaigns at once.
        With peers, a follower or candidate campaigns once ``timeout`` ticks passed without
        hearing from a leader or granting a vote."""
        if self.role is Role.LEADER:
            return  # heartbeats arrive with the leader's side of replication
        if not self.peers:
            self._campaign()
            return
        self.elapsed += 1
        if self.elapsed >= self.timeout:
            self._campaign()

    def step(self, message: Message) -> None:
        """A message from a peer. Messages from non-voters, or not for this node, are dropped;
        so are answers from older terms."""
        if message.src not in self.peers or message.dst != self.id:
            return
        if message.term > self.term:
            self._become(Event.HIGHER_TERM)
            self.term = message.term
            self.vote = None
            self.leader = None
            self.votes = {}
            self._pending_reads.clear()
        kind = message.kind
        if message.term < self.term:
            if kind is MessageKind.VOTE or kind is MessageKind.APPEND:
                answer = (
                    MessageKind.VOTE_RESPONSE
                    if kind is MessageKind.VOTE
                    else MessageKind.APPEND_RESPONSE
                )
                self._send(answer, message.src, reject=True)
            return
        if kind is MessageKind.VOTE:
            self._on_vote(message)
        elif kind is MessageKind.VOTE_RESPONSE:
            self._on_vote_response(message)
        elif kind is MessageKind.APPEND:
            self._on_append(message)
        # APPEND_RESPONSE and SNAPSHOT: the leader's side of replication is not here yet.

    def propose_conf_change(self, add: str | None = None, remove: str | None = None) -> int:
        """Propose one membership change as the leader; returns the index of its entry.

        ``add`` adds a LEARNER (the leader promotes it to voter by itself, with another change,
        once it is within ``config.promote_lag`` entries of the leader's log); ``remove``
        removes a voter or a learner, this leader included (it steps down once the change
        commits). Raises ``NotLeader`` on a follower or while transferring leadership, and
        ``ConfChangeError`` when a change is still uncommitted, ``add`` is already a member,
        ``remove`` is not one or is the last voter."""
        raise NotImplementedError("h7-core: membership changes")

    def transfer_leadership(self, target: str | None = None) -> None:
        """Hand leadership to ``target`` (None: the most caught-up other voter): bring it up
        to date, then send it ``TIMEOUT_NOW`` so that it campaigns at once. Proposals are
        refused (``NotLeader(None)``) while the transfer runs, for at most one election
        timeout. Raises ``NotLeader`` on a follower, ``ConfChangeError`` when the target is
        not a voter or there is no other voter."""
        raise NotImplementedError("h7-core: leadership transfer")

    def report_unreachable(self, peer: str) -> None:
        """The driver could not deliver a message to ``peer``: stop pipelining to it and probe."""
        raise NotImplementedError("h7-core: replication")

    def report_snapshot(self, peer: str, ok: bool) -> None:
        """The driver finished streaming the snapshot the core asked it to send to ``peer``:
        ``ok`` → wait for the follower's answer; not ok → probe it again later."""
        raise NotImplementedError("h7-core: snapshots")

    def snapshot_installed(self, meta: SnapshotMeta) -> None:
        """The driver restored the state machine from the snapshot handed out in
        ``Ready.snapshot`` and made it the durable base of its log."""
        raise NotImplementedError("h7-core: snapshots")

    @property
    def conf(self) -> ConfState:
        """The configuration in force: the latest in the log, else the snapshot's, else the
        bootstrap one."""
        raise NotImplementedError("h7-core: membership")

    def conf_at(self, index: int) -> ConfState:
        """The configuration as of ``index`` (what a snapshot at ``index`` must carry)."""
        raise NotImplementedError("h7-core: membership")

    def propose(self, data: bytes) -> int:
        """Append ``data`` to the log as the leader; returns its index."""
        return self.propose_many((data,)).start

    def propose_many(self, items: Sequence[bytes]) -> range:
        """Append one ``NORMAL`` entry per item; returns their indexes."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        first = self.log.append(self.term, items)
        return range(first, first + len(items))

    def read_index(self, ctx: object) -> None:
        """Ask for a linearizable read: a ``ReadState(index, ctx)`` comes out in a ``Ready``
        once the commit index is known to be current (this leader committed an entry of its
        term); a read sees everything committed before this call once ``index`` is applied."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self.peers:
            raise NotImplementedError("a leader with peers confirms reads with replication")
        if self._commit_is_current():
            self._read_states.append(ReadState(self.log.committed, ctx))
        else:
            self._pending_reads.append(ctx)

    def persisted(self, term: int, index: int) -> None:
        """The driver has fsynced the entries it was handed up to the one at ``index``, of
        ``term``. Ignored if that entry has since been replaced by another term's."""
        if not self.log.stable_to(term, index):
            return
        self.match[self.id] = self.log.stable
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
            or bool(self._messages)
            or bool(self._read_states)
            or self._soft_state_changed()
        )

    def ready(self, max_entries: int | None = None) -> Ready:
        """Collect the work accumulated since the last call (at most ``max_entries`` new
        entries to persist). Each piece of work is handed out once."""
        hard_state = None
        if self._hard_state_changed():
            hard_state = HardState(self.term, self.vote, self.log.committed)
            self._saved = hard_state
        soft_state = None
        if self._soft_state_changed():
            soft_state = self._soft = SoftState(self.role.value, self.leader)
        entries = self.log.take_unstable(max_entries)
        messages = self._messages
        read_states = self._read_states
        if messages:
            self._messages = []
        if read_states:
            self._read_states = []
        return Ready(
            hard_state=hard_state,
            entries_to_persist=entries,
            messages=messages if messages else [],
            committed_entries=self.log.take_committed(),
            soft_state=soft_state,
            snapshot=None,
            must_sync=hard_state is not None or bool(entries),
            read_states=read_states if read_states else [],
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

    # -- messages -------------------------------------------------------------------------

    def _send(
        self,
        kind: MessageKind,
        dst: str,
        *,
        index: int = 0,
        log_term: int = 0,
        reject: bool = False,
    ) -> None:
        self._messages.append(
            Message(kind, self.id, dst, self.term, index=index, log_term=log_term, reject=reject)
        )

    def _on_vote(self, message: Message) -> None:
        log = self.log
        up_to_date = message.log_term > log.last_term or (
            message.log_term == log.last_term and message.index >= log.last_index
        )
        grant = self.vote in (None, message.src) and up_to_date and self.leader is None
        if grant:
            self.vote = message.src
            self.elapsed = 0
        self._send(MessageKind.VOTE_RESPONSE, message.src, reject=not grant)

    def _on_vote_response(self, message: Message) -> None:
        if self.role is not Role.CANDIDATE:
            return
        self.votes[message.src] = not message.reject
        if sum(self.votes.values()) * 2 > len(self.voters):
            self._win()

    def _on_append(self, message: Message) -> None:
        if self.role is Role.LEADER:
            raise AssertionError(f"two leaders in term {self.term}: {self.id}, {message.src}")
        self._become(Event.LEADER_SEEN)
        self.leader = message.src
        self.elapsed = 0
        log = self.log
        if not log.matches(message.index, message.log_term):
            self._send(MessageKind.APPEND_RESPONSE, message.src, index=message.index, reject=True)
            return
        log.merge(message.entries)
        last_new = message.index + len(message.entries)
        if message.commit > log.committed:
            log.commit_to(min(message.commit, last_new))
        self._send(MessageKind.APPEND_RESPONSE, message.src, index=last_new)

    # -- transitions ----------------------------------------------------------------------

    def _become(self, event: Event) -> None:
        try:
            self.role = TRANSITIONS[(self.role, event)]
        except KeyError:
            raise AssertionError(f"no transition from {self.role} on {event}") from None

    def _random_timeout(self) -> int:
        ticks = self.config.election_ticks
        return ticks + self._rand.below(ticks)

    def _campaign(self) -> None:
        self._become(Event.ELECTION_TIMEOUT)
        self.term += 1
        self.vote = self.id
        self.leader = None
        self.elapsed = 0
        self.timeout = self._random_timeout()
        self.votes = {self.id: True}
        if len(self.votes) * 2 > len(self.voters):
            self._win()
            return
        for peer in self.peers:
            self._send(
                MessageKind.VOTE, peer, index=self.log.last_index, log_term=self.log.last_term
            )

    def _win(self) -> None:
        self._become(Event.WON_ELECTION)
        self.leader = self.id
        self.votes = {}
        # Raft's no-op: lets this term commit, and with it every earlier entry.
        self.log.append_noop(self.term)

    def _maybe_commit(self) -> None:
        matched = sorted((self.match.get(v, 0) for v in self.voters), reverse=True)
        quorum_index = matched[len(self.voters) // 2]
        if quorum_index > self.log.committed and self.log.term_at(quorum_index) == self.term:
            self.log.commit_to(quorum_index)
            if self._pending_reads:
                index = self.log.committed
                self._read_states.extend(ReadState(index, ctx) for ctx in self._pending_reads)
                self._pending_reads.clear()

    def _commit_is_current(self) -> bool:
        committed = self.log.committed
        return committed > self.log.offset and self.log.term_at(committed) == self.term

    def _hard_state_changed(self) -> bool:
        return self.term != self._saved.term or self.vote != self._saved.vote

    def _soft_state_changed(self) -> bool:
        return self.role.value != self._soft.role or self.leader != self._soft.leader
