"""The parent's short conversations with the node: is it there, who is connected, what is queued.

Each call runs its own short asyncio loop (``asyncio.run``), so the parent holds no loop while
it forks client processes. Connection failures come back as ``Unreachable`` with the address.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskd.api.taskd import v1 as pb

T = TypeVar("T")
PROBE_TIMEOUT = 3.0


class Unreachable(Exception):
    """The node did not answer at this address."""


@dataclass(frozen=True, slots=True)
class Target:
    grpc_host: str
    grpc_port: int
    http_url: str

    @property
    def grpc_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"


def parse_grpc_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[v6]:PORT``, or a bare host for port 50051)."""
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        return text.strip("[]"), 50051
    if not port.isdigit():
        raise ValueError(f"not a HOST:PORT address: {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _with_channel(target: Target, body: Callable[[Channel], Awaitable[T]]) -> T:
    async def session() -> T:
        channel = Channel(target.grpc_host, target.grpc_port)
        try:
            return await asyncio.wait_for(body(channel), PROBE_TIMEOUT)
        finally:
            channel.close()

    try:
        return asyncio.run(session())
    except (OSError, TimeoutError) as exc:
        raise Unreachable(f"{target.grpc_address} ({exc or type(exc).__name__})") from None
    except GRPCError as exc:
        raise Unreachable(f"{target.grpc_address} ({exc.status.name}: {exc.message})") from None


def probe_grpc(target: Target) -> str:
    """The node's role and term over gRPC; ``Unreachable`` if it does not answer at all."""

    async def body(channel: Channel) -> str:
        try:
            status = await pb.ClusterServiceStub(channel).status(pb.ClusterStatusRequest())
        except GRPCError as exc:  # it answered: reachable, even if Status itself failed
            if exc.status is Status.UNAVAILABLE:
                raise
            return f"cluster status failed: {exc.status.name}"
        return f"{status.role}, term {status.term}"

    return _with_channel(target, body)


def probe_http(url: str) -> None:
    """``GET /readyz`` must answer 200."""
    try:
        response = httpx.get(f"{url}/readyz", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        raise Unreachable(f"{url} ({exc or type(exc).__name__})") from None
    if response.status_code != 200:
        raise Unreachable(f"{url} (/readyz answered {response.status_code})")


def _cluster_field(url: str, name: str) -> str | None:
    try:
        response = httpx.get(f"{url}/api/v1/cluster", timeout=PROBE_TIMEOUT)
        body: Any = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return None
    value = body.get(name) if isinstance(body, dict) else None
    return value if isinstance(value, str) and value else None


def discover_grpc(url: str) -> str | None:
    """The leader's gRPC address from ``GET /api/v1/cluster``, or None if it cannot tell."""
    return _cluster_field(url, "leader")


def discover_members(url: str) -> list[str]:
    """Every member's gRPC address from ``GET /api/v1/cluster`` (``members[].address``)."""
    try:
        response = httpx.get(f"{url}/api/v1/cluster", timeout=PROBE_TIMEOUT)
        body: Any = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return []
    found = body.get("members") if isinstance(body, dict) else None
    if not isinstance(found, list):
        return []
    return [
        m["address"] for m in found if isinstance(m, dict) and isinstance(m.get("address"), str)
    ]


def discover_self(url: str) -> str | None:
    """This member's own gRPC address (its id) from ``GET /api/v1/cluster``, or None."""
    return _cluster_field(url, "id")


def queue_counts(target: Target, queue: str) -> dict[str, int]:
    """Tasks of ``queue`` by state name (``"queued"``, ``"succeeded"``...); {} if unknown."""

    async def body(channel: Channel) -> pb.ListQueuesResponse:
        return await pb.ClusterServiceStub(channel).list_queues(pb.ListQueuesRequest())

    for stats in _with_channel(target, body).queues:
        if stats.name == queue:
            return {_state_name(k): v for k, v in stats.by_state.items()}
    return {}


def stream_workers(target: Target, queue: str) -> int:
    """How many stream workers the node has registered for ``queue``."""

    async def body(channel: Channel) -> pb.ListWorkersResponse:
        return await pb.ClusterServiceStub(channel).list_workers(pb.ListWorkersRequest())

    return sum(1 for w in _with_channel(target, body).workers if queue in w.queues)


def _state_name(name: str) -> str:
    return name.lower().removeprefix("task_state_")
