"""The simulation's clock and event queue: a heap of (time, sequence, action).

Theory of operation: time is an integer number of microseconds that only moves when the next
event is taken; events at the same time run in the order they were scheduled (the sequence
number breaks ties), so a run is a pure function of its seed. An action is a plain callable;
it may schedule more events. Nothing here knows about Raft.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

Action = Callable[[], None]

MS = 1_000  # microseconds per millisecond
SECOND = 1_000_000


class EventLoop:
    def __init__(self) -> None:
        self.now = 0
        self.events_run = 0
        self._heap: list[tuple[int, int, Action]] = []
        self._seq = 0

    def call_at(self, when: int, action: Action) -> None:
        if when < self.now:
            raise ValueError(f"cannot schedule at {when} us, the clock is at {self.now} us")
        heapq.heappush(self._heap, (when, self._seq, action))
        self._seq += 1

    def call_later(self, delay: int, action: Action) -> None:
        self.call_at(self.now + max(0, delay), action)

    def run_one(self) -> bool:
        """Run the next event; False when there is none."""
        if not self._heap:
            return False
        when, _, action = heapq.heappop(self._heap)
        self.now = when
        self.events_run += 1
        action()
        return True

    def __len__(self) -> int:
        return len(self._heap)
