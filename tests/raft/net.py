"""A tiny in-test network of RaftCores: the test is every driver and the wire.

Each node has a "disk" (the entries it persisted, the hard state), a state machine (the list
of NORMAL commands it applied) and the snapshots it took (a prefix of that list). ``Net``
runs each node's Ready exactly as the driver contract says (install the snapshot, persist,
acknowledge, apply, then send), and holds the sent messages in a queue the test delivers
from, drops or partitions. Nothing is random: a test reads as a script.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from taskd.raft.core import RaftConfig, RaftCore, Role
from taskd.raft.types import (
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageKind,
    ReadState,
    SnapshotMeta,
)

CONFIG = RaftConfig(election_ticks=10, heartbeat_ticks=2)


@dataclass
class Node:
    core: RaftCore
    disk: list[Entry] = field(default_factory=list)
    hard_state: HardState = field(default_factory=HardState)
    applied: list[bytes] = field(default_factory=list)  # the state machine
    snapshot: SnapshotMeta | None = None  # the durable snapshot (the disk log's base)
    snapshot_data: list[bytes] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    down: bool = False


class Net:
    def __init__(
        self,
        ids: Iterable[str],
        *,
        config: RaftConfig = CONFIG,
        learners: Iterable[str] = (),
        joining: Iterable[str] = (),
    ) -> None:
        ids = list(ids)
        self.config = config
        self.voters = ids
        self.learners = list(learners)
        self.nodes: dict[str, Node] = {}
        for position, node_id in enumerate([*ids, *self.learners, *joining]):
            is_joining = node_id in joining
            self.nodes[node_id] = Node(
                RaftCore(
                    node_id,
                    [] if is_joining else ids,
                    learners=[] if is_joining else self.learners,
                    config=replace(config, seed=position + 1),
                )
            )
        self.queue: list[Message] = []
        self.snapshot_files: dict[SnapshotMeta, list[bytes]] = {}
        self.blocked: set[tuple[str, str]] = set()  # (src, dst) links that drop everything
        self.delivered: list[Message] = []
        self.drop_if: Callable[[Message], bool] = lambda message: False
        self.max_entries: int | None = None  # the drivers' cap on entries per round

    # -- the drivers ----------------------------------------------------------------------

    def core(self, node_id: str) -> RaftCore:
        return self.nodes[node_id].core

    def run_ready(self, node_id: str) -> None:
        """One driver round of ``node_id``, as the contract says."""
        node = self.nodes[node_id]
        core = node.core
        while not node.down and core.has_ready():
            ready = core.ready(self.max_entries)
            if ready.snapshot is not None:
                self._install(node, ready.snapshot)
                core.snapshot_installed(ready.snapshot)
            for entry in ready.committed_entries:
                if entry.kind is EntryKind.NORMAL:
                    node.applied.append(entry.data)
            core.advance(ready)
            node.read_states += ready.read_states
            if ready.hard_state is not None:
                node.hard_state = ready.hard_state
            if ready.entries_to_persist:
                first = ready.entries_to_persist[0].index
                node.disk = [e for e in node.disk if e.index < first]
                node.disk.extend(ready.entries_to_persist)
                last = ready.entries_to_persist[-1]
                core.persisted(last.term, last.index)
            self.queue.extend(ready.messages)

    def _install(self, node: Node, meta: SnapshotMeta) -> None:
        # The sender streamed the file of that meta (it had it when it sent the offer).
        assert meta in self.snapshot_files, f"no node ever took snapshot {meta}"
        node.snapshot = meta
        node.snapshot_data = list(self.snapshot_files[meta])
        node.applied = list(node.snapshot_data)
        node.disk = []

    def compact(self, node_id: str) -> SnapshotMeta:
        """Take a snapshot of ``node_id`` at its applied index and compact its log."""
        node = self.nodes[node_id]
        core = node.core
        index = core.applied_index
        core.compact(index, core.term_at(index))
        node.snapshot = core.log.snapshot
        node.snapshot_data = list(node.applied)
        self.snapshot_files[node.snapshot] = node.snapshot_data
        node.disk = [e for e in node.disk if e.index > index]
        return node.snapshot

    def restart(self, node_id: str) -> None:
        """Crash ``node_id`` and start it again from what it persisted."""
        node = self.nodes[node_id]
        old = node.core
        hs = node.hard_state
        node.applied = list(node.snapshot_data)
        node.core = RaftCore(
            node_id,
            self.voters if node_id in self.voters else [],
            learners=self.learners,
            config=old.config,
            hard_state=HardState(hs.term, hs.vote, hs.commit),
            snapshot=node.snapshot,
            entries=node.disk,
        )
        node.down = False

    # -- the wire -------------------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Only members of the same group hear each other."""
        sides = [set(group) for group in groups]
        self.blocked = {
            (a, b)
            for a in self.nodes
            for b in self.nodes
            if a != b and not any(a in side and b in side for side in sides)
        }

    def isolate(self, node_id: str) -> None:
        self.partition([node_id], [n for n in self.nodes if n != node_id])

    def heal(self) -> None:
        self.blocked = set()

    def deliver(self, limit: int = 100_000) -> int:
        """Run every node's Ready and deliver messages until nothing moves; returns how many
        messages were delivered."""
        count = 0
        while count < limit:
            for node_id in self.nodes:
                self.run_ready(node_id)
            if not self.queue:
                return count
            message, *self.queue = self.queue
            if (message.src, message.dst) in self.blocked or self.drop_if(message):
                if message.kind is MessageKind.SNAPSHOT:  # the sender's stream failed
                    self.nodes[message.src].core.report_snapshot(message.dst, False)
                continue
            target = self.nodes.get(message.dst)
            if target is None or target.down:
                continue
            if message.kind is MessageKind.SNAPSHOT:
                sender = self.nodes[message.src].core
                target.core.step(message)
                sender.report_snapshot(message.dst, True)
            else:
                target.core.step(message)
            self.delivered.append(message)
            count += 1
        raise AssertionError(f"still busy after {limit} messages")

    def tick(self, count: int = 1, nodes: Iterable[str] | None = None) -> None:
        """Tick ``nodes`` (default: every node up) ``count`` times, delivering after each."""
        chosen = list(self.nodes if nodes is None else nodes)
        for _ in range(count):
            for node_id in chosen:
                if not self.nodes[node_id].down:
                    self.nodes[node_id].core.tick()
            self.deliver()

    # -- what the test asks ---------------------------------------------------------------

    def leaders(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.core.role is Role.LEADER]

    def elect(self, node_id: str | None = None, max_ticks: int = 200) -> str:
        """Tick until there is one leader (``node_id`` if given, by ticking only it first)."""
        if node_id is not None:
            core = self.core(node_id)
            for _ in range(max_ticks):
                if core.role is Role.LEADER:
                    break
                self.tick(nodes=[node_id])
            assert core.role is Role.LEADER, f"{node_id} did not win"
            self.deliver()
            return node_id
        for _ in range(max_ticks):
            leaders = self.leaders()
            if len(leaders) == 1:
                return leaders[0]
            self.tick()
        raise AssertionError(f"no single leader after {max_ticks} ticks: {self.leaders()}")

    def propose(self, node_id: str, *items: bytes) -> range:
        indexes = self.core(node_id).propose_many(items)
        self.deliver()
        return indexes
