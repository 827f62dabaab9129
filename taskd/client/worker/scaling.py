"""How many handlers a worker runs at once, between a minimum and a maximum, I/O-free.

Theory of operation: a stream worker does not see the queue's backlog, but the node fills every
free slot it announces as soon as work is runnable. So *saturation* is the backlog signal: when
every slot stayed busy for ``grow_after`` seconds, more work is waiting; the target grows by
half (at least one), up to the maximum. A slot that a finished handler frees is refilled one
round trip later when there is a backlog, so a slot free for at most ``refill`` seconds does
not break saturation (with short tasks some slot is always between two of them); one that
stays free longer means the queue ran dry. When some slots stayed free for ``shrink_after``
seconds, the target drops to the most that ran at once in that period (never below the
minimum): slots that nobody used are given back. ``now`` is always an argument; this class
holds no clock, so its tests are plain numbers.

Invariant: ``minimum <= target <= maximum``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


@dataclass(frozen=True, slots=True)
class Concurrency:
    """The range a worker's concurrency moves in: ``8`` is 8..8, ``(2, 16)`` is 2..16."""

    min: int
    max: int

    def __post_init__(self) -> None:
        if self.min < 1:
            raise ValueError(f"concurrency: the minimum must be at least 1, not {self.min}")
        if self.max < self.min:
            raise ValueError(f"concurrency: the maximum {self.max} is below the minimum {self.min}")
        if self.max > 10_000:
            raise ValueError(f"concurrency: the maximum must be at most 10000, not {self.max}")

    @classmethod
    def of(cls, value: object) -> Concurrency:
        """From ``8``, ``(2, 16)``, ``"8"`` or ``"2-16"``; ``ValueError`` names the problem."""
        if isinstance(value, Concurrency):
            return value
        if isinstance(value, bool):
            raise ValueError(f"concurrency must be an int or a (min, max) pair, not {value!r}")
        if isinstance(value, int):
            return cls(value, value)
        if isinstance(value, str):
            match = _RANGE.fullmatch(value)
            if match is None:
                raise ValueError(
                    f"concurrency {value!r} is not a number N or a range MIN-MAX (8 or 2-16)"
                )
            low = int(match.group(1))
            return cls(low, int(match.group(2)) if match.group(2) is not None else low)
        if (
            isinstance(value, tuple | list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            return cls(value[0], value[1])
        raise ValueError(f"concurrency must be an int or a (min, max) pair, not {value!r}")

    def __str__(self) -> str:
        return str(self.min) if self.min == self.max else f"{self.min}-{self.max}"


class Autoscaler:
    """The target concurrency (see the module docstring)."""

    def __init__(
        self,
        concurrency: Concurrency,
        now: float,
        *,
        grow_after: float = 0.2,
        shrink_after: float = 10.0,
        refill: float = 0.1,
    ) -> None:
        if grow_after <= 0 or shrink_after <= 0 or refill < 0:
            raise ValueError("grow_after and shrink_after must be positive, refill >= 0")
        self.range = concurrency
        self.grow_after = grow_after
        self.shrink_after = shrink_after
        self.refill = refill
        self.target = concurrency.min
        self._saturated_since: float | None = None
        self._free_since: float | None = None  # when a slot last became free (None: none is)
        self._period_start = now
        self._peak = 0  # the most running at once since the period started

    def observe(self, now: float, running: int) -> int:
        """``running`` handlers are busy now; update and return the target."""
        self._peak = max(self._peak, running)
        if running >= self.target:
            if self._free_since is not None and now - self._free_since > self.refill:
                self._saturated_since = None  # that slot stayed free: the queue had run dry
            self._free_since = None
            if self._saturated_since is None:
                self._saturated_since = now
            if self.target < self.range.max and now - self._saturated_since >= self.grow_after:
                step = max(1, math.ceil(self.target / 2))
                self.target = min(self.range.max, self.target + step)
                self._saturated_since = None
                self._restart(now, running)
            return self.target
        if self._free_since is None:
            self._free_since = now
        if now - self._free_since > self.refill:
            self._saturated_since = None
        if now - self._period_start >= self.shrink_after:
            self.target = max(self.range.min, min(self.target, self._peak))
            self._restart(now, running)
        return self.target

    def next_decision(self, now: float) -> float:
        """When ``observe`` may next change the target without ``running`` changing."""
        if self.range.min == self.range.max:
            return math.inf
        if self._saturated_since is not None and self.target < self.range.max:
            if self._free_since is not None:  # a slot is free: when it counts as a dry queue
                return self._free_since + self.refill + 1e-6
            return self._saturated_since + self.grow_after
        if self.target > self.range.min:
            return self._period_start + self.shrink_after
        return math.inf

    def _restart(self, now: float, running: int) -> None:
        self._period_start = now
        self._peak = running
