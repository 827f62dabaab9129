"""The core's configuration, and the deterministic generator of its election timeouts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """How the core counts time, in ticks of the driver's clock, and the seed of its
    randomised election timeouts; how much a leader sends per message and per follower; when
    a learner is promoted; whether pre-vote and check-quorum are on."""

    election_ticks: int = 10
    heartbeat_ticks: int = 1
    seed: int = 0
    promote_lag: int = 1000  # a learner this close to the leader's last index becomes a voter
    max_append_entries: int = 1024  # per APPEND message
    max_append_bytes: int = 1 << 20  # per APPEND message (at least one entry is always sent)
    max_inflight: int = 64  # unacknowledged APPEND messages per follower (pipelining)
    pre_vote: bool = True
    check_quorum: bool = True

    def __post_init__(self) -> None:
        if self.heartbeat_ticks < 1 or self.election_ticks <= self.heartbeat_ticks:
            raise ValueError(
                f"need 1 <= heartbeat_ticks < election_ticks, got heartbeat "
                f"{self.heartbeat_ticks} and election {self.election_ticks}"
            )
        for name in ("max_append_entries", "max_append_bytes", "max_inflight"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.promote_lag < 0:
            raise ValueError(f"promote_lag must be at least 0, got {self.promote_lag}")


class SplitMix64:
    """A tiny deterministic generator (SplitMix64): the core may not use ``random``."""

    __slots__ = ("_state",)
    _MASK = (1 << 64) - 1

    def __init__(self, seed: int) -> None:
        self._state = seed & self._MASK

    def below(self, bound: int) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & self._MASK
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self._MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self._MASK
        return (z ^ (z >> 31)) % bound
