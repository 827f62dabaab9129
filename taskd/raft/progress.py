"""What a leader knows of each follower's log, and how fast it may send to it (etcd-io/raft).

Theory of operation: for every other member the leader keeps ``match`` (the highest index
known to be on that member's log) and ``next`` (the next index to send), and one of three
states that decide how it sends:

- ``PROBE``: the leader does not know where the logs agree. It sends one APPEND and waits
  (``probe_sent``) for the answer or the next heartbeat answer before sending another. A
  rejection moves ``next`` back, using the follower's hint to skip whole terms at a time.
- ``REPLICATE``: the logs agree up to ``match``; the leader streams APPENDs optimistically
  (``next`` jumps past what it sent) with at most ``max_inflight`` unacknowledged at once
  (``Inflights``: the last index of each message in flight, freed by acknowledgements). A
  refusal whose hint is a position where the logs are known to agree rewinds ``next`` to it
  and keeps streaming (go-back-N: a lost or reordered message costs one round trip);
  any other refusal falls back to probing.
- ``SNAPSHOT``: the follower needs entries the leader compacted away; the leader sent it a
  snapshot and sends nothing else until the driver reports how that went.

Invariants: ``match < next``; ``match`` only grows while the leader leads; a stale answer (to
a message older than the current probe) changes nothing.
"""

from __future__ import annotations

from collections import deque
from enum import Enum


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """The last index of each APPEND in flight to one follower, oldest first."""

    __slots__ = ("_capacity", "_last")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._last: deque[int] = deque()

    def add(self, index: int) -> None:
        self._last.append(index)

    def free_to(self, index: int) -> None:
        """Every message up to ``index`` is acknowledged."""
        while self._last and self._last[0] <= index:
            self._last.popleft()

    def free_first(self) -> None:
        if self._last:
            self._last.popleft()

    def full(self) -> bool:
        return len(self._last) >= self._capacity

    def reset(self) -> None:
        self._last.clear()

    def __len__(self) -> int:
        return len(self._last)


class Progress:
    __slots__ = (
        "inflights",
        "last_heard",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "sent_commit",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflights = Inflights(max_inflight)
        self.last_heard: int | None = None  # the leader's tick count when it last answered
        self.sent_commit = 0  # the commit index this follower was last told

    def paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_snapshot(self, index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = index
        self.inflights.reset()

    def sent(self, last: int | None) -> None:
        """An APPEND went out whose last entry is ``last`` (None: it carried no entries)."""
        if self.state is ProgressState.REPLICATE:
            if last is not None:
                self.next = last + 1
                self.inflights.add(last)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def update(self, index: int) -> bool:
        """The follower matches up to ``index``. True if that is news."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def rejected(self, index: int, hint: int, agreed: bool) -> bool:
        """The follower refused the APPEND after ``index``; ``hint`` is the leader's best guess
        of the last index where the logs agree, and ``agreed`` says the logs are known to
        agree there (the follower's entry at ``hint`` has the leader's term: log matching).
        False if the answer is stale.

        Known agreement resumes streaming from ``hint + 1`` at once (a follower that fell
        behind, or that missed or reordered a message of the stream, costs one round trip
        and no probing); otherwise the leader probes from its guess, one message at a time."""
        if self.state is ProgressState.REPLICATE:
            if index <= self.match:
                return False  # an answer to a message sent before the logs were known to agree
            if agreed:
                self.next = max(self.match + 1, hint + 1)
                self.inflights.reset()
                return True
            self.become_probe()
            self.next = max(self.match + 1, min(index, hint + 1))
            return True
        if self.next - 1 != index:
            return False  # not the probe in flight
        if agreed:
            self.state = ProgressState.REPLICATE
            self.pending_snapshot = 0
            self.inflights.reset()
            self.next = max(self.match + 1, hint + 1)
            return True
        self.next = max(min(index, hint + 1), self.match + 1)
        self.probe_sent = False
        return True
