"""The durability seam: where committed commands live.

The node proposes opaque, encoded commands and gets back what the state machine returned once
the command is durable and applied. The embedded Raft log is the default implementation
(``taskd.node.raftstore.RaftStore``); PostgreSQL and Redis stores plug in behind the same
protocol. A store never interprets the bytes it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import trio


class Store(Protocol):
    async def serve(self, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Recover, then run until cancelled; ``task_status.started()`` once writes are taken."""

    async def propose(self, data: bytes) -> object:
        """Make ``data`` durable, apply it, and return what the state machine returned.

        Raises ``NotLeader`` or ``Unavailable``; nothing is acknowledged that is not durable.
        """

    async def propose_many(self, items: Sequence[bytes]) -> list[object]:
        """``propose`` for several commands, in order, sharing one durability round."""
