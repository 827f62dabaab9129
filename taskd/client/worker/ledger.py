"""What a worker holds: attempts running, results not yet acknowledged, I/O-free.

Theory of operation: every attempt the node hands out is ``take``n with the stream session
(``generation``) it arrived on, and stays in the ledger until its handler has *returned*
(``returned``) and its result, if any, was acknowledged (``acked``) or refused. The node counts
an attempt against the stream's capacity only until its result is sent or it is revoked, and
a new stream starts from zero; the ledger counts every slot a handler still occupies. So the
capacity to announce is ``target - hidden``, where *hidden* slots are busy with attempts the
current stream does not count: carried over from an earlier stream, or already reported or
revoked while a sync handler's thread still runs (a thread cannot be killed).

Results are kept until acknowledged: after a reconnect they are sent again on the new stream
(the node fences them with the lease epoch, so a repeat is harmless and a stale one refused).
Heartbeats name every attempt whose handler still runs and that was not reported or revoked.

Entries are keyed by (task id, lease epoch): after a reconnect the node may hand out a task again
under a new lease while an old attempt of it still runs here (at-least-once); both are held.

Invariants: one entry per lease; an entry's result is sent at most once per stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum


class Phase(Enum):
    RUNNING = "running"  # the handler runs; the node counts it as in flight on its stream
    REPORTED = "reported"  # a result is queued or sent, waiting for its ack
    DROPPED = "dropped"  # revoked, or timed out with the result already reported


@dataclass(slots=True)
class Held:
    id: str
    epoch: int
    generation: int  # the stream session it arrived on
    deadline: float  # when its timeout ends (monotonic seconds)
    phase: Phase = Phase.RUNNING
    returned: bool = False  # its handler (or thread) has ended: the slot is free
    result: tuple[bool, bytes, str, float] | None = None  # success, result, error, retry delay
    sent_on: int = -1  # generation the result was last sent on


@dataclass(frozen=True, slots=True)
class Report:
    id: str
    epoch: int
    success: bool
    result: bytes
    error: str
    retry_delay: float


@dataclass(slots=True)
class Ledger:
    generation: int = 0
    held: dict[tuple[str, int], Held] = field(default_factory=dict)

    def new_stream(self) -> None:
        """A new stream session begins: everything unacked is to be sent again."""
        self.generation += 1

    def take(self, task_id: str, epoch: int, deadline: float) -> bool:
        """An assignment of ``task_id``; ``False`` when that lease is already held (a repeat:
        the caller does not run it again)."""
        if (task_id, epoch) in self.held:
            return False
        self.held[task_id, epoch] = Held(task_id, epoch, self.generation, deadline)
        return True

    def finish(
        self,
        task_id: str,
        epoch: int,
        success: bool,
        result: bytes,
        error: str,
        retry_delay: float = 0.0,
    ) -> bool:
        """The attempt ended with this outcome; ``True`` when it is to be reported."""
        entry = self._get(task_id, epoch)
        if entry is None or entry.phase is not Phase.RUNNING:
            return False
        entry.phase = Phase.REPORTED
        entry.result = (success, result, error, retry_delay)
        return True

    def returned(self, task_id: str, epoch: int) -> None:
        """The handler (or its thread) is gone: the slot is free."""
        entry = self._get(task_id, epoch)
        if entry is None:
            return
        entry.returned = True
        if entry.phase is Phase.DROPPED:
            del self.held[task_id, epoch]

    def revoke(self, task_id: str, epoch: int) -> bool:
        """The node took the lease back; ``True`` if a running handler is to be stopped."""
        entry = self._get(task_id, epoch)
        if entry is None:
            return False
        running = entry.phase is Phase.RUNNING
        self._drop(entry)
        return running and not entry.returned

    def acked(self, task_id: str, epoch: int) -> None:
        """The node answered the result (accepted or refused): nothing more to send."""
        entry = self._get(task_id, epoch)
        if entry is not None and entry.phase is Phase.REPORTED:
            self._drop(entry)

    def unsent(self) -> list[Report]:
        """Results not yet sent on the current stream; marks them sent."""
        reports = []
        for entry in self.held.values():
            if entry.phase is Phase.REPORTED and entry.sent_on != self.generation:
                assert entry.result is not None
                entry.sent_on = self.generation
                reports.append(Report(entry.id, entry.epoch, *entry.result))
        return reports

    def alive(self) -> list[tuple[str, int]]:
        """(id, epoch) of every attempt to heartbeat: running and neither reported nor dropped."""
        return [(e.id, e.epoch) for e in self.held.values() if e.phase is Phase.RUNNING]

    def next_deadline(self) -> float:
        running = [e.deadline for e in self.held.values() if e.phase is Phase.RUNNING]
        return min(running, default=math.inf)

    def expired(self, now: float) -> list[tuple[str, int]]:
        """Running attempts past their timeout."""
        return [
            (e.id, e.epoch)
            for e in self.held.values()
            if e.phase is Phase.RUNNING and e.deadline <= now
        ]

    @property
    def busy(self) -> int:
        """Slots occupied: handlers that have not returned."""
        return sum(1 for e in self.held.values() if not e.returned)

    @property
    def hidden(self) -> int:
        """Busy slots the current stream does not count as in flight (see the docstring)."""
        return sum(
            1
            for e in self.held.values()
            if not e.returned and (e.generation != self.generation or e.phase is not Phase.RUNNING)
        )

    @property
    def unacked(self) -> int:
        return sum(1 for e in self.held.values() if e.phase is Phase.REPORTED)

    def capacity(self, target: int) -> int:
        """What to announce to the current stream."""
        return max(0, target - self.hidden)

    def _get(self, task_id: str, epoch: int) -> Held | None:
        return self.held.get((task_id, epoch))

    def _drop(self, entry: Held) -> None:
        if entry.returned:
            del self.held[entry.id, entry.epoch]
        else:
            entry.phase = Phase.DROPPED
