"""The interface between Raft and whatever it replicates.

Theory of operation: Raft calls ``apply`` once for every committed command entry, in index
order, on every replica, including entries replayed after a restart. ``snapshot`` captures
everything applied so far; ``restore`` replaces the whole state with a snapshot's. Raft never
interprets ``data``. Only ``NORMAL`` entries reach ``apply``: Raft's own entries (a new
leader's no-op, membership changes) are never handed to the state machine, so ``index`` may
skip numbers.

``apply`` must be deterministic (same entries, same state on every replica) and must not raise
for a bad command: it returns a rejection as its result. An exception from ``apply`` is a bug;
the store stops taking writes when it sees one.
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
