"""Per-link TCP proxies on loopback: the network the nemesis controls.

Theory of operation: a ``Link`` forwards every connection accepted on its own port to one
target port (member b's gRPC port, for the directed link a→b that node a dials through
``--peer-route b=127.0.0.1:<link port>``). Two pumps per connection copy bytes each way; each
chunk is due ``delay`` seconds after it was read, so a slow link delays without reordering.

- ``cut()``: every open connection is reset (``SO_LINGER`` 0, so both ends see the failure at
  once instead of waiting on a timeout), and the listening socket is closed, so new connects
  are refused (ECONNREFUSED, as from a peer that is down) until ``heal()`` binds it again.
  (When the destination itself is down, the proxy has already accepted: the dialer sees its
  connection reset right after connecting — the one way a proxy cannot be invisible.)
- ``slow(seconds)``: the delay applies to chunks read from then on.

``Network`` is the set of links of one cluster, keyed by (source, destination) member, with
the partition shapes the nemesis uses: isolate a node, split into groups, cut one direction.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable

import trio

_CHUNK = 64 << 10
_BUFFERED_CHUNKS = 64  # per direction: beyond this the reader waits (backpressure)
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def _reset(stream: trio.SocketStream) -> None:
    """Close with a TCP reset: the peer sees ECONNRESET now, not a FIN it may ignore."""
    try:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    stream.socket.close()


class Link:
    def __init__(self, name: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.target_port = target_port
        self.port = 0  # known once ``serve`` has bound
        self.delay = 0.0
        self.is_cut = False
        self.accepted = 0
        self.refused = 0
        self.forwarded = 0  # bytes, both directions
        self._connections: set[trio.CancelScope] = set()
        self._streams: set[trio.SocketStream] = set()
        self._listening: trio.CancelScope | None = None
        self._healed = trio.Event()
        self._bound = trio.Event()  # set while the port is listened on

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def wait_listening(self) -> None:
        """Until the port is listened on (after ``serve`` started, or ``heal``)."""
        await self._bound.wait()

    def cut(self) -> None:
        self.is_cut = True
        self._bound = trio.Event()
        if self._listening is not None:
            self._listening.cancel()  # closes the listening socket: new connects are refused
        for stream in list(self._streams):
            _reset(stream)
        for scope in list(self._connections):
            scope.cancel()

    def heal(self) -> None:
        self.is_cut = False
        self.delay = 0.0
        self._healed.set()

    def slow(self, seconds: float) -> None:
        self.delay = max(0.0, seconds)

    async def serve(
        self, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on ``port`` and forward until cancelled; ``task_status`` gets the port.

        While cut, the port is not listened on at all (connects are refused, as by a peer
        that is down); healing binds it again (``SO_REUSEADDR``: no wait for old sockets)."""
        async with trio.open_nursery() as nursery:
            while True:
                [listener] = (await trio.open_tcp_listeners(port, host=self.host))[:1]
                if not self.port:
                    self.port = port = listener.socket.getsockname()[1]
                    task_status.started(self.port)
                if not self.is_cut:  # (a cut may have come while binding)
                    with trio.CancelScope() as self._listening:
                        self._bound.set()
                        async with listener:
                            await self._accept(listener, nursery)
                    self._listening = None
                await listener.aclose()
                while self.is_cut:
                    await self._healed.wait()
                    self._healed = trio.Event()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            stream = await listener.accept()
            if self.is_cut:  # accepted by the kernel just before the cut closed the port
                self.refused += 1
                _reset(stream)
                continue
            self.accepted += 1
            nursery.start_soon(self._connection, stream)

    async def _connection(self, inbound: trio.SocketStream) -> None:
        scope = trio.CancelScope()
        self._connections.add(scope)
        self._streams.add(inbound)
        outbound: trio.SocketStream | None = None
        try:
            with scope:
                try:
                    outbound = await trio.open_tcp_stream(self.host, self.target_port)
                except OSError:
                    return  # the member is down: the caller sees its connection reset
                self._streams.add(outbound)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, inbound, outbound, nursery.cancel_scope)
                    nursery.start_soon(self._pump, outbound, inbound, nursery.cancel_scope)
        finally:
            self._connections.discard(scope)
            for stream in (inbound, outbound):
                if stream is not None:
                    self._streams.discard(stream)
                    _reset(stream)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope
    ) -> None:
        """Copy ``source`` to ``sink``, each chunk held until its due time; end both on EOF."""
        send, receive = trio.open_memory_channel[tuple[float, bytes]](_BUFFERED_CHUNKS)

        async def read() -> None:
            async with send:
                try:
                    while data := await source.receive_some(_CHUNK):
                        await send.send((trio.current_time() + self.delay, data))
                except _BROKEN:
                    pass

        async def write() -> None:
            async with receive:
                try:
                    async for due, data in receive:
                        await trio.sleep_until(due)
                        await sink.send_all(data)
                        self.forwarded += len(data)
                except _BROKEN:
                    pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            nursery.start_soon(write)
        done.cancel()  # one side ended or broke: the connection is over


class Network:
    """Every directed link of one cluster, by (source member, destination member)."""

    def __init__(self, links: dict[tuple[str, str], Link]) -> None:
        self.links = links

    @property
    def members(self) -> list[str]:
        return sorted({a for a, _ in self.links} | {b for _, b in self.links})

    def cut(self, pairs: Iterable[tuple[str, str]]) -> list[str]:
        names = []
        for pair in pairs:
            link = self.links.get(pair)
            if link is not None:
                link.cut()
                names.append(link.name)
        return names

    def isolate(self, node: str) -> list[str]:
        """Cut every link into and out of ``node``."""
        return self.cut((a, b) for a, b in self.links if node in (a, b))

    def split(self, groups: list[list[str]]) -> list[str]:
        """Cut every link between members of different groups."""
        side = {m: i for i, group in enumerate(groups) for m in group}
        return self.cut((a, b) for a, b in self.links if side.get(a) != side.get(b))

    def one_way(self, sources: Iterable[str], destinations: Iterable[str]) -> list[str]:
        dst = set(destinations)
        return self.cut((a, b) for a in sources for b in dst if a != b)

    def slow(self, seconds: float, pairs: Iterable[tuple[str, str]] | None = None) -> list[str]:
        chosen = list(self.links) if pairs is None else list(pairs)
        for pair in chosen:
            self.links[pair].slow(seconds)
        return [self.links[p].name for p in chosen]

    def heal(self) -> None:
        for link in self.links.values():
            link.heal()

    @property
    def faulted(self) -> bool:
        return any(link.is_cut or link.delay > 0 for link in self.links.values())

    def stats(self) -> dict[str, dict[str, float]]:
        return {
            link.name: {
                "accepted": link.accepted,
                "refused": link.refused,
                "open": link.open_connections,
                "bytes": link.forwarded,
            }
            for link in self.links.values()
        }
