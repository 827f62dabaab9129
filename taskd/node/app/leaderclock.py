"""Leader time: the clock the leader stamps into every command (design.md §1 "Time").

It reads the wall clock once, at start, and then advances with the monotonic clock, so a step
of the wall clock (NTP, an operator) while the node runs neither fires timeouts early nor holds
them back: deadlines are decided on the monotonic clock. ``not_before`` keeps it at or after the
newest time already in the log, so a node that restarts with its wall clock set back never
stamps a command earlier than one it already committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LeaderClock:
    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._offset = wall() - monotonic()

    def __call__(self) -> float:
        return self._offset + self._monotonic()

    def not_before(self, committed: float) -> None:
        """Move forward, if needed, so that from now on time is later than ``committed``."""
        now = self()
        if committed >= now:
            self._offset += committed - now + 1e-6
