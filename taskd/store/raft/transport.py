"""How Raft members reach each other: the ``Transport`` protocol, and ``MemoryTransport``.

Theory of operation: the driver (``RaftStore``) owns one transport and is the transport's
``Inbox``: what arrives from peers is handed to it (``deliver`` Raft messages, a follower's
``accept_forward``, ``read_index``, ``install_snapshot``, membership and transfer requests).
Towards peers the driver calls:

- ``send(dst, messages)``: fire and forget, never blocks (Raft tolerates loss; a transport
  that cannot deliver calls ``inbox.unreachable(dst)``, which the driver reports to the core);
- ``forward(leader, blob)`` → ``(term, first index)`` of the appended commands (the blob is
  ``wire.encode_commands``); raises ``NotLeader(hint)`` when the peer does not lead,
  ``PeerUnreachable`` when the request surely did not reach the peer (nothing appended), and
  ``Unavailable`` when the outcome is unknown (sent, then the connection died);
- ``read_index(leader)``, ``send_snapshot(peer, meta, path)`` (streams the snapshot FILE in
  chunks, reading it in a thread), ``change_membership``, ``transfer_leadership``.

``serve(inbox)`` runs the transport's own tasks (delivery, connections) until cancelled; a
member whose ``serve`` ended is gone from the network.

``MemoryTransport`` is an in-process network for tests (``MemoryNetwork``): every member's
messages go through the real wire codec (``wire``) and are delivered in order by a task of
the receiver, so they arrive between the receiver's rounds as from a socket. Links can be cut
(``cut(a, b)``, ``isolate(a)``, ``heal()``) and messages dropped at random with a seeded rate
(``drop_rate``); a cut link fails ``forward`` and friends with ``PeerUnreachable``, and
``lose_forward_replies`` loses the answers of forwards that reached the leader.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Protocol

import trio

from taskd.errors import Unavailable
from taskd.raft.types import Message, SnapshotMeta
from taskd.store.raft import wire

SNAPSHOT_CHUNK = 512 * 1024  # bytes per InstallSnapshot chunk (under the node's 1 MiB limit)

# What a transport hands a receiver of a snapshot: the next chunk, or None at the end.
ChunkSource = Callable[[], Awaitable[bytes | None]]


class PeerUnreachable(Unavailable):
    """The request did not reach the peer (no connection): nothing of it happened there."""


class Inbox(Protocol):
    """What a transport hands incoming traffic to (the driver)."""

    @property
    def node_id(self) -> str: ...

    def deliver(self, blob: bytes) -> None:
        """A batch of Raft messages (``wire.encode_batch``) arrived."""

    def accept_forward(self, blob: bytes) -> tuple[int, int]:
        """Append forwarded commands as the leader: (term, first index). Raises NotLeader."""

    async def read_index(self) -> int:
        """The leader's confirmed commit index for a follower's read. Raises NotLeader."""

    async def install_snapshot(
        self, leader: str, term: int, meta: SnapshotMeta, chunks: ChunkSource
    ) -> None:
        """Stage the snapshot file read from ``chunks`` and hand it to the core."""

    async def change_membership(self, add: str | None, remove: str | None) -> None: ...

    async def transfer_leadership(self, target: str | None, patience: float) -> None: ...

    def unreachable(self, peer: str) -> None:
        """Something sent to ``peer`` could not be delivered."""

    def member_ids(self) -> Collection[str]:
        """Who may call this node's internal service."""


