"""Task ids: ULIDs, strictly increasing within this node.

A ULID is 48 bits of milliseconds and 80 random bits. Within one millisecond the random part
is incremented instead of redrawn (the ULID spec's monotonic mode), so ids made by one leader
sort in submission order and "newest first" listing is exact.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ulid import ULID

_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1


class IdGenerator:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last_ms = -1
        self._last_random = 0

    def new(self) -> str:
        ms = int(self._clock() * 1000)
        if ms <= self._last_ms:
            # Same (or an earlier, if the clock stepped back) millisecond: keep order.
            ms = self._last_ms
            rnd = self._last_random + 1
            if rnd > _RANDOM_MAX:
                ms, rnd = ms + 1, int.from_bytes(os.urandom(10), "big") >> 1
        else:
            rnd = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
        self._last_ms, self._last_random = ms, rnd
        return str(ULID.from_bytes(ms.to_bytes(6, "big") + rnd.to_bytes(10, "big")))
