"""The I/O of ``taskd watch``: read the node's event stream into a ``WatchModel``, reconnecting.

Theory of operation: ``follow`` is a thin trio loop around the sans-I/O model. Each try opens
the WebSocket (trio-websocket), then hands every message to the model (``apply``) and to a
``Sink`` (what the command does with it: draw the live view, print JSON lines, print one view
and stop). When the connection ends it asks the model for the delay (``lost``: backoff up to
2 s), tells the sink, sleeps, and tries again, for as long as the caller lets it run (or, with
``retry=False``, gives up at the first failure with ``ClientError`` exit 3).

What ends a connection: the node closes it (after a ``bye``, whose reason the model keeps), the
socket drops (the node was killed), or nothing arrives for three stats intervals (a stopped
node can hold TCP open). What ends ``follow`` for good: the sink has what it wanted, or the
node refused the upgrade for a reason retrying cannot fix (400 bad query, 401/403, 404 not an
event stream), which is a ``ClientError`` naming the node's error and its field. Errors of
trio-websocket and the socket are translated here, into the sentences the view shows; none
leaks out.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import h11
import trio
import wsproto.utilities
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
    open_websocket_url,
)

from taskd.cli.rest import ClientError, Exit
from taskd.cli.watch.model import WatchModel

CONNECT_TIMEOUT = 10.0  # seconds for the TCP connect and the upgrade
CLOSE_TIMEOUT = 1.0  # seconds to close politely before dropping the socket
MAX_MESSAGE = 64 << 20  # bytes of one message (a snapshot of 1,000 queues fits easily)


class Sink(Protocol):
    """What the command does with what arrives."""

    def received(self, text: str, message: dict[str, Any]) -> bool:
        """One message, already applied to the model; True: stop following."""
        ...

    def status(self, model: WatchModel) -> None:
        """The connection's status changed (``model.link``)."""
        ...


