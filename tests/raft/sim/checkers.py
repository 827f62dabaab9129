"""Raft's safety properties, checked after every event of a run.

Theory of operation: the checker keeps a global record of what the cluster has done, and
every node's behaviour is compared with it as it happens, so each check costs only the new
work (never a rescan of every log after every event):

- election safety: ``leaders`` maps every term to the one member ever seen leading it (after
  each event, every live node whose core is leader is looked at);
- log matching, on the durable logs: every entry any disk ever held is recorded by (index,
  term) with its kind, data and the term of the entry before it. If two disks hold the same
  (index, term), they hold the same entry after the same term, and by induction the same
  prefix: one table lookup per entry written;
- committed entries: whenever a node's commit index moves, the entries it now calls committed
  are recorded; a committed index that later names another entry is a violation. A leader's
  commit also records the term it committed in (``commit_term``, the smallest seen);
- leader completeness: a node seen leading term T for the first time must hold every entry
  committed in a term below T (checked against its whole log above its snapshot), and an entry
  newly committed in term t must be in the log of every live leader of a term above t;
- state machine safety: the entry applied at each index, and the state machine's chain hash
  after it, are the same on every node (and a restored snapshot's chain matches what was
  applied at its index); a command applied twice on one node is a violation;
- commit on a durable majority: when a leader's commit index moves, a majority of the
  voters of its configuration hold that entry on disk (learners never count);
- one membership change at a time: a leader's log never holds two configuration changes
  above the highest commit index any node has reached;
- acknowledged appends stay: once a node answered a leader of term t that it holds up to
  index i, its log does not end below i while its term is still t (crashes included: the
  answer went out only after the fsync);
- linearizable reads: a ``ReadState`` must not be below the highest index acknowledged to a
  client before the read was asked (``read_floor``, set by the clients).

A violation raises ``Violation`` naming the invariant, which ends the run with its trace.
"""

from __future__ import annotations

from taskd.raft import Entry, EntryKind, RaftCore, ReadState
from tests.raft.sim.node import SimNode
from tests.raft.sim.statemachine import SMSnapshot
from tests.raft.sim.trace import Trace


class Violation(Exception):
    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


def _entry(entry: Entry) -> str:
    return f"{entry.index}/{entry.term} {entry.kind.name} {entry.data[:24]!r}"


def _log_entry(core: RaftCore, index: int) -> Entry | None:
    log = core.log
    if index <= log.offset or index > log.last_index:
        return None
    found = log.slice(index, index)
    return found[0] if found else None


def _holds(node: SimNode, entry: Entry) -> bool:
    disk = node.disk
    return disk.snapshot.index >= entry.index or disk.term_at(entry.index) == entry.term


