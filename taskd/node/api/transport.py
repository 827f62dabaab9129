"""The listeners' guard: no crowd of connections can exhaust the node or kill it.

Theory of operation. Both listeners (gRPC and HTTP) accept in one trio loop written here
(``accept_loop``) instead of asyncio's or trio's own, because neither does what a node must:
asyncio reports EMFILE to the loop's exception handler, which trio-asyncio re-raises into its
nursery (the whole node died at the descriptor limit), and trio's ``serve_listeners`` logs on
every retry. Here:

- every accepted connection is registered in its listener's ``ConnectionTable``; at the cap the
  connection idle the longest is closed to make room, and if none is idle the new one is
  refused (closed at once), so busy clients are never cut for newcomers;
- when ``accept()`` fails for lack of descriptors or memory, idle connections of every listener
  are shed, accepting backs off (10 ms doubling to 250 ms) and the condition is logged once per
  interval; the connections already open keep being served, and accepting resumes as soon as
  a descriptor returns;
- ``sweep`` closes connections that stayed idle longer than ``--idle-timeout``.

What "idle" means belongs to each connection kind (``Tracked``): a gRPC connection with no open
call, an HTTP connection to which the node sent nothing for a while. The table never touches
sockets itself.

At start-up ``raise_open_files_limit`` lifts the soft RLIMIT_NOFILE to the hard limit, and the
default cap per listener is derived from it, keeping descriptors in reserve for the log,
snapshots and executors' pipes.
"""

from __future__ import annotations

import errno
import logging
import math
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

log = logging.getLogger("taskd.transport")

# accept() failures that mean "out of descriptors or kernel memory", not a broken listener
CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RESERVED_FDS = 128  # log segments, snapshots, executors' pipes, the listeners themselves
MAX_DERIVED_CONNECTIONS = 10_000  # each costs memory too (HTTP/2 state, buffers)
MIN_CONNECTIONS = 16
BACKOFF_FIRST = 0.01
BACKOFF_MAX = 0.25  # a failing accept() costs nothing; retrying often keeps /healthz quick
SHED_QUIET = 0.05  # out of descriptors, a connection idle this long may be closed
LOG_INTERVAL = 10.0


def raise_open_files_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and soft != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning(
                "cannot raise the open-files limit from %d to %d: %s; "
                "connections per listener are capped accordingly",
                soft,
                hard,
                exc,
            )
    return soft


def connection_cap(configured: int, open_files: int) -> int:
    """``--max-connections`` if set, else half the open-files limit left after the reserve."""
    if configured:
        return configured
    if open_files == resource.RLIM_INFINITY or open_files < 0:
        return MAX_DERIVED_CONNECTIONS
    return max(MIN_CONNECTIONS, min(MAX_DERIVED_CONNECTIONS, (open_files - RESERVED_FDS) // 2))


class Tracked(Protocol):
    """One connection as the table sees it."""

    def idle_since(self) -> float | None:
        """When (``time.monotonic``) it went idle, or None while it is busy."""

    def shed(self) -> None:
        """Close it now (synchronously; the connection's own code cleans up after)."""


class ConnectionTable:
    """The live connections of one listener, and the cap on them."""

    def __init__(
        self,
        name: str,
        cap: int,
        idle_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.cap = cap
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.shed_total = 0
        self.refused_total = 0
        self._live: dict[Tracked, None] = {}  # insertion-ordered set
        self._refusals = LogEvery(LOG_INTERVAL)

    def __len__(self) -> int:
        return len(self._live)

    def add(self, conn: Tracked) -> None:
        self._live[conn] = None

    def discard(self, conn: Tracked) -> None:
        self._live.pop(conn, None)

    def admit(self) -> bool:
        """Room for one more connection? At the cap, close the longest-idle one to make room;
        False (refuse the newcomer) when every connection is busy."""
        if len(self._live) < self.cap:
            return True
        oldest: Tracked | None = None
        oldest_since = math.inf
        for conn in self._live:
            since = conn.idle_since()
            if since is not None and since < oldest_since:
                oldest, oldest_since = conn, since
        if oldest is not None:
            self._shed(oldest)
            return True
        self.refused_total += 1
        self._refusals.warning(
            log,
            "%s: %d connections, all busy (--max-connections %d): refusing new ones",
            self.name,
            len(self._live),
            self.cap,
        )
        return False

    def shed_idle(self, quiet: float) -> int:
        """Close every connection idle for at least ``quiet`` seconds; return how many."""
        now = self.clock()
        idle = [c for c in self._live if (s := c.idle_since()) is not None and now - s >= quiet]
        for conn in idle:
            self._shed(conn)
        return len(idle)

    def _shed(self, conn: Tracked) -> None:
        self._live.pop(conn, None)
        self.shed_total += 1
        conn.shed()


class LogEvery:
    """Log a recurring condition at most once per ``interval``, counting what it held back."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last = -math.inf
        self._held = 0

    def warning(
        self,
        logger: logging.Logger,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> None:
        now = self.clock()
        if now - self._last < self.interval:
            self._held += 1
            return
        if self._held:
            message += f" ({self._held} more since the last report)"
        self._last, self._held = now, 0
        logger.warning(message, *args, exc_info=exc_info)


def bind_listener(host: str, port: int, backlog: int = 4096) -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port`` (the first address it resolves
    to, IPv4 first). Raises OSError as ``bind`` does (and ``getaddrinfo``, for an unknown
    host).

    The backlog is long (the kernel caps it at net.core.somaxconn): when it is full the kernel
    drops new SYNs and a client retries only after a second, so a flood queued ahead of a
    /healthz probe would make the probe wait that second; queued, it waits its turn."""
    candidates = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    # a name such as "localhost" binds its IPv4 address, as the listeners always have
    candidates.sort(key=lambda c: c[0] != socket.AF_INET)
    family, kind, proto, _, address = candidates[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def accept_loop(
    listener: socket.socket,
    table: ConnectionTable,
    handle: Callable[[socket.socket], Awaitable[object]],
    *,
    on_exhausted: Callable[[], int],
) -> None:
    """Accept forever; hand each admitted connection (a non-blocking stdlib socket) to
    ``handle``, which must have registered it in ``table`` when it returns (so the cap counts
    every descriptor accepted). ``on_exhausted`` sheds idle connections when descriptors run
    out and returns how many it closed."""
    backoff = BACKOFF_FIRST
    exhausted = LogEvery(LOG_INTERVAL)
    while True:
        await trio.lowlevel.wait_readable(listener)
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            continue  # another wake-up took it, or the client gave up already
        except OSError as exc:
            if exc.errno not in CAPACITY_ERRNOS:
                raise
            shed = on_exhausted()
            exhausted.warning(
                log,
                "%s: cannot accept connections: %s; closed %d idle connections, retrying "
                "(raise `ulimit -n` or lower --max-connections)",
                table.name,
                exc.strerror,
                shed,
            )
            await trio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        backoff = BACKOFF_FIRST
        conn.setblocking(False)
        if not table.admit():
            conn.close()
            continue
        await handle(conn)


async def sweep(tables: list[ConnectionTable], idle_timeout: float) -> None:
    """Close connections idle longer than ``idle_timeout`` (checked 4 times per timeout)."""
    while True:
        await trio.sleep(max(idle_timeout / 4, 0.05))
        for table in tables:
            table.shed_idle(idle_timeout)
