"""RaftStore: the embedded Raft log as the node's store. The trio driver of ``RaftCore``.

Theory of operation: one loop owns the core. Each round it takes a ``Ready`` from the core,
applies the committed entries to the state machine on the trio loop (in index order) and wakes
their proposers, then writes the new entries (and hard state) and fsyncs them in ONE worker
thread hop, then tells the core they are persisted — which, in a one-member cluster, commits
them for the next round to apply. Proposals that arrive while a round's fsync is in flight
simply accumulate in the core and go out together in the next round: that is group commit.
Nobody's ``propose`` returns before its entry was fsynced and applied.

Waiters are keyed by (term, index): a proposal remembers the term it was appended in, and an
entry is delivered to it only if the committed entry at its index has that term. If another
leader's entry (a different term, a no-op) took the index, the caller gets ``NotLeader`` (none
of its commands applied) or ``Unavailable`` (the head of a batch applied, the rest not),
never another proposal's result. Only ``NORMAL`` entries reach the state machine; no-ops and
membership changes are skipped. Entries a ``Ready`` hands out that start at or below the disk
log's last index replace its suffix (``DiskLog.truncate_suffix``) before they are written.

Time reaches the core as logical ticks: a ticker calls ``RaftCore.tick()`` every
``tick_seconds`` (the core's ``RaftConfig`` counts its timeouts in those ticks; its seed is
derived from the node id unless given). A one-member cluster elects itself on the first tick,
which ``serve`` gives at once.

``read_barrier`` is a linearizable read: it asks the core for a read index
(``RaftCore.read_index``), the round hands back the ``ReadState``, and the barrier returns once
the applied index reaches it: everything committed before the call has been applied. For one
member that is the next round. While a disk fault stops the rounds, nothing can commit, so the
barrier returns at once when everything committed is applied (reads go on through a fault).

Start-up (``serve``): open and repair the log in a thread (refusing, with ``LogCorrupted``,
damage a crash cannot explain unless ``accept_data_loss``; see ``taskd.store.raft.disklog``),
restore the latest snapshot into the state machine, let the core elect itself in a new term
(appending its no-op), and run rounds until everything up to that no-op is applied — the
replay — then raise the leadership signal (``gained(term)``) and report ``started``. The
signal is lost when ``serve`` ends.

The durable mark (``disklog``) rides along with each round's fsync; when no work comes for
``_MARK_FLUSH_DELAY`` after a round, the loop flushes it, so it trails the log only briefly.

Every ``snapshot_every`` applied entries, or ``snapshot_bytes`` of applied commands (whichever
comes first: the entries stay in memory until a snapshot covers them), a forked child
serializes the state as of the applied index and writes it (``snapshotter``), so the loop
never stops for it; deleting the segments it covers runs in a thread beside the rounds; only
then is the in-memory log compacted.

Failure (``_fail``, see ``diskfault``): an ``OSError`` from the disk fails every waiting
proposal with a ``StorageFault`` naming the data directory, the error and the remedy, and
``propose`` refuses at once while the fault lasts; reads never touch the disk and go on.
- Out of space in ``write()`` (ENOSPC, EDQUOT): the segment is cut back to its last synced
  length and the core forgets the unpersisted entries, so none of them can commit later: their
  proposers were told "not applied", and that stays true. A probe every ``_PROBE_INTERVAL``
  seconds writes a scratch file of the failed batch's size; once it fits, writes resume.
- Anything else (a failed fsync, EIO, EROFS): after a failed fsync the kernel may have dropped
  the data, so nothing more may be acknowledged (fsync is not retried) until a restart. The
  entries of the failed batch may or may not be on disk: their proposers are told the outcome
  is unknown; entries proposed after that batch are told "not applied".

With peers (``peers`` names several members, or ``join``, or a ``transport`` is given) the
same loop drives a member of a cluster (``taskd.store.raft.transport``): what peers send is
stepped into the core as it arrives (``deliver``) and the loop is woken; each round's messages
go out, grouped by destination, only AFTER that round's persist (a vote or an append
acknowledged before it is on disk could be forgotten by a crash). ``SNAPSHOT`` messages start a
task that streams the named snapshot file to that peer (``report_snapshot`` when done); a
follower stages a received snapshot in the data directory (fsynced), steps it, and when the
``Ready`` names it installs it (``DiskLog.install_snapshot``), restores the state machine and
calls ``snapshot_installed`` before sending that round's messages. The leadership signal is
``gained(term)`` once this node leads and has applied its term's no-op, ``lost()`` when it
steps down; then local read barriers fail with ``NotLeader(leader)``. Waiting proposals stay:
only a COMMITTED entry of another term at their index proves theirs will never commit, so the
apply answers them either way. (A cut of this node's log by a new leader proves nothing: the
cut entry may live on in another member's log and commit in a later term, and a waiter told
"not applied" at the cut would be re-forwarded and applied twice — what ``make chaos``
found.) A follower's writes go to the
leader through ``forwarding.Forwarder``; its read barrier asks the leader for a read index
(batched: all barriers waiting share one call) and waits for its own apply to reach it.
Membership changes and leadership transfer started on a follower are forwarded too.
``join``: start with no configuration (never campaigns) and wait to be added.

The leader's side of a forward (``accept_forward``) is the throughput path of a cluster: one
msgpack decode of the whole batch, the node's ``stamp`` per command, one ``propose_many``, an
answer (term, first index) at once; no waiter, no per-command object beyond the entry itself
(~1 µs per command measured). A member whose disk failed stops its rounds (as alone): it sends
nothing more, so the others elect a leader without it; while it still leads (check-quorum
steps it down within an election timeout) its read barrier answers from what it applied, and
``read_index`` likewise. With no peers, none of this runs: a round costs what it did before
(a few attribute tests), and ``serve`` elects the single member at once.

Not here yet: back-pressure on proposals beyond ``max_batch`` per round (the node's admission
limits bound them today).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from taskd.errors import NotLeader, StorageFault, Unavailable
from taskd.raft.core import RaftConfig, RaftCore, RaftStatus, Ready, Role
from taskd.raft.types import (
    EntryKind,
    Message,
    MessageKind,
    ReadState,
    SnapshotMeta,
    SoftState,
    decode_conf,
)
from taskd.store.leadership import Leadership
from taskd.store.raft import diskfault, wire
from taskd.store.raft.disklog import SEGMENT_BYTES, DiskLog, snapshot_name
from taskd.store.raft.forwarding import EarlyResults, Forwarded, Forwarder
from taskd.store.raft.grpctransport import BATCH_BYTES, GrpcTransport
from taskd.store.raft.snapshotter import start_child, wait_child
from taskd.store.raft.transport import ChunkSource, Transport
from taskd.store.statemachine import StateMachine

log = logging.getLogger("taskd.raft")

# Replays longer than this are logged as they go, and yield to the loop between chunks.
_REPLAY_CHUNK = 20_000
# Snapshot once this many bytes of commands were applied since the last one, whatever their
# count: it bounds the memory the log holds (batches of 100 tasks make few, large entries).
SNAPSHOT_BYTES = 64 << 20
_PROBE_INTERVAL = 1.0  # seconds between tries of a write that failed for lack of space
_RECORD_OVERHEAD = 64  # bytes a log record adds to an entry's data, rounded up
# How long the log stays idle before the durable mark is brought up to date.
_MARK_FLUSH_DELAY = 0.05
_NOTHING = Ready(hard_state=None, entries_to_persist=[], messages=[], committed_entries=[])
_TICK_SECONDS = 0.1  # one logical Raft tick
_NORMAL = EntryKind.NORMAL
_CONF_CHANGE = EntryKind.CONF_CHANGE
_LEADER_WAIT = 2.0  # seconds a follower waits for a leader before NotLeader(None)
_REFORWARD_FOR = 3.0  # seconds a forwarded write is re-sent to a new leader before giving up
_TRANSFER_TIMEOUT = 2.0
_APPLY_LAG = 1000  # entries applied behind the known commit index before "not ready"


class _Waiter:
    """One propose call: the term its entries were appended in, the indexes it waits for
    and the results collected so far."""

    __slots__ = ("count", "error", "event", "first", "last", "results", "term")

    def __init__(self, term: int, first: int, last: int) -> None:
        self.term = term
        self.first = first
        self.last = last
        self.count = last - first + 1  # commands of the request (``first`` may move up)
        self.results: list[object] = []
        self.event = trio.Event()
        self.error: BaseException | None = None


class _Read:
    """One read_barrier call: the read index once the core (``local``) or the leader gave
    it."""

    __slots__ = ("error", "event", "index", "local", "only_index")

    def __init__(self, *, local: bool = True, only_index: bool = False) -> None:
        self.index: int | None = None
        self.event = trio.Event()
        self.error: BaseException | None = None
        self.local = local
        self.only_index = only_index  # a follower's ReadIndex call: done once index is known


class RaftStore:
    """The ``taskd.store.seam.Store`` on an embedded Raft log: one member, or a member of a
    cluster (``peers``, ``join``, ``transport``)."""

    durable = True

    def __init__(
        self,
        data_dir: Path,
        state_machine: StateMachine,
        *,
        node_id: str = "n1",
        snapshot_every: int = 100_000,
        snapshot_bytes: int = SNAPSHOT_BYTES,
        max_batch: int = 4096,
        accept_data_loss: bool = False,
        segment_bytes: int = SEGMENT_BYTES,
        raft_config: RaftConfig | None = None,
        tick_seconds: float = _TICK_SECONDS,
        peers: Sequence[str] = (),
        join: bool = False,
        transport: Transport | None = None,
        stamp: Callable[[bytes], bytes] | None = None,
        routes: Mapping[str, str] | None = None,
        cluster_secret: str | None = None,
        leader_wait: float = _LEADER_WAIT,
    ) -> None:
        if snapshot_every < 1 or max_batch < 1 or snapshot_bytes < 1:
            raise ValueError("snapshot_every, snapshot_bytes and max_batch must be at least 1")
        if tick_seconds <= 0:
            raise ValueError("tick_seconds must be positive")
        peers = tuple(peers)
        if peers and node_id not in peers and not join:
            raise ValueError(
                f"--peers {','.join(peers)} does not name this node ({node_id}): list every "
                "member, this one included, or start it with --join to be added later"
            )
        self.peers = peers or (node_id,)
        self.join = join
        # Peers named at all (even only this node: a cluster of one, which can grow), joining,
        # or a transport given: a cluster member. No peers: a single node for good.
        self.clustered = join or bool(peers) or transport is not None
        if self.clustered and transport is None:
            transport = GrpcTransport(node_id, routes=routes, cluster_secret=cluster_secret)
        self.transport = transport
        self.stamp = stamp
        self.leader_wait = leader_wait
        self.data_dir = Path(data_dir)
        self.state_machine = state_machine
        self.node_id = node_id
        self.snapshot_every = snapshot_every
        self.snapshot_bytes = snapshot_bytes
        self._bytes_since_snapshot = 0  # command bytes applied since the last snapshot began
        self.max_batch = max_batch
        self.accept_data_loss = accept_data_loss
        self.segment_bytes = segment_bytes
        config = raft_config or RaftConfig(seed=zlib.crc32(node_id.encode()))
        if isinstance(transport, GrpcTransport) and config.max_append_bytes > BATCH_BYTES:
            # an APPEND must fit the gRPC message limit of the node (grpctransport.BATCH_BYTES)
            config = dataclasses.replace(config, max_append_bytes=BATCH_BYTES)
        self.raft_config = config
        self.tick_seconds = tick_seconds
        self.fsync_rounds = 0  # write+fsync rounds so far: proposals per round = batching
        self.snapshots_written = 0
        self._snapshot_done = trio.Event()
        self._core: RaftCore | None = None
        self._disk: DiskLog | None = None
        self._serving = False
        self._running = False  # between the core's creation and the end of ``serve``
        self._failure: Unavailable | None = None
        self._waiters: deque[_Waiter] = deque()
        self._reads: dict[object, _Read] = {}  # by the ctx handed to read_index
        self._read_ids = itertools.count(1)
        self._work = trio.Event()
        self._snapshot_index = 0
        self._snapshot_in_flight = False
        self._writes_resumed = trio.Event()  # set (and replaced) when a disk-full fault clears
        # One member: gained once, after replay; lost when ``serve`` ends. In a cluster:
        # gained when this node leads and applied its term's no-op, lost when it steps down.
        self.leadership = Leadership()
        self._early = EarlyResults()
        self._forwarder: Forwarder | None = None
        self._remote_reads: list[_Read] = []  # follower barriers waiting for a ReadIndex call
        self.read_index_calls = 0  # ReadIndex calls a follower made: barriers per call = batching
        self._remote_read_work = trio.Event()
        self._leader_seen = trio.Event()  # set (and replaced) when the known leader changes
        self._staged: dict[tuple[int, int], Path] = {}  # received snapshots, by (index, term)
        self._sending_snapshot: set[str] = set()
        self._applied_conf: tuple[tuple[str, ...], tuple[str, ...]] = (self.peers, ())
        self._nursery: trio.Nursery | None = None

    # -- the store seam -------------------------------------------------------------------

    async def propose(self, data: bytes) -> object:
        """Make ``data`` durable, apply it, and return what the state machine returned.

        Raises ``NotLeader`` or ``Unavailable``. If the caller is cancelled while waiting, the
        entry may still commit and be applied; only its result is lost. On a follower the
        command is forwarded to the leader (module docstring).
        """
        core = self._writable()
        if core.role is not Role.LEADER and self.clustered:
            return (await self._forward((data,)))[0]
        index = core.propose(data)
        waiter = self._wait_for(core.term, index, index)
        await waiter.event.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.results[0]

    async def propose_many(self, items: Sequence[bytes]) -> list[object]:
        """``propose`` for several commands, in order, sharing one durability round."""
        if not items:
            return []
        core = self._writable()
        if core.role is not Role.LEADER and self.clustered:
            return await self._forward(items)
        indexes = core.propose_many(items)
        waiter = self._wait_for(core.term, indexes.start, indexes.stop - 1)
        await waiter.event.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.results

    async def _forward(self, items: Sequence[bytes]) -> list[object]:
        """A follower's write: the leader appends it, this node's apply answers it. Sent again
        (to whoever leads then) while another term's entry took its place, for at most
        ``_REFORWARD_FOR`` seconds."""
        deadline = time.monotonic() + _REFORWARD_FOR
        while True:
            core = self._writable()
            if core.role is Role.LEADER:  # this node won an election meanwhile
                indexes = core.propose_many(items)
                waiter = self._wait_for(core.term, indexes.start, indexes.stop - 1)
            else:
                assert self._forwarder is not None
                forwarded = self._forwarder.submit(items, deadline - time.monotonic())
                await forwarded.event.wait()
                if forwarded.error is not None:
                    raise forwarded.error
                waiter = forwarded.waiter
            await waiter.event.wait()
            error = waiter.error
            if error is None:
                return waiter.results
            if isinstance(error, NotLeader) and time.monotonic() < deadline:
                continue  # nothing of it was applied: another term took its indexes
            raise error

    def placed(self, forwarded: Forwarded) -> None:
        """The leader appended ``forwarded`` at (term, first ..): wait for its apply here,
        taking the results of entries already applied from the early record."""
        term, first, last = (
            forwarded.term,
            forwarded.first,
            forwarded.first + len(forwarded.items) - 1,
        )
        early = self._early.results
        results: list[object] = []
        index = first
        waiter = _Waiter(term, first, last)
        forwarded.waiter = waiter
        while index <= last and index in early:
            entry_term, result = early.pop(index)
            if entry_term != term:
                waiter.results = results
                self._answer_stale(waiter)
                return
            results.append(result)
            index += 1
        waiter.results = results
        if index > last:
            waiter.event.set()
            return
        core = self._core
        if core is not None and core.applied_index >= index:
            waiter.error = Unavailable(
                f"the entries of this request (from index {index}) were applied through a "
                "snapshot, so their results are not known here: the outcome is unknown; read "
                "it back before retrying"
            )
            waiter.event.set()
            return
        waiter.first = index
        waiter.count = last - first + 1
        self._insert_waiter(waiter)

    def _answer_stale(self, waiter: _Waiter) -> None:
        applied = len(waiter.results)
        if applied:
            waiter.error = Unavailable(
                f"leadership changed: the first {applied} of the {waiter.count} commands "
                f"of this request were applied, the rest were not"
            )
        else:
            core = self._core
            leader = core.leader if core is not None else None
            waiter.error = NotLeader(leader if leader != self.node_id else None)
        waiter.event.set()

    def _insert_waiter(self, waiter: _Waiter) -> None:
        waiters = self._waiters
        if not waiters or waiters[-1].first <= waiter.first:
            waiters.append(waiter)
        else:
            position = len(waiters)
            while position and waiters[position - 1].first > waiter.first:
                position -= 1
            waiters.insert(position, waiter)
        self._work.set()

    async def read_barrier(self, stale: bool = False) -> None:
        """Return once everything committed before this call has been applied (a
        linearizable read may follow). Raises ``NotLeader`` or ``Unavailable``. ``stale``:
        return at once (a read of the local replica, possibly behind the leader)."""
        core = self._core
        if core is None or not self._serving:
            raise Unavailable(f"the Raft store in {self.data_dir} is not serving")
        if stale:
            return
        if self._failure is not None:
            # No round runs while the disk refuses writes, so nothing applies meanwhile: a
            # read is good only if what is applied already reaches the read index. A leader
            # still leads only while it hears from a majority (check-quorum steps it down
            # within an election timeout otherwise), so it answers from what it applied.
            if core.role is Role.LEADER:
                if core.applied_index >= core.log.committed:
                    return
            elif self.clustered and core.leader is not None and self.transport is not None:
                if core.applied_index >= await self.transport.read_index(core.leader):
                    return
            raise self._failure
        if core.role is not Role.LEADER and self.clustered:
            read = _Read(local=False)
            self._remote_reads.append(read)
            self._remote_read_work.set()
        else:
            read = self._local_read(core)
        await read.event.wait()
        if read.error is not None:
            raise read.error

    def _local_read(self, core: RaftCore) -> _Read:
        ctx = next(self._read_ids)
        read = _Read()
        core.read_index(ctx)  # raises NotLeader on a follower
        self._reads[ctx] = read
        self._work.set()
        return read

    async def _remote_read_loop(self) -> None:
        """Follower barriers: every barrier waiting shares one ReadIndex call to the leader."""
        assert self.transport is not None
        while True:
            while not self._remote_reads:
                self._remote_read_work = trio.Event()
                await self._remote_read_work.wait()
            batch, self._remote_reads = self._remote_reads, []
            core = self._core
            assert core is not None
            try:
                leader = await self._leader_or_wait(self.leader_wait)
                if leader is None:
                    raise NotLeader(None)
                self.read_index_calls += 1
                if leader == self.node_id:
                    index = await self.read_index()
                else:
                    index = await self.transport.read_index(leader)
            except (NotLeader, Unavailable) as exc:
                for read in batch:
                    read.error = exc
                    read.event.set()
                continue
            for read in batch:
                read.index = index
                self._reads[object()] = read
            self._release_reads(core.applied_index)

    async def _leader_or_wait(self, patience: float) -> str | None:
        """The leader this node knows of; waits up to ``patience`` seconds for one."""
        with trio.move_on_after(patience):
            while True:
                core = self._core
                if core is not None and core.leader is not None:
                    return core.leader
                await self._leader_seen.wait()
        return None

    # -- membership and transfer ----------------------------------------------------------

    async def add_member(self, address: str) -> None:
        """Add ``address`` as a learner (the leader promotes it to voter once it caught up);
        returns once the change committed. From any member. Raises ``ConfChangeError``,
        ``NotLeader``, ``Unavailable``."""
        await self.change_membership(address, None)

    async def remove_member(self, address: str) -> None:
        """Remove a voter or learner (the leader too); returns once the change committed."""
        await self.change_membership(None, address)

    async def change_membership(self, add: str | None, remove: str | None) -> None:
        core = self._writable()
        if core.role is not Role.LEADER:
            leader = await self._leader_or_wait(self.leader_wait)
            if leader is None or leader == self.node_id:
                raise NotLeader(None)
            assert self.transport is not None
            await self.transport.change_membership(leader, add, remove)
            return
        # A leader elected moments ago (after a transfer, say) takes a change once its
        # term's first entry commits: wait for that rather than refuse the caller.
        with trio.move_on_after(self.leader_wait):
            # (a poll: the sans-I/O core signals commits to the loop, not to callers)
            while core.role is Role.LEADER and not core.conf_change_ready():  # noqa: ASYNC110
                await trio.sleep(0.01)
        index = core.propose_conf_change(add=add, remove=remove)
        waiter = self._wait_for(core.term, index, index)
        await waiter.event.wait()
        if waiter.error is not None:
            raise waiter.error

    async def transfer_leadership(
        self,
        target: str | None = None,
        timeout: float = _TRANSFER_TIMEOUT,  # noqa: ASYNC109 (the contract's name; a cap)
    ) -> None:
        """Hand leadership to ``target`` (None: the most caught-up voter) and return once
        this node no longer leads. From any member (forwarded to the leader). Raises
        ``Unavailable`` when the transfer did not complete within ``timeout``."""
        core = self._writable()
        if core.role is not Role.LEADER:
            leader = await self._leader_or_wait(self.leader_wait)
            if leader is None:
                raise NotLeader(None)
            if leader == target:
                return
            if leader != self.node_id:
                assert self.transport is not None
                await self.transport.transfer_leadership(leader, target, timeout)
                return
        if target == self.node_id:
            return
        core.transfer_leadership(target)
        self._work.set()
        with trio.move_on_after(timeout):
            while core.role is Role.LEADER:
                await self._leader_seen.wait()
            return
        raise Unavailable(
            f"leadership transfer to {target or 'the most caught-up voter'} did not complete "
            f"within {timeout:g}s (is the target reachable and caught up?); this node still leads"
        )

    # -- the inbox: what peers send (``taskd.store.raft.transport.Inbox``) ------------------

    def deliver(self, blob: bytes) -> None:
        """Raft messages from a peer: stepped into the core now; the loop does the rest.
        Raises ``Unavailable`` when this store does not run (the sender should reconnect)."""
        core = self._core
        if core is None or not self._running:
            raise Unavailable(f"the Raft store in {self.data_dir} is not running")
        try:
            _, dst, messages = wire.decode_batch(blob)
        except wire.WireError as exc:
            log.warning("dropped a Raft message batch: %s", exc)
            return
        if dst != self.node_id:
            return
        step = core.step
        snapshot = MessageKind.SNAPSHOT
        for message in messages:
            if message.kind is not snapshot:  # snapshots arrive with their file only
                step(message)
        self._work.set()

    def accept_forward(self, blob: bytes) -> tuple[int, int]:
        """A follower's batch of commands: stamp, append, answer (term, first index) now."""
        core = self._core
        if core is None or not self._serving or self._failure is not None:
            raise Unavailable(f"the Raft store in {self.data_dir} is not taking writes")
        commands = wire.decode_commands(blob)
        if self.stamp is not None:
            stamp = self.stamp
            commands = [stamp(command) for command in commands]
        indexes = core.propose_many(commands)  # raises NotLeader
        self._work.set()
        return core.term, indexes.start

    async def read_index(self) -> int:
        """A read index for a follower: the commit index, confirmed current by a quorum."""
        core = self._core
        if core is None or not self._serving:
            raise Unavailable(f"the Raft store in {self.data_dir} is not serving")
        if self._failure is not None:  # no round runs: answer as the local barrier does
            if core.role is Role.LEADER and core.applied_index >= core.log.committed:
                return core.log.committed
            raise self._failure
        ctx = next(self._read_ids)
        read = _Read(only_index=True)  # answered once the index is known, not applied
        core.read_index(ctx)  # raises NotLeader
        self._reads[ctx] = read
        self._work.set()
        await read.event.wait()
        if read.error is not None:
            raise read.error
        assert read.index is not None
        return read.index

    async def install_snapshot(
        self, leader: str, term: int, meta: SnapshotMeta, chunks: ChunkSource
    ) -> None:
        """Stage the leader's snapshot file (fsynced, in the log's directory) and step it into
        the core; the round that names it installs it."""
        disk = self._disk
        core = self._core
        if disk is None or core is None:
            raise Unavailable(f"the Raft store in {self.data_dir} is not serving")
        staged = disk.dir / f"incoming-{meta.index:020d}-{meta.term:020d}.tmp"
        handle = await trio.to_thread.run_sync(open, staged, "wb")
        try:
            while (chunk := await chunks()) is not None:
                await trio.to_thread.run_sync(handle.write, chunk)
            await trio.to_thread.run_sync(_flush_and_sync, handle)
        except BaseException:
            await trio.to_thread.run_sync(handle.close)
            await trio.to_thread.run_sync(_unlink, staged)
            raise
        await trio.to_thread.run_sync(handle.close)
        # Only the newest received snapshot can still be installed: drop the others.
        for key, old in list(self._staged.items()):
            if old != staged:
                del self._staged[key]
                await trio.to_thread.run_sync(_unlink, old)
        self._staged[(meta.index, meta.term)] = staged
        core.step(Message(MessageKind.SNAPSHOT, leader, self.node_id, term, snapshot=meta))
        self._work.set()

    def member_ids(self) -> set[str]:
        """Every member this node knows of (current configuration and ``peers``): who may
        call its internal service."""
        members = set(self.peers)
        core = self._core
        if core is not None:
            conf = core.conf
            members.update(conf.voters)
            members.update(conf.learners)
        return members

    def unreachable(self, peer: str) -> None:
        core = self._core
        if core is not None:
            core.report_unreachable(peer)

    async def wait_for_snapshot(self, count: int = 1) -> None:
        """Return once at least ``count`` snapshots were written since start."""
        while self.snapshots_written < count:
            await self._snapshot_done.wait()

    @property
    def fault(self) -> StorageFault | None:
        """Why writes are refused now (disk full, read-only, failing), or None."""
        return self._failure if isinstance(self._failure, StorageFault) else None

    def status(self) -> RaftStatus:
        if self._core is None:
            return RaftStatus(self.node_id, "follower", 0, None, 0, 0, [])
        return self._core.status()

    def not_ready_reason(self) -> str | None:
        """None when this member can serve: a leader is known and heard from recently, the
        log is applied up to the known commit index, the disk takes writes. Else why not,
        and what to do."""
        core = self._core
        if core is None or not self._serving:
            return f"the Raft store in {self.data_dir} is starting (replaying its log)"
        if self._failure is not None:
            return str(self._failure)
        leader = core.leader
        if leader is None:
            if self.join and not core.conf.voters:
                return (
                    "this node was started with --join and is not a member yet: add it from "
                    f"any member (taskd cluster add {self.node_id})"
                )
            return (
                "no leader is known (an election is under way, or fewer than a majority of "
                "the members are reachable): check that most --peers are up and can reach "
                "each other"
            )
        if leader == self.node_id:
            if self.leadership.term != core.term:
                return "this node was just elected and is applying its log"
            return None
        heard = any(m.id == leader and m.reachable for m in core.status().members)
        if not heard:
            return (
                f"the leader {leader} has not been heard from within an election timeout: "
                "check the network between this node and the leader"
            )
        lag = core.log.committed - core.applied_index
        if lag > _APPLY_LAG:
            return f"catching up with the leader {leader}: {lag} committed entries still to apply"
        return None

    def grpc_handlers(self) -> list[Any]:
        """The internal Raft service, for the node's gRPC server (grpclib ``__mapping__``
        objects). Empty for a one-member store."""
        if not isinstance(self.transport, GrpcTransport):
            return []
        return self.transport.handlers(self)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover, replay, report started, then run group-commit rounds until cancelled."""
        disk = DiskLog(
            self.data_dir,
            accept_data_loss=self.accept_data_loss,
            segment_bytes=self.segment_bytes,
        )
        try:
            recovered = await trio.to_thread.run_sync(disk.open)
        except OSError as exc:
            disk.close()
            raise Unavailable(f"cannot open the Raft log in {disk.dir}: {exc}") from exc
        try:
            self._disk = disk
            snapshot = recovered.snapshot
            if snapshot is not None and recovered.snapshot_data is not None:
                self.state_machine.restore(recovered.snapshot_data)
                self._snapshot_index = snapshot.index
                if snapshot.voters:
                    self._applied_conf = (snapshot.voters, snapshot.learners)
            if self.join:
                self._applied_conf = ((), ())
            core = RaftCore(
                self.node_id,
                () if self.join else list(self.peers),
                config=self.raft_config,
                hard_state=recovered.hard_state,
                snapshot=snapshot,
                entries=recovered.entries,
            )
            self._core = core
            self._running = True
            replay = core.last_index - core.applied_index
            if replay > _REPLAY_CHUNK:
                log.info("replaying %d Raft log entries from %s", replay, disk.dir)
            if not self.clustered:
                core.tick()  # one member: elects itself at once, appends the new term's no-op
                ready_at = core.last_index
            else:
                ready_at = min(core.log.committed, core.last_index)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._ticker, core)
                if self.transport is not None:
                    await nursery.start(self.transport.serve, self)
                    self._forwarder = Forwarder(
                        self.transport,
                        leader=lambda: core.leader,
                        wait_for_leader=self._leader_or_wait,
                        applied=lambda: core.applied_index,
                        early=self._early,
                        placement=self,
                        leader_wait=self.leader_wait,
                    )
                    nursery.start_soon(self._forwarder.run)
                    nursery.start_soon(self._remote_read_loop)
                while core.applied_index < ready_at:
                    await self._round(core, disk, nursery)
                    if self._failure is not None:
                        raise self._failure
                self._serving = True
                if not self.clustered:
                    self.leadership.gained(core.term)
                log.info(
                    "Raft log ready in %s: term %d, applied index %d",
                    disk.dir,
                    core.term,
                    core.applied_index,
                )
                task_status.started()
                while True:
                    if not core.has_ready():
                        self._work = trio.Event()
                        await self._idle(core, disk, nursery)
                        # Let the tasks woken with this one propose first: a Submit's
                        # proposer wakes the workers waiting for its queue, and their Leases
                        # then share its fsync (service.NodeService._expect).
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    await self._round(core, disk, nursery)
        finally:
            self._serving = self._running = False
            self._nursery = None
            self.leadership.lost()
            stopped = Unavailable(f"the Raft store in {self.data_dir} has stopped")
            self._fail_waiters(stopped)
            if self._forwarder is not None:
                self._forwarder.fail_all(stopped)
            for staged in self._staged.values():
                _unlink(staged)
            self._staged.clear()
            disk.close()

    async def _ticker(self, core: RaftCore) -> None:
        """The clock, as logical ticks: wakes the loop only when a tick made work."""
        while True:
            await trio.sleep(self.tick_seconds)
            core.tick()
            if core.has_ready():
                self._work.set()

    async def _idle(self, core: RaftCore, disk: DiskLog, nursery: trio.Nursery) -> None:
        """Wait for work; if none comes soon, bring the durable mark up to date, so that it
        trails the last round only briefly (each round writes the previous round's mark)."""
        disk.note_commit(core.applied_index)  # applied entries are committed ones
        if disk.mark_behind and self._failure is None:
            with trio.move_on_after(_MARK_FLUSH_DELAY):
                await self._work.wait()
            if not self._work.is_set():
                try:
                    await trio.to_thread.run_sync(disk.flush_mark)
                except OSError as exc:  # the mark's fsync failed: as fatal as the log's
                    failed = diskfault.SyncFailed(exc.errno, exc.strerror, exc.filename)
                    await self._fail(failed, core, disk, _NOTHING, nursery)
        await self._work.wait()

    # -- rounds ---------------------------------------------------------------------------

    async def _round(self, core: RaftCore, disk: DiskLog, nursery: trio.Nursery) -> None:
        while self._failure is not None:
            # No writes while the disk refuses them. A disk-full fault clears itself (the
            # probe); any other fault lasts until a restart, and this waits forever.
            await self._writes_resumed.wait()
        ready = core.ready(self._batch_limit(core))
        if ready.soft_state is not None:
            self._on_soft_state(ready.soft_state)
        if ready.snapshot is not None:
            try:
                await self._install_snapshot(core, disk, ready.snapshot)
            except OSError as exc:  # the disk refused it: as for any failed write
                await self._fail(exc, core, disk, _NOTHING, nursery)
                return
        if ready.committed_entries:
            await self._apply(core, ready)
            core.advance(ready)
            self._maybe_snapshot(core, disk, nursery)
        if ready.read_states:
            self._note_reads(ready.read_states)
        if self._reads:
            self._release_reads(core.applied_index)
        if ready.must_sync:  # new entries or a new term/vote: written and fsynced
            try:
                await trio.to_thread.run_sync(self._persist, disk, ready)
            except OSError as exc:
                await self._fail(exc, core, disk, ready, nursery)
                return
            self.fsync_rounds += 1
            if ready.entries_to_persist:
                last = ready.entries_to_persist[-1]
                core.persisted(last.term, last.index)
        if ready.messages:
            self._send(ready.messages, nursery)
        if self.clustered:
            self._check_leadership(core)

    def _send(self, messages: list[Message], nursery: trio.Nursery) -> None:
        """A round's messages, after its persist: one batch per destination; a SNAPSHOT
        message starts streaming that snapshot's file to its peer."""
        transport = self.transport
        if transport is None:
            return
        groups: dict[str, list[Message]] = {}
        for message in messages:
            if message.kind is MessageKind.SNAPSHOT:
                if message.dst not in self._sending_snapshot and message.snapshot is not None:
                    self._sending_snapshot.add(message.dst)
                    nursery.start_soon(self._send_snapshot, message)
                continue
            group = groups.get(message.dst)
            if group is None:
                groups[message.dst] = [message]
            else:
                group.append(message)
        for dst, group in groups.items():
            transport.send(dst, group)

    async def _send_snapshot(self, message: Message) -> None:
        meta = message.snapshot
        transport = self.transport
        disk = self._disk
        assert meta is not None and transport is not None and disk is not None
        peer = message.dst
        path = disk.dir / snapshot_name(meta)
        ok = False
        started = time.monotonic()
        try:
            await transport.send_snapshot(peer, message.term, meta, path)
            ok = True
        except (Unavailable, NotLeader, OSError) as exc:
            log.warning("sending the snapshot at %d to %s failed: %s", meta.index, peer, exc)
        finally:
            self._sending_snapshot.discard(peer)
            core = self._core
            if core is not None:
                core.report_snapshot(peer, ok)
                self._work.set()
        if ok:
            log.info(
                "sent the snapshot at index %d to %s in %.2fs",
                meta.index,
                peer,
                time.monotonic() - started,
            )

    async def _install_snapshot(self, core: RaftCore, disk: DiskLog, meta: SnapshotMeta) -> None:
        """The core accepted a received snapshot: make it the base of the disk log, restore
        the state machine from it, tell the core (before this round's messages go out)."""
        staged = self._staged.pop((meta.index, meta.term))
        data = await trio.to_thread.run_sync(disk.install_snapshot, meta, staged)
        self.state_machine.restore(data)
        self._snapshot_index = meta.index
        self._applied_conf = (meta.voters, meta.learners)
        # Entries up to meta.index were applied by the snapshot: their results are unknown.
        while self._waiters and self._waiters[0].first <= meta.index:
            waiter = self._waiters.popleft()
            waiter.error = Unavailable(
                "the entries of this request were applied through a snapshot from the leader, "
                "so their results are not known here: read it back before retrying"
            )
            waiter.event.set()
        core.snapshot_installed(meta)
        log.info("installed the leader's snapshot at index %d (term %d)", meta.index, meta.term)

    def _check_leadership(self, core: RaftCore) -> None:
        """Raise the signal once this node leads and applied its term's no-op."""
        if core.role is Role.LEADER:
            if self.leadership.term != core.term and self._serving:
                applied = core.applied_index
                if applied and core.term_at(applied) == core.term:
                    log.info("leading in term %d (applied index %d)", core.term, applied)
                    self.leadership.gained(core.term)
        elif self.leadership.term is not None:
            self.leadership.lost()

    def _batch_limit(self, core: RaftCore) -> int:
        """How many new entries this round persists: at most ``max_batch``, ending where a
        proposal ends, so a disk failure never splits one ``propose_many`` into an applied
        head and a refused tail (one proposal larger than ``max_batch`` goes whole)."""
        start = core.log.handed
        end = start
        for waiter in self._waiters:  # in index order; every new entry has its waiter
            if waiter.last <= start:
                continue
            if waiter.last - start > self.max_batch:
                end = end if end > start else waiter.last
                break
            end = waiter.last
        return end - start if end > start else self.max_batch

    @staticmethod
    def _persist(disk: DiskLog, ready: Ready) -> None:
        # The hard state (a new term, a vote) goes first: entries of a term must never be
        # durable under a term the node could forget.
        if ready.hard_state is not None:
            disk.save_hard_state(ready.hard_state)
        if ready.committed_entries:  # applied this round: the durable mark carries it
            disk.note_commit(ready.committed_entries[-1].index)
        entries = ready.entries_to_persist
        if entries and entries[0].index <= disk.last_index:  # a new leader's entries replace ours
            disk.truncate_suffix(entries[0].index)
        disk.append(entries)
        try:
            disk.sync()
        except OSError as exc:  # a failed fsync is never retried: tell ``_fail`` it was one
            raise diskfault.SyncFailed(exc.errno, exc.strerror, exc.filename) from exc

    async def _apply(self, core: RaftCore, ready: Ready) -> None:
        entries = ready.committed_entries
        apply = self.state_machine.apply
        waiters = self._waiters
        normal = _NORMAL
        # While forwards are in flight, every result is kept by index (forwarding.py).
        early = self._early.results if self._early.recording else None
        started = time.monotonic()
        for chunk_start in range(0, len(entries), _REPLAY_CHUNK):
            if chunk_start:
                log.info(
                    "applied %d of %d entries (%.1fs)",
                    chunk_start,
                    len(entries),
                    time.monotonic() - started,
                )
                await trio.lowlevel.checkpoint()
            for entry in entries[chunk_start : chunk_start + _REPLAY_CHUNK]:
                if entry.kind is normal:
                    self._bytes_since_snapshot += len(entry.data)
                    try:
                        result = apply(entry.index, entry.data)
                    except Exception as exc:
                        self._fail_waiters(Unavailable(f"the state machine failed: {exc!r}"))
                        self._failure = Unavailable(f"the state machine failed at {entry.index}")
                        raise
                else:
                    result = None  # Raft's own entry: never handed to the state machine
                    if entry.kind is _CONF_CHANGE:
                        conf = decode_conf(entry.data)
                        self._applied_conf = (conf.voters, conf.learners)
                if early is not None:
                    early[entry.index] = (entry.term, result)
                # Waiters are registered in index order, right after their entries were
                # appended; entries without one (no-ops, replayed entries) are skipped over.
                if waiters and waiters[0].first <= entry.index:
                    waiter = waiters[0]
                    if waiter.term != entry.term or waiter.last < entry.index:
                        found = self._drop_stale_waiters(core, entry.term, entry.index)
                        if found is None:
                            continue
                        waiter = found
                    waiter.results.append(result)
                    if entry.index == waiter.last:
                        waiters.popleft()
                        waiter.event.set()

    def _drop_stale_waiters(self, core: RaftCore, term: int, index: int) -> _Waiter | None:
        """The committed entry at ``index`` has ``term``: answer every waiter at the head that
        waited for an entry of another term there (another leader's entry took the index) or
        for indexes already passed; return the waiter this entry belongs to, if any."""
        waiters = self._waiters
        while waiters and waiters[0].first <= index:
            waiter = waiters[0]
            if waiter.term == term and waiter.last >= index:
                return waiter
            waiters.popleft()
            applied = len(waiter.results)
            if applied:
                waiter.error = Unavailable(
                    f"leadership changed: the first {applied} of the "
                    f"{waiter.last - waiter.first + 1} commands of this request were applied, "
                    f"the rest were not"
                )
            else:
                waiter.error = NotLeader(core.leader if core.leader != self.node_id else None)
            waiter.event.set()
        return None

    def _on_soft_state(self, soft: SoftState) -> None:
        log.debug("Raft: %s, leader %s", soft.role, soft.leader or "unknown")
        self._leader_seen.set()
        self._leader_seen = trio.Event()
        if soft.role != Role.LEADER.value:
            if self._reads:
                self._fail_reads(NotLeader(soft.leader), local_only=True)
            if self.leadership.term is not None:
                log.info("no longer the leader (now %s; leader %s)", soft.role, soft.leader)
                self.leadership.lost()

    def _note_reads(self, read_states: list[ReadState]) -> None:
        for state in read_states:
            read = self._reads.get(state.ctx)
            if read is not None:
                read.index = state.index
                if read.only_index:
                    del self._reads[state.ctx]
                    read.event.set()

    def _release_reads(self, applied: int) -> None:
        done = [
            ctx
            for ctx, read in self._reads.items()
            if read.index is not None and read.index <= applied
        ]
        for ctx in done:
            self._reads.pop(ctx).event.set()

    def _fail_reads(self, error: BaseException, *, local_only: bool = False) -> None:
        """Fail waiting read barriers (only those the local core confirms: ``local_only``;
        a follower's barrier waiting for its apply stays valid across leader changes)."""
        reads, self._reads = self._reads, {}
        for ctx, read in reads.items():
            if local_only and not read.local:
                self._reads[ctx] = read
                continue
            read.error = error
            read.event.set()
        if not local_only:
            remote, self._remote_reads = self._remote_reads, []
            for read in remote:
                read.error = error
                read.event.set()

    def _maybe_snapshot(self, core: RaftCore, disk: DiskLog, nursery: trio.Nursery) -> None:
        applied = core.applied_index
        if self._snapshot_in_flight or (
            applied - self._snapshot_index < self.snapshot_every
            and self._bytes_since_snapshot < self.snapshot_bytes
        ):
            return
        self._bytes_since_snapshot = 0
        voters, learners = self._applied_conf  # the configuration as of ``applied``
        meta = SnapshotMeta(applied, core.term_at(applied), voters, learners)

        def serialize_and_write() -> None:  # in a forked child: the state as of ``meta``
            disk.release_in_child()
            disk.save_snapshot(meta, self.state_machine.snapshot())

        try:
            child = start_child(serialize_and_write)  # forks now, while state == ``applied``
        except OSError as exc:
            log.error("cannot start a snapshot at index %d: %s; will retry", meta.index, exc)
            self._snapshot_index = meta.index
            return
        self._snapshot_in_flight = True
        nursery.start_soon(self._finish_snapshot, core, disk, meta, child)

    async def _finish_snapshot(
        self, core: RaftCore, disk: DiskLog, meta: SnapshotMeta, child: int | None
    ) -> None:
        started = time.monotonic()
        try:
            await wait_child(child)
            await trio.to_thread.run_sync(disk.compact, meta.index)
        except OSError as exc:
            # A failed snapshot loses nothing (the log still holds every entry): log it and
            # try again at the next interval; a failing disk will fail the next fsync anyway.
            # The child's half-written temp file must not keep the space it took.
            log.error(
                "snapshot at index %d failed: %s; the log is kept and the snapshot is tried "
                "again after %d more entries",
                meta.index,
                exc,
                self.snapshot_every,
            )
            self._snapshot_index = meta.index
            partial = disk.dir / (snapshot_name(meta) + ".tmp")
            try:
                await trio.to_thread.run_sync(partial.unlink, True)
            except OSError as cleanup:
                log.error("cannot remove the partial snapshot %s: %s", partial, cleanup)
            return
        finally:
            self._snapshot_in_flight = False
        if meta.index <= self._snapshot_index:  # a snapshot from the leader got further
            return
        core.compact(meta.index, meta.term)
        self._snapshot_index = meta.index
        self.snapshots_written += 1
        self._snapshot_done.set()
        self._snapshot_done = trio.Event()
        log.info(
            "snapshot at index %d (term %d) written in %.2fs",
            meta.index,
            meta.term,
            time.monotonic() - started,
        )

    # -- helpers --------------------------------------------------------------------------

    def _writable(self) -> RaftCore:
        if isinstance(self._failure, StorageFault):
            raise StorageFault(
                f"{self._failure}; this request was not applied",
                resumes_by_itself=self._failure.resumes_by_itself,
            )
        if self._failure is not None:
            raise self._failure
        if self._core is None or not self._serving:
            raise Unavailable(f"the Raft store in {self.data_dir} is not serving")
        return self._core

    def _wait_for(self, term: int, first: int, last: int) -> _Waiter:
        # In index order, always: a forwarded proposal placed by an old leader may wait at an
        # index past this node's own new entries (that leader's log was longer), and the
        # apply matches entries to waiters from the head.
        waiter = _Waiter(term, first, last)
        self._insert_waiter(waiter)
        return waiter

    async def _fail(
        self, exc: OSError, core: RaftCore, disk: DiskLog, ready: Ready, nursery: trio.Nursery
    ) -> None:
        """The disk refused ``ready``'s writes: stop writing, answer every waiter, and (for a
        full disk, once the tail is cut back) start probing for space."""
        fault = diskfault.classify(exc, self.data_dir)
        if not self._serving:  # recovery's own writes: ``serve`` gives up and the node exits
            fault = diskfault.at_startup(fault, self.data_dir)
        batch_last = ready.entries_to_persist[-1].index if ready.entries_to_persist else 0
        self._failure = fault  # refuse new proposals while the tail is cut back
        if fault.resumes_by_itself:
            try:
                await trio.to_thread.run_sync(disk.discard_unsynced)
            except OSError as cut:  # cannot even cut back: the tail is unknown, as for EIO
                log.error("cannot cut the Raft log back after %s: %s", exc, cut)
                fault = diskfault.cannot_cut_back(exc, cut, self.data_dir)
            else:
                dropped = core.discard_unpersisted()
                batch_last = 0  # cut back: nothing of the batch is on disk any more
                log.info("dropped %d unpersisted Raft log entries", dropped)
        self._failure = fault
        log.error("%s", fault)
        self._fail_waiters_after_fault(fault, batch_last)
        self._fail_reads(fault)
        if fault.resumes_by_itself:
            size = sum(len(e.data) + _RECORD_OVERHEAD for e in ready.entries_to_persist)
            size = min(max(size, diskfault.PROBE_MIN), diskfault.PROBE_MAX)
            nursery.start_soon(self._probe_for_space, disk, size)

    def _fail_waiters_after_fault(self, fault: StorageFault, batch_last: int) -> None:
        """Tell each waiter what became of its commands: entries up to ``batch_last`` were in
        the batch whose write failed and may be on disk (unknown); later ones are not."""
        resumes = fault.resumes_by_itself
        while self._waiters:
            waiter = self._waiters.popleft()
            applied = len(waiter.results)  # a batch split across rounds: its head committed
            if applied:
                outcome = (
                    f"the first {applied} of the {waiter.last - waiter.first + 1} commands "
                    f"of this request were applied, the rest were not"
                )
            else:
                outcome = "this request was not applied"
            if waiter.first <= batch_last:
                outcome = (
                    "the outcome of this request is unknown (it may be applied when the node "
                    "restarts): read it back before retrying"
                )
            waiter.error = StorageFault(f"{fault}; {outcome}", resumes_by_itself=resumes)
            waiter.event.set()

    async def _probe_for_space(self, disk: DiskLog, size: int) -> None:
        """Try a write of the failed batch's size every ``_PROBE_INTERVAL`` seconds; when it
        fits, clear the fault and let the rounds run again."""
        while True:
            await trio.sleep(_PROBE_INTERVAL)
            try:
                await trio.to_thread.run_sync(diskfault.probe_space, disk.dir, size)
            except OSError as exc:
                if diskfault.out_of_space(exc):
                    continue
                self._failure = diskfault.classify(exc, self.data_dir)  # worse: until restart
                log.error("%s", self._failure)
                return
            break
        log.warning(
            "space is back on the filesystem of %s: the Raft log takes writes again",
            self.data_dir,
        )
        self._failure = None
        self._writes_resumed.set()
        self._writes_resumed = trio.Event()
        self._work.set()

    def _fail_waiters(self, error: Unavailable) -> None:
        """Answer every waiting proposal and read with ``error``."""
        self._fail_reads(error)
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.error = error
            waiter.event.set()


def _flush_and_sync(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
