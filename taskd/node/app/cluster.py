"""The cluster as clients see it: status, membership changes and leadership transfer.

Theory of operation: REST (``/api/v1/cluster...``), gRPC (``ClusterService``) and the CLI
(``taskd cluster``) all go through ``ClusterAdmin``, which speaks to the store's membership
surface (``ClusterStore``: ``status``, ``add_member``, ``remove_member``,
``transfer_leadership``). Every member takes these calls; the store forwards them to the
leader. Addresses are normalised here exactly as ``--peers`` is (``taskd.node.members``), so
``taskd cluster add node-d`` and ``--peers ...,node-d:50051`` name the same member.

``transfer`` answers once this member knows the new leader (at most ``TRANSFER_TIMEOUT``
after the store handed leadership over), so the status it returns names it.

``status()`` is design.md §3's contract: ``{"id", "role", "term", "leader", "commit_index",
"members": [{"address", "role", "match_index", "reachable"}]}``; it is this member's view (a
follower knows the members but not their match index).

A single node (no ``--peers`` beyond itself) has no Raft transport: membership changes and
transfers are refused there (409) with what to do instead.

A change the configuration refuses ("a membership change is in progress", "X is already a
member", "cannot remove the last voter") is the caller's to fix: ``CallerError("conflict")``
(409 / FAILED_PRECONDITION) with the store's message; not reaching the leader stays a
``ClusterError`` (503 / UNAVAILABLE with the leader's address when known).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import trio

from taskd.errors import CallerError
from taskd.node import members
from taskd.raft.confstate import ConfChangeError
from taskd.store.seam import StatusView

TRANSFER_TIMEOUT = 5.0  # seconds an explicit `taskd cluster transfer` may take
_LEADER_POLL = 0.02  # seconds between looks for the new leader after a transfer


class ClusterStore(Protocol):
    def status(self) -> StatusView: ...

    async def add_member(self, addr: str) -> None: ...

    async def remove_member(self, addr: str) -> None: ...

    async def transfer_leadership(
        self,
        target: str | None = None,
        timeout: float = ...,  # noqa: ASYNC109  # the store's signature (contract §2)
    ) -> object: ...


def status_json(s: StatusView) -> dict[str, Any]:
    return {
        "id": s.id,
        "role": s.role,
        "term": s.term,
        "leader": s.leader,
        "commit_index": s.commit_index,
        "members": [
            {
                "address": m.id,
                "role": m.role,
                "match_index": m.match_index,
                "reachable": m.reachable,
            }
            for m in s.members
        ],
    }


ALONE = (
    "this node runs alone (started without --peers), so it has no Raft transport to reach "
    "other members: restart it with --peers naming only itself (a cluster of one, which can "
    "grow), or start a cluster with --peers naming every member"
)


class ClusterAdmin:
    def __init__(self, store: ClusterStore, *, clustered: bool = True) -> None:
        self.store = store
        self.clustered = clustered  # False: a single node, which can neither add nor hand over

    def status(self) -> dict[str, Any]:
        return status_json(self.store.status())

    def leader(self) -> str | None:
        """The leader's address when it is another member (where a client should go)."""
        s = self.store.status()
        return s.leader if s.leader and s.leader != s.id else None

    def member_ids(self) -> Sequence[str]:
        return [m.id for m in self.store.status().members]

    async def add(self, address: str) -> dict[str, Any]:
        member = _address(address)
        self._must_be_clustered()
        await _changing(self.store.add_member(member))
        return self.status()

    async def remove(self, address: str) -> dict[str, Any]:
        member = _address(address)
        self._must_be_clustered()
        await _changing(self.store.remove_member(member))
        return self.status()

    async def transfer(self, address: str | None) -> dict[str, Any]:
        target = _address(address) if address else None
        self._must_be_clustered()
        if target is not None and target not in self.member_ids():
            raise CallerError("not_found", f"{target} is not a member of this cluster", "address")
        await _changing(self.store.transfer_leadership(target, timeout=TRANSFER_TIMEOUT))
        # The store returns once the old leader stepped down; answer with the new one.
        with trio.move_on_after(TRANSFER_TIMEOUT):
            while True:
                leader = self.store.status().leader
                if leader is not None and (target is None or leader == target):
                    break
                await trio.sleep(_LEADER_POLL)
        return self.status()

    def _must_be_clustered(self) -> None:
        if not self.clustered:
            raise CallerError("conflict", ALONE, "address")


SHARED = (
    "this node runs on a shared database (--store postgres:// or redis://): its members are "
    "the nodes that open it, so there is no membership to change; start or stop nodes with "
    "the same --store URL (leadership moves by itself when the leader stops)"
)


class SharedMembership:
    """``ClusterStore`` of a node on a shared database: the status is the store's; changes
    of membership or leadership are refused, naming why (``SHARED``)."""

    def __init__(self, status: Callable[[], StatusView]) -> None:
        self.status = status

    async def add_member(self, addr: str) -> None:
        raise CallerError("conflict", SHARED, "address")

    async def remove_member(self, addr: str) -> None:
        raise CallerError("conflict", SHARED, "address")

    async def transfer_leadership(
        self,
        target: str | None = None,
        timeout: float = 0.0,  # noqa: ASYNC109  # the store's signature (contract §2)
    ) -> object:
        raise CallerError("conflict", SHARED, "address")


def _address(text: str) -> str:
    try:
        return members.normalize(text, "address")
    except ValueError as exc:
        raise CallerError("invalid", str(exc), "address") from None


async def _changing(change: Any) -> None:
    try:
        await change
    except ConfChangeError as exc:
        raise CallerError("conflict", str(exc), "address") from None
