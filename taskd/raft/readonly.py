"""ReadIndex with peers: confirm leadership with one heartbeat round per batch of reads.

Theory of operation (Raft dissertation §6.4): a leader answers a linearizable read with its
commit index at the time of the request, once it knows it was still the leader after the
request arrived: a majority of voters answered a heartbeat sent after it. Reads queue up
(``add``); a round starts when none is in flight (``start``), taking every queued read, and
its id travels as the heartbeats' ``context``; the round is confirmed once a quorum of voters
echoed that id (``ack``), releasing its reads. Reads that arrive meanwhile wait for the next
round, which starts as soon as the current one is confirmed. So at most one round is in
flight, and every read queued before a round shares it.

Invariants: a read is released only by acknowledgements to a round that started after it was
queued; round ids only grow (an echo of an older round confirms nothing).
"""

from __future__ import annotations

from taskd.raft.confstate import has_quorum
from taskd.raft.types import ReadState


class ReadOnly:
    __slots__ = ("_acks", "_last_round", "_queued", "_round", "_round_reads")

    def __init__(self) -> None:
        self._queued: list[ReadState] = []
        self._last_round = 0
        self._round = 0  # the round in flight, 0 when none
        self._round_reads: list[ReadState] = []
        self._acks: set[str] = set()

    @property
    def context(self) -> int:
        """The id of the round in flight (0: none), for the heartbeats to carry."""
        return self._round

    def add(self, index: int, ctx: object) -> None:
        self._queued.append(ReadState(index, ctx))

    def start(self, leader: str) -> int:
        """Start a round for the queued reads if none is in flight; returns its id (0: none
        started). The leader's own acknowledgement counts from the start."""
        if self._round or not self._queued:
            return 0
        self._last_round += 1
        self._round = self._last_round
        self._round_reads, self._queued = self._queued, []
        self._acks = {leader}
        return self._round

    def ack(self, member: str, context: int, voters: tuple[str, ...]) -> list[ReadState]:
        """``member`` echoed round ``context``; returns the reads this confirms."""
        if not self._round or context != self._round:
            return []
        self._acks.add(member)
        return self.check(voters)

    def check(self, voters: tuple[str, ...]) -> list[ReadState]:
        """Release the round in flight if a quorum of ``voters`` acknowledged it."""
        if not self._round or not has_quorum(voters, self._acks):
            return []
        released, self._round_reads = self._round_reads, []
        self._round = 0
        self._acks = set()
        return released

    def clear(self) -> None:
        """Leadership is lost: every waiting read is dropped (the driver fails its waiters)."""
        self._queued.clear()
        self._round_reads = []
        self._round = 0
        self._acks = set()

    def __len__(self) -> int:
        return len(self._queued) + len(self._round_reads)
