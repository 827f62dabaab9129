"""A cluster of ``RaftStore``s in one trio run, for tests: over ``MemoryTransport`` or gRPC.

Each member has its own data directory and ``AppendLog`` state machine, and runs in its own
cancel scope, so a test can kill one (its ``serve`` cancelled: what a crash leaves, minus the
page cache) and start it again on the same directory.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from taskd.errors import Unavailable
from taskd.raft.core import RaftConfig
from taskd.store.leadership import Leadership
from taskd.store.raft import RaftStore
from taskd.store.raft.transport import MemoryNetwork, Transport
from tests.raft.fakes import AppendLog

TICK = 0.01  # seconds per Raft tick in tests: an election timeout of 10..20 ticks


@dataclass
class Member:
    id: str
    store: RaftStore
    machine: AppendLog
    scope: trio.CancelScope | None = None
    stopped: trio.Event = field(default_factory=trio.Event)


class Cluster:
    def __init__(
        self,
        nursery: trio.Nursery,
        tmp: Path,
        ids: list[str],
        *,
        transport: Callable[[str], Transport] | None = None,
        snapshot_every: int = 100_000,
        **store_options: object,
    ) -> None:
        self.nursery = nursery
        self.tmp = tmp
        self.ids = ids
        self.network = MemoryNetwork(seed=7)
        self._transport = transport or self.network.transport
        self.snapshot_every = snapshot_every
        self.store_options = store_options
        self.members: dict[str, Member] = {}
        self._prepared: dict[str, Member] = {}

    def make(self, node_id: str, *, join: bool = False) -> Member:
        machine = AppendLog()
        store = RaftStore(
            self.tmp / node_id,
            machine,
            node_id=node_id,
            peers=self.ids,
            join=join,
            transport=self._transport(node_id),
            snapshot_every=self.snapshot_every,
            tick_seconds=TICK,
            raft_config=RaftConfig(
                election_ticks=10, heartbeat_ticks=2, seed=zlib.crc32(node_id.encode())
            ),
            **self.store_options,  # type: ignore[arg-type]  # test knobs, by name
        )
        return Member(node_id, store, machine)

    def prepare(self, node_id: str, *, join: bool = False) -> Member:
        """Make a member now (to mount its handlers), start it later with ``start``."""
        member = self._prepared[node_id] = self.make(node_id, join=join)
        return member

    async def start(self, node_id: str, *, join: bool = False) -> Member:
        member = self._prepared.pop(node_id, None) or self.make(node_id, join=join)
        self.members[node_id] = member

        async def run(task_status: trio.TaskStatus[None]) -> None:
            with trio.CancelScope() as scope:
                member.scope = scope
                try:
                    await member.store.serve(task_status=task_status)
                finally:
                    member.stopped.set()

        await self.nursery.start(run)
        return member

    async def start_all(self) -> None:
        for node_id in self.ids:
            await self.start(node_id)

    async def kill(self, node_id: str) -> None:
        member = self.members.pop(node_id)
        assert member.scope is not None
        member.scope.cancel()
        await member.stopped.wait()

    def leaders(self) -> list[Member]:
        return [m for m in self.members.values() if m.store.leadership.term is not None]

    async def leader(self, *, patience: float = 5.0, among: list[str] | None = None) -> Member:
        """The one member that leads (and has applied its no-op), once there is one."""
        with trio.fail_after(patience):
            while True:
                found = [m for m in self.leaders() if among is None or m.id in among]
                if len(found) == 1:
                    return found[0]
                await trio.sleep(TICK)

    def followers(self, leader: Member) -> list[Member]:
        return [m for m in self.members.values() if m is not leader]

    async def converged(self, *, patience: float = 5.0) -> None:
        """Every running member applied the same commands."""
        with trio.fail_after(patience):
            while True:
                items = [m.machine.items for m in self.members.values()]
                indexes = [m.store.status().applied_index for m in self.members.values()]
                if all(i == items[0] for i in items) and len(set(indexes)) == 1:
                    return
                await trio.sleep(TICK)


async def eventually(predicate: Callable[[], bool], *, patience: float = 5.0) -> None:
    """Return once ``predicate()`` holds (polled every tick); fail after ``patience``."""
    with trio.fail_after(patience):
        while True:
            if predicate():
                return
            await trio.sleep(TICK)


class ClusterStore:
    """A three-member cluster over ``MemoryTransport`` behind the ``Store`` seam, for the
    conformance suite: writes alternate between the leader and a follower (forwarded), read
    barriers run on the follower, status and faults are the leader's. The leadership signal
    is the facade's own: gained with the leader's term once the cluster has a leader, lost
    when ``serve`` ends. Reopening the same directory restarts all three."""

    durable = True

    def __init__(self, tmp: Path, ids: list[str]) -> None:
        self.tmp = tmp
        self.ids = ids
        self.leadership = Leadership()
        self.cluster: Cluster | None = None
        self._leader: Member | None = None
        self._follower: Member | None = None
        self._turn = 0
        self.final_items: list[bytes] = []  # the leader's applied commands when serve ended
        # After the suite breaks the disks, writes go to the leader only: a follower's
        # forward would wait for an apply that no broken member can make (until the caller's
        # deadline), where the suite expects the leader's StorageFault.
        self.disks_broken = False

    @property
    def machine(self) -> AppendLog:
        """The leader's state machine (every member applies the same)."""
        assert self._leader is not None
        return self._leader.machine

    def _pick(self) -> RaftStore:
        if self._leader is None or self._follower is None:
            raise Unavailable("the cluster is not serving")
        self._turn ^= 1
        if self.disks_broken:
            return self._leader.store
        return (self._leader if self._turn else self._follower).store

    async def propose(self, data: bytes) -> object:
        return await self._pick().propose(data)

    async def propose_many(self, items: list[bytes]) -> list[object]:
        return await self._pick().propose_many(items)

    async def read_barrier(self) -> None:
        if self._follower is None or self._leader is None:
            raise Unavailable("the cluster is not serving")
        await (self._leader if self.disks_broken else self._follower).store.read_barrier()

    def status(self) -> object:
        if self._leader is None:
            return RaftStore(self.tmp / "unused", AppendLog(), node_id=self.ids[0]).status()
        return self._leader.store.status()

    @property
    def fault(self) -> object:
        return self._leader.store.fault if self._leader is not None else None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            cluster = self.cluster = Cluster(nursery, self.tmp, self.ids)
            try:
                await cluster.start_all()
                leader = await cluster.leader()
                self._leader, self._follower = leader, cluster.followers(leader)[0]
                self.leadership.gained(leader.store.status().term)
                task_status.started()
                await trio.sleep_forever()
            finally:
                if self._leader is not None:
                    self.final_items = list(self._leader.machine.items)
                self._leader = self._follower = None
                self.leadership.lost()
                nursery.cancel_scope.cancel()
