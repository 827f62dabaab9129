"""Latency percentiles over the last minute, in bounded memory: log-bucketed histograms.

Theory of operation: a sample (milliseconds) lands in the bucket ``ceil(log(ms / FLOOR_MS) /
log(GROWTH))`` (bucket 0 holds everything at or below ``FLOOR_MS``), so every bucket is 5 %
wide and 10 µs to a week takes under 500 buckets. A ``LatencyWindow`` keeps one sparse
histogram per second of the last ``WINDOW`` seconds plus their running sum; adding a sample
costs a logarithm and two dict increments, a percentile a sort of the occupied buckets. A
percentile is reported as its bucket's geometric middle: within 2.5 % of the true value.

Seconds are whatever clock the caller passes (the stream uses the leader's time stamped into
each command), and nothing here reads a clock. The window forgets a second once it is
``WINDOW`` seconds older than the newest sample or query time; it never grows beyond
``WINDOW`` histograms, whatever the rate.
"""

from __future__ import annotations

import math
from collections import deque

WINDOW = 60  # seconds a sample counts
FLOOR_MS = 0.01  # bucket 0: at or below 10 µs
GROWTH = 1.05  # each bucket's upper bound is 5 % above the previous one's
_LOG_GROWTH = math.log(GROWTH)
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def bucket_of(ms: float) -> int:
    """The bucket a sample of ``ms`` milliseconds lands in (negative and NaN: bucket 0)."""
    if not ms > FLOOR_MS:  # also NaN
        return 0
    return math.ceil(math.log(ms / FLOOR_MS) / _LOG_GROWTH)


def value_of(bucket: int) -> float:
    """The value a bucket stands for: the geometric middle of its bounds (ms)."""
    if bucket <= 0:
        return FLOOR_MS
    return float(FLOOR_MS * GROWTH ** (bucket - 0.5))


class LatencyWindow:
    """Samples of one measure (say, one queue's pickup latency) over the last minute."""

    __slots__ = ("_seconds", "_total", "count")

    def __init__(self) -> None:
        self._seconds: deque[tuple[int, dict[int, int]]] = deque()  # (second, bucket → n)
        self._total: dict[int, int] = {}  # the sum of every histogram in ``_seconds``
        self.count = 0  # samples in the window

    def add(self, ms: float, now: float) -> None:
        second = int(now)
        seconds = self._seconds
        if not seconds or seconds[-1][0] < second:
            self.expire(now)
            seconds.append((second, {}))
        # A sample older than the newest second (the leader's clock stepped back) joins the
        # newest one: the window only ever moves forward.
        histogram = seconds[-1][1]
        bucket = bucket_of(ms)
        histogram[bucket] = histogram.get(bucket, 0) + 1
        total = self._total
        total[bucket] = total.get(bucket, 0) + 1
        self.count += 1

    def expire(self, now: float) -> None:
        """Forget the seconds that left the window by ``now``."""
        oldest = int(now) - WINDOW
        seconds, total = self._seconds, self._total
        while seconds and seconds[0][0] <= oldest:
            _, histogram = seconds.popleft()
            for bucket, n in histogram.items():
                left = total[bucket] - n
                if left:
                    total[bucket] = left
                else:
                    del total[bucket]
                self.count -= n

    def percentiles(self, now: float) -> dict[str, float | None]:
        """``{"p50": ms, "p95": ms, "p99": ms}`` over the window; None while it holds no sample."""
        self.expire(now)
        if not self.count:
            return {name: None for name, _ in QUANTILES}
        ranked = sorted(self._total.items())
        found: dict[str, float | None] = {}
        seen, i = 0, 0
        for name, q in QUANTILES:
            rank = max(1, math.ceil(q * self.count))  # the smallest value with q of the samples
            while seen + ranked[i][1] < rank:
                seen += ranked[i][1]
                i += 1
            found[name] = round(value_of(ranked[i][0]), 3)
        return found
