"""One simulated member: a ``RaftCore``, its disk and its state machine, driven the way the
trio driver drives them (contract §1).

Theory of operation: the node runs *rounds*, one at a time. A round takes the core's
``Ready`` (at most ``max_batch`` new entries, as the real driver caps a round); installs its
snapshot if it names one (the state machine is restored from the file the network staged when
the SNAPSHOT arrived); applies its committed entries (``NORMAL`` ones to the state machine,
Raft's own skipped) and calls ``advance``; then, when ``must_sync``, hands the hard state and
entries to the disk as a pending write and waits for the fsync event. When the fsync
completes (and only then) the write is durable, ``persisted(term, index)`` and
``snapshot_installed`` are called and the round's messages are sent. While a fsync is in
flight the core keeps taking ticks and messages (as in the real driver, where they come from
other tasks); their work waits for the next round.

Proposals register a waiter by (term, index), the way the real driver decides an outcome:
when this node applies the entry at that index, the proposal is acknowledged if the entry has
the waiter's term and failed (another leader's entry took the index) if not. A crash loses
the waiters: their outcome is unknown.

Every ``snapshot_every`` applied entries (only once the core can send snapshots to followers
that fall behind) the node writes a local snapshot (an event with latency) and then compacts
its disk and its core.

A crash bumps ``generation`` (so the events of the old incarnation are ignored), lets the
disk lose its pending write, and forgets the core; ``start`` rebuilds the core from what the
disk holds: hard state, snapshot, entries.

Two more faults live here because they are the driver's business: ``pause`` freezes the node
(SIGSTOP: its ticks, deliveries, rounds and fsync completions queue up and run in order on
``resume``; a client asking a frozen node gives up), and ``disk_full`` makes the next write
fail with ENOSPC, handled as the real driver does (``_out_of_space``: ``discard_unpersisted``,
"not applied" to the proposers of the dropped entries, no rounds until ``disk_freed``).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from taskd.errors import NotLeader
from taskd.raft import (
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageKind,
    RaftConfig,
    RaftCore,
    ReadState,
    Ready,
    SnapshotMeta,
)
from tests.raft.sim.disk import SimDisk, Write
from tests.raft.sim.features import Features
from tests.raft.sim.loop import EventLoop
from tests.raft.sim.statemachine import ChainStateMachine, SMSnapshot
from tests.raft.sim.trace import Trace

# The outcome of a proposal, as its proposer's driver decides it.
ACKED = "acked"
FAILED = "failed"
UNKNOWN = "unknown"

OutcomeCallback = Callable[[str, int, int], None]  # (outcome, term, index)


class CoreFailure(Exception):
    """A core raised: it found one of its own invariants broken (or the driver misused it)."""


def _empty(ready: Ready) -> bool:
    return not (
        ready.hard_state
        or ready.entries_to_persist
        or ready.messages
        or ready.committed_entries
        or ready.soft_state
        or ready.snapshot
        or ready.read_states
    )


class NodeObserver(Protocol):
    """What the checkers want to see of a node, as it happens."""

    def on_durable(self, node: SimNode, entries: list[Entry]) -> None: ...
    def on_apply(self, node: SimNode, entry: Entry, fresh: bool) -> None: ...
    def on_restore(self, node: SimNode, snapshot: SMSnapshot) -> None: ...
    def on_read_state(self, node: SimNode, state: ReadState) -> None: ...


class Outbox(Protocol):
    def send(self, src: SimNode, message: Message) -> None: ...


@dataclass(frozen=True, slots=True)
class NodeTiming:
    tick_us: int  # one logical tick on a clock running at rate 1.0
    fsync_us: tuple[int, int]  # latency range of one fsync
    round_us: int  # CPU time of a round before its fsync starts
    snapshot_every: int  # applied entries between local snapshots (0: never)
    snapshot_us: tuple[int, int]  # latency of writing a snapshot file
    torn_write: float  # probability that a crash keeps a prefix of the pending write
    max_batch: int | None = None  # new entries a round persists at most (the driver's cap)


class SimNode:
    def __init__(
        self,
        node_id: str,
        *,
        bootstrap: tuple[str, ...],
        config: RaftConfig,
        core_class: type[RaftCore],
        features: Features,
        timing: NodeTiming,
        loop: EventLoop,
        rng: random.Random,
        trace: Trace,
        observer: NodeObserver,
    ) -> None:
        self.id = node_id
        self.bootstrap = bootstrap  # the voters it starts with: () for a joining node
        self.config = config
        self.core_class = core_class
        self.features = features
        self.timing = timing
        self.loop = loop
        self.rng = rng
        self.trace = trace
        self.observer = observer
        self.outbox: Outbox | None = None
        self.disk = SimDisk()
        self.sm = ChainStateMachine()
        self.core: RaftCore | None = None
        self.generation = 0
        self.clock_rate = 1.0
        self.busy = False  # a round waits for its fsync
        self.round_scheduled = False
        self.waiters: dict[int, tuple[int, OutcomeCallback]] = {}
        self.staged: dict[SnapshotMeta, SMSnapshot] = {}
        self.snapshot_in_flight = False
        self.incarnations = 0
        self.counts = {"installed": 0, "compacted": 0}
        # The highest (term, index) this node told a leader it holds (APPEND_RESPONSE): in
        # that term its log may never end below it again (checkers).
        self.acked_append = (0, 0)
        self.disk_full = False  # writes fail with ENOSPC (nemesis)
        self.write_fault = False  # a write failed: no rounds until the disk has room again
        self.paused = False  # frozen (SIGSTOP): everything waits in ``_backlog``
        self._backlog: list[Callable[[], object]] = []

    # -- life cycle -----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.core is not None

    @property
    def available(self) -> bool:
        """Running and not frozen."""
        return self.core is not None and not self.paused

    def start(self) -> None:
        disk = self.disk
        self.incarnations += 1
        seed = self.rng.getrandbits(32)
        config = dataclasses.replace(self.config, seed=seed)
        self.sm = ChainStateMachine(disk.sm)
        if disk.sm is not None:
            self.observer.on_restore(self, disk.sm)
        self.core = self.core_class(
            self.id,
            self.bootstrap,
            config=config,
            hard_state=disk.hard_state(),
            snapshot=disk.snapshot,
            entries=list(disk.entries),
        )
        self.busy = self.round_scheduled = self.snapshot_in_flight = False
        self.trace.log(
            self.id,
            "start: term %d vote %s commit %d snapshot %d log (%d, %d]",
            disk.term,
            disk.vote,
            disk.commit,
            disk.snapshot.index,
            disk.snapshot.index,
            disk.last_index,
        )
        self._schedule_tick()
        self.kick()

    def crash(self) -> None:
        if self.core is None:
            return
        survive = 0
        if self.disk.pending is not None and self.rng.random() < self.timing.torn_write:
            survive = self.rng.randint(0, self.disk.pending.operations)
        written = self.disk.lose(survive)
        if written:
            self.observer.on_durable(self, written)
        self.core = None
        self.generation += 1
        self.paused = self.disk_full = self.write_fault = False
        self._backlog.clear()
        self.staged.clear()
        waiters, self.waiters = self.waiters, {}
        for term, callback in waiters.values():
            callback(UNKNOWN, term, 0)
        self.trace.log(self.id, "CRASH (kept %d operations of the pending write)", survive)

    def wipe(self) -> None:
        """Delete its data (a stopped node that no configuration names any more): it can join
        again later as a new member, with nothing it promised before."""
        if self.core is not None:
            raise AssertionError(f"{self.id}: wipe a running node")
        self.disk.wipe()
        self.acked_append = (0, 0)

    def pause(self) -> None:
        """Freeze (SIGSTOP): no ticks, no messages handled, no round goes on; everything
        that arrives waits for ``resume``, then runs in order (the fsync in flight was done by
        the kernel meanwhile, but its completion is seen only then)."""
        if self.core is not None:
            self.paused = True
            self.trace.log(self.id, "PAUSED")

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        self.trace.log(self.id, "resumed (%d waiting events)", len(self._backlog))
        backlog, self._backlog = self._backlog, []
        for action in backlog:
            action()

    def _deferred(self, action: Callable[[], object]) -> bool:
        if not self.paused:
            return False
        self._backlog.append(action)
        return True

    # -- inputs ---------------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        generation = self.generation
        interval = max(1, round(self.timing.tick_us / self.clock_rate))
        self.loop.call_later(interval, lambda: self._tick(generation))

    def _tick(self, generation: int) -> None:
        if generation != self.generation or self.core is None:
            return
        if self._deferred(lambda: self._tick(generation)):
            return
        self._guard(self.core.tick)
        self._schedule_tick()
        self.kick()

    def receive(self, message: Message, staged: SMSnapshot | None) -> None:
        core = self.core
        if core is None or self._deferred(lambda: self.receive(message, staged)):
            return
        meta = message.snapshot
        if message.kind is MessageKind.SNAPSHOT and meta is not None:
            if staged is None:
                return  # the file did not arrive whole: the driver never steps the message
            self.staged[meta] = staged
        self._guard(lambda: core.step(message))
        self.kick()

    def propose(self, items: list[tuple[bytes, OutcomeCallback]]) -> tuple[int, range]:
        """Propose commands on this node's core (one ``propose_many`` for several, as the
        driver batches them), each with its own waiter; raises ``NotLeader`` like the core."""
        core = self.core
        if core is None or self.paused:  # a frozen node never answers: the client gives up
            raise NotLeader(None)
        if len(items) == 1:
            first = core.propose(items[0][0])
            indexes = range(first, first + 1)
        else:
            indexes = core.propose_many([data for data, _ in items])
        for index, (_, on_outcome) in zip(indexes, items, strict=True):
            self.waiters[index] = (core.term, on_outcome)
        self.kick()
        return core.term, indexes

    def call(self, action: Callable[[RaftCore], object]) -> object:
        """Run ``action`` on the live core (a read, a transfer, a membership change) and let
        the round pick up the work it made."""
        core = self.core
        if core is None or self.paused:
            raise NotLeader(None)
        try:
            return action(core)
        finally:
            self.kick()

    def report(self, action: Callable[[RaftCore], object]) -> None:
        """The driver's own report to its core (``report_snapshot``, ``report_unreachable``):
        waits while the node is frozen; lost if it crashed."""
        if self.core is None or self._deferred(lambda: self.report(action)):
            return
        self.call(action)

    def _guard(self, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as exc:  # the core raises only on a broken invariant
            raise CoreFailure(f"{self.id}'s core raised {exc!r}") from exc

    # -- rounds ---------------------------------------------------------------------------

    def kick(self) -> None:
        core = self.core
        if core is None or self.busy or self.round_scheduled or self.write_fault:
            return
        if not core.has_ready():
            return
        self.round_scheduled = True
        generation = self.generation
        self.loop.call_later(self.timing.round_us, lambda: self._round(generation))

    def _round(self, generation: int) -> None:
        core = self.core
        if generation != self.generation or core is None:
            return
        if self._deferred(lambda: self._round(generation)):
            return
        self.round_scheduled = False
        ready = core.ready(self.timing.max_batch)
        if _empty(ready):
            # kick() saw has_ready(); a driver that trusts it would spin on empty rounds.
            raise CoreFailure(
                f"{self.id}: has_ready() was True but ready() handed out nothing "
                f"(commit {core.log.committed}, stable {core.log.stable}, last "
                f"{core.log.last_index}, handed {core.log.handed})"
            )
        if ready.soft_state is not None:
            self.trace.log(
                self.id, "is %s (leader %s) term %d", ready.soft_state.role,
                ready.soft_state.leader, core.term,
            )  # fmt: skip
        write = Write()
        if ready.snapshot is not None:
            write.snapshot = (ready.snapshot, self._restore(ready.snapshot))
        if ready.committed_entries:
            self._apply(ready.committed_entries)
            self._guard(lambda: core.advance(ready))
            write.commit_mark = ready.committed_entries[-1].index
            self._maybe_snapshot(core)
        for state in ready.read_states:
            self.observer.on_read_state(self, state)
        if ready.must_sync and ready.snapshot is None and self.disk_full:
            self._out_of_space(core)
            return
        if ready.must_sync or ready.snapshot is not None:
            write.hard_state = ready.hard_state
            write.entries = list(ready.entries_to_persist)
            self.disk.pending = write
            self.busy = True
            low, high = self.timing.fsync_us
            self.loop.call_later(
                self.rng.randint(low, high), lambda: self._synced(generation, ready)
            )
        else:
            self.disk.commit = max(self.disk.commit, write.commit_mark)
            self._send(ready.messages)
            self.kick()

    def _synced(self, generation: int, ready: Ready) -> None:
        core = self.core
        if generation != self.generation or core is None:
            return
        if self._deferred(lambda: self._synced(generation, ready)):
            return
        written = self.disk.sync()
        if written:
            self.observer.on_durable(self, written)
        self.busy = False
        if ready.entries_to_persist:
            last = ready.entries_to_persist[-1]
            self._guard(lambda: core.persisted(last.term, last.index))
        if ready.snapshot is not None:
            meta = ready.snapshot
            self._guard(lambda: core.snapshot_installed(meta))
        self._send(ready.messages)
        self.kick()

    def _out_of_space(self, core: RaftCore) -> None:
        """The round's write failed with ENOSPC, as the real driver handles it: the disk is
        cut back to what was synced (nothing of this write reached it), the core forgets its
        unpersisted entries, their proposers are told "not applied", the round's messages are
        dropped, and no round runs until the disk has room again (``disk_freed``)."""
        dropped = core.discard_unpersisted()
        stable = core.log.stable
        self.write_fault = True
        self.trace.log(self.id, "DISK FULL: write failed, %d unpersisted entries dropped", dropped)
        for index in sorted(i for i in self.waiters if i > stable):
            term, callback = self.waiters.pop(index)
            callback(FAILED, term, index)

    def disk_freed(self) -> None:
        self.disk_full = False
        if self.write_fault:
            self.write_fault = False
            self.trace.log(self.id, "disk has room again: writes resume")
            self.kick()

    def _send(self, messages: list[Message]) -> None:
        if self.outbox is None:
            return
        for message in messages:
            if message.kind is MessageKind.APPEND_RESPONSE and not message.reject:
                self.acked_append = max(self.acked_append, (message.term, message.index))
            self.outbox.send(self, message)

    def _apply(self, entries: list[Entry]) -> None:
        sm = self.sm
        for entry in entries:
            if entry.kind is EntryKind.NORMAL:
                fresh = sm.apply(entry.index, entry.data)
            else:
                sm.skip(entry.index)
                fresh = True
            self.observer.on_apply(self, entry, fresh)
            waiter = self.waiters.pop(entry.index, None)
            if waiter is not None:
                term, callback = waiter
                callback(ACKED if term == entry.term else FAILED, term, entry.index)

    def _restore(self, meta: SnapshotMeta) -> SMSnapshot:
        staged = self.staged.pop(meta, None)
        if staged is None:
            raise AssertionError(f"{self.id}: the core installs snapshot {meta}, never staged")
        self.staged.clear()
        self.sm.restore(staged)
        self.observer.on_restore(self, staged)
        for index in [i for i in self.waiters if i <= meta.index]:
            term, callback = self.waiters.pop(index)
            callback(UNKNOWN, term, index)
        self.trace.log(self.id, "installs snapshot %d/%d", meta.index, meta.term)
        self.counts["installed"] += 1
        return staged

    # -- local snapshots ------------------------------------------------------------------

    def _maybe_snapshot(self, core: RaftCore) -> None:
        every = self.timing.snapshot_every
        if not every or not self.features.snapshots or self.snapshot_in_flight:
            return
        applied = core.applied_index
        if applied - self.disk.snapshot.index < every:
            return
        meta = self.snapshot_meta(core, applied)
        state = self.sm.snapshot()
        self.snapshot_in_flight = True
        generation = self.generation
        low, high = self.timing.snapshot_us
        self.loop.call_later(
            self.rng.randint(low, high), lambda: self._snapshot_written(generation, meta, state)
        )

    def snapshot_meta(self, core: RaftCore, index: int) -> SnapshotMeta:
        """The meta of a snapshot at ``index``: its term and, once membership exists, the
        configuration as of ``index``."""
        term = core.term_at(index)
        if not self.features.membership:
            return SnapshotMeta(index, term)
        conf = core.conf_at(index)
        return SnapshotMeta(index, term, conf.voters, conf.learners)

    def _snapshot_written(self, generation: int, meta: SnapshotMeta, state: SMSnapshot) -> None:
        core = self.core
        if generation != self.generation or core is None:
            return
        if self._deferred(lambda: self._snapshot_written(generation, meta, state)):
            return
        self.snapshot_in_flight = False
        if meta.index <= self.disk.snapshot.index:
            return  # a snapshot from the leader overtook it
        self.disk.compact(meta, state)
        self._guard(lambda: core.compact(meta.index, meta.term))
        self.trace.log(self.id, "compacts to %d/%d", meta.index, meta.term)
        self.counts["compacted"] += 1

    def snapshot_file(self, meta: SnapshotMeta) -> SMSnapshot | None:
        """The snapshot file of ``meta``, as the leader's driver would stream it."""
        if self.disk.snapshot == meta:
            return self.disk.sm
        return None

    # -- what the checkers read -----------------------------------------------------------

    def is_leader(self) -> bool:
        return self.core is not None and self.core.role.value == "leader"

    def hard_state(self) -> HardState:
        return self.disk.hard_state()
