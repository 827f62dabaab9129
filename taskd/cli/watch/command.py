"""``taskd watch``: a live terminal view of a node's event stream (``GET /api/v1/events``).

Theory of operation: the command line picks a mode and a ``Sink``, and ``shell.follow`` does
the rest against ``stream_url`` (``--server`` with http→ws, https→wss, plus ``/api/v1/events``
and the filters ``queue=``/``state=``/``id=``, which the node checks):

- a terminal, no flag: the live view (``rich.live.Live`` on the terminal's alternate screen,
  redrawn at most 4 times a second). It reconnects by itself when the node goes away or
  restarts (backoff up to 2 s), showing ``disconnected: <reason> — reconnecting (attempt N)``;
  a node not reachable at the start is retried the same way, the reason naming the address
  and what to do. Ctrl-C (or SIGTERM) ends it with exit code 0.
- ``--json``: each message as one JSON line on stdout, as the node sent it (a fresh
  ``snapshot`` line after every reconnect); connection troubles on stderr.
- ``--once``: one rendering of the first snapshot, then exit 0; no retry: a node not
  reachable is exit 3, as for the other commands. With ``--json``: the snapshot's line only.
- stdout not a terminal and neither flag: as ``--once`` (a redrawn screen means nothing in a
  file or a pipe; ask for ``--json`` to follow the stream from a script).

A refused upgrade is final, never retried: 400 (a bad ``--queue``/``--state``/``--id``; the
node's message names the field) exits 2, 401/403 exit 1, 404 (not a taskd event stream)
exit 3. trio and rich are loaded by this command only (``taskd.cli.commands`` imports this
module when ``watch`` runs), so the other commands stay fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable

import trio
from rich.console import Console
from rich.live import Live

from taskd.cli.rest import ClientError, Exit, Rest
from taskd.cli.watch.model import DEFAULT_TAIL, WatchModel
from taskd.cli.watch.shell import Sink, follow
from taskd.cli.watch.sinks import JsonSink, LiveSink, OnceSink

PIPE_WIDTH = 160  # columns of a rendering into a file or pipe when $COLUMNS says nothing
STREAM_PATH = "/api/v1/events"


def stream_url(
    server: str, *, queues: Iterable[str] = (), states: Iterable[str] = (), ids: Iterable[str] = ()
) -> str:
    """The event stream's WebSocket URL of the node whose HTTP base URL is ``server``."""
    parts = urllib.parse.urlsplit(server)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower())
    if scheme is None:
        raise ClientError(f"--server {server!r}: give the node's http:// address", Exit.USAGE)
    query = urllib.parse.urlencode(
        [("queue", q) for q in queues] + [("state", s) for s in states] + [("id", i) for i in ids]
    )
    return urllib.parse.urlunsplit(
        (scheme, parts.netloc, parts.path.rstrip("/") + STREAM_PATH, query, "")
    )


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one real error inside the nursery's group (the other tasks only get cancelled)."""
    found = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
    if len(found) == 1:
        return _single(found[0]) if isinstance(found[0], BaseExceptionGroup) else found[0]
    return group


async def _until_signal(
    main: Callable[[], Awaitable[None]], *extra: Callable[[], Awaitable[None]]
) -> None:
    """Run ``main`` (with ``extra`` tasks beside it) until it returns or Ctrl-C / SIGTERM."""

    async def on_signal(scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                scope.cancel()
                return

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(on_signal, nursery.cancel_scope)
            for task in extra:
                nursery.start_soon(task)
            await main()
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _single(group) from None


def _live(url: str, model: WatchModel) -> None:
    console = Console()
    with Live(console=console, auto_refresh=False, screen=True, transient=True) as live:
        sink = LiveSink(model, live)
        trio.run(_until_signal, lambda: follow(url, model, sink), sink.refresh)


def watch(rest: Rest, args: argparse.Namespace, as_json: bool) -> int:
    """Run ``taskd watch``; the exit code (``ClientError`` for a final failure)."""
    url = stream_url(
        rest.server,
        queues=getattr(args, "queue", None) or (),
        states=getattr(args, "state", None) or (),
        ids=getattr(args, "id", None) or (),
    )
    tail = getattr(args, "tail", DEFAULT_TAIL)
    if tail < 1:
        raise ClientError("--tail must be 1 or more", Exit.USAGE)
    model = WatchModel(rest.server, tail=tail)
    once = bool(getattr(args, "once", False)) or (not as_json and not sys.stdout.isatty())
    try:
        if not as_json and not once:
            _live(url, model)
            return Exit.OK
        sink: Sink
        if as_json:
            sink = JsonSink(sys.stdout, sys.stderr, once=once)
        else:
            width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
            sink = OnceSink(model, Console(width=width))
        trio.run(_until_signal, lambda: follow(url, model, sink, retry=not once))
    except KeyboardInterrupt:  # before the signal handler was in place
        pass
    return Exit.OK
