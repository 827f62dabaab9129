"""The interface between a store and whatever it makes durable: the neutral state machine.

Theory of operation: a store calls ``apply`` once for every committed command, in index order,
on every replica, including commands replayed after a restart. ``snapshot`` captures everything
applied so far; ``restore`` replaces the whole state with a snapshot's. No store interprets
``data``. Only commands reach ``apply``: a store's own entries (the Raft store's no-op at the
start of each term, membership changes) are never handed to the state machine, so ``index``
may skip numbers.

``apply`` must be deterministic (same commands, same state on every replica) and must not raise
for a bad command: it returns a rejection as its result. An exception from ``apply`` is a bug;
the store stops taking writes when it sees one.

Nothing here depends on Raft: the PostgreSQL and Redis stores implement the same contract.
"""

from __future__ import annotations

from typing import Protocol


class StateMachine(Protocol):
    def apply(self, index: int, data: bytes) -> object:
        """Apply the committed entry at ``index``; the result goes back to its proposer."""

    def snapshot(self) -> bytes:
        """Everything applied so far, as bytes that ``restore`` accepts."""

    def restore(self, data: bytes) -> None:
        """Replace the whole state with the one ``snapshot`` produced."""
