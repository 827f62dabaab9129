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
- ``mute()``: a black hole one way — what the target sends back is read and dropped, while
  what the dialer sends still arrives (a query runs, a write commits, and its answer is lost).
  Connects still succeed (the proxy accepts them) and then hear nothing. TCP cannot lose
  bytes inside a connection that lives on, so ``heal()`` resets every connection open at the
  time, as the dialer's own timeouts would have.

A proxy must not add faults of its own: a direct connect to a dead member is refused, so
``Network.member_down`` (told by the nemesis when it kills one) closes the links into it and
``member_up`` opens them again once the restarted member's own port accepts. (A frozen member
is left alone: the kernel still accepts its connections, with or without a proxy.) A member
that died otherwise (a crash, a SIGTERM) is noticed by the first connect the link cannot
forward, and the link closes the same way from then on.

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
_PROBE_EVERY = 0.02  # seconds between connects to a restarted destination's port
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
        self.is_muted = False  # answers from the target are dropped
        self.accepted = 0
        self.refused = 0
        self.forwarded = 0  # bytes, both directions
        self._connections: set[trio.CancelScope] = set()
        self._streams: set[trio.SocketStream] = set()
        self._listening: trio.CancelScope | None = None
        self._change = trio.Event()  # set (and replaced) on every cut, heal, down, up
        self._bound = trio.Event()  # set while the port is listened on
        self.target_is_down = False  # the destination's process is dead (not merely frozen)
        self._target_restarted = False

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    @property
    def wanted(self) -> bool:
        """Listen only when neither cut nor in front of a dead destination."""
        return not self.is_cut and not self.target_is_down

    async def wait_listening(self) -> None:
        """Until the port is listened on (after ``serve`` started, ``heal``, or ``target_up``)."""
        await self._bound.wait()

    def _changed(self) -> None:
        if not self.wanted:
            if self._bound.is_set():
                self._bound = trio.Event()
            if self._listening is not None:
                self._listening.cancel()  # closes the listening socket: connects are refused
        self._change.set()
        self._change = trio.Event()

    def cut(self) -> None:
        self.is_cut = True
        self._changed()
        self._reset_connections()

    def heal(self) -> None:
        if self.is_muted:  # the connections that lost answers cannot go on
            self.is_muted = False
            self._reset_connections()
        self.is_cut = False
        self.delay = 0.0
        self._changed()

    def mute(self) -> None:
        self.is_muted = True

    def _reset_connections(self) -> None:
        for stream in list(self._streams):
            _reset(stream)
        for scope in list(self._connections):
            scope.cancel()

    def slow(self, seconds: float) -> None:
        self.delay = max(0.0, seconds)

    def target_down(self) -> None:
        """The destination was killed: refuse connects, as the dead port itself would."""
        self.target_is_down, self._target_restarted = True, False
        self._changed()

    def target_up(self) -> None:
        """The destination was started again: listen once its own port accepts."""
        self._target_restarted = True
        self._changed()

    async def _target_accepts(self) -> bool:
        try:
            probe = await trio.open_tcp_stream(self.host, self.target_port)
        except OSError:
            return False
        await probe.aclose()
        return True

    async def _until_wanted(self) -> None:
        while not self.wanted:
            change = self._change
            if self.target_is_down and self._target_restarted:
                if await self._target_accepts():
                    self.target_is_down = self._target_restarted = False
                    break
                with trio.move_on_after(_PROBE_EVERY):
                    await change.wait()
            else:
                await change.wait()

    async def serve(
        self, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on ``port`` and forward until cancelled; ``task_status`` gets the port.

        While cut (or in front of a dead destination) the port is not listened on at all, so
        connects are refused as by a member that is down; it is bound again (``SO_REUSEADDR``:
        no wait for old sockets) on heal, or once a restarted destination accepts."""
        async with trio.open_nursery() as nursery:
            while True:
                [listener] = (await trio.open_tcp_listeners(port, host=self.host))[:1]
                if not self.port:
                    self.port = port = listener.socket.getsockname()[1]
                    task_status.started(self.port)
                if self.wanted:  # (it may have changed while binding)
                    with trio.CancelScope() as self._listening:
                        self._bound.set()
                        async with listener:
                            await self._accept(listener, nursery)
                    self._listening = None
                await listener.aclose()
                await self._until_wanted()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            stream = await listener.accept()
            if not self.wanted:  # accepted by the kernel just before the port closed
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
                    # The member is down (this caller sees its connection reset): refuse the
                    # next ones, as its own port does, until it accepts again.
                    self.target_down()
                    self.target_up()
                    return
                self._streams.add(outbound)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, inbound, outbound, nursery.cancel_scope)
                    nursery.start_soon(
                        self._pump, outbound, inbound, nursery.cancel_scope, "answers"
                    )
        finally:
            self._connections.discard(scope)
            for stream in (inbound, outbound):
                if stream is not None:
                    self._streams.discard(stream)
                    _reset(stream)

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        done: trio.CancelScope,
        direction: str = "requests",
    ) -> None:
        """Copy ``source`` to ``sink``, each chunk held until its due time; end both on EOF.
        The ``answers`` direction drops what it reads while the link is muted."""
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
                        if self.is_muted and direction == "answers":
                            continue
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

    def mute(self, pairs: Iterable[tuple[str, str]]) -> list[str]:
        """What the destinations of ``pairs`` answer is lost (``Link.mute``)."""
        names = []
        for pair in pairs:
            self.links[pair].mute()
            names.append(self.links[pair].name)
        return names

    def heal(self) -> None:
        for link in self.links.values():
            link.heal()

    def member_down(self, member: str) -> None:
        """``member`` was killed: every link into it refuses connects, as its port would."""
        for (_, destination), link in self.links.items():
            if destination == member:
                link.target_down()

    def member_up(self, member: str) -> None:
        """``member`` was restarted: links into it listen again once its port accepts."""
        for (_, destination), link in self.links.items():
            if destination == member:
                link.target_up()

    @property
    def faulted(self) -> bool:
        return any(link.is_cut or link.is_muted or link.delay > 0 for link in self.links.values())

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
