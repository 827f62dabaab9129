"""RaftCore: the Raft state machine, without I/O, clock or randomness (etcd-io/raft style).

Theory of operation: the driver owns the disk, the network and the clock; the core owns the
decisions. Inputs are ``propose``/``propose_many``/``propose_conf_change``, ``tick()`` (one
logical tick: the driver turns its clock into ticks), ``step(message)``, ``read_index(ctx)``,
``transfer_leadership``, the driver's reports (``report_unreachable``, ``report_snapshot``,
``snapshot_installed``) and its acknowledgements ``persisted(term, index)`` (entries are on
disk) and ``advance(ready)`` (the committed entries of that ``Ready`` were applied). Output is
``ready()``: the soft state when it changed, a snapshot to install, the hard state and entries
to persist (``must_sync``: fsync them before sending the messages and before answering
anyone), the messages, the committed entries to apply and the read states.

The driver's loop, in order: take a ``Ready``; install its snapshot if any (then
``snapshot_installed``); apply its committed entries and ``advance``; persist its hard state
and entries (fsync when ``must_sync``; entries that start at or below the disk's last index
replace the disk's suffix from there) and call ``persisted``; only then send its messages.
Committed entries are always already durable locally. A message never leaves in a ``Ready``
before the entries it carries or acknowledges were handed out to persist (in that ``Ready`` or
an earlier one), so a failed write (``discard_unpersisted``) leaves no trace on other nodes.

Configuration is a frozen ``RaftConfig``: election timeout and heartbeat in ticks, a seed, the
replication caps, pre-vote and check-quorum. The election timeout of each campaign is drawn
from ``[election_ticks, 2 * election_ticks)`` by a small deterministic generator seeded with
``seed``, so the same seed and the same inputs give the same decisions, tick for tick (give
each member its own seed).

Roles move only along ``TRANSITIONS`` (``roles.py``), one table keyed by (role, event).
``RaftCore`` holds the state and dispatches; the rules live next to it, one concept per
module: ``election.py`` (votes and campaigns), ``follower.py`` (taking appends, heartbeats,
snapshots), ``replication.py`` with ``progress.py`` (the leader's sending and commit),
``readonly.py`` (ReadIndex rounds), ``confstate.py`` (which configuration is in force).

What is implemented:
- Elections: a voter whose timeout passed without hearing
  from a leader first asks for pre-votes for the next term without taking it, and campaigns
  only with a majority of yes; a vote is granted at most once per term to a log at least as
  up to date, and not while the voter heard from a leader within an election timeout
  (check-quorum's lease) unless the campaign is a leadership transfer. A sole voter elects
  itself on its first tick. Learners, joining nodes and removed nodes never campaign (a node
whose removal it does not yet know to be committed still may: see ``election.py``).
- Replication: per-follower probe/replicate/snapshot
  states, pipelined APPENDs within ``max_inflight``/``max_append_entries``/``max_append_bytes``,
  fast backtracking with ``reject_hint``, heartbeats, commit by counting current-term entries
  on a majority of voters, followers commit what the leader says they hold; check-quorum (a
  leader that did not hear from a majority within an election timeout steps down).
- ReadIndex: a read waits for the term's first commit, then for one
  heartbeat round answered by a majority of voters; all reads asked for between two
  ``Ready``s share one round.
- Membership: the configuration is the latest ``CONF_CHANGE`` in the log,
  else the snapshot's, else the bootstrap one; one change at a time, and only once the leader
  committed an entry of its term; learners are promoted by the leader once caught up; a removed
  leader steps down once its removal commits (asking the most caught-up voter to campaign).
- Snapshots to followers behind the compacted log, and their installation on the follower
  (a late offer of a snapshot its log already holds only moves its commit index).
- Leadership transfer (``TIMEOUT_NOW``), and a leader whose disk refused entries it had
  already sent steps down (``discard_unpersisted``): it must never reuse their indexes.

Not implemented: joint consensus (changes go one server at a time), leader leases for reads
(reads always cost a heartbeat round), learners that forward reads, and flow control by bytes
in flight (only messages in flight are counted).

Invariants: the term never goes backwards; at most one vote per term; at most one leader per
term; an entry is committed only once a majority of voters has it on disk, and a leader
commits by counting only entries of its own term (Raft §5.4.2; the no-op it appends at the
start of its term gets it there); a committed entry is never cut; an acknowledgement for an
entry that was since replaced by another term's is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from taskd.errors import NotLeader
from taskd.raft.config import RaftConfig, SplitMix64
from taskd.raft.confstate import ConfChangeError, Membership, changed, promoted
from taskd.raft.election import (
    ask_pre_votes,
    campaign,
    in_lease,
    may_campaign,
    on_vote,
    on_vote_response,
    start_election,
)
from taskd.raft.follower import on_append, on_heartbeat, on_snapshot
from taskd.raft.progress import Progress, ProgressState
from taskd.raft.raftlog import RaftLog
from taskd.raft.readonly import ReadOnly
from taskd.raft.ready import MemberStatus, RaftStatus, Ready
from taskd.raft.replication import Replication
from taskd.raft.roles import FROM_LEADER, TRANSITIONS, Event, Role
from taskd.raft.types import (
    CAMPAIGN_TRANSFER,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageKind,
    ReadState,
    SnapshotMeta,
    SoftState,
    encode_conf,
)

__all__ = [
    "TRANSITIONS",
    "Event",
    "MemberStatus",
    "RaftConfig",
    "RaftCore",
    "RaftStatus",
    "Ready",
    "Role",
]


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
        bootstrap = ConfState(tuple(voters), tuple(learners))  # checks for duplicates
        hs = hard_state or HardState()
        self.id = node_id
        self.config = config or RaftConfig()
        self._rand = SplitMix64(self.config.seed)
        snap = snapshot or SnapshotMeta(0, 0)
        self.log = RaftLog(snap, entries, hs.commit)
        self.membership = Membership(bootstrap, snap, self.log.entries)
        if not snap.voters and self.membership.base.voters:
            # A snapshot sent on must say which configuration it was taken under.
            base = self.membership.base
            self.log.snapshot = replace(snap, voters=base.voters, learners=base.learners)
        # An entry's term may be ahead of the saved term if a crash came between the two.
        self.term = max(hs.term, self.log.last_term)
        self.vote = hs.vote if hs.term == self.term else None
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.votes: dict[str, bool] = {}  # this campaign's answers (pre-vote or vote)
        self.elapsed = 0  # ticks since heard from a leader, voted or campaigned; leader: won
        self.ticks = 0  # ticks since start: when a member was last heard from
        self.timeout = self.random_timeout()
        self.replication = Replication(self)
        self.reads = ReadOnly()
        self._reads_waiting: list[object] = []  # until this term's first commit
        self.transfer_target: str | None = None
        self._transfer_elapsed = 0
        self.to_install: SnapshotMeta | None = None  # accepted, not yet handed out
        self._installing: SnapshotMeta | None = None  # handed out, not yet installed
        self._saved = HardState(hs.term, hs.vote, hs.commit)  # last hard state handed out
        self._soft = SoftState(self.role.value, self.leader)  # last soft state handed out
        # Each message waits until the log is handed out up to its index (an answer never
        # leaves before the entries it acknowledges are persisted).
        self._messages: list[tuple[int, Message]] = []
        self._read_states: list[ReadState] = []

    # -- what the node is -----------------------------------------------------------------

    @property
    def conf(self) -> ConfState:
        """The configuration in force: the latest in the log, else the snapshot's, else the
        bootstrap one."""
        return self.membership.current

    def conf_at(self, index: int) -> ConfState:
        """The configuration as of ``index`` (what a snapshot at ``index`` must carry)."""
        return self.membership.conf_at(index)

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def voters(self) -> tuple[str, ...]:
        return self.conf.voters

    @property
    def peers(self) -> tuple[str, ...]:
        """The other members (voters and learners)."""
        return tuple(m for m in self.conf.members if m != self.id)

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def applied_index(self) -> int:
        return self.log.applied

    def term_at(self, index: int) -> int:
        return self.log.term_at(index)

    # -- inputs ---------------------------------------------------------------------------

    def tick(self) -> None:
        """One logical tick. A leader heartbeats and checks its quorum; a voter campaigns
        once ``timeout`` ticks passed without hearing from a leader or granting a vote (a
        sole voter at once)."""
        self.ticks += 1
        if self.role is Role.LEADER:
            self._tick_leader()
            return
        self.elapsed += 1
        if not may_campaign(self):
            if self.role is not Role.FOLLOWER:
                self.become(Event.REMOVED)
            return
        if self.conf.voters == (self.id,) or self.elapsed >= self.timeout:
            start_election(self)
        elif self.role is Role.PRE_CANDIDATE:
            ask_pre_votes(self)  # a voter still in its lease ignored us: ask again

    def step(self, message: Message) -> None:
        """A message from another node, member or not (a joining node knows no one; a node
        that lags may not know a new member yet). Messages not for this node are dropped, and
        so are campaigns while a leader is heard from (check-quorum's lease: this is what
        keeps a removed node that does not know it from disrupting, with pre-vote)."""
        if message.dst != self.id:
            return
        kind = message.kind
        voting = kind is MessageKind.VOTE or kind is MessageKind.PRE_VOTE
        if message.term > self.term:
            if voting and message.context != CAMPAIGN_TRANSFER and in_lease(self):
                return  # a leader is alive (check-quorum): ignore the campaign
            keep_term = kind is MessageKind.PRE_VOTE or (
                kind is MessageKind.PRE_VOTE_RESPONSE and not message.reject
            )
            if not keep_term:
                from_leader = kind in (
                    MessageKind.APPEND,
                    MessageKind.HEARTBEAT,
                    MessageKind.SNAPSHOT,
                )
                self._become_follower(message.term, message.src if from_leader else None)
        elif message.term < self.term:
            self._answer_stale(message)
            return
        handler = self._HANDLERS.get(kind)
        if handler is not None:
            handler(self, message)

    def propose(self, data: bytes) -> int:
        """Append ``data`` to the log as the leader; returns its index."""
        return self.propose_many((data,)).start

    def propose_many(self, items: Sequence[bytes]) -> range:
        """Append one ``NORMAL`` entry per item; returns their indexes. Raises ``NotLeader``
        on a follower, and ``NotLeader(None)`` while leadership is being transferred."""
        self._check_proposals()
        first = self.log.append(self.term, items)
        return range(first, first + len(items))

    def propose_conf_change(self, add: str | None = None, remove: str | None = None) -> int:
        """Propose one membership change as the leader; returns the index of its entry.

        ``add`` adds a LEARNER (the leader promotes it to voter by itself, with another change,
        once it is within ``config.promote_lag`` entries of the leader's log); ``remove``
        removes a voter or a learner, this leader included (it steps down once the change
        commits). Raises ``NotLeader`` on a follower or while transferring leadership, and
        ``ConfChangeError`` when a change is still uncommitted, ``add`` is already a member,
        ``remove`` is not one or is the last voter."""
        self._check_proposals()
        if (add is None) == (remove is None):
            raise ConfChangeError("name exactly one member, to add or to remove")
        self._check_change_allowed()
        return self._append_conf(changed(self.conf, add=add, remove=remove))

    def transfer_leadership(self, target: str | None = None) -> None:
        """Hand leadership to ``target`` (None: the most caught-up other voter): bring it up
        to date, then send it ``TIMEOUT_NOW`` so that it campaigns at once. Proposals are
        refused (``NotLeader(None)``) while the transfer runs, for at most one election
        timeout. Raises ``NotLeader`` on a follower, ``ConfChangeError`` when the target is
        not a voter or there is no other voter."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if target == self.id:
            return
        progress = self.replication.progress
        if target is None:
            others = [v for v in self.conf.voters if v != self.id and v in progress]
            if not others:
                raise ConfChangeError("there is no other voter to hand leadership to")
            target = max(others, key=lambda v: progress[v].match)
        elif target not in self.conf.voters or target not in progress:
            raise ConfChangeError(f"{target} is not a voter; only a voter can take leadership")
        self.transfer_target = target
        self._transfer_elapsed = 0
        if progress[target].match == self.log.last_index:
            self.send(MessageKind.TIMEOUT_NOW, target)

    def read_index(self, ctx: object) -> None:
        """Ask for a linearizable read: a ``ReadState(index, ctx)`` comes out in a ``Ready``
        once the commit index is known to be current (this leader committed an entry of its
        term) and, with other voters, once a majority answered a heartbeat round sent after
        this call; a read sees everything committed before this call once ``index`` is
        applied."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if not self._commit_is_current():
            self._reads_waiting.append(ctx)
        elif self.conf.voters == (self.id,):
            self._read_states.append(ReadState(self.log.committed, ctx))
        else:
            self.reads.add(self.log.committed, ctx)  # its round starts with the next Ready

    def persisted(self, term: int, index: int) -> None:
        """The driver has fsynced the entries it was handed up to the one at ``index``, of
        ``term``. Ignored if that entry has since been replaced by another term's."""
        if self.log.stable_to(term, index) and self.role is Role.LEADER:
            self.replication.maybe_commit()

    def discard_unpersisted(self) -> int:
        """The driver could not persist what it was handed (a full disk) and cut the disk back
        to what was durable: forget every entry not yet persisted, so that the log continues
        from what is on disk and none of them can ever commit, and hand the hard state out
        again with the next ``Ready`` (it may not have reached the disk either; writing it
        twice is harmless). A leader with peers steps down: a leader that cannot write is of
        no use to them (none of them holds a dropped entry: APPENDs carry only entries handed
        out, and their Ready's messages never left). Returns how many entries were dropped."""
        dropped = self.log.truncate_unstable()
        self._saved = HardState(term=-1)  # no real term is -1: the next ready() re-sends it
        self.drop_messages_past(self.log.last_index)
        if self.membership.cut(self.log.last_index + 1) and self.role is Role.LEADER:
            self.replication.sync_progress()
        if dropped and self.role is Role.LEADER and self.peers:
            self._step_down(Event.DISK_FAULT)
        return dropped

    def advance(self, ready: Ready) -> None:
        """The driver applied ``ready.committed_entries`` (ignored when a snapshot installed
        since covers them)."""
        if ready.committed_entries:
            last = ready.committed_entries[-1].index
            if last > self.log.applied:
                self.log.applied_to(last)

    def compact(self, index: int, term: int) -> None:
        """A durable snapshot covers the log up to ``index``: forget those entries."""
        if index <= self.log.offset:
            return
        conf = self.membership.conf_at(index)
        self.log.compact(SnapshotMeta(index, term, conf.voters, conf.learners))
        self.membership.compacted(index)

    def report_unreachable(self, peer: str) -> None:
        """The driver could not deliver a message to ``peer``: stop pipelining to it and probe."""
        progress = self.replication.progress.get(peer)
        if self.role is Role.LEADER and progress is not None:
            if progress.state is ProgressState.REPLICATE:
                progress.become_probe()

    def report_snapshot(self, peer: str, ok: bool) -> None:
        """The driver finished streaming the snapshot the core asked it to send to ``peer``:
        ``ok`` → wait for the follower's answer; not ok → probe it again later (a heartbeat
        answer resumes it)."""
        progress = self.replication.progress.get(peer)
        if self.role is not Role.LEADER or progress is None:
            return
        if progress.state is ProgressState.SNAPSHOT:
            if not ok:
                progress.pending_snapshot = 0
            progress.become_probe()
            progress.probe_sent = True

    def snapshot_installed(self, meta: SnapshotMeta) -> None:
        """The driver restored the state machine from the snapshot handed out in
        ``Ready.snapshot`` and made it the durable base of its log. (The core's log restarted
        at it when it was accepted; this only closes the hand-over. A report for a snapshot
        other than the one handed out last is ignored.)"""
        if meta == self._installing:
            self._installing = None

    # -- outputs --------------------------------------------------------------------------

    def has_ready(self) -> bool:
        self.replication.flush()
        log = self.log
        return (
            self._hard_state_changed()
            or log.handed < log.last_index
            or min(log.committed, log.stable) > log.applying
            or bool(self._messages)
            or bool(self._read_states)
            or self.to_install is not None
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
        snapshot = self.to_install
        if snapshot is not None:
            self._installing, self.to_install = snapshot, None
        entries = self.log.take_unstable(max_entries)
        self.replication.flush()  # after the hand-out: this Ready's entries may go with it
        messages = self._take_messages()
        read_states = self._read_states
        if read_states:
            self._read_states = []
        return Ready(
            hard_state=hard_state,
            entries_to_persist=entries,
            messages=messages,
            committed_entries=self.log.take_committed(),
            soft_state=soft_state,
            snapshot=snapshot,
            must_sync=hard_state is not None or bool(entries) or snapshot is not None,
            read_states=read_states if read_states else [],
        )

    def status(self) -> RaftStatus:
        conf = self.conf
        learners = set(conf.learners)
        progress = self.replication.progress
        leading = self.role is Role.LEADER
        window = self.config.election_ticks
        members = []
        for member in conf.members:
            if member == self.id:
                match, reachable = self.log.stable, True
            elif leading and member in progress:
                heard = progress[member].last_heard
                match = progress[member].match
                reachable = heard is not None and self.ticks - heard < window
            else:
                match = 0
                reachable = member == self.leader and self.elapsed < window
            if member == self.leader:
                role = Role.LEADER.value
            else:
                role = "learner" if member in learners else Role.FOLLOWER.value
            members.append(MemberStatus(member, role, match, reachable))
        # design.md §3 names three roles: a pre-candidate is campaigning, so "candidate" (a
        # learner shows as such in ``members``).
        own_role = Role.CANDIDATE.value if self.role is Role.PRE_CANDIDATE else self.role.value
        return RaftStatus(
            id=self.id,
            role=own_role,
            term=self.term,
            leader=self.leader,
            commit_index=self.log.committed,
            applied_index=self.log.applied,
            members=members,
        )

    # -- messages -------------------------------------------------------------------------

    def send(
        self,
        kind: MessageKind,
        dst: str,
        *,
        term: int | None = None,
        index: int = 0,
        log_term: int = 0,
        commit: int = 0,
        entries: tuple[Entry, ...] = (),
        reject: bool = False,
        reject_hint: int = 0,
        context: int = 0,
        snapshot: SnapshotMeta | None = None,
        after: int = 0,
    ) -> None:
        """Queue a message; it leaves with the first ``Ready`` that hands out the log up to
        ``after`` (an answer that acknowledges entries waits until they are persisted)."""
        message = Message(
            kind,
            self.id,
            dst,
            self.term if term is None else term,
            index=index,
            log_term=log_term,
            commit=commit,
            entries=entries,
            reject=reject,
            reject_hint=reject_hint,
            context=context,
            snapshot=snapshot,
        )
        self._messages.append((after, message))

    def _take_messages(self) -> list[Message]:
        handed = self.log.handed
        queued = self._messages
        ready = 0
        while ready < len(queued) and queued[ready][0] <= handed:
            ready += 1
        if not ready:
            return []
        self._messages = queued[ready:]
        return [message for _, message in queued[:ready]]

    def drop_messages_past(self, index: int) -> None:
        """Answers that acknowledge entries past ``index`` are no longer true: drop them."""
        self._messages = [(after, m) for after, m in self._messages if after <= index]

    def _answer_stale(self, message: Message) -> None:
        """A message from an older term: tell the sender the current term so that it steps
        down (a stale leader) or catches up (a stale candidate)."""
        kind = message.kind
        if kind in FROM_LEADER:
            self.send(MessageKind.APPEND_RESPONSE, message.src, reject=True)
        elif kind is MessageKind.VOTE:
            self.send(MessageKind.VOTE_RESPONSE, message.src, reject=True)
        elif kind is MessageKind.PRE_VOTE:
            self.send(MessageKind.PRE_VOTE_RESPONSE, message.src, reject=True)

    def _on_timeout_now(self, message: Message) -> None:
        if self.role is not Role.LEADER and may_campaign(self):
            campaign(self, Event.TIMEOUT_NOW)

    def _on_append_response(self, message: Message) -> None:
        if self.role is Role.LEADER:
            self.replication.on_append_response(message)

    def _on_heartbeat_response(self, message: Message) -> None:
        if self.role is Role.LEADER:
            self.replication.on_heartbeat_response(message)

    _HANDLERS: dict[MessageKind, Callable[[RaftCore, Message], None]] = {
        MessageKind.VOTE: on_vote,
        MessageKind.PRE_VOTE: on_vote,
        MessageKind.VOTE_RESPONSE: on_vote_response,
        MessageKind.PRE_VOTE_RESPONSE: on_vote_response,
        MessageKind.APPEND: on_append,
        MessageKind.HEARTBEAT: on_heartbeat,
        MessageKind.SNAPSHOT: on_snapshot,
        MessageKind.TIMEOUT_NOW: _on_timeout_now,
        MessageKind.APPEND_RESPONSE: _on_append_response,
        MessageKind.HEARTBEAT_RESPONSE: _on_heartbeat_response,
    }

    # -- transitions ----------------------------------------------------------------------

    def become(self, event: Event) -> None:
        try:
            self.role = TRANSITIONS[(self.role, event)]
        except KeyError:
            raise AssertionError(f"no transition from {self.role} on {event}") from None

    def random_timeout(self) -> int:
        ticks = self.config.election_ticks
        return ticks + self._rand.below(ticks)

    def win(self) -> None:
        self.become(Event.WON_ELECTION)
        self.leader = self.id
        self.votes = {}
        self.elapsed = 0
        self.replication.start()
        # Raft's no-op: lets this term commit, and with it every earlier entry.
        self.log.append_noop(self.term)

    def _become_follower(self, term: int, leader: str | None) -> None:
        was_leader = self.role is Role.LEADER
        self.become(Event.HIGHER_TERM)
        self.term = term
        self.vote = None
        self.leader = leader
        self.votes = {}
        if was_leader:
            self._stop_leading()

    def _step_down(self, event: Event) -> None:
        self.become(event)
        self.leader = None
        self._stop_leading()

    def _stop_leading(self) -> None:
        self.replication.stop()
        self.reads.clear()
        self._reads_waiting.clear()
        self.transfer_target = None
        self.elapsed = 0
        self.timeout = self.random_timeout()

    def _tick_leader(self) -> None:
        config = self.config
        self.elapsed += 1
        if self.transfer_target is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= config.election_ticks:
                self.transfer_target = None  # gave up: take proposals again
        if (
            config.check_quorum
            and self.elapsed >= config.election_ticks
            and not self.replication.quorum_active()
        ):
            self._step_down(Event.QUORUM_LOST)
            return
        self.replication.tick()

    # -- leader's helpers -----------------------------------------------------------------

    def _check_proposals(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self.transfer_target is not None:
            raise NotLeader(None)

    def conf_change_ready(self) -> bool:
        """Whether a membership change would be taken now: no other change in flight and
        this term has committed an entry (both pass within moments of an election)."""
        return self.membership.last_change <= self.log.committed and self._commit_is_current()

    def _check_change_allowed(self) -> None:
        pending = self.membership.last_change
        if pending > self.log.committed:
            raise ConfChangeError(
                f"a membership change is in progress (entry {pending} is not committed "
                f"yet); retry once it commits"
            )
        if not self._commit_is_current():
            raise ConfChangeError(
                "this leader has not committed an entry of its term yet; retry in a moment"
            )

    def _append_conf(self, conf: ConfState) -> int:
        index = self.log.append_conf(self.term, encode_conf(conf))
        self.membership.appended(self.log.slice(index, index))
        self.replication.sync_progress()
        if self.transfer_target is not None and self.transfer_target not in conf.voters:
            self.transfer_target = None
        return index

    def on_commit(self) -> None:
        """The leader's commit index moved: release the reads that waited for it, and step
        down if this commit removed the leader."""
        if self._reads_waiting and self._commit_is_current():
            waiting, self._reads_waiting = self._reads_waiting, []
            for ctx in waiting:
                self.read_index(ctx)
        if self.membership.last_change <= self.log.committed and self.id not in self.conf.voters:
            self.replication.hand_over()
            self._step_down(Event.REMOVED)
            return
        self.maybe_promote()

    def maybe_promote(self) -> None:
        """Promote a caught-up learner, when no other change is in flight."""
        if self.transfer_target is not None:
            return
        if self.membership.last_change > self.log.committed or not self._commit_is_current():
            return
        for learner in self.conf.learners:
            progress = self.replication.progress.get(learner)
            if progress is not None and self._caught_up(progress):
                self._append_conf(promoted(self.conf, learner))
                return

    def _caught_up(self, progress: Progress) -> bool:
        return (
            progress.state is ProgressState.REPLICATE
            and progress.match > 0
            and self.log.last_index - progress.match <= self.config.promote_lag
        )

    def read_states_confirmed(self, states: list[ReadState]) -> None:
        self._read_states.extend(states)

    def _commit_is_current(self) -> bool:
        """Whether this term has committed an entry (the snapshot's term counts at its
        index: a leader may have compacted up to its commit index)."""
        return self.log.term_at(self.log.committed) == self.term

    def _hard_state_changed(self) -> bool:
        return self.term != self._saved.term or self.vote != self._saved.vote

    def _soft_state_changed(self) -> bool:
        return self.role.value != self._soft.role or self.leader != self._soft.leader
