"""Which members to call, and in what order after a failure.

Theory of operation: ``parse_targets`` turns what a user gives (an argument, else the
``TASKD_SERVER`` environment variable, else ``127.0.0.1:50051``) into ``Target``s, refusing
what cannot be a gRPC member with a message that says what to write instead (the SDK speaks
gRPC; the REST port 8080 is not it). ``Rotation`` is the failover decision, I/O-free: which
member to call now, where to go after a failure (the leader a member named, else the next
member), and how long to back off once every member has failed in a row — full jitter from an
injected ``random.Random``, so tests are deterministic. It holds no sockets and reads no clock.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from taskd.client.errors import InvalidArgument

DEFAULT_PORT = 50051
DEFAULT_TARGET = f"127.0.0.1:{DEFAULT_PORT}"
ENV = "TASKD_SERVER"


@dataclass(frozen=True, slots=True)
class Target:
    """One member's gRPC address."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _parse_one(text: str, source: str) -> Target:
    raw = text.strip()
    value = raw
    scheme, sep, rest = value.partition("://")
    if sep:
        if scheme.lower() in ("http", "https", "ws", "wss"):
            raise InvalidArgument(
                f"{raw!r} is an HTTP URL; the Python SDK speaks gRPC: give a node's gRPC "
                f"address host:port (default port {DEFAULT_PORT}, e.g. {DEFAULT_TARGET}), "
                "not its REST address (--http, default 8080)",
                source,
            )
        if scheme.lower() != "grpc":
            raise InvalidArgument(
                f"{raw!r}: unknown scheme {scheme!r}; write host:port or grpc://host:port",
                source,
            )
        value = rest
    value = value.rstrip("/")
    if not value:
        raise InvalidArgument(f"{raw!r} names no host; write host:port", source)
    if "/" in value:
        raise InvalidArgument(f"{raw!r}: a gRPC address has no path; write host:port", source)
    if value.startswith("["):  # [::1]:50051
        host, bracket, after = value[1:].partition("]")
        if not bracket or not host or (after and not after.startswith(":")):
            raise InvalidArgument(f"{raw!r}: write an IPv6 address as [addr]:port", source)
        has_port, port_text = bool(after), after[1:]
    elif value.count(":") > 1:
        raise InvalidArgument(f"{raw!r}: write an IPv6 address as [addr]:port", source)
    else:
        host, colon, port_text = value.partition(":")
        has_port = bool(colon)
        if not host:
            raise InvalidArgument(f"{raw!r} names no host; write host:port", source)
    if not has_port:
        return Target(host, DEFAULT_PORT)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidArgument(f"{raw!r}: port {port_text!r} is not a number in 1..65535", source)
    return Target(host, int(port_text))


def parse_targets(
    servers: str | Iterable[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Target, ...]:
    """Members from ``servers`` ("host:port", "a:1,b:2" or a list), else ``TASKD_SERVER``
    (comma-separated), else 127.0.0.1:50051. Duplicates are dropped, order kept."""
    env = os.environ if environ is None else environ
    source = "servers"
    if servers is None:
        servers = env.get(ENV) or None
        source = ENV
    if servers is None:
        return (Target("127.0.0.1", DEFAULT_PORT),)
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    targets: list[Target] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidArgument(f"{item!r} is not an address string", source)
        if not item.strip():
            continue
        target = _parse_one(item, source)
        if target not in targets:
            targets.append(target)
    if not targets:
        raise InvalidArgument("names no server; write host:port[,host:port...]", source)
    return tuple(targets)


class Rotation:
    """Failover across members: the member to call, and what to do after it failed.

    ``failed(target, hint)`` moves to the leader named by ``hint`` (added as a member if it is
    new) or to the next member, and returns the seconds to wait before the next try: 0 while
    members remain untried since the last success; after a whole round has failed, a full-
    jitter backoff ``uniform(0, min(cap, base * 2**round))``. A failure reported for a member
    that is no longer current (a concurrent caller already moved on) does not move again.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        rng: random.Random,
        *,
        base: float = 0.05,
        cap: float = 2.0,
    ) -> None:
        if not targets:
            raise ValueError("a rotation needs at least one target")
        self.members: list[Target] = list(targets)
        self._rng = rng
        self._base = base
        self._cap = cap
        self._index = 0
        self._failures = 0  # consecutive failures since the last success

    @property
    def current(self) -> Target:
        return self.members[self._index]

    def succeeded(self, target: Target) -> None:
        """A call to ``target`` got an answer: it becomes the member to call."""
        if target in self.members:
            self._index = self.members.index(target)
        self._failures = 0

    def failed(self, target: Target, hint: str | None = None) -> float:
        """``target`` could not take the call; returns the seconds to wait before retrying."""
        self._failures += 1
        leader = self._hint_target(hint)
        if leader is not None and leader != target:
            if leader not in self.members:
                self.members.append(leader)
            self._index = self.members.index(leader)
            return 0.0 if self._failures <= len(self.members) else self._backoff()
        if target == self.current:
            self._index = (self._index + 1) % len(self.members)
        if self._failures < len(self.members):
            return 0.0
        return self._backoff()

    def _backoff(self) -> float:
        rounds = self._failures // len(self.members)
        ceiling = min(self._cap, self._base * 2 ** min(rounds, 30))
        return self._rng.uniform(0.0, ceiling)

    @staticmethod
    def _hint_target(hint: str | None) -> Target | None:
        if not hint:
            return None
        try:
            return _parse_one(hint, "leader hint")
        except InvalidArgument:
            return None  # a member's odd hint is no reason to fail the call