class Transport(Protocol):
    async def serve(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...

    def send(self, dst: str, messages: Sequence[Message]) -> None: ...

    async def forward(self, leader: str, blob: bytes) -> tuple[int, int]: ...

    async def read_index(self, leader: str) -> int: ...

    async def send_snapshot(self, peer: str, term: int, meta: SnapshotMeta, path: Path) -> None:
        """Stream the snapshot file to ``peer``; raises ``Unavailable`` if it did not land."""

    async def change_membership(self, leader: str, add: str | None, remove: str | None) -> None: ...

    async def transfer_leadership(
        self, leader: str, target: str | None, patience: float
    ) -> None: ...


class MemoryNetwork:
    """The wires between in-process members (tests): links can be cut, messages dropped."""

    def __init__(self, *, seed: int = 0) -> None:
        self._members: dict[str, MemoryTransport] = {}
        self._cut: set[frozenset[str]] = set()
        self.drop_rate = 0.0
        self.lose_forward_replies = False  # forwards reach the leader, their answers are lost
        self._random = random.Random(seed)
        self.delivered = 0

    def transport(self, node_id: str) -> MemoryTransport:
        return MemoryTransport(self, node_id)

    def cut(self, a: str, b: str) -> None:
        self._cut.add(frozenset((a, b)))

    def isolate(self, node: str, among: Sequence[str]) -> None:
        for other in among:
            if other != node:
                self.cut(node, other)

    def heal(self) -> None:
        self._cut.clear()

    def linked(self, a: str, b: str) -> bool:
        return frozenset((a, b)) not in self._cut

    def _reach(self, src: str, dst: str) -> MemoryTransport:
        peer = self._members.get(dst)
        if peer is None or not self.linked(src, dst) or peer._inbox is None:
            raise PeerUnreachable(f"{dst} is unreachable from {src}")
        return peer

    def _register(self, node: MemoryTransport) -> None:
        self._members[node.node_id] = node

    def _unregister(self, node: MemoryTransport) -> None:
        if self._members.get(node.node_id) is node:
            del self._members[node.node_id]


class MemoryTransport:
    """One member's end of a ``MemoryNetwork``."""

    def __init__(self, network: MemoryNetwork, node_id: str) -> None:
        self.network = network
        self.node_id = node_id
        self._inbox: Inbox | None = None
        self._in, self._out = trio.open_memory_channel[bytes](math.inf)

    async def serve(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._inbox = inbox
        self.network._register(self)
        try:
            task_status.started()
            async for blob in self._out:
                inbox.deliver(blob)
        finally:
            self._inbox = None
            self.network._unregister(self)

    def send(self, dst: str, messages: Sequence[Message]) -> None:
        net = self.network
        if net.drop_rate and net._random.random() < net.drop_rate:
            return
        try:
            peer = net._reach(self.node_id, dst)
        except PeerUnreachable:
            if self._inbox is not None:
                self._inbox.unreachable(dst)
            return
        net.delivered += len(messages)
        peer._in.send_nowait(wire.encode_batch(self.node_id, dst, messages))

    def _peer_inbox(self, dst: str) -> Inbox:
        inbox = self.network._reach(self.node_id, dst)._inbox
        if inbox is None:
            raise PeerUnreachable(f"{dst} is not serving")
        return inbox

    async def forward(self, leader: str, blob: bytes) -> tuple[int, int]:
        inbox = self._peer_inbox(leader)
        await trio.lowlevel.checkpoint()
        answer = inbox.accept_forward(blob)
        await trio.lowlevel.checkpoint()
        if not self.network.linked(self.node_id, leader) or self.network.lose_forward_replies:
            raise Unavailable(
                f"the connection to {leader} broke after the forward was sent: outcome "
                "unknown; read it back before retrying"
            )
        return answer

    async def read_index(self, leader: str) -> int:
        return await self._peer_inbox(leader).read_index()

    async def send_snapshot(self, peer: str, term: int, meta: SnapshotMeta, path: Path) -> None:
        inbox = self._peer_inbox(peer)
        handle = await trio.open_file(path, "rb")
        async with handle:

            async def next_chunk() -> bytes | None:
                if not self.network.linked(self.node_id, peer):
                    raise PeerUnreachable(f"the link to {peer} was cut during a snapshot")
                chunk = await handle.read(SNAPSHOT_CHUNK)
                return chunk or None

            await inbox.install_snapshot(self.node_id, term, meta, next_chunk)

    async def change_membership(self, leader: str, add: str | None, remove: str | None) -> None:
        await self._peer_inbox(leader).change_membership(add, remove)

    async def transfer_leadership(self, leader: str, target: str | None, patience: float) -> None:
        await self._peer_inbox(leader).transfer_leadership(target, patience)
