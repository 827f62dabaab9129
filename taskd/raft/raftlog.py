"""The in-memory Raft log: entries after the last snapshot, and how far each has got.

Theory of operation: ``entries[i]`` has index ``offset + 1 + i``; ``offset`` is the index of
the last snapshot (0 before any). Four marks move forward along it::

    offset <= applied <= committed,  applied <= stable <= handed <= last_index

- ``handed``: entries up to here were given to the driver to persist (in a ``Ready``);
- ``stable``: the driver confirmed they are on disk (``stable_to``);
- ``committed``: known to be on a majority; only ``committed <= stable`` entries are handed
  out for applying, so a node never applies what it could lose in a crash;
- ``applying``/``applied``: handed out for applying / confirmed applied.

Entries recovered from disk start out stable. ``compact`` drops entries a durable snapshot
covers; ``restore`` restarts the log, empty, at a snapshot received from the leader (every
mark at its index).

The tail past ``committed`` can be cut: ``merge`` (a follower taking a leader's entries) cuts
at the first entry whose term conflicts and appends the leader's from there, pulling
``stable`` and ``handed`` back below the cut, so the new entries are handed out (and persisted,
over the old ones on disk) again; ``truncate_unstable`` (the driver could not persist) cuts
everything past ``stable`` (and pulls the commit index back to it: it is soft state). A
committed entry is never cut by ``merge``. Because an index can be reused by
another term, the driver's acknowledgement names both: ``stable_to(term, index)`` is ignored
unless the entry at ``index`` still has ``term`` (a late fsync of a replaced entry).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from taskd.raft.types import Entry, EntryKind, SnapshotMeta


class RaftLog:
    def __init__(self, snapshot: SnapshotMeta, entries: Sequence[Entry], commit: int) -> None:
        kept = [entry for entry in entries if entry.index > snapshot.index]
        for position, entry in enumerate(kept):
            if entry.index != snapshot.index + 1 + position:
                raise ValueError(
                    f"log entries are not contiguous after the snapshot at {snapshot.index}: "
                    f"found index {entry.index} at position {position}"
                )
        self.snapshot = snapshot
        self.entries: list[Entry] = kept
        self.stable = self.last_index
        self.handed = self.stable
        self.committed = min(max(commit, snapshot.index), self.stable)
        self.applying = snapshot.index
        self.applied = snapshot.index

    @property
    def offset(self) -> int:
        return self.snapshot.index

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot.term

    def term_at(self, index: int) -> int:
        """The term of the entry at ``index`` (the snapshot's term at its own index)."""
        if index == self.snapshot.index:
            return self.snapshot.term
        if not self.snapshot.index < index <= self.last_index:
            raise IndexError(f"no entry {index} in log ({self.snapshot.index}, {self.last_index}]")
        return self.entries[index - self.snapshot.index - 1].term

    def append(self, term: int, items: Sequence[bytes]) -> int:
        """Append one entry per item at the end; returns the first new index."""
        first = self.last_index + 1
        self.entries.extend(Entry(term, first + i, data) for i, data in enumerate(items))
        return first

    def append_noop(self, term: int) -> int:
        """Append a new leader's no-op; returns its index."""
        index = self.last_index + 1
        self.entries.append(Entry(term, index, b"", EntryKind.NOOP))
        return index

    def append_conf(self, term: int, data: bytes) -> int:
        """Append a membership change (``data`` is the full configuration); returns its index."""
        index = self.last_index + 1
        self.entries.append(Entry(term, index, data, EntryKind.CONF_CHANGE))
        return index

    def last_at_or_below_term(self, index: int, term: int) -> int:
        """The largest index ``<= index`` whose entry's term is at most ``term`` (the snapshot
        index when none after it is): where a log that holds ``term`` at most can agree with
        this one. An ``index`` past the log or inside the snapshot is returned as it is (this
        log cannot say more). Terms never decrease along a log, so this is a binary search."""
        if index > self.last_index or index <= self.snapshot.index:
            return index
        count = index - self.snapshot.index
        found = bisect_right(self.entries, term, hi=count, key=lambda entry: entry.term)
        return self.snapshot.index + found

    def slice_limited(self, low: int, max_entries: int, max_bytes: int) -> list[Entry]:
        """Entries from ``low`` on: at most ``max_entries`` and, past the first, at most
        ``max_bytes`` of data in all."""
        batch = self.slice(low, min(self.last_index, low + max_entries - 1))
        size = 0
        for count, entry in enumerate(batch):
            size += len(entry.data)
            if size > max_bytes and count > 0:
                return batch[:count]
        return batch

    def restore(self, snapshot: SnapshotMeta) -> None:
        """Restart the log, empty, at ``snapshot`` (received from the leader, ahead of this
        log's commit index): everything up to it is committed, applied and durable once the
        driver has installed it."""
        if snapshot.index <= self.committed:
            raise ValueError(
                f"restore({snapshot.index}) at or below the commit index {self.committed}"
            )
        self.snapshot = snapshot
        self.entries = []
        self.stable = self.handed = self.committed = snapshot.index
        self.applying = self.applied = snapshot.index

    def matches(self, index: int, term: int) -> bool:
        """Whether the log holds an entry at ``index`` with ``term`` (or the snapshot ends
        there with it)."""
        if index < self.snapshot.index or index > self.last_index:
            return False
        return self.term_at(index) == term

    def merge(self, entries: Sequence[Entry]) -> int | None:
        """Take a leader's ``entries`` (contiguous, the first at most ``last_index + 1``):
        keep those already held with the same term, cut the log at the first conflict and
        append the rest. Returns the index cut at, or None when nothing was cut."""
        cut: int | None = None
        start = len(entries)
        for position, entry in enumerate(entries):
            if entry.index <= self.snapshot.index:
                continue  # a snapshot holds it, and committed entries never conflict
            if entry.index > self.last_index:
                start = position
                break
            if self.term_at(entry.index) != entry.term:
                cut = entry.index
                start = position
                break
        if cut is not None:
            if cut <= self.committed:
                raise AssertionError(
                    f"entry {cut} conflicts with the leader, but it is committed "
                    f"(commit index {self.committed})"
                )
            del self.entries[cut - self.snapshot.index - 1 :]
            self.stable = min(self.stable, cut - 1)
            self.handed = min(self.handed, cut - 1)
        new = entries[start:]
        if new:
            if new[0].index != self.last_index + 1:
                raise ValueError(
                    f"entries from {new[0].index} do not continue the log at {self.last_index}"
                )
            self.entries.extend(new)
        return cut

    def slice(self, low: int, high: int) -> list[Entry]:
        """Entries with ``low <= index <= high``."""
        base = self.snapshot.index + 1
        return self.entries[low - base : high - base + 1]

    def take_unstable(self, limit: int | None) -> list[Entry]:
        """Hand out the entries not yet given to the driver to persist (at most ``limit``)."""
        high = self.last_index if limit is None else min(self.last_index, self.handed + limit)
        batch = self.slice(self.handed + 1, high)
        self.handed = high
        return batch

    def stable_to(self, term: int, index: int) -> bool:
        """The driver fsynced the entries it was handed up to (``term``, ``index``). Ignored
        (False) when the entry at ``index`` is no longer of ``term`` (cut and replaced while
        the fsync ran) or is already stable."""
        if index <= self.stable or index > self.last_index or self.term_at(index) != term:
            return False
        if index > self.handed:
            raise ValueError(
                f"persisted({term}, {index}) past the handed-out entries (up to {self.handed})"
            )
        self.stable = index
        return True

    def truncate_unstable(self) -> int:
        """Forget every entry past ``stable`` (handed out or not): the driver could not persist
        them. None of them was applied (only durable entries are handed out for applying),
        but some may be known committed (a follower learns the commit index before its fsync;
        a leader counts its followers' copies): the commit index falls back to ``stable`` —
        it is soft state, the leader tells it again. Returns how many were dropped."""
        dropped = self.last_index - self.stable
        del self.entries[self.stable - self.snapshot.index :]
        self.handed = self.stable
        self.committed = min(self.committed, self.stable)
        return dropped

    def commit_to(self, index: int) -> None:
        self.committed = max(self.committed, index)

    def take_committed(self) -> list[Entry]:
        """Hand out the committed, durable entries not yet given out for applying."""
        high = min(self.committed, self.stable)
        batch = self.slice(self.applying + 1, high) if high > self.applying else []
        self.applying = max(self.applying, high)
        return batch

    def applied_to(self, index: int) -> None:
        if not self.applied <= index <= self.applying:
            raise ValueError(f"applied {index} outside ({self.applied}, {self.applying}]")
        self.applied = index

    def compact(self, snapshot: SnapshotMeta) -> None:
        """Forget entries up to ``snapshot.index``: a durable snapshot now covers them."""
        if snapshot.index <= self.snapshot.index:
            return
        if snapshot.index > self.applied:
            raise ValueError(f"compact({snapshot.index}) past applied index {self.applied}")
        if self.term_at(snapshot.index) != snapshot.term:
            raise ValueError(
                f"compact({snapshot.index}, {snapshot.term}): entry has term "
                f"{self.term_at(snapshot.index)}"
            )
        del self.entries[: snapshot.index - self.snapshot.index]
        self.snapshot = snapshot
