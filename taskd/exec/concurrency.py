"""How many attempts a local executor runs at once, between a minimum and a maximum.

Theory of operation: ``Concurrency`` is the configured range (``--concurrency N`` or
``MIN-MAX``). ``Scaler`` decides the current *target* from what the executor observes; it does
no I/O and reads no clock (``now`` is an argument), so it is tested on plain numbers.

- Grow: while more tasks wait (``backlog``) than run, raise the target to the point where
  they balance, ``ceil((running + backlog) / 2)``, capped at the maximum. Leasing the new
  slots moves tasks from the backlog to running, so one step reaches that balance and the
  executor leases all the new slots in one batch instead of one slot per round trip.
- Shrink: after ``idle_after`` seconds in which no lease brought work, drop the target to
  ``max(minimum, running)``: never below what is running, never below the minimum.
The target never leaves ``[minimum, maximum]``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


@dataclass(frozen=True, slots=True)
class Concurrency:
    min: int
    max: int

    def __post_init__(self) -> None:
        if self.min < 1:
            raise ValueError(f"concurrency minimum must be at least 1, not {self.min}")
        if self.max < self.min:
            raise ValueError(f"concurrency maximum {self.max} is below the minimum {self.min}")

    @classmethod
    def parse(cls, text: str) -> Concurrency:
        """``"8"`` → 8..8; ``"2-16"`` → 2..16. Raises ``ValueError`` naming the problem."""
        match = _RANGE.fullmatch(text)
        if match is None:
            raise ValueError(
                f"concurrency {text!r} is not a number N or a range MIN-MAX (e.g. 8 or 2-16)"
            )
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        return cls(low, high)

    def __str__(self) -> str:
        return str(self.min) if self.min == self.max else f"{self.min}-{self.max}"


class Scaler:
    """The target concurrency of one executor (see the module docstring)."""

    def __init__(self, concurrency: Concurrency, idle_after: float, now: float) -> None:
        if idle_after <= 0:
            raise ValueError("idle_shrink_after must be positive")
        self.range = concurrency
        self.idle_after = idle_after
        self.target = concurrency.min
        self._last_work = now

    def observe(self, now: float, running: int, backlog: int) -> int:
        """Update and return the target for the current ``running`` and ``backlog``."""
        if backlog > running and self.target < self.range.max:
            balance = math.ceil((running + backlog) / 2)
            self.target = min(self.range.max, max(self.target, balance))
            self._last_work = now  # a grown target gets its full idle period before shrinking
        elif now >= self.shrink_at():
            self.target = max(self.range.min, min(self.target, running))
            self._last_work = now
        return self.target

    def worked(self, now: float) -> None:
        """A lease brought work: the idle period starts again."""
        self._last_work = now

    def shrink_at(self) -> float:
        """When the target would next shrink if no work came (``inf`` at the minimum)."""
        if self.target <= self.range.min:
            return math.inf
        return self._last_work + self.idle_after
