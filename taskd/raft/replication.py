"""The leader's side of replication: what it sends each member, and what it learns back.

Theory of operation: ``Replication`` belongs to a ``RaftCore`` and acts only while it leads.
For every other member (voters and learners) it keeps a ``Progress`` (``progress.py``).
Sending is lazy: proposals, answers and commits only change the progress, and ``flush`` —
called when the driver asks for a ``Ready``, once its entries are handed out — turns it into
messages, so everything proposed between two rounds leaves in as few APPENDs as the caps
allow, and every read asked for between two rounds shares one heartbeat round. An APPEND
carries only entries already handed out to persist (at the latest in the same ``Ready``, whose
messages leave only once its write succeeded): an entry a failed write dropped never reached
a follower, so "not applied" stays true for its proposer.

- a member in ``REPLICATE`` gets APPENDs from ``next`` on, pipelined up to ``max_inflight``
  unacknowledged, each at most ``max_append_entries`` entries and ``max_append_bytes``;
- a member in ``PROBE`` gets one APPEND, then nothing until it answers (or answers a
  heartbeat); a refusal carries the follower's hint (its last index at or below the refused
  one whose term is at most the leader's term there) and the leader jumps to the last index
  of its own log with a term at most the follower's term there: one round trip per
  diverging term, not per entry; when the hint is a position the leader holds with the same
  term, the logs agree there and streaming resumes from it at once (go-back-N);
- a member whose ``next`` falls inside the compacted log gets a ``SNAPSHOT`` (the meta of the
  leader's snapshot; the driver streams the file) and nothing else until the driver reports;
- a member that was not yet told the current commit index gets an APPEND (empty if need be),
  so followers apply soon after the leader commits.

Heartbeats go to every member each ``heartbeat_ticks``, carrying ``min(commit, match)`` and
the ReadIndex round in flight (``readonly.py``). The commit index is the highest index a
majority of voters hold (the leader counts what it persisted) whose entry is of the current
term; learners receive everything and count for nothing.

Invariants: nothing is sent to a member outside the configuration; the commit index never
counts a learner or an entry of an older term by itself; an answer from a member that left
the configuration is ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskd.raft.confstate import has_quorum, quorum_index
from taskd.raft.progress import Progress, ProgressState
from taskd.raft.types import Message, MessageKind

if TYPE_CHECKING:
    from taskd.raft.core import RaftCore


class Replication:
    def __init__(self, core: RaftCore) -> None:
        self.core = core
        self.progress: dict[str, Progress] = {}
        self.heartbeat_elapsed = 0

    # -- leadership -----------------------------------------------------------------------

    def start(self) -> None:
        """The core just won: every member is probed from the end of the leader's log."""
        self.progress = {}
        self.heartbeat_elapsed = 0
        self.sync_progress(next_index=self.core.log.last_index + 1)

    def stop(self) -> None:
        self.progress = {}

    def sync_progress(self, next_index: int | None = None) -> None:
        """Track exactly the members of the configuration in force. A new member is probed
        from the leader's last entry (the change that added it)."""
        core = self.core
        members = [m for m in core.conf.members if m != core.id]
        for gone in [m for m in self.progress if m not in members]:
            del self.progress[gone]
        start = max(core.log.last_index, 1) if next_index is None else next_index
        for member in members:
            if member not in self.progress:
                self.progress[member] = Progress(start, core.config.max_inflight)

    def tick(self) -> None:
        self.heartbeat_elapsed += 1
        if self.heartbeat_elapsed >= self.core.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self.heartbeat(self.core.reads.context)
        self.core.maybe_promote()

    def heard_within(self, member: str, ticks: int) -> bool:
        progress = self.progress.get(member)
        if progress is None or progress.last_heard is None:
            return False
        return self.core.ticks - progress.last_heard < ticks

    def quorum_active(self) -> bool:
        """Whether a majority of voters (this leader included) answered within the last
        election timeout."""
        core = self.core
        window = core.config.election_ticks
        active = [core.id] + [m for m in self.progress if self.heard_within(m, window)]
        return has_quorum(core.conf.voters, active)

    def hand_over(self) -> None:
        """This leader is leaving: ask the most caught-up voter to campaign at once."""
        core = self.core
        last = core.log.last_index
        for voter in core.conf.voters:
            progress = self.progress.get(voter)
            if progress is not None and progress.match == last:
                core.send(MessageKind.TIMEOUT_NOW, voter)
                return

    # -- sending --------------------------------------------------------------------------

    def flush(self) -> None:
        """Turn the progress into messages: entries not yet sent, commits not yet told."""
        core = self.core
        if not core.is_leader:
            return
        self.start_read_round()
        log = core.log
        for member, progress in self.progress.items():
            # Each APPEND in REPLICATE moves ``next`` on or tells the commit; PROBE and
            # SNAPSHOT pause after one message: the loop ends.
            while not progress.paused() and (
                progress.next <= log.handed or progress.sent_commit < log.committed
            ):
                self.send_append(member, progress)

    def send_append(self, member: str, progress: Progress) -> None:
        core = self.core
        log = core.log
        config = core.config
        previous = progress.next - 1
        if previous < log.offset:
            snapshot = log.snapshot
            core.send(
                MessageKind.SNAPSHOT,
                member,
                index=snapshot.index,
                log_term=snapshot.term,
                snapshot=snapshot,
            )
            progress.become_snapshot(snapshot.index)
            return
        # Only entries handed out to persist: they leave with their own Ready's messages at
        # the earliest, which the driver sends only once that write succeeded, so an entry
        # a failed write dropped (``discard_unpersisted``) never reached anyone.
        count = min(config.max_append_entries, log.handed - progress.next + 1)
        entries = (
            log.slice_limited(progress.next, count, config.max_append_bytes) if count > 0 else []
        )
        core.send(
            MessageKind.APPEND,
            member,
            index=previous,
            log_term=log.term_at(previous),
            commit=log.committed,
            entries=tuple(entries),
        )
        progress.sent_commit = log.committed
        progress.sent(entries[-1].index if entries else None)

    def heartbeat(self, context: int) -> None:
        core = self.core
        committed = core.log.committed
        for member, progress in self.progress.items():
            core.send(
                MessageKind.HEARTBEAT,
                member,
                commit=min(committed, progress.match),
                context=context,
            )

    def start_read_round(self) -> None:
        """Confirm the queued reads with a heartbeat round, unless one is in flight."""
        round_id = self.core.reads.start(self.core.id)
        if round_id:
            self.heartbeat(round_id)

    # -- answers --------------------------------------------------------------------------

    def _heard(self, message: Message) -> Progress | None:
        progress = self.progress.get(message.src)
        if progress is not None:
            progress.last_heard = self.core.ticks
        return progress

    def on_append_response(self, message: Message) -> None:
        progress = self._heard(message)
        if progress is None:
            return
        core = self.core
        log = core.log
        if message.reject:
            hint = message.reject_hint
            agreed = (
                message.log_term > 0
                and log.offset <= hint <= log.last_index
                and log.term_at(hint) == message.log_term
            )
            if message.log_term > 0 and not agreed:
                hint = log.last_at_or_below_term(hint, message.log_term)
            progress.rejected(message.index, hint, agreed)
            return
        was_probe = progress.state is ProgressState.PROBE
        if progress.update(message.index) or (was_probe and progress.match == message.index):
            if progress.state is ProgressState.PROBE:
                progress.become_replicate()
            elif progress.state is ProgressState.SNAPSHOT:
                if progress.match >= log.offset:
                    progress.become_replicate()
                else:
                    progress.become_probe()  # compacted further meanwhile: snapshot again
            else:
                progress.inflights.free_to(message.index)
            self.maybe_commit()
            if not core.is_leader:
                return
            if core.transfer_target == message.src and progress.match == log.last_index:
                core.send(MessageKind.TIMEOUT_NOW, message.src)
            if message.src in core.conf.learners:
                core.maybe_promote()

    def on_heartbeat_response(self, message: Message) -> None:
        progress = self._heard(message)
        if progress is None:
            return
        core = self.core
        progress.probe_sent = False
        if progress.state is ProgressState.REPLICATE and progress.inflights.full():
            progress.inflights.free_first()
        if progress.match < core.log.last_index and not progress.paused():
            self.send_append(message.src, progress)  # an APPEND may have been lost
        elif core.transfer_target == message.src and progress.match == core.log.last_index:
            core.send(MessageKind.TIMEOUT_NOW, message.src)  # the first may have been lost
        if message.context:
            confirmed = core.reads.ack(message.src, message.context, core.conf.voters)
            if confirmed:
                core.read_states_confirmed(confirmed)
                self.start_read_round()

    def maybe_commit(self) -> None:
        """Commit the highest index a majority of voters hold, if it is of this term."""
        core = self.core
        log = core.log
        match = {member: progress.match for member, progress in self.progress.items()}
        match[core.id] = log.stable
        index = min(quorum_index(core.conf.voters, match), log.last_index)
        if index > log.committed and log.term_at(index) == core.term:
            log.commit_to(index)
            core.on_commit()
