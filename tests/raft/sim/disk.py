"""A node's simulated disk: only what was synced survives a crash.

Theory of operation: the disk holds the durable hard state (term, vote, the commit mark), the
log entries after the snapshot, and the snapshot itself (its meta and the state machine as of
its index). A write (``Write``: a snapshot to install, a hard state, entries that replace the
suffix from their first index on, a commit mark) is first *pending*: it becomes durable only
when the node's fsync event completes (``sync``). A crash calls ``lose``: usually nothing of
the pending write survives, but as on a real disk a prefix of its operations may have reached
the platter anyway (in write order: snapshot, hard state, entries one by one). Raft must be
safe with either, since nothing that depends on the write was sent before the sync.

Compaction (``compact``) replaces the snapshot and drops the entries it covers; like the real
driver it happens only after the snapshot file is durable, so it is applied directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from taskd.raft import Entry, HardState, SnapshotMeta
from tests.raft.sim.statemachine import SMSnapshot


@dataclass(slots=True)
class Write:
    """One round's writes, in the order the driver issues them."""

    snapshot: tuple[SnapshotMeta, SMSnapshot] | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    commit_mark: int = 0

    @property
    def operations(self) -> int:
        return int(self.snapshot is not None) + 1 + len(self.entries)


class SimDisk:
    def __init__(self) -> None:
        self.pending: Write | None = None
        self.wipe()

    def wipe(self) -> None:
        """Empty: a new node, or a removed member whose data was deleted before it rejoins."""
        self.term = 0
        self.vote: str | None = None
        self.commit = 0
        self.snapshot = SnapshotMeta(0, 0)
        self.sm: SMSnapshot | None = None
        self.entries: list[Entry] = []
        self.pending = None

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snapshot.index

    def term_at(self, index: int) -> int | None:
        if index == self.snapshot.index:
            return self.snapshot.term
        position = index - self.snapshot.index - 1
        if 0 <= position < len(self.entries):
            return self.entries[position].term
        return None

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.commit)

    def sync(self) -> list[Entry]:
        """The pending write is durable now; returns the entries it wrote."""
        write, self.pending = self.pending, None
        if write is None:
            return []
        return self._apply(write, write.operations)

    def lose(self, survive: int) -> list[Entry]:
        """A crash: the first ``survive`` operations of the pending write made it, the rest
        did not. Returns the entries that survived."""
        write, self.pending = self.pending, None
        if write is None or survive <= 0:
            return []
        return self._apply(write, min(survive, write.operations))

    def _apply(self, write: Write, operations: int) -> list[Entry]:
        left = operations
        if write.snapshot is not None:
            meta, sm = write.snapshot
            self.snapshot, self.sm, self.entries = meta, sm, []
            self.commit = max(self.commit, meta.index)
            left -= 1
            if left == 0:
                return []
        if write.hard_state is not None:
            hs = write.hard_state
            self.term, self.vote = hs.term, hs.vote
            self.commit = max(self.commit, hs.commit)
        self.commit = max(self.commit, write.commit_mark)
        left -= 1
        written = write.entries[:left]
        if written:
            first = written[0].index
            if first > self.last_index + 1:
                raise AssertionError(
                    f"entries from {first} leave a gap after the disk's last index "
                    f"{self.last_index}"
                )
            keep = max(0, first - self.snapshot.index - 1)
            del self.entries[keep:]
            self.entries.extend(e for e in written if e.index > self.snapshot.index)
        return written

    def compact(self, meta: SnapshotMeta, sm: SMSnapshot) -> None:
        if meta.index <= self.snapshot.index:
            return
        drop = meta.index - self.snapshot.index
        self.entries = self.entries[drop:]
        self.snapshot, self.sm = meta, sm
