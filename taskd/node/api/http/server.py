"""The HTTP listener: hypercorn's HTTP/1.1 and HTTP/2 connections, accepted by the guard.

Theory of operation. ``hypercorn.trio.serve`` accepts with ``trio.serve_listeners``, which has
no connection cap and logs every retry at the descriptor limit, and it offers no way to pass
another listener. So this module is hypercorn's ``worker_serve`` (pinned hypercorn 0.18.0)
minus what a node does not use (TLS, QUIC, worker processes, max-requests), with
``transport.accept_loop`` in place of ``serve_listeners``.

Each connection is wrapped in a ``TrackedStream``, which records when the node last sent it
something. A connection is idle when the node has sent it nothing for a while, unless a whole
HTTP/1.1 request is in and its answer has not started (the app is working: a lease long-poll
may wait 60 s). So the sweep closes, ``--idle-timeout`` after the last byte the node sent,
connections between requests, half-sent requests (slowloris, including one that trickles a
byte at a time, and a body that never comes) and responses nobody reads (at least 64 KiB per
timeout must be). hypercorn's keep-alive timeout is the same; its read timeout stays off, as
it would cut long-polls. (HTTP/2 connections are judged by what was sent alone.)

Each connection's ASGI scope carries, in its ``state``, the connection's abort
(``ABORT_KEY``): hypercorn's sends cannot be cancelled (they are shielded), so an app whose
send waits on a client that reads nothing has no other way to let go of it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, LifespanState
from hypercorn.utils import wrap_app

from taskd.node.api.transport import ConnectionTable, accept_loop

# scope["state"][ABORT_KEY]: closes the connection's socket (the event stream's last resort
# against a client that reads nothing, not even its bye)
ABORT_KEY = "taskd.abort"
SEND_CHUNK = 64 << 10  # a slow reader that still reads is not idle: progress per chunk
EOF_GRACE = 1.0  # seconds a connection may live on after its client closed its side


class TrackedStream(trio.abc.HalfCloseableStream):
    """A socket stream that remembers when it last sent data (or was opened).

    hypercorn tells plain from TLS streams by the absence of ``do_handshake`` and reads the
    peer's address from ``.socket``; both hold here."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self._inner = inner
        self.socket = inner.socket
        self.last_active = time.monotonic()
        self.scope = trio.CancelScope()  # the connection's; run_connection enters it
        self.server: TCPServer | None = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for start in range(0, len(view), SEND_CHUNK):
            await self._inner.send_all(view[start : start + SEND_CHUNK])
            self.last_active = time.monotonic()

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self._inner.receive_some(max_bytes)
        if not data:
            # hypercorn stops reading at EOF but keeps the connection (and its descriptor)
            # until its keep-alive timer ends: a connect-and-close flood would pin one
            # descriptor per connection for --idle-timeout. Nothing is left to serve.
            self.scope.deadline = min(self.scope.deadline, trio.current_time() + EOF_GRACE)
        return data

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()

    # -- transport.Tracked -----------------------------------------------------------------
    def idle_since(self) -> float | None:
        if self.server is not None and _app_working(self.server):
            return None
        return self.last_active

    def shed(self) -> None:
        # Closing the trio socket wakes the connection's pending receive or send with
        # ClosedResourceError, which hypercorn treats as the client leaving.
        self.socket.close()


def _app_working(server: TCPServer) -> bool:
    """A whole HTTP/1.1 request is in and its response has not started."""
    protocol = getattr(server, "protocol", None)  # set once the connection is set up
    connection = getattr(getattr(protocol, "protocol", None), "connection", None)
    return (
        isinstance(connection, h11.Connection)
        and connection.their_state in (h11.DONE, h11.MUST_CLOSE)  # MUST_CLOSE: "close" asked
        and connection.our_state is h11.SEND_RESPONSE
    )


def hypercorn_config(idle_timeout: float) -> HypercornConfig:
    config = HypercornConfig()
    config.accesslog = None
    config.graceful_timeout = 5.0
    config.keep_alive_timeout = idle_timeout
    return config


async def serve_http(
    app: Any,
    config: HypercornConfig,
    listener: socket.socket,
    table: ConnectionTable,
    *,
    on_exhausted: Callable[[], int],
    shutdown_trigger: Callable[[], Awaitable[object]],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI ``app`` on ``listener`` until ``shutdown_trigger`` returns; then give
    open connections ``config.graceful_timeout`` seconds to finish."""
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)

    async def run_connection(stream: TrackedStream) -> None:
        try:
            with stream.scope:
                state = ConnectionState({**lifespan_state, ABORT_KEY: stream.shed})
                stream.server = TCPServer(wrapped, config, context, state, cast(Any, stream))
                await stream.server.run()
        finally:
            table.discard(stream)
            stream.socket.close()  # when cancelled, hypercorn did not get to close it

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:

            async def handle(conn: socket.socket) -> None:
                stream = TrackedStream(trio.SocketStream(trio.socket.from_stdlib_socket(conn)))
                table.add(stream)
                connections.start_soon(run_connection, stream)

            try:
                async with trio.open_nursery() as accepting:
                    accepting.start_soon(
                        partial(accept_loop, on_exhausted=on_exhausted), listener, table, handle
                    )
                    task_status.started()
                    await shutdown_trigger()
                    accepting.cancel_scope.cancel()
            finally:
                listener.close()
                await context.terminated.set()  # idle keep-alive connections close now
                connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
