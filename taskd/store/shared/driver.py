"""The store a node runs on a shared database (PostgreSQL, Redis): ``SharedStore``.

Theory of operation: every node opens the same ``Backend``. At most one holds its lease; that
one leads. A node that finds the lease free takes it (a new term), applies every entry after
what it has applied (restoring the latest snapshot first when those entries were dropped),
and only then raises ``leadership.gained(term)``. It renews every ``lease_ttl / 3`` and steps
down (``lost()``) as soon as a renewal fails to answer before ``valid_until``: the lease's
end by this node's monotonic clock, measured from *before* the request that granted it, less
a margin, so it stops serving before the database can see the lease lapse. The database
judges every append against its own clock and the lease's term (``Fenced``), so a leader
that was paused past its lease can never write; the margin is for reads, which the leader
serves from memory.

Rounds (group commit): proposals queue; one task takes every queued proposal, applies the
whole batch to the state machine (the optional ``projection`` turns the results into the
task rows the backend writes in the same transaction), appends it with one backend call in
one thread hop, and answers. Proposals that arrive meanwhile form the next round. Because
the batch is applied before it is durable, a failed append rolls the state machine back to
the durable prefix (``DurablePrefix``) before anyone can read it: readers that arrive while
a round is in flight wait for it to settle, and the next round starts only once they ran.
The failed round's callers hear that the outcome is unknown; writes are refused with the
fault (``StorageFault``) until the database answers again and the leader re-read what the
failed append may have committed. ``Fenced`` steps down instead.

Followers tail the log (``wait_for_entries`` in a second thread, then ``read``) and apply
entries in order; their ``read_barrier`` reads the database's last index and waits until it
is applied. While the database cannot be reached, ``fault`` says so on every node
(``/readyz`` not ready).

Forwarding (given ``forwards``, the node's gRPC client, ``forwards.ForwardClient``): a
follower's writes go to the lease holder in batches (the Raft store's ``Forwarder``: every
queued caller's commands in one call, two calls in flight). The leader re-stamps them
(``stamp``), runs them in its next round and answers (term, first index) only once that round
is durable (``accept_forward``), so the entries at those indexes are surely these commands: a
shared log is never rewritten. The follower then waits for its OWN apply of them (apply is
deterministic, so its results are the leader's) and answers its caller after it: a read the
caller makes next on this node sees its write. Entries the tail applies while a forward is in
flight are recorded (``EarlyResults``) in case they are its own. A forward the leader refused
(not leading, its database failing before the round) is sent again to whoever leads, for at
most ``forward_patience`` seconds; one whose outcome is unknown (the leader's append or the
connection failed after it was sent) is answered ``Unavailable``: read it back. Without
``forwards`` a follower refuses writes with ``NotLeader(holder)``.

A database that lost taskd's data (a Redis restarted without persistence, a PostgreSQL
restored from an older backup) is noticed by every node that is not leading, at each look at
the lease: its peer secret changed, or its log ends before what this node applied. The node
that takes the lease next rebuilds the log from its own memory: a snapshot of its state at its
applied index (and, on PostgreSQL, the whole task table), saved under its new lease, so
nothing it had applied is lost. The last leader takes it at once; any other node waits one
lease period first, so the most complete copy wins when the last leader lives. The lease's
new term is above every term this node saw (``acquire(min_term)``), so terms never go back.
A node that finds another node leading the rebuilt database throws its own state away and
reads the database's from the start (``_reset``): there is one history, the database's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import trio

from taskd.errors import NotLeader, StartupError, StorageFault, Unavailable
from taskd.store.leadership import Leadership
from taskd.store.raft import wire
from taskd.store.raft.forwarding import EarlyResults, Forwarded, Forwarder, Forwards
from taskd.store.seam import Member, StoreStatus
from taskd.store.shared import faults, serialize
from taskd.store.shared.backend import Backend, BackendDown, Entry, Fenced, Lease, Row, Snapshot
from taskd.store.shared.prefix import DurablePrefix
from taskd.store.shared.threads import Hop, Threads
from taskd.store.statemachine import StateMachine

log = logging.getLogger("taskd.store.shared")

Projection = Callable[[Sequence[object]], Sequence[Row]]  # a round's results -> task rows


@dataclass(eq=False)
class _Proposal:
    items: list[bytes]
    done: trio.Event = field(default_factory=trio.Event)
    results: list[object] = field(default_factory=list)
    error: Exception | None = None
    taken: bool = False  # applied in a round: from here on a failure leaves it unknown
    term: int = 0  # where the round put it, once taken
    first: int = 0

    def answer(self, results: list[object]) -> None:
        self.results = results
        self.done.set()

    def fail(self, error: Exception) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


class _Waiter:
    """A forwarded request placed by the leader: the results of its entries as this node
    applies them, ``next`` the index it waits for."""

    __slots__ = ("error", "event", "last", "next", "results")

    def __init__(self, first: int, last: int) -> None:
        self.next = first
        self.last = last
        self.results: list[object] = []
        self.event = trio.Event()
        self.error: Exception | None = None


@dataclass(frozen=True, slots=True)
class _Held:
    lease: Lease
    renew_at: float  # on trio's clock
    valid_until: float  # serve nothing as leader from then on


class SharedStore:
    durable = True

    def __init__(
        self,
        backend: Backend,
        state_machine: StateMachine,
        *,
        node_id: str,
        lease_ttl: float = 10.0,
        margin: float = 0.2,  # of lease_ttl: stop leading this long before the lease ends
        snapshot_every: int = 100_000,  # as the Raft store
        projection: Projection | None = None,
        hop: Hop | None = None,
        retry_interval: float = 1.0,
        read_limit: int = 1000,
        fork_snapshots: bool = True,  # False: serialize on the loop (tests on virtual time)
        max_batch: int = 4096,  # commands per round at most
        all_rows: Callable[[], Sequence[Row]] | None = None,  # every task's row (a rebuild)
        forwards: Forwards | None = None,  # how a follower reaches the leader; None: refuse
        stamp: Callable[[bytes], bytes] | None = None,  # the leader's time on forwarded commands
        forward_patience: float | None = None,  # seconds; default: a lease and 2 s
    ) -> None:
        if (
            lease_ttl <= 0
            or not 0 < margin < 2 / 3
            or min(snapshot_every, read_limit, max_batch) < 1
        ):
            raise ValueError(
                "lease_ttl > 0, 0 < margin < 2/3, snapshot_every, read_limit and max_batch >= 1"
            )
        self.backend = backend
        self.state_machine = state_machine
        self.node_id = node_id
        self.lease_ttl = lease_ttl
        self.margin = margin * lease_ttl
        self.snapshot_every = snapshot_every
        self.retry_interval = retry_interval
        self.read_limit = read_limit
        self.max_batch = max_batch
        self.wait_timeout = min(lease_ttl / 3, 5.0)
        self.leadership = Leadership()
        self._projection = projection
        self._hop: Hop = hop if hop is not None else Threads()
        self._serving = False
        self._held: _Held | None = None
        self._prefix: DurablePrefix | None = None  # while leading
        self._term = 0  # the latest term seen
        self._holder: str | None = None  # the lease's holder as last seen
        self._applied = 0
        self._commit = 0  # the database's last index as last seen
        self._snapshot_index = 0
        self._fault: StorageFault | None = None
        self._pending: list[_Proposal] = []
        self._work = trio.Event()
        self._round: list[_Proposal] | None = None  # applied, its append in flight
        self._round_settled = trio.Event()
        self._readers = 0  # read barriers waiting for the round in flight
        self._readers_gone = trio.Event()
        self._advanced = trio.Event()  # _applied moved (or the store stopped)
        self._lease_left = 0.0  # how long the lease seen last had to run
        self._last_lease: Lease | None = None  # released on stop (if still ours)
        self._lead_nursery: trio.Nursery | None = None
        self._recovering = False
        self._fork_snapshots = fork_snapshots
        self._snapshot_in_flight = False
        self.snapshots = 0  # snapshots saved
        self.appends = 0  # rounds made durable (tests read it)
        self.rollbacks = 0
        self.peer_secret: bytes | None = None  # read from the database at open
        self._all_rows = all_rows
        self._empty = state_machine.snapshot()  # the state before anything: a reset's base
        self._led_term = 0  # the term this node last led in
        self._forgot_since: float | None = None  # when this node saw the database forget
        self._generation = 0  # bumped by a reset: reads begun before it are dropped
        self.rebuilds = 0  # logs rebuilt from this node's memory (tests read it)
        self.resets = 0
        self._stamp = stamp
        self._up: list[tuple[str, int]] = []  # the nodes up, as the last announce found them
        self.forward_patience = lease_ttl + 2.0 if forward_patience is None else forward_patience
        self._early = EarlyResults()
        self._waiting: dict[int, _Waiter] = {}  # forwarded requests, by the index they wait for
        self._holder_seen = trio.Event()  # set (and replaced) when the known holder changes
        self._forwarder: Forwarder | None = None
        if forwards is not None:
            self._forwarder = Forwarder(
                forwards,
                leader=self._leader_to_forward_to,
                wait_for_leader=self._wait_for_leader,
                applied=lambda: self._applied,
                early=self._early,
                placement=self,
                leader_wait=lease_ttl,
            )

    # -- the store seam -------------------------------------------------------------------

    @property
    def fault(self) -> StorageFault | None:
        return self._fault

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the database, catch up, then lead or follow until cancelled. A database that
        does not answer at start (and may by itself) does not hold the node up: ``started``
        is reported at once, with the fault, so the node serves /readyz (503, naming the
        database) and refuses requests while this keeps trying."""
        reported = await self._open(task_status)
        try:
            async with trio.open_nursery() as nursery:
                if self._forwarder is not None:
                    nursery.start_soon(self._forwarder.run)
                nursery.start_soon(self._announce)
                await self._start()
                if not reported:
                    task_status.started()
                while True:
                    if self._held is not None:
                        await self._lead()
                    else:
                        await self._follow()
        finally:
            self._serving = False
            self._step_down("the store stopped")
            self._stop_forwarding()
            self._wake(self._advanced)
            with trio.CancelScope(shield=True):
                await self._close(self._last_lease)

    async def propose(self, data: bytes) -> object:
        [result] = await self.propose_many([data])
        return result

    async def propose_many(self, items: Sequence[bytes]) -> list[object]:
        await trio.lowlevel.checkpoint()
        if not items:
            return []
        self._check_serving()
        if self._fault is not None:
            raise faults.not_applied(self._fault)
        if self._held is None:
            if self._forwarder is None:
                raise NotLeader(self._holder)
            return await self._forward(list(items))
        try:
            proposal = await self._run_proposal(list(items))
        except NotLeader:  # it stepped down before the round: nothing applied, so forward it
            if self._forwarder is None:
                raise
            return await self._forward(list(items))
        return proposal.results

    async def _run_proposal(self, items: list[bytes]) -> _Proposal:
        """Queue ``items`` for the next round and wait for it: the proposal, answered."""
        proposal = await self._settle(_Proposal(items))
        if proposal.error is not None:
            raise proposal.error
        return proposal

    async def _settle(self, proposal: _Proposal) -> _Proposal:
        """Queue ``proposal`` for the next round and wait until it is answered."""
        self._pending.append(proposal)
        self._work.set()
        try:
            await proposal.done.wait()
        finally:
            if not proposal.done.is_set() and proposal in self._pending:
                self._pending.remove(proposal)  # cancelled before its round: never applied
        return proposal

    # -- forwarding (module docstring) ----------------------------------------------------

    async def accept_forward(self, blob: bytes) -> tuple[int, int]:
        """The leader's side of a follower's forward: run the commands in a round and answer
        (term, first index) once it is durable. Raises ``NotLeader`` or ``StorageFault`` when
        nothing was applied, ``ForwardUnknown`` when the outcome is unknown, and
        ``wire.WireError`` for a malformed blob."""
        items = wire.decode_commands(blob)
        self._check_serving()
        if self._held is None:
            raise NotLeader(self._holder if self._holder != self.node_id else None)
        if self._fault is not None:
            raise faults.not_applied(self._fault)
        if not items:
            return self._term, self._applied + 1
        if self._stamp is not None:
            items = [self._stamp(item) for item in items]
        proposal = await self._settle(_Proposal(items))
        if proposal.error is not None:
            if proposal.taken:
                raise ForwardUnknown(str(proposal.error))
            raise proposal.error
        return proposal.term, proposal.first

    async def _forward(self, items: list[bytes]) -> list[object]:
        assert self._forwarder is not None
        forwarded = self._forwarder.submit(items, self.forward_patience)
        await forwarded.event.wait()
        if forwarded.error is not None:
            error = forwarded.error
            if isinstance(error, NotLeader):
                if self._held is not None:  # this node took the lease meanwhile
                    return (await self._run_proposal(items)).results
                if self._fault is not None:  # the database is why nobody took it
                    raise faults.not_applied(self._fault) from None
            raise error
        waiter: _Waiter = forwarded.waiter
        with trio.move_on_after(self.forward_patience):
            await waiter.event.wait()
        if not waiter.event.is_set():  # this node cannot read the log now (its database)
            if self._waiting.get(waiter.next) is waiter:
                del self._waiting[waiter.next]
            raise Unavailable(
                f"the leader made this write durable (from index {forwarded.first}), but this "
                f"node could not apply it within {self.forward_patience:g} s (it cannot read "
                f"{self.backend.name}): it stands, so send it again only with the same "
                f"idempotency key; read it back on another node"
            )
        if waiter.error is not None:
            raise waiter.error
        return waiter.results

    def placed(self, forwarded: Forwarded) -> None:
        """The leader made ``forwarded`` durable at ``first ..``: its results are this node's
        apply of those entries, some perhaps applied already (the early record)."""
        first, last = forwarded.first, forwarded.first + len(forwarded.items) - 1
        waiter = _Waiter(first, last)
        forwarded.waiter = waiter
        early = self._early.results
        while waiter.next <= min(last, self._applied):
            found = early.pop(waiter.next, None)
            if found is None:  # applied by restoring a snapshot
                waiter.error = _result_unknown(waiter.next)
                waiter.event.set()
                return
            waiter.results.append(found[1])
            waiter.next += 1
        if waiter.next > last:
            waiter.event.set()
        else:
            self._waiting[waiter.next] = waiter

    def _leader_to_forward_to(self) -> str | None:
        holder = self._holder
        return holder if self._held is None and holder != self.node_id else None

    async def _wait_for_leader(self, seconds: float) -> str | None:
        with trio.move_on_after(seconds):
            while self._held is None and self._serving and self._leader_to_forward_to() is None:
                await self._holder_seen.wait()
        return self._leader_to_forward_to()

    def _see_holder(self, holder: str | None) -> None:
        if holder != self._holder:
            self._holder = holder
            seen, self._holder_seen = self._holder_seen, trio.Event()
            seen.set()

    def _stop_forwarding(self) -> None:
        stopped = Unavailable(
            "this node stopped before its forwarded request was answered or applied here: the "
            "outcome is unknown; read it back on another node before retrying"
        )
        if self._forwarder is not None:
            self._forwarder.fail_all(stopped)
        waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            waiter.error = stopped
            waiter.event.set()

    async def read_barrier(self) -> None:
        await trio.lowlevel.checkpoint()
        self._check_serving()
        if self._held is not None:
            await self._leader_barrier()
            return
        try:
            last = await self._hop.call(self.backend.last_index)
        except BackendDown as exc:
            raise Unavailable(f"cannot reach the database for a read barrier: {exc}") from None
        self._commit = max(self._commit, last)
        while self._applied < last:
            self._check_serving()
            advanced = self._advanced
            await advanced.wait()

    def not_ready_reason(self) -> str | None:
        """None when this node can serve (it leads, or follows a known leader, and the
        database answers); else why not, and what to do."""
        if self._fault is not None:
            return str(self._fault)
        if not self._serving:
            return f"the store on {self.backend.name} is starting (reading its log)"
        if self._held is None and self._holder is None:
            return (
                f"no node holds the lease on {self.backend.name} yet: one takes it within "
                f"{self.lease_ttl:g} s of the last holder's end"
            )
        return None

    def status(self) -> StoreStatus:
        role = "leader" if self._held is not None else "follower"
        durable = self._prefix.index if self._prefix is not None else self._applied
        members = [Member(self.node_id, role, durable, self._fault is None)]
        if self._holder is not None and self._holder != self.node_id:
            members.append(Member(self._holder, "leader", self._commit, True))
        listed = {member.id for member in members}
        members.extend(
            Member(node, "follower", applied, self._fault is None)
            for node, applied in self._up
            if node not in listed
        )
        return StoreStatus(
            id=self.node_id,
            role=role,
            term=self._term,
            leader=self._holder,
            commit_index=max(self._commit, durable),
            applied_index=durable,
            members=members,
        )

    async def _announce(self) -> None:
        """Every third of a lease, tell the database this node is up and how far it applied
        the log, and learn which other nodes are: the members ``status`` lists (a node that
        stopped drops out within two leases). A failure here changes nothing: the log's own
        calls report the database's faults."""
        while True:
            # a node is up while it announced within two leases: one late announce (a busy
            # database, a stalled thread) does not drop it from the list
            within = 2 * self.lease_ttl
            announce = partial(self.backend.announce, self.node_id, self._applied, within)
            try:
                self._up = await self._hop.call(announce)
            except BackendDown as exc:
                log.debug("cannot announce this node on %s (%s)", self.backend.name, exc)
            await trio.sleep(self.lease_ttl / 3)

    # -- starting and stopping --------------------------------------------------------------

    async def _open(self, task_status: trio.TaskStatus[None]) -> bool:
        """Open the backend, retrying while it is down; whether ``started`` was reported."""
        reported = False
        while True:
            try:
                await self._hop.call(self.backend.open)
                self.peer_secret = await self._hop.call(self.backend.peer_secret)
                return reported
            except ValueError as exc:
                raise StartupError(f"{self.backend.name} cannot hold taskd's data: {exc}") from None
            except BackendDown as exc:
                if exc.misconfigured or not exc.resumes_by_itself:
                    raise StartupError(
                        f"cannot open the store: {exc}. Fix the --store URL (or TASKD_STORE) "
                        f"or the database it names, then start taskd again"
                    ) from None
                self._set_fault(exc)
                log.warning("cannot open %s (%s); trying again", self.backend.name, exc)
                if not reported:
                    task_status.started()  # not ready (the fault says why) but answering
                    reported = True
            await trio.sleep(self.retry_interval)

    async def _start(self) -> None:
        """Catch up with the log and lead at once if the lease is free (as the conformance
        suite expects of a lone node). If the database stops answering meanwhile, start as a
        follower with the fault: following retries, and nothing is served that is not read
        from the database first (a follower's read barrier asks it)."""
        self._serving = True
        try:
            await self._catch_up()
            await self._try_to_lead()
        except BackendDown as exc:
            self._set_fault(exc)
            log.warning("cannot read %s (%s); following until it answers", self.backend.name, exc)
        else:
            self._clear_fault()

    async def _close(self, lease: Lease | None) -> None:
        """Release the last lease held (if it is still ours: another node takes over at once)
        and close the backend."""
        if lease is not None:
            try:
                await self._hop.call(partial(self.backend.release, lease))
            except (BackendDown, Fenced) as exc:
                log.warning("could not release the lease of term %d: %s", lease.term, exc)
        await self._hop.call(self.backend.close)

    # -- following ------------------------------------------------------------------------

    async def _follow(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._tail)
            while True:
                pause = self.retry_interval
                try:
                    if await self._try_to_lead():
                        nursery.cancel_scope.cancel()
                        return
                    self._clear_fault()
                    pause = self._lease_left
                except BackendDown as exc:
                    self._set_fault(exc)
                await trio.sleep(min(pause, self.lease_ttl / 3))

    async def _tail(self) -> None:
        while True:
            try:
                generation = self._generation
                entries = await self._read_after()
                if generation != self._generation:
                    continue  # a reset happened meanwhile: read again from where it left off
                if entries:
                    self._apply_durable(entries)
                    continue
                await self._hop.wait(self.backend, self._applied, self.wait_timeout)
            except BackendDown as exc:
                self._set_fault(exc)
                await trio.sleep(self.retry_interval)

    async def _try_to_lead(self) -> bool:
        """Take the lease if it is free, catch up, and lead; False if another node holds it
        (or took it meanwhile). Notices a database that forgot (module docstring)."""
        view = await self._hop.call(self.backend.lease)
        known = (self._holder, self._term)  # the lease as this node knew it
        self._term = max(self._term, view.term)
        self._see_holder(view.holder)
        self._lease_left = view.seconds_left + 0.001
        forgot = await self._forgotten()
        if forgot is not None and view.holder not in (None, self.node_id):
            # The very lease this node knew, kept by the database from before it forgot (a
            # restored backup): its holder rebuilds, or it lapses and the next leader does;
            # until then this node keeps what it applied. Any other holder leads what the
            # database has now (rebuilt, or all it kept): follow it.
            if (view.holder, view.term) != known:
                await self._reset(forgot, view.holder)
            return False
        if view.holder == self.node_id:
            # Its own lease, though it does not lead: a renewal in flight when it stepped down
            # extended it (or a previous process of this node held it). Give it up, so that
            # a node leads again now rather than when it runs out.
            await self._hop.call(partial(self.backend.release, Lease(self.node_id, view.term, 0.0)))
            return False
        if view.holder is not None:
            return False
        if forgot is not None and not self._may_rebuild():
            return False
        lease = await self._hop.call(
            partial(self.backend.acquire, self.node_id, self.lease_ttl, self._term + 1)
        )
        if lease is None:
            self._lease_left = 0.0
            return False
        await self._catch_up()  # nobody else appends now: this reaches the log's end
        base = await self._base_snapshot()
        if forgot is not None:
            try:
                await self._rebuild(lease, base, forgot)
            except Fenced:
                return False
        asked = trio.current_time()  # the snapshot may have taken a while: renew first
        try:
            lease = await self._hop.call(partial(self.backend.renew, lease, self.lease_ttl))
        except Fenced:
            return False
        self._prefix = DurablePrefix(self._applied, base)
        self._held, self._last_lease = self._hold(lease, asked), lease
        self._term = self._led_term = lease.term
        self._see_holder(self.node_id)
        self.leadership.gained(lease.term)
        log.info("%s leads in term %d from index %d", self.node_id, lease.term, self._applied)
        return True

    async def _forgotten(self) -> str | None:
        """Why the database has lost taskd's data, or None (the module docstring)."""
        secret = await self._hop.call(self.backend.peer_secret)
        last = await self._hop.call(self.backend.last_index)
        reason = None
        if self.peer_secret is not None and secret != self.peer_secret:
            reason = "its peer secret changed: it lost every key taskd keeps there"
        elif last < self._applied:
            reason = f"its log ends at index {last}, before index {self._applied} this node applied"
        if reason is None:
            self._forgot_since = None
        elif self._forgot_since is None:
            self._forgot_since = trio.current_time()
            log.error(
                "%s lost taskd's data (%s; a Redis restarted without persistence, or a "
                "database restored from an older backup?): the next leader rebuilds it from "
                "its memory",
                self.backend.name,
                reason,
            )
        return reason

    def _may_rebuild(self) -> bool:
        """The last leader rebuilds at once; others give it a lease period to do so."""
        if self._led_term and self._led_term >= self._term:
            return True
        since = self._forgot_since
        return since is not None and trio.current_time() - since >= self.lease_ttl

    async def _rebuild(self, lease: Lease, base: bytes, reason: str) -> None:
        """Save this node's state as the database's snapshot (and, with a task table, every
        task's row), under ``lease``: the log is whole again from this node's memory."""
        rows = self._all_rows() if self._all_rows is not None else None
        snapshot = Snapshot(self._applied, lease.term, base)
        await self._hop.call(partial(self.backend.save_snapshot, lease, snapshot, rows))
        self._snapshot_index = self._commit = self._applied
        self.peer_secret = await self._hop.call(self.backend.peer_secret)
        self._forgot_since = None
        self.rebuilds += 1
        log.error(
            "%s: rebuilt taskd's log from the memory of %s (%s): its state at index %d, "
            "%d tasks; what this node had not applied is lost",
            self.backend.name,
            self.node_id,
            reason,
            self._applied,
            len(rows) if rows is not None else -1,
        )

    async def _reset(self, reason: str, holder: str | None) -> None:
        """Another node leads a database that forgot what this node applied: drop this
        node's state and read the database's from the start."""
        log.error(
            "%s: %s, and %s leads it now: this node drops its state (index %d) and reads the "
            "database's from the start",
            self.backend.name,
            reason,
            holder,
            self._applied,
        )
        self._generation += 1
        self.state_machine.restore(self._empty)
        self._applied = self._snapshot_index = self._commit = 0
        waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            waiter.error = Unavailable(
                "the database lost its data while this write was being applied here: its "
                "outcome is unknown; read it back before retrying"
            )
            waiter.event.set()
        self.peer_secret = await self._hop.call(self.backend.peer_secret)
        self._forgot_since = None
        self.resets += 1
        await self._catch_up()
        self._wake(self._advanced)

    async def _base_snapshot(self) -> bytes:
        """The state as it is now (nothing changes it before this node leads), serialized by
        a child so a large state does not stall the loop at takeover."""
        try:
            return await serialize.finish(
                serialize.start(self.state_machine, fork=self._fork_snapshots)
            )
        except OSError as exc:
            log.warning("snapshot child failed at takeover (%s): serializing here", exc)
            return self.state_machine.snapshot()

    async def _catch_up(self) -> None:
        if self._applied == 0:
            await self._restore_latest()
        while entries := await self._read_after():
            self._apply_durable(entries)

    async def _read_after(self) -> list[Entry]:
        while True:
            after = self._applied
            try:
                return await self._hop.call(partial(self.backend.read, after, self.read_limit))
            except ValueError:  # dropped by a snapshot
                if not await self._restore_latest() and self._applied == after:
                    # (another task, a reset's catch-up, may have restored it meanwhile)
                    gone = f"entries after {after} are gone and no snapshot covers them"
                    raise RuntimeError(gone) from None

    async def _restore_latest(self) -> bool:
        snapshot = await self._hop.call(self.backend.load_snapshot)
        if snapshot is None or snapshot.index <= self._applied:
            return False
        self.state_machine.restore(snapshot.data)
        self._applied = self._snapshot_index = snapshot.index
        self._commit = max(self._commit, snapshot.index)
        for index in [i for i in self._waiting if i <= snapshot.index]:
            waiter = self._waiting.pop(index)
            waiter.error = _result_unknown(index)
            waiter.event.set()
        return True

    def _apply_durable(self, entries: Sequence[Entry]) -> None:
        if self._round is not None:  # a leader's own round is in flight: nothing to read
            return
        for entry in entries:
            if entry.index <= self._applied:
                continue  # read twice (the tail raced a catch-up)
            if entry.index != self._applied + 1:
                raise RuntimeError(f"entry {entry.index} follows applied index {self._applied}")
            result = self.state_machine.apply(entry.index, entry.data)
            self._applied = entry.index
            if self._early.recording:
                self._early.results[entry.index] = (entry.term, result)
            if self._waiting:
                self._answer_waiter(entry.index, result)
            if self._prefix is not None:
                self._prefix.extend(entry.index, [entry.data])
        self._commit = max(self._commit, self._applied)
        self._wake(self._advanced)

    def _answer_waiter(self, index: int, result: object) -> None:
        waiter = self._waiting.pop(index, None)
        if waiter is None:
            return
        waiter.results.append(result)
        if index < waiter.last:
            waiter.next = index + 1
            self._waiting[index + 1] = waiter
        else:
            waiter.event.set()

    # -- leading --------------------------------------------------------------------------

    def _hold(self, lease: Lease, asked: float) -> _Held:
        return _Held(lease, asked + self.lease_ttl / 3, asked + lease.seconds_left - self.margin)

    async def _lead(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._lead_nursery = nursery
                nursery.start_soon(self._watchdog)
                nursery.start_soon(self._renewals)
                nursery.start_soon(self._rounds)
                if self._fault is not None:
                    self._start_recovery()
        finally:
            self._lead_nursery = None
            self._recovering = False
            self._step_down("its leadership ended")

    async def _watchdog(self) -> None:
        while (held := self._held) is not None:
            if trio.current_time() >= held.valid_until:
                self._step_down("its lease could lapse: no renewal was answered in time")
                return
            await trio.sleep_until(held.valid_until)

    async def _renewals(self) -> None:
        retry_at: float | None = None
        while (held := self._held) is not None:
            await trio.sleep_until(retry_at if retry_at is not None else held.renew_at)
            asked = trio.current_time()
            try:
                lease = await self._hop.call(
                    partial(self.backend.renew, held.lease, self.lease_ttl)
                )
            except Fenced:
                self._step_down("its lease was taken by another node")
                return
            except BackendDown as exc:
                self._set_fault(exc)
                self._start_recovery()
                retry_at = asked + min(self.retry_interval, self.lease_ttl / 10)
                continue
            if self._held is not held:
                return
            self._held, retry_at = self._hold(lease, asked), None
            if await self._log_was_lost(self._held):
                return

    async def _log_was_lost(self, held: _Held) -> bool:
        """Whether the database's log now ends before what this leader made durable (a
        backup restored under it, its own lease with it): then it steps down, and rebuilds
        the log from its memory in a new term as it tries to lead again (``_try_to_lead``)."""
        durable = self._prefix.index if self._prefix is not None else self._applied
        try:
            last = await self._hop.call(self.backend.last_index)
        except BackendDown:
            return False  # the next renewal finds out
        if self._held is not held or last >= durable:
            return False
        self._step_down(
            f"{self.backend.name} lost taskd's data: its log ends at index {last}, before "
            f"index {durable} this node made durable"
        )
        return True

    async def _rounds(self) -> None:
        while True:
            while not self._pending:
                await self._work.wait()
                self._work = trio.Event()
            if self._readers:  # readers of the last round read before the next is applied
                await self._readers_gone.wait()
            held, batch = self._held, self._take_batch()
            if held is None:
                return
            if self._fault is not None:
                for proposal in batch:
                    proposal.fail(faults.not_applied(self._fault))
                continue
            await self._run_round(held, batch)

    def _take_batch(self) -> list[_Proposal]:
        """The queued proposals, up to ``max_batch`` commands (the first one whole), in order:
        one transaction stays of a bounded size."""
        count = 0
        for taken, proposal in enumerate(self._pending):
            count += len(proposal.items)
            if count > self.max_batch and taken > 0:
                batch, self._pending = self._pending[:taken], self._pending[taken:]
                self._work.set()  # the rest makes the next round
                return batch
        batch, self._pending = self._pending, []
        return batch

    async def _run_round(self, held: _Held, batch: list[_Proposal]) -> None:
        items = [item for proposal in batch for item in proposal.items]
        first = self._applied + 1
        place = first
        for proposal in batch:
            proposal.taken, proposal.term, proposal.first = True, held.lease.term, place
            place += len(proposal.items)
        apply = self.state_machine.apply
        results = [apply(index, item) for index, item in enumerate(items, first)]
        self._applied = first + len(items) - 1
        rows = self._projection(results) if self._projection is not None else ()
        self._round, self._round_settled = batch, trio.Event()
        append = partial(self.backend.append, held.lease, first, items, rows)
        error: Exception | None = None
        fenced = False
        try:
            await self._hop.call(append)
        except Fenced:
            fenced = True
        except BackendDown as exc:
            error = faults.outcome_unknown(self._set_fault(exc))
        if self._round is not batch:
            return  # stepped down meanwhile: its callers were answered then
        self._round = None
        if fenced or error is not None:
            self._roll_back()
            for proposal in batch:
                proposal.taken = not fenced  # a fenced append wrote nothing
                proposal.fail(error if error is not None else NotLeader(None))
            self._wake(self._round_settled)
            if fenced:
                self._step_down("its append was fenced: the lease is no longer its own")
            else:
                self._start_recovery()
            return
        assert self._prefix is not None
        self._prefix.extend(first, items)
        self._commit = max(self._commit, self._applied)
        self.appends += 1
        offset = 0
        for proposal in batch:
            proposal.answer(results[offset : offset + len(proposal.items)])
            offset += len(proposal.items)
        self._wake(self._round_settled)
        self._wake(self._advanced)
        if self._applied - self._snapshot_index >= self.snapshot_every:
            self._snapshot(held)

    def _snapshot(self, held: _Held) -> None:
        """Begin a snapshot of the state at this index (between two rounds: the fork happens
        here), and save it beside the rounds."""
        if self._lead_nursery is None or self._snapshot_in_flight:
            return
        try:
            pending = serialize.start(self.state_machine, fork=self._fork_snapshots)
        except OSError as exc:
            log.error("snapshot at index %d not started (%s)", self._applied, exc)
            return
        self._snapshot_in_flight = True
        self._snapshot_index = self._applied
        self._lead_nursery.start_soon(self._save_snapshot, held, self._applied, pending)

    async def _save_snapshot(self, held: _Held, index: int, pending: serialize.Pending) -> None:
        try:
            data = await serialize.finish(pending)
            if self._held is not held or self._prefix is None:
                return
            self._prefix.rebase(index, data)
            snapshot = Snapshot(index, held.lease.term, data)
            await self._hop.call(partial(self.backend.save_snapshot, held.lease, snapshot))
            self.snapshots += 1
        except Fenced:
            self._step_down("its snapshot was fenced: the lease is no longer its own")
        except (BackendDown, OSError) as exc:
            log.error("snapshot at index %d not saved (%s); tried again later", index, exc)
        finally:
            self._snapshot_in_flight = False

    async def _leader_barrier(self) -> None:
        settled = self._round_settled
        if self._round is not None:
            if self._readers == 0:
                self._readers_gone = trio.Event()
            self._readers += 1
            try:
                await settled.wait()
            finally:
                self._readers -= 1
                if self._readers == 0:
                    self._readers_gone.set()
        held = self._held
        if held is None or trio.current_time() >= held.valid_until:
            raise NotLeader(self._holder if self._holder != self.node_id else None)

    def _start_recovery(self) -> None:
        if self._lead_nursery is not None and not self._recovering:
            self._recovering = True
            self._lead_nursery.start_soon(self._recover)

    async def _recover(self) -> None:
        """While a fault that resumes by itself lasts: wait, re-read what a failed append may
        have committed, and take writes again once the database answered."""
        try:
            while self._fault is not None and self._fault.resumes_by_itself:
                await trio.sleep(self.retry_interval)
                if self._round is not None:
                    continue
                try:
                    await self._catch_up()
                except BackendDown as exc:
                    self._set_fault(exc)
                    continue
                self._clear_fault()
        finally:
            self._recovering = False

    def _roll_back(self) -> None:
        assert self._prefix is not None
        if self._applied > self._prefix.index:
            self._prefix.roll_back(self.state_machine)
            self._applied = self._prefix.index
            self.rollbacks += 1

    def _step_down(self, reason: str) -> None:
        held = self._held
        if held is None:
            return
        log.warning("%s stops leading in term %d: %s", self.node_id, held.lease.term, reason)
        self._held = None
        if self._holder == self.node_id:
            self._see_holder(None)
        if self._round is not None:
            batch, self._round = self._round, None
            for proposal in batch:
                proposal.fail(
                    Unavailable(
                        f"this node stopped leading ({reason}) while this request was being "
                        f"written; its outcome is unknown: read it back before retrying"
                    )
                )
        self._roll_back()
        self._prefix = None
        pending, self._pending = self._pending, []
        for proposal in pending:
            proposal.fail(NotLeader(None))
        self._wake(self._round_settled)
        self.leadership.lost()
        if self._lead_nursery is not None:
            self._lead_nursery.cancel_scope.cancel()

    # -- helpers --------------------------------------------------------------------------

    def _check_serving(self) -> None:
        if not self._serving:
            raise Unavailable(f"the shared store on {self.backend.name} is not serving")

    def _set_fault(self, exc: BackendDown) -> StorageFault:
        """Record the fault ``exc`` means (a lasting one is never replaced by a passing one)."""
        current = self._fault
        if current is None or current.resumes_by_itself:
            if current is None:
                log.error("%s", faults.storage_fault(exc))
            self._fault = current = faults.storage_fault(exc)
        return current

    def _clear_fault(self) -> None:
        if self._fault is not None and self._fault.resumes_by_itself:
            log.warning("%s answers again: writes resume", self.backend.name)
            self._fault = None

    def _wake(self, event: trio.Event) -> None:
        event.set()
        if event is self._advanced:
            self._advanced = trio.Event()


class ForwardUnknown(Unavailable):
    """The leader took a forwarded request into a round whose append failed: it may or may
    not be in the log (the follower says so to its caller)."""


def _result_unknown(index: int) -> Unavailable:
    return Unavailable(
        f"the leader made this request durable, but this node applied it (from index {index}) "
        "by restoring a snapshot, so its result is not known here: read the task back"
    )