class SafetyChecker:
    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.leaders: dict[int, str] = {}
        self.durable: dict[tuple[int, int], tuple[EntryKind, bytes, int | None]] = {}
        self.committed: dict[int, Entry] = {}
        self.commit_term: dict[int, int] = {}
        self.applied: dict[int, Entry] = {}
        self.chain: dict[int, bytes] = {}
        self.read_floor: dict[object, int] = {}
        self.last_conf_change: Entry | None = None  # the latest committed CONF_CHANGE
        self.max_committed = 0
        self.reads_checked = 0
        self._seen_commit: dict[str, tuple[int, int]] = {}  # node -> (incarnation, index)
        self._voters_seen: dict[str, tuple[str, ...]] = {}  # leader -> its voters last seen
        # leader -> (term, log end scanned, indexes of its CONF_CHANGE entries above its offset)
        self._conf_entries: dict[str, tuple[int, int, list[int]]] = {}

    # -- NodeObserver ---------------------------------------------------------------------

    def on_durable(self, node: SimNode, entries: list[Entry]) -> None:
        disk = node.disk
        for entry in entries:
            if entry.index <= disk.snapshot.index:
                continue
            prev = disk.term_at(entry.index - 1)
            key = (entry.index, entry.term)
            value = (entry.kind, entry.data, prev)
            known = self.durable.get(key)
            if known is None:
                self.durable[key] = value
                continue
            kind, data, known_prev = known
            if (kind, data) != (entry.kind, entry.data) or (
                prev is not None and known_prev is not None and prev != known_prev
            ):
                raise Violation(
                    "log matching",
                    f"{node.id}'s disk holds {_entry(entry)} after term {prev}, another disk "
                    f"held {entry.index}/{entry.term} {kind.name} {data[:24]!r} after term "
                    f"{known_prev}",
                )
            if known_prev is None and prev is not None:
                self.durable[key] = (kind, data, prev)

    def on_apply(self, node: SimNode, entry: Entry, fresh: bool) -> None:
        if not fresh:
            raise Violation(
                "exactly once", f"{node.id} applied {_entry(entry)}, a command it had applied"
            )
        index = entry.index
        known = self.applied.get(index)
        if known is None:
            self.applied[index] = entry
            self.chain[index] = node.sm.chain
        elif known != entry:
            raise Violation(
                "state machine safety",
                f"{node.id} applied {_entry(entry)} where another node applied {_entry(known)}",
            )
        elif self.chain[index] != node.sm.chain:
            raise Violation(
                "state machine safety",
                f"{node.id}'s state after {index} differs from another node's (chain "
                f"{node.sm.chain.hex()} vs {self.chain[index].hex()}): an earlier entry differed",
            )
        committed = self.committed.get(index)
        if committed is not None and committed != entry:
            raise Violation(
                "state machine safety",
                f"{node.id} applied {_entry(entry)}, but {_entry(committed)} was committed there",
            )

    def on_restore(self, node: SimNode, snapshot: SMSnapshot) -> None:
        known = self.chain.get(snapshot.index)
        if known is None:
            self.chain[snapshot.index] = snapshot.chain
        elif known != snapshot.chain:
            raise Violation(
                "state machine safety",
                f"{node.id} restored a snapshot at {snapshot.index} whose state differs from "
                f"what was applied there",
            )

    def on_read_state(self, node: SimNode, state: ReadState) -> None:
        floor = self.read_floor.pop(state.ctx, None)
        if floor is None:
            return
        self.reads_checked += 1
        self.trace.log(node.id, "read %s -> index %d (floor %d)", state.ctx, state.index, floor)
        if state.index < floor:
            raise Violation(
                "linearizable read",
                f"{node.id} answered read {state.ctx!r} with index {state.index}, but index "
                f"{floor} had been acknowledged before the read was asked",
            )

    # -- after every event ----------------------------------------------------------------

    def after_event(self, everyone: dict[str, SimNode]) -> None:
        live = [node for node in everyone.values() if node.core is not None]
        for node in live:
            core = node.core
            assert core is not None
            if node.is_leader():
                self._check_leader(node, core)
            self._check_commit(node, core, live, everyone)
            if node.is_leader():
                self._check_one_change_at_a_time(node, core)
                self._voters_seen[node.id] = core.conf.voters
            term, index = node.acked_append
            if term == core.term and core.log.last_index < index:
                raise Violation(
                    "acknowledged append lost",
                    f"{node.id} told the leader of term {term} it holds up to {index}, but its "
                    f"log now ends at {core.log.last_index} (snapshot {core.log.offset})",
                )

    def _check_leader(self, node: SimNode, core: RaftCore) -> None:
        term = core.term
        known = self.leaders.get(term)
        if known == node.id:
            return
        if known is not None:
            raise Violation(
                "election safety", f"{node.id} and {known} were both leader in term {term}"
            )
        self.leaders[term] = node.id
        self.trace.log(node.id, "LEADER of term %d (log up to %d)", term, core.log.last_index)
        for index, entry in self.committed.items():
            if self.commit_term.get(index, term) < term:
                self._check_holds(node, core, entry, term)

    def _check_one_change_at_a_time(self, node: SimNode, core: RaftCore) -> None:
        """A leader's log holds at most one configuration change that is not known to be
        committed: a change is appended only once the previous one committed (so its commit
        was seen, after the event that made it, before the next could be appended)."""
        log = core.log
        term, scanned, found = self._conf_entries.get(node.id, (-1, log.offset, []))
        if term != core.term or scanned > log.last_index:
            scanned, found = log.offset, []
        if log.last_index > scanned:
            for entry in log.slice(scanned + 1, log.last_index):
                if entry.kind is EntryKind.CONF_CHANGE:
                    found.append(entry.index)
            scanned = log.last_index
        committed = self.max_committed
        found = [index for index in found if index > log.offset]
        self._conf_entries[node.id] = (core.term, scanned, found)
        pending = [index for index in found if index > committed]
        if len(pending) > 1:
            raise Violation(
                "one membership change at a time",
                f"{node.id} (leader of term {core.term}) holds configuration changes at "
                f"{pending}, none of them known to be committed (highest commit {committed})",
            )

    def _check_holds(self, node: SimNode, core: RaftCore, entry: Entry, term: int) -> None:
        if entry.index <= core.log.offset:
            return  # its snapshot covers the entry; the state machine checks compare it
        held = _log_entry(core, entry.index)
        if held != entry:
            raise Violation(
                "leader completeness",
                f"{node.id}, leader of term {term}, holds "
                f"{_entry(held) if held else 'nothing'} at {entry.index}, where "
                f"{_entry(entry)} was committed in term {self.commit_term[entry.index]}",
            )

    def _check_commit(
        self, node: SimNode, core: RaftCore, live: list[SimNode], everyone: dict[str, SimNode]
    ) -> None:
        incarnation, seen = self._seen_commit.get(node.id, (-1, 0))
        if incarnation != node.incarnations:
            seen = core.log.offset
        commit = core.log.committed
        if commit <= seen:
            self._seen_commit[node.id] = (node.incarnations, seen)
            return
        leading = node.is_leader()
        for index in range(max(seen, core.log.offset) + 1, commit + 1):
            entry = _log_entry(core, index)
            if entry is None:
                raise Violation(
                    "commit", f"{node.id} commits index {index}, which its log does not hold"
                )
            known = self.committed.get(index)
            if known is None:
                self.committed[index] = entry
                self.max_committed = max(self.max_committed, index)
                if entry.kind is EntryKind.CONF_CHANGE and (
                    self.last_conf_change is None or index > self.last_conf_change.index
                ):
                    self.last_conf_change = entry
            elif known != entry:
                raise Violation(
                    "state machine safety",
                    f"{node.id} commits {_entry(entry)} where {_entry(known)} was committed",
                )
            applied = self.applied.get(index)
            if applied is not None and applied != entry:
                raise Violation(
                    "state machine safety",
                    f"{node.id} commits {_entry(entry)} where {_entry(applied)} was applied",
                )
            if leading and core.term < self.commit_term.get(index, core.term + 1):
                self.commit_term[index] = core.term
                for other in live:
                    other_core = other.core
                    if other is not node and other_core is not None and other.is_leader():
                        if other_core.term > core.term:
                            self._check_holds(other, other_core, entry, other_core.term)
        if leading:
            self._check_durable_quorum(node, core, commit, everyone)
        self._seen_commit[node.id] = (node.incarnations, commit)

    def _check_durable_quorum(
        self, node: SimNode, core: RaftCore, index: int, everyone: dict[str, SimNode]
    ) -> None:
        """A leader just committed up to ``index``: a majority of its configuration's voters
        must hold that entry on DISK now (an acknowledgement is sent only after the fsync, so
        a correct leader can count only durable copies; learners never count)."""
        entry = self.committed[index]
        voters = core.conf.voters
        # The configuration may have changed within this event, after the commit was decided
        # (a promotion appended right after an answer moved the commit): the one seen after
        # the previous event counts too.
        before = self._voters_seen.get(node.id, voters)
        self._voters_seen[node.id] = voters
        holders = {
            voter
            for voter in {*voters, *before}
            if voter in everyone and _holds(everyone[voter], entry)
        }
        if not any(len(holders & set(c)) * 2 > len(c) for c in (voters, before)):
            raise Violation(
                "commit on a durable majority",
                f"{node.id} (leader of term {core.term}) committed {_entry(entry)}, but only "
                f"{sorted(holders)} of the voters {sorted(voters)} hold it on disk",
            )
