"""The gRPC listener: grpclib's HTTP/2 server, with the limits a node needs.

Theory of operation. grpclib's ``Server`` is kept for what it does well (HTTP/2, dispatch to
handlers); three of its parts are replaced:

- accepting: connections come from ``transport.accept_loop`` (trio) and are handed to the
  asyncio loop with ``connect_accepted_socket``, so the cap, the idle sweep and surviving
  EMFILE work as for HTTP (asyncio's own accept loop reports EMFILE to trio-asyncio, which
  re-raised it and killed the node);
- message size (the internal Raft service's calls get ``internal_limit``, room for one command
  as large as the API admits plus a batch around it); grpclib reads a message's 5-byte prefix,
  then buffers the whole length it announces before any codec runs. ``LimitedBuffer`` refuses
  a read longer than the limit (the same as REST's body limit) before a byte of it is
  consumed, so the call ends with RESOURCE_EXHAUSTED naming the size and the limit, unary or
  streaming alike. The HTTP/2 flow-control windows are the limit too, so a client cannot push
  much more than that into the node before it refuses;
- liveness: each connection tracks its open calls (``LimitedHandler``); one with none is idle
  (closed by the sweep after ``--idle-timeout``, first to go when the node needs room), and
  HTTP/2 pings every ``--grpc-keepalive`` seconds on connections with open calls close the
  half-open ones, and clients that stopped reading altogether, when a ping goes unanswered.
  A call with a single request must receive it within ``--idle-timeout`` (else
  DEADLINE_EXCEEDED), so a call held open by a request that never comes cannot pin its
  connection; streaming requests (the worker stream) are bounded by keepalive instead.

Stopping comes in two steps: ``close_public()`` stops accepting and ends every connection
that carried client calls, but keeps the connections of peers (those whose calls are the
internal Raft service, ``/taskd.internal.``): a stopping member still needs to receive the log
while its worker streams' last writes (lease releases, forwarded to the leader) are applied.
``close()`` then ends the rest.

Private grpclib attributes used here (``Stream.buffer``, ``Connection._connection``,
``Server._handlers`` and friends) are those of the pinned grpclib 0.4.9.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Collection
from functools import partial
from typing import Any

import grpclib
import trio
import trio_asyncio
from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.encoding.base import CodecBase
from grpclib.protocol import Buffer, H2Protocol
from grpclib.protocol import Stream as H2Stream
from grpclib.server import Handler, Server

from taskd.node.api.transport import ConnectionTable, accept_loop

INTERNAL_PREFIX = "/taskd.internal."  # the Raft service between members
_H2_MIN_WINDOW = 65_535
_H2_MAX_WINDOW = 2**31 - 1


class LimitedBuffer(Buffer):
    """A stream's inbound buffer that refuses to wait for more than ``limit`` bytes at once."""

    def __init__(self, ack_callback: Callable[[int], None], limit: int, method: str) -> None:
        super().__init__(ack_callback)
        self.limit = limit
        self.method = method
        self.reads = 0  # completed: the 5-byte prefix, then the message (2 once a request is in)

    async def read(self, size: int) -> bytes:
        if size > self.limit:
            raise grpclib.GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"{self.method}: a message of {size} bytes is larger than the limit of "
                f"{self.limit} bytes (2 x --max-payload + 64 KiB); send smaller batches or "
                "raise --max-payload",
            )
        data = await super().read(size)
        self.reads += 1
        return data


class LimitedHandler(Handler):
    """grpclib's per-connection handler, counting open calls and limiting message sizes."""

    def __init__(self, *args: Any, max_message: int, request_timeout: float) -> None:
        super().__init__(*args)
        self.max_message = max_message
        self.request_timeout = request_timeout
        self.open_calls = 0
        self.idle_from: float | None = time.monotonic()
        self.internal = False  # a peer's connection: it carried internal (Raft) calls

    def accept(
        self, stream: H2Stream, headers: list[tuple[str, str]], release_stream: Callable[[], Any]
    ) -> None:
        path = next((value for name, value in headers if name == ":path"), "")
        spec = self.mapping.get(path)
        method = path if spec is not None else "?"  # never echo a client's unknown path
        internal_call = spec is not None and path.startswith(INTERNAL_PREFIX)
        if internal_call:
            self.internal = True
        # No DATA frame of this stream has been processed yet: swapping the buffer is safe.
        assert stream.id is not None
        limit = internal_limit(self.max_message) if internal_call else self.max_message
        buffer = stream.buffer = LimitedBuffer(
            partial(stream.connection.ack, stream.id), limit, method
        )
        self.open_calls += 1
        self.idle_from = None
        # An open call keeps its connection busy (never idle-closed): a call whose single
        # request does not arrive in time would hold it forever (gRPC's slowloris).
        timer: asyncio.TimerHandle | None = None
        if spec is not None and not spec.cardinality.client_streaming:
            timer = self.loop.call_later(
                self.request_timeout, _request_overdue, stream, buffer, self.request_timeout
            )

        def release() -> None:
            if timer is not None:
                timer.cancel()
            self.open_calls -= 1
            if not self.open_calls:
                self.idle_from = time.monotonic()
            release_stream()

        super().accept(stream, headers, release)


