"""An in-memory store: applies each command at once and keeps nothing.

Theory of operation: one member that leads from ``start()`` (or ``serve``) until ``stop()``,
each start in a new term. ``propose`` applies the command to the state machine right away and
returns its result; ``propose_many`` applies the whole batch without yielding in between, so no
other proposal lands inside it. Nothing survives the object (``durable`` is False). Every
acknowledged write is applied before its answer, so ``read_barrier`` has nothing to wait for:
it only checks that this store leads.

``refuse_writes(fault)`` makes it behave like a store on a full or failing disk: every write is
refused with that fault and nothing is applied, reads go on, ``fault`` reports it; ``None``
takes writes again. It behaves like every other store except durability (the conformance suite
in tests/store/ holds it to that), which makes it the fast store for tests of the layers above.
Never used by a running node.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from taskd.errors import StorageFault, Unavailable
from taskd.store.leadership import Leadership
from taskd.store.seam import Member, StoreStatus
from taskd.store.statemachine import StateMachine


class MemoryStore:
    durable = False

    def __init__(self, state_machine: StateMachine, *, node_id: str = "memory") -> None:
        self.state_machine = state_machine
        self.node_id = node_id
        self.index = 0
        self.leadership = Leadership()
        self._term = 0
        self._serving = False
        self._fault: StorageFault | None = None

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        """Lead, in a new term, from now on (what ``serve`` does; for tests with no nursery)."""
        if not self._serving:
            self._serving = True
            self._term += 1
            self.leadership.gained(self._term)

    def stop(self) -> None:
        self._serving = False
        self.leadership.lost()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.start()
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self.stop()

    def refuse_writes(self, fault: StorageFault | None) -> None:
        """Refuse every write with ``fault`` from now on (None: take writes again)."""
        self._fault = fault

    # -- the store seam -------------------------------------------------------------------

    @property
    def fault(self) -> StorageFault | None:
        return self._fault

    async def propose(self, data: bytes) -> object:
        await trio.lowlevel.checkpoint()
        self._writable()
        self.index += 1
        return self.state_machine.apply(self.index, data)

    async def propose_many(self, items: Sequence[bytes]) -> list[object]:
        await trio.lowlevel.checkpoint()
        if not items:  # nothing to make durable: no answer to refuse (as the Raft store)
            return []
        self._writable()
        apply, first = self.state_machine.apply, self.index + 1
        self.index += len(items)
        return [apply(index, item) for index, item in enumerate(items, first)]

    async def read_barrier(self) -> None:
        await trio.lowlevel.checkpoint()
        self._serving_now()

    def status(self) -> StoreStatus:
        role = "leader" if self._serving else "follower"
        return StoreStatus(
            id=self.node_id,
            role=role,
            term=self._term,
            leader=self.node_id if self._serving else None,
            commit_index=self.index,
            applied_index=self.index,
            members=[Member(self.node_id, role, self.index, True)],
        )

    # -- helpers --------------------------------------------------------------------------

    def _serving_now(self) -> None:
        if not self._serving:
            raise Unavailable(f"the memory store {self.node_id} is not serving")

    def _writable(self) -> None:
        self._serving_now()
        if self._fault is not None:
            raise StorageFault(
                f"{self._fault}; this request was not applied",
                resumes_by_itself=self._fault.resumes_by_itself,
            )
