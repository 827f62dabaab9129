"""When a worker heartbeats its leases, I/O-free.

Theory of operation: the node grants each lease ``lease_seconds`` (it says so in every
``Assignment``) and lets it lapse unless a heartbeat names it in time. A worker heartbeats all
its running attempts together in one message, every ``lease_seconds / 3``, so two heartbeats
can be lost or late before a lease lapses. The first heartbeat of a fresh stream is due one
interval after its first assignment; a worker with nothing running sends none.
"""

from __future__ import annotations

import math

DEFAULT_LEASE = 30.0  # the node's default --worker-lease, until an Assignment says otherwise
MIN_INTERVAL = 0.05


class Heartbeats:
    def __init__(self, lease_seconds: float = DEFAULT_LEASE) -> None:
        self.interval = self._interval(lease_seconds)
        self._next = math.inf

    def leased(self, now: float, lease_seconds: float) -> None:
        """An assignment arrived with this lease period."""
        if lease_seconds > 0:
            self.interval = self._interval(lease_seconds)
        self._next = min(self._next, now + self.interval)

    def due(self, now: float, running: int) -> bool:
        """Whether to heartbeat now; when it is, the next one is scheduled."""
        if running == 0:
            self._next = math.inf
            return False
        if now < self._next:
            return False
        self._next = now + self.interval
        return True

    def next_at(self) -> float:
        return self._next

    def reset(self) -> None:
        """A new stream: nothing is due until work arrives or is carried over."""
        self._next = math.inf

    def carried(self, now: float) -> None:
        """Attempts carried over to a new stream: heartbeat them at once (their leases went
        on ageing while the worker reconnected)."""
        self._next = now

    @staticmethod
    def _interval(lease_seconds: float) -> float:
        return max(MIN_INTERVAL, lease_seconds / 3)
