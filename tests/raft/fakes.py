"""A real, behaving state machine for Raft tests: an append-only list of commands."""

from __future__ import annotations

import msgpack


class AppendLog:
    """Appends every command; ``apply`` returns (index, position in the list)."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.indexes: list[int] = []
        self.last_index = 0
        self.snapshots = 0

    def apply(self, index: int, data: bytes) -> object:
        assert index > self.last_index, f"apply({index}) after {self.last_index}"
        self.last_index = index
        if not data:  # Raft's no-op
            return None
        self.items.append(data)
        self.indexes.append(index)
        return (index, len(self.items) - 1)

    def snapshot(self) -> bytes:
        self.snapshots += 1
        packed: bytes = msgpack.packb([self.last_index, self.items, self.indexes])
        return packed

    def restore(self, data: bytes) -> None:
        self.last_index, self.items, self.indexes = msgpack.unpackb(data)
