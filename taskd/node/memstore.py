"""An in-memory store: applies each command at once and keeps nothing.

It behaves like every other store except durability, which makes it the reference
implementation in the store conformance tests and a fast store for tests of the layers above.
Never used by a running node.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from taskd.raft.statemachine import StateMachine


class MemoryStore:
    def __init__(self, state_machine: StateMachine) -> None:
        self.state_machine = state_machine
        self.index = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def propose(self, data: bytes) -> object:
        await trio.lowlevel.checkpoint()
        self.index += 1
        return self.state_machine.apply(self.index, data)

    async def propose_many(self, items: Sequence[bytes]) -> list[object]:
        return [await self.propose(item) for item in items]
