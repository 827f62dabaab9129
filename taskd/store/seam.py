"""The durability seam: the ``Store`` protocol every store implements.

Theory of operation: the node proposes opaque, encoded commands and gets back what the state
machine (``taskd.store.statemachine``) returned once the command is durable and applied. A
store never interprets the bytes it is given. Besides writes, a store reports:

- ``leadership``: whether this node leads now, and in which term (``taskd.store.leadership``);
  leader-only duties start and stop on it, and only the leader's proposals succeed.
- ``read_barrier()``: returns once the state machine reflects every write acknowledged (by any
  member) before the call, so a read made after it is linearizable; raises like ``propose``
  when this node cannot know that (not leading, not serving). It works while the disk refuses
  writes: reads never touch the disk.
- ``status()``: what ``GET /api/v1/cluster`` shows (``StatusView``).
- ``fault``: why writes are refused now (a full or failing disk), or None; ``/readyz`` says it.
- ``durable``: a capability flag. True when committed commands survive a restart (the Raft
  store); False for the in-memory store, which keeps nothing.

The stores today: ``taskd.store.memory.MemoryStore`` (tests of the layers above, and the
reference in the conformance suite, tests/store/) and the embedded Raft log
(``taskd.store.raft.RaftStore``). The seam is log-only: see docs/design-notes.md for why, and
for what a PostgreSQL store adds beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from taskd.errors import StorageFault


class LeadershipView(Protocol):
    """The reading side of ``taskd.store.leadership.Leadership``."""

    @property
    def term(self) -> int | None: ...

    @property
    def version(self) -> int: ...

    async def changed(self, since: int) -> None: ...


class MemberView(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def match_index(self) -> int: ...

    @property
    def reachable(self) -> bool: ...


class StatusView(Protocol):
    """``role`` is "leader", "follower" or "candidate"; ``leader`` the leader's member id, or
    None while none is known."""

    @property
    def id(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def term(self) -> int: ...

    @property
    def leader(self) -> str | None: ...

    @property
    def commit_index(self) -> int: ...

    @property
    def applied_index(self) -> int: ...

    @property
    def members(self) -> Sequence[MemberView]: ...


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    role: str
    match_index: int
    reachable: bool


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """A ``StatusView`` for stores that have no status type of their own."""

    id: str
    role: str
    term: int
    leader: str | None
    commit_index: int
    applied_index: int
    members: list[Member]


class Store(Protocol):
    @property
    def durable(self) -> bool:
        """True when what was acknowledged survives a restart of the store."""

    @property
    def leadership(self) -> LeadershipView:
        """Whether this node leads, and in which term."""

    @property
    def fault(self) -> StorageFault | None:
        """Why writes are refused now (disk full, read-only, failing), or None."""

    async def serve(self, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Recover, then run until cancelled; ``task_status.started()`` once recovered."""

    async def propose(self, data: bytes) -> object:
        """Make ``data`` durable, apply it, and return what the state machine returned.

        Raises ``NotLeader`` or ``Unavailable``; nothing is acknowledged that is not durable.
        """

    async def propose_many(self, items: Sequence[bytes]) -> list[object]:
        """``propose`` for several commands, in order, sharing one durability round; all of
        them are applied, contiguously, or none is."""

    async def read_barrier(self) -> None:
        """Return once a read of the state machine is linearizable (see the module's doc)."""

    def status(self) -> StatusView:
        """This member's view of the store (role, term, leader, indexes, members)."""
