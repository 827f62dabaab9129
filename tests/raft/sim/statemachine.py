"""The simulated state machine: an append-only list of the commands applied, hash-chained.

Theory of operation: applying a ``NORMAL`` entry appends its command and extends a chain hash
over (index, command), so two replicas that applied the same commands at the same indexes
have the same ``chain`` at the same ``index``, and a snapshot (``SMSnapshot``: the index, the
chain and the commands) can be compared with what every other node applied there. A command
applied twice is reported (``apply`` returns False): every command the clients propose is
unique, so a second copy means an entry was applied twice or appended twice. Raft's own
entries (no-ops, membership changes) only move ``index``, as in the real driver.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

GENESIS = b"\x00" * 8


def chain_step(chain: bytes, index: int, data: bytes) -> bytes:
    return hashlib.blake2b(chain + index.to_bytes(8, "big") + data, digest_size=8).digest()


@dataclass(frozen=True, slots=True)
class SMSnapshot:
    """The state as of ``index``: what a snapshot file would hold."""

    index: int
    chain: bytes
    commands: tuple[bytes, ...]


class ChainStateMachine:
    def __init__(self, snapshot: SMSnapshot | None = None) -> None:
        self.index = 0
        self.chain = GENESIS
        self.commands: list[bytes] = []
        self._seen: set[bytes] = set()
        if snapshot is not None:
            self.restore(snapshot)

    def apply(self, index: int, data: bytes) -> bool:
        """Apply one command at ``index``; False if this command was applied before."""
        if index <= self.index:
            raise AssertionError(f"apply({index}) after {self.index}: applied out of order")
        self.index = index
        self.chain = chain_step(self.chain, index, data)
        self.commands.append(data)
        if data in self._seen:
            return False
        self._seen.add(data)
        return True

    def skip(self, index: int) -> None:
        """Raft's own entry at ``index``: nothing to apply."""
        if index <= self.index:
            raise AssertionError(f"skip({index}) after {self.index}: applied out of order")
        self.index = index

    def snapshot(self) -> SMSnapshot:
        return SMSnapshot(self.index, self.chain, tuple(self.commands))

    def restore(self, snapshot: SMSnapshot) -> None:
        self.index = snapshot.index
        self.chain = snapshot.chain
        self.commands = list(snapshot.commands)
        self._seen = set(self.commands)
