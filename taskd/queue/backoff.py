"""Retry backoff with full jitter, drawn deterministically from the leader's entropy.

Theory of operation: the scheduler owns no randomness. Each command carries ``entropy``, a
64-bit integer the leader drew; a failed attempt's jitter is splitmix64 of that entropy mixed
with the task's ``seq`` and ``attempt``, so every replica computes the same backoff and two
tasks failing in one command (a Tick, a lost worker) still get independent jitter.
"""

from __future__ import annotations

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(x: int) -> int:
    """One splitmix64 step: a well-mixed 64-bit function of a 64-bit input."""
    z = (x + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def unit(entropy: int, seq: int, attempt: int) -> float:
    """A number in [0, 1) fixed by (entropy, seq, attempt)."""
    mixed = splitmix64((entropy & _MASK) ^ splitmix64((seq << 8) ^ attempt))
    return (mixed >> 11) * (1.0 / (1 << 53))


def backoff(base: float, cap: float, attempt: int, entropy: int, seq: int) -> float:
    """Seconds to wait before the attempt after ``attempt``: uniform(0, min(cap, base*2**(n-1)))."""
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling * unit(entropy, seq, attempt)
