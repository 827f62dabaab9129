"""Per-queue rates for ``GET /api/v1/queues``: tasks submitted and finished per second.

Counted from the committed state changes this node applies, in one-second buckets over the
last minute; a rate is the count in the window over the window's length (shorter while the
node is younger than a minute). Replay at start-up is not counted (``enabled`` turns on once
the store serves), so a restart does not show a burst of old work as current.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from taskd.queue.commands import Command, Outcome

WINDOW = 60  # seconds


class _Buckets:
    __slots__ = ("buckets", "finished", "submitted")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()  # [second, submitted, finished]
        self.submitted = 0  # sums over the buckets still in the window
        self.finished = 0

    def add(self, second: int, submitted: int, finished: int) -> None:
        if not self.buckets or self.buckets[-1][0] != second:
            self.buckets.append([second, 0, 0])
        bucket = self.buckets[-1]
        bucket[1] += submitted
        bucket[2] += finished
        self.submitted += submitted
        self.finished += finished

    def expire(self, now_second: int) -> None:
        while self.buckets and self.buckets[0][0] <= now_second - WINDOW:
            _, submitted, finished = self.buckets.popleft()
            self.submitted -= submitted
            self.finished -= finished


class QueueRates:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.enabled = False
        self._since = clock()
        self._queues: dict[str, _Buckets] = {}

    def on_applied(self, command: Command, outcome: Outcome) -> None:
        if not self.enabled or not outcome.events:
            return
        second = int(self.clock())
        queues = self._queues
        for event in outcome.events:
            submitted = event.previous is None
            finished = event.current.terminal
            if submitted or finished:
                buckets = queues.get(event.queue)
                if buckets is None:
                    buckets = queues[event.queue] = _Buckets()
                buckets.add(second, int(submitted), int(finished))

    def start(self) -> None:
        """Count from now on (called once recovery is done)."""
        self.enabled = True
        self._since = self.clock()

    def of(self, queue: str) -> tuple[float, float]:
        """(submitted per second, finished per second) of ``queue`` over the last minute."""
        buckets = self._queues.get(queue)
        if buckets is None:
            return 0.0, 0.0
        now = self.clock()
        buckets.expire(int(now))
        span = min(float(WINDOW), max(now - self._since, 1.0))
        return buckets.submitted / span, buckets.finished / span
