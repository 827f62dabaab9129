"""The durable prefix a shared-store leader can roll its state machine back to.

Theory of operation: the leader applies a round's commands *before* their transaction commits
(the task rows written with them are made from the results; see docs/design-notes.md). If the
commit fails, the state machine shows commands that are not durable, and no reader may see
them. ``DurablePrefix`` keeps what is needed to go back without asking the database (which may
be the thing that is gone): a snapshot of the state machine taken at some durable index, and
every command made durable after it. ``roll_back`` restores the snapshot and re-applies those
commands, so the state is exactly the durable prefix again. ``reset`` moves the base forward
(at takeover, and whenever the leader snapshots), which bounds what is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

from taskd.store.statemachine import StateMachine


class DurablePrefix:
    def __init__(self, index: int, snapshot: bytes) -> None:
        self.index = index  # the last durable index: the snapshot's, plus the commands after it
        self._snapshot = snapshot
        self._after: list[tuple[int, bytes]] = []

    def reset(self, index: int, snapshot: bytes) -> None:
        """The state machine at durable ``index`` is ``snapshot``: forget what came before."""
        self.index, self._snapshot, self._after = index, snapshot, []

    def extend(self, first: int, items: Sequence[bytes]) -> None:
        """Commands ``first...`` are durable now (``first`` follows ``index``)."""
        if first != self.index + 1:
            raise ValueError(f"durable commands from {first} after index {self.index}")
        self._after.extend(enumerate(items, first))
        self.index = first + len(items) - 1

    @property
    def commands_kept(self) -> int:
        return len(self._after)

    def roll_back(self, state_machine: StateMachine) -> None:
        """Make ``state_machine`` the durable prefix again (whatever it applied since)."""
        state_machine.restore(self._snapshot)
        for index, data in self._after:
            state_machine.apply(index, data)
