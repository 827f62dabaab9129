"""Task ids: ULIDs, strictly increasing within this node.

A ULID is 48 bits of milliseconds and 80 random bits. Within one millisecond the random part
is incremented instead of redrawn (the ULID spec's monotonic mode), so ids made by one leader
sort in submission order and "newest first" listing is exact.

Text form: 10 base32 digits of time, then 16 of randomness. python-ulid's encoder is pure
Python (3.5 µs an id, 7 % of a batched submit), so the encoded time is reused for the whole
millisecond and the first 15 digits of randomness for 32 consecutive increments; only the last
digit is looked up per id. ``tests/node/test_ids.py`` checks the result equals python-ulid's.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ulid import base32

_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
_DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32, as ULIDs spell it


class IdGenerator:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last_ms = -1
        self._last_random = 0
        self._time_text = ""  # encoded _last_ms
        self._high = -1  # _last_random >> 5, whose 15 digits are in _high_text
        self._high_text = ""

    def new(self) -> str:
        ms = int(self._clock() * 1000)
        if ms <= self._last_ms:
            # Same (or an earlier, if the clock stepped back) millisecond: keep order.
            ms = self._last_ms
            rnd = self._last_random + 1
            if rnd > _RANDOM_MAX:
                ms, rnd = ms + 1, _fresh_random()
        else:
            rnd = _fresh_random()
        if ms != self._last_ms:
            self._time_text = base32.encode_timestamp(ms.to_bytes(6, "big"))
        self._last_ms, self._last_random = ms, rnd
        high = rnd >> 5
        if high != self._high:
            self._high = high
            self._high_text = base32.encode_randomness(rnd.to_bytes(10, "big"))[:15]
        return self._time_text + self._high_text + _DIGITS[rnd & 31]


def _fresh_random() -> int:
    return int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