class _Closed(Exception):
    """A connection that ended, with why (and the close code, when there was one)."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


async def follow(
    url: str,
    model: WatchModel,
    sink: Sink,
    *,
    retry: bool = True,
    jitter: Callable[[], float] = random.random,
) -> None:
    """Follow the stream at ``url`` until ``sink`` has enough (or forever, if it never does)."""
    while True:
        model.connecting()
        sink.status(model)
        try:
            await _connection(url, model, sink)
            return  # the sink has what it wanted
        except _Closed as exc:
            closed = exc
        delay = model.lost(closed.reason, code=closed.code, jitter=jitter())
        sink.status(model)
        if not retry:
            raise ClientError(model.link.reason or closed.reason, Exit.UNREACHABLE)
        await trio.sleep(delay)


async def _connection(url: str, model: WatchModel, sink: Sink) -> None:
    """One connection: returns when the sink is done; raises ``_Closed`` when it ends."""
    silent: float | None = None  # seconds without a message, when that ended the connection
    address = model.link.address
    try:
        async with open_websocket_url(
            url,
            connect_timeout=CONNECT_TIMEOUT,
            disconnect_timeout=CLOSE_TIMEOUT,
            max_message_size=MAX_MESSAGE,
        ) as ws:
            while True:
                limit = model.silence_limit
                with trio.move_on_after(limit) as waited:
                    text = await ws.get_message()
                if waited.cancelled_caught:
                    silent = limit  # closing below; the node may not even answer the close
                    break
                if isinstance(text, bytes):  # the protocol sends text; be lenient
                    text = text.decode("utf-8", "replace")
                message = _decode(text)
                if message is None:
                    continue  # not a JSON object: nothing the protocol sends
                model.apply(message)
                try:
                    done = sink.received(text, message)
                except Exception as exc:  # the sink's own trouble (stdout closed): not the node's
                    raise _SinkFailed(exc) from exc
                if done:
                    return
    except _SinkFailed as exc:
        raise exc.error from None
    except ConnectionClosed as exc:
        code = exc.reason.code if exc.reason is not None else None
        raise _Closed(_close_reason(exc, model), code) from None
    except ConnectionRejected as exc:
        raise _rejection(exc, address) from None
    except DisconnectionTimeout:
        if silent is None:
            raise _Closed("the node did not answer our close") from None
    except ConnectionTimeout:
        raise _Closed(
            f"cannot reach taskd at {address}: no answer within {CONNECT_TIMEOUT:g} s; is the "
            "node overloaded, or is --server wrong?"
        ) from None
    except HandshakeError as exc:
        raise _Closed(_unreachable(exc, address)) from None
    except (h11.ProtocolError, wsproto.utilities.ProtocolError) as exc:
        raise _Closed(
            f"{address} does not answer as taskd's HTTP API ({type(exc).__name__}); is "
            "--server the node's --http address (default port 8080), not its gRPC one?"
        ) from None
    except OSError as exc:  # a socket error after the upgrade
        raise _Closed(f"the connection to the node was lost ({exc.strerror or exc})") from None
    raise _Closed(f"no word from the node for {silent:g} s")


class _SinkFailed(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _decode(text: str) -> dict[str, Any] | None:
    try:
        message = json.loads(text)
    except ValueError:
        return None  # not JSON: nothing the protocol sends; ignore it
    return message if isinstance(message, dict) else None


def _close_reason(exc: ConnectionClosed, model: WatchModel) -> str:
    if model.bye is not None:
        return model.bye
    reason = exc.reason
    if reason is not None and reason.reason:
        return f"the node closed the stream ({reason.code}: {reason.reason})"
    if reason is not None and reason.code == 1000:
        return "the node closed the stream"
    return "the connection to the node was lost"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``'s causes and contexts, and the members of any group among them."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        found = todo.pop(0)
        if id(found) in seen:
            continue
        seen.add(id(found))
        yield found
        if isinstance(found, BaseExceptionGroup):
            todo.extend(found.exceptions)
        todo.extend(e for e in (found.__cause__, found.__context__) if e is not None)


def _unreachable(exc: HandshakeError, address: str) -> str:
    where = f"cannot reach taskd at {address}"
    causes = list(_causes(exc))
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return (
            f"{where}: nothing listens there; start a node (`taskd`) or pass --server URL "
            "(or set TASKD_SERVER)"
        )
    if any(isinstance(c, TimeoutError) for c in causes):
        return f"{where}: no answer; is the node overloaded, or is --server wrong?"
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return f"{where}: {cause.strerror}; is --server right?"
    return f"{where}: the WebSocket upgrade failed; is --server the node's --http address?"


def _rejection(exc: ConnectionRejected, address: str) -> ClientError | _Closed:
    """A refused upgrade: the node's own error, final for a 4xx (400: the filters given on the
    command line, exit 2; 401/403: the authentication hook, exit 1), a retry for a 5xx, 408
    or 429. A 403 without taskd's JSON error is the HTTP server's answer to a WebSocket path
    it does not route: not a taskd event stream."""
    status = exc.status_code
    error = _error_of(exc.body)
    if error is not None:
        message = str(error.get("message") or error.get("code") or f"HTTP {status}")
        field = error.get("field")
        text = f"{message} (field: {field})" if field else message
    else:
        text = f"HTTP {status}"
    if status == 400:
        return ClientError(f"the node refused the stream: {text}", Exit.USAGE)
    if status == 404 or (status == 403 and error is None):  # no such WebSocket route
        return ClientError(
            f"{address} serves no event stream (HTTP {status}): is --server a taskd node's HTTP "
            "address, of taskd 0.1 or later?",
            Exit.UNREACHABLE,
        )
    if 400 <= status < 500 and status not in (408, 429):  # 401/403: the auth hook said no
        return ClientError(f"the node refused the stream (HTTP {status}): {text}", Exit.REFUSED)
    return _Closed(f"the node could not open the stream (HTTP {status}): {text}")


def _error_of(body: bytes | None) -> dict[str, Any] | None:
    try:
        found = json.loads(body) if body else None
    except ValueError:
        return None
    error = found.get("error") if isinstance(found, dict) else None
    return error if isinstance(error, dict) else None
