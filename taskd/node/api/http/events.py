"""``GET /api/v1/events``: the event stream's WebSocket endpoint (docs/monitor.md).

Theory of operation: a thin trio shell around the sans-I/O ``taskd.web.stream.StreamHub``.
The upgrade's query is checked first (a bad one is refused with 400 and the API's JSON error
naming the field, before the WebSocket is accepted), then the authentication hook
(``authorize(scope)``: None allows; a reason refuses with 401 when no credentials came, 403
when they did not do). An accepted connection runs three tasks:

- the writer takes messages from the subscriber's ``Outbox`` and sends them, one at a time;
  after a ``bye`` it closes with the outbox's code;
- the reader takes ``subscribe`` messages (at most one per cut: each answers with a fresh
  snapshot); anything else is a ``bye`` naming the problem, then 1003 (not text) or 1008;
- the ticker pumps the hub at its due moments (``pump`` is shared: whichever connection is
  first does the work for all), which also closes the subscribers that stopped reading.

A connection that is closing (too slow, bad message, node shutting down) gets ``BYE_GRACE``
seconds to take its bye; a client that still reads nothing has its socket closed under it
(``ABORT_KEY``: the HTTP server puts the connection's abort into the scope's state), so a
dead reader holds nothing for long. The node's shutdown calls ``close_all`` (1001).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from taskd import __version__
from taskd.errors import CallerError
from taskd.node.api import validate
from taskd.node.api.http.messages import error_response
from taskd.node.api.http.server import ABORT_KEY
from taskd.node.api.present import stats_to_json
from taskd.node.app.service import NodeService
from taskd.queue.task import Task
from taskd.web import filters
from taskd.web.outbox import POLICY, UNSUPPORTED
from taskd.web.stream import StreamHub, Subscriber

BYE_GRACE = 5.0  # seconds a closing connection has to take its bye before its socket closes
MAX_CLIENT_MESSAGE = 64 << 10  # bytes of one client message (a subscribe is far smaller)

Authorize = Callable[[Mapping[str, Any]], str | None]


def allow_all(scope: Mapping[str, Any]) -> str | None:
    """The default authentication hook: every client may watch (see design.md §6)."""
    return None


class NodePicture:
    """The ``Picture`` of this node: the same views as ``GET /api/v1/queues|workers|cluster``,
    from this replica (a follower shows what it applied, as live as the leader)."""

    def __init__(
        self,
        service: NodeService,
        cluster: Callable[[], dict[str, Any]],
        workers: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self.service = service
        self._cluster = cluster
        self._workers = workers

    def node(self) -> dict[str, Any]:
        status = self._cluster()
        return {"id": status.get("id"), "role": status.get("role"), "version": __version__}

    def queues(self, wall: float) -> list[dict[str, Any]]:
        service = self.service
        rates, consumers, latency = service.rates.of, service.consumers(), service.stream.latency
        return [
            {
                **stats_to_json(s, rates(s.name), consumers.get(s.name, 0)),
                "latency": latency(s.name, wall),
            }
            for s in service.queues()
        ]

    def workers(self) -> list[dict[str, Any]]:
        return self._workers()

    def cluster(self) -> dict[str, Any]:
        return self._cluster()

    def task(self, task_id: str) -> Task | None:
        return self.service.scheduler.get(task_id)


def _has_credentials(websocket: WebSocket, token: str | None) -> bool:
    return token is not None or "authorization" in websocket.headers


async def _refuse(websocket: WebSocket, response: Response) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:  # a server without the denial extension: a close is all it can say
        await websocket.close(POLICY)


class _Connection:
    def __init__(self, hub: StreamHub, websocket: WebSocket) -> None:
        self.hub = hub
        self.websocket = websocket
        self.wake = trio.Event()
        state = websocket.scope.get("state") or {}
        self.abort: Callable[[], object] | None = state.get(ABORT_KEY)

    def notify(self) -> None:
        self.wake.set()

    async def run(self, sub: Subscriber) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, sub, nursery.cancel_scope)
            nursery.start_soon(self._tick, sub, nursery.cancel_scope)
            await self._write(sub)
            nursery.cancel_scope.cancel()

    async def _write(self, sub: Subscriber) -> None:
        outbox, websocket = sub.outbox, self.websocket
        while True:
            message = outbox.take(trio.current_time())
            if message is None:
                self.wake = trio.Event()
                await self.wake.wait()
                continue
            await websocket.send_text(message.encoded().decode())
            outbox.sent()
            if message.kind == "bye":
                code = outbox.close_code or POLICY
                await websocket.close(code, message.body["reason"][:120])
                return

    async def _read(self, sub: Subscriber, scope: trio.CancelScope) -> None:
        cut = self.hub.config.cut
        while not sub.outbox.closing:
            received = await self.websocket.receive()
            if received["type"] == "websocket.disconnect":
                scope.cancel()  # nobody to write to
                return
            text = received.get("text")
            if text is None:
                sub.outbox.close(UNSUPPORTED, 'send JSON text messages: {"type": "subscribe"}')
                return
            problem = self._subscribe(sub, text)
            if problem is not None:
                sub.outbox.close(POLICY, problem)
                return
            await trio.sleep(cut)  # each subscribe builds a snapshot: at most one per cut

    def _subscribe(self, sub: Subscriber, text: str) -> str | None:
        """Apply a ``subscribe`` message; the problem with it, or None."""
        if len(text) > MAX_CLIENT_MESSAGE:
            return f"a client message holds at most {MAX_CLIENT_MESSAGE} bytes"
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return 'a client message must be JSON: {"type": "subscribe", ...}'
        if not isinstance(obj, dict) or obj.get("type") != "subscribe":
            return 'the only client message is {"type": "subscribe", "queues": [...], ...}'
        try:
            filter = filters.from_subscribe(
                obj, check_queue=validate.check_queue, check_id=validate.check_id
            )
        except CallerError as exc:
            return f"bad subscribe: {exc.message} (field: {exc.field})"
        self.hub.resubscribe(sub, filter, time.time())
        return None

    async def _tick(self, sub: Subscriber, scope: trio.CancelScope) -> None:
        hub, cut = self.hub, self.hub.config.cut
        closing_since: float | None = None
        while True:
            now = trio.current_time()
            await trio.sleep_until(max(min(hub.next_due(), now + cut), now + 0.001))
            now = trio.current_time()
            hub.pump(now, time.time())
            if not sub.outbox.closing:
                continue
            if closing_since is None:
                closing_since = now
            elif now - closing_since >= BYE_GRACE:
                # the client reads nothing, not even its bye: close the socket under it
                if self.abort is not None:
                    self.abort()
                scope.cancel()
                return


class EventsEndpoint:
    """The Starlette WebSocket endpoint of one app."""

    def __init__(self, hub: StreamHub, authorize: Authorize = allow_all) -> None:
        self.hub = hub
        self.authorize = authorize

    async def handle(self, websocket: WebSocket) -> None:
        try:
            filter, token = filters.from_query(
                websocket.query_params.multi_items(),
                check_queue=validate.check_queue,
                check_id=validate.check_id,
            )
        except CallerError as exc:
            await _refuse(websocket, error_response(exc.code, exc.message, exc.field))
            return
        refusal = self.authorize(websocket.scope)
        if refusal is not None:
            if _has_credentials(websocket, token):
                response = error_response("forbidden", refusal, status=403)
            else:
                response = error_response("unauthorized", refusal, status=401)
            await _refuse(websocket, response)
            return
        await websocket.accept()
        connection = _Connection(self.hub, websocket)
        sub = self.hub.subscribe(filter, trio.current_time(), time.time(), connection.notify)
        try:
            await connection.run(sub)
        finally:
            self.hub.unsubscribe(sub)


async def not_upgraded(request: Request) -> Response:
    """A plain GET of the stream's path: say how to use it."""
    return error_response(
        "upgrade_required",
        "GET /api/v1/events is a WebSocket: connect with ws://HOST:PORT/api/v1/events "
        "(optionally ?queue=NAME&state=STATE&id=TASK_ID); see docs/monitor.md",
        status=426,
        Upgrade="websocket",
    )
