"""A shared database in memory, for the shared store's driver tests: a ``FakeDatabase`` that
several ``FakeBackend`` connections (one per ``SharedStore``) open in one process.

It behaves like the real backends where the driver can tell: a lease judged by the database's
clock (trio's, so ``autojump_clock`` makes lease timings exact), terms that grow with every
new holder, fenced appends and snapshots, entries dropped by a snapshot. ``FakeHop`` stands in
for the driver's threads: calls run inline, shielded from cancellation like a worker thread
(a cancelled caller still waits for the call to end), and can be held (``pause``) as a node
paused or cut off before its request reaches the database. Faults: ``down`` (every call
raises ``BackendDown``) and ``fail_next_append`` ("before": nothing committed; "after": the
commit happened but its answer was lost).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import trio

from taskd.store.shared.backend import (
    Backend,
    BackendDown,
    Entry,
    Fenced,
    Lease,
    LeaseView,
    Row,
    Snapshot,
)

T = TypeVar("T")


class FakeDatabase:
    def __init__(self) -> None:
        self.holder: str | None = None
        self.term = 0
        self.expires = 0.0
        self.log: list[Entry] = []
        self.snapshot: Snapshot | None = None
        self.rows: dict[object, Row] = {}
        self.appends = 0
        self.sizes: list[int] = []  # commands per append
        self.fenced = 0  # appends and snapshots refused by fencing
        self._grew = trio.Event()
        self.secret = b"fake peer secret"
        self.nodes: dict[str, tuple[float, int]] = {}  # node -> (when it announced, applied)

    def wipe(self) -> None:
        """Lose everything, as a Redis without persistence does when it restarts."""
        self.holder, self.term, self.expires = None, 0, 0.0
        self.log, self.snapshot, self.rows, self.nodes = [], None, {}, {}
        self.secret = b"fake peer secret after a wipe"

    def now(self) -> float:
        return trio.current_time()

    def last_index(self) -> int:
        if self.log:
            return self.log[-1].index
        return self.snapshot.index if self.snapshot is not None else 0

    def held_by(self, lease: Lease) -> bool:
        return (self.holder, self.term) == (lease.holder, lease.term) and self.expires > self.now()

    async def grown_after(self, after: int) -> None:
        while self.last_index() <= after:
            await self._grew.wait()

    def grew(self) -> None:
        self._grew.set()
        self._grew = trio.Event()


class FakeBackend:
    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.down = False
        self.fail_next_append: str | None = None  # "before" or "after" the commit
        self.opened = False
        self.refusal: BackendDown | None = None  # raised by every call while set

    @property
    def name(self) -> str:
        return "the fake database"

    def _reachable(self) -> None:
        if self.refusal is not None:
            raise self.refusal
        if self.down:
            raise BackendDown("the fake database cannot be reached (simulated)")

    def open(self) -> None:
        self._reachable()
        self.opened = True

    def close(self) -> None:
        self.opened = False

    def acquire(self, node: str, ttl: float, min_term: int = 0) -> Lease | None:
        self._reachable()
        db, now = self.db, self.db.now()
        if db.holder is not None and db.expires > now and db.holder != node:
            return None
        if db.holder != node or db.expires <= now:
            db.term = max(db.term + 1, min_term)
        db.holder, db.expires = node, now + ttl
        return Lease(node, db.term, ttl)

    def renew(self, lease: Lease, ttl: float) -> Lease:
        self._reachable()
        if not self.db.held_by(lease):
            raise Fenced(f"term {lease.term} is over")
        self.db.expires = self.db.now() + ttl
        return Lease(lease.holder, lease.term, ttl)

    def release(self, lease: Lease) -> None:
        self._reachable()
        if self.db.held_by(lease):
            self.db.holder, self.db.expires = None, self.db.now()

    def lease(self) -> LeaseView:
        self._reachable()
        db, now = self.db, self.db.now()
        if db.holder is None or db.expires <= now:
            return LeaseView(None, db.term, 0.0)
        return LeaseView(db.holder, db.term, db.expires - now)

    def append(
        self, lease: Lease, first_index: int, items: Sequence[bytes], rows: Sequence[Row] = ()
    ) -> None:
        self._reachable()
        fail, self.fail_next_append = self.fail_next_append, None
        if fail == "before":
            raise BackendDown("the fake database went away before the commit (simulated)")
        if not self.db.held_by(lease) or self.db.last_index() != first_index - 1:
            self.db.fenced += 1
            raise Fenced(f"term {lease.term} or index {first_index} is stale")
        self.db.log.extend(Entry(i, lease.term, d) for i, d in enumerate(items, first_index))
        for row in rows:
            self.db.rows[row["id"]] = row
        self.db.appends += 1
        self.db.sizes.append(len(items))
        self.db.grew()
        if fail == "after":
            raise BackendDown("the fake database went away during the commit (simulated)")

    def last_index(self) -> int:
        self._reachable()
        return self.db.last_index()

    def read(self, after: int, limit: int) -> list[Entry]:
        self._reachable()
        snapshot = self.db.snapshot
        if snapshot is not None and after < snapshot.index:
            raise ValueError(f"entries up to {snapshot.index} were dropped")
        return [e for e in self.db.log if e.index > after][:limit]

    def wait_for_entries(self, after: int, timeout: float) -> None:
        self._reachable()  # FakeHop.wait waits on the virtual clock instead

    def save_snapshot(
        self, lease: Lease, snapshot: Snapshot, rows: Sequence[Row] | None = None
    ) -> None:
        self._reachable()
        if not self.db.held_by(lease):
            self.db.fenced += 1
            raise Fenced(f"term {lease.term} is over")
        self.db.snapshot = snapshot
        self.db.log = [e for e in self.db.log if e.index > snapshot.index]
        if rows is not None:
            self.db.rows = {row["id"]: row for row in rows}

    def load_snapshot(self) -> Snapshot | None:
        self._reachable()
        return self.db.snapshot

    def announce(self, node: str, applied: int, within: float) -> list[tuple[str, int]]:
        self._reachable()
        now = self.db.now()
        self.db.nodes[node] = (now, applied)
        up = self.db.nodes.items()
        return sorted((n, index) for n, (seen, index) in up if now - seen <= within)

    def peer_secret(self) -> bytes:
        self._reachable()
        return self.db.secret


class FakeHop:
    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.calls = 0
        self._paused: trio.Event | None = None

    def pause(self) -> None:
        self._paused = trio.Event()

    def resume(self) -> None:
        if self._paused is not None:
            self._paused.set()
            self._paused = None

    async def call(self, fn: Callable[[], T]) -> T:
        with trio.CancelScope(shield=True):  # as a worker thread: the caller waits for it
            await trio.lowlevel.checkpoint()
            while self._paused is not None:
                await self._paused.wait()
            self.calls += 1
            return fn()

    async def wait(self, backend: Backend, after: int, seconds: float) -> None:
        self.backend._reachable()
        with trio.move_on_after(seconds):
            await self.backend.db.grown_after(after)