def internal_limit(max_message: int) -> int:
    """The message limit of the internal Raft service: a batch of Raft messages or forwarded
    commands holds up to ~1 MiB plus ONE command as large as the API admits (``max_message``),
    so a follower is never cut off by an entry a client was allowed to submit."""
    return 2 * max_message + (2 << 20)


def _request_overdue(stream: H2Stream, buffer: LimitedBuffer, timeout: float) -> None:
    if buffer.reads < 2 and stream.wrapper is not None:
        # grpclib's own way to end a call from outside: the handler ends with this error,
        # which becomes the call's status
        stream.wrapper.cancel(
            grpclib.GRPCError(
                Status.DEADLINE_EXCEEDED,
                f"{buffer.method}: the request did not arrive within {timeout:g} s "
                "(--idle-timeout); send the whole request at once",
            )
        )


class GuardedProtocol(H2Protocol):
    """One gRPC connection, registered in its listener's table while it lives."""

    handler: LimitedHandler

    def __init__(
        self,
        handler: LimitedHandler,
        config: Configuration,
        h2_config: Any,
        table: ConnectionTable,
    ) -> None:
        super().__init__(handler, config, h2_config)
        self.table = table

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.table.add(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.table.discard(self)
        super().connection_lost(exc)

    def idle_since(self) -> float | None:
        return self.handler.idle_from

    def shed(self) -> None:
        if self.connection.is_closing():
            return
        # GOAWAY first, so a well-behaved client reconnects instead of reporting an error.
        self.connection._connection.close_connection()
        self.connection.flush()
        self.processor.close("idle connection closed by the node")


class GuardedServer(Server):
    """``grpclib.server.Server`` fed by ``transport.accept_loop`` instead of asyncio's."""

    def __init__(
        self,
        handlers: Collection[Any],
        *,
        codec: CodecBase,
        table: ConnectionTable,
        max_message: int,
        keepalive: float,
        request_timeout: float,
    ) -> None:
        window = min(max(max_message, _H2_MIN_WINDOW), _H2_MAX_WINDOW)
        config = Configuration(
            _keepalive_time=keepalive,
            _keepalive_timeout=keepalive,
            _keepalive_permit_without_calls=False,  # connections without calls are idle
            _http2_max_pings_without_data=0,  # a quiet Watch stream is pinged all its life
            _http2_min_sent_ping_interval_without_data=keepalive / 2,
            http2_connection_window_size=window,
            http2_stream_window_size=window,
        )
        super().__init__(handlers, codec=codec, config=config)
        self.table = table
        self.max_message = max_message
        self.request_timeout = request_timeout
        self._accepting: trio.CancelScope | None = None

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = LimitedHandler(
            self._mapping,
            self._codec,
            self._status_details_codec,
            self.__dispatch__,
            max_message=self.max_message,
            request_timeout=self.request_timeout,
        )
        self._handlers.add(handler)
        return GuardedProtocol(handler, self._config, self._h2_config, self.table)

    async def serve(
        self,
        listener: socket.socket,
        *,
        on_exhausted: Callable[[], int],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept on ``listener`` until ``close()``; each connection becomes an asyncio
        transport driving a ``GuardedProtocol``."""
        connect = trio_asyncio.aio_as_trio(self._loop.connect_accepted_socket)

        async def handle(conn: socket.socket) -> None:
            # returns once the protocol's connection_made has registered it in the table
            try:
                await connect(self._protocol_factory, conn)
            except OSError:
                conn.close()  # the client left before its transport was set up

        with trio.CancelScope() as self._accepting:
            task_status.started()
            try:
                await accept_loop(listener, self.table, handle, on_exhausted=on_exhausted)
            finally:
                listener.close()

    def close(self) -> None:
        """Stop accepting and cancel every running call (as ``Server.close`` does)."""
        if self._accepting is not None:
            self._accepting.cancel()
        for handler in self._handlers:
            handler.close()

    def close_public(self) -> None:
        """Stop accepting and cancel the calls of every connection but peers' (Raft)."""
        if self._accepting is not None:
            self._accepting.cancel()
        for handler in self._handlers:
            if not (isinstance(handler, LimitedHandler) and handler.internal):
                handler.close()

    async def wait_closed(self) -> None:
        """(asyncio) Wait until every cancelled call has finished."""
        if self._handlers:
            await asyncio.wait({self._loop.create_task(h.wait_closed()) for h in self._handlers})
