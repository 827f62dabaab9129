"""The REST API of design.md §3 as a Starlette app, served by hypercorn inside the node's trio loop.

Theory of operation: each handler is thin — read and check the request (``validate``), call
``NodeService``, shape the answer (``present``). Everything that can go wrong becomes one JSON
error shape, ``{"error": {"code", "message", "field"}}``, in one place (``_endpoint``):

    invalid 400 · not_found 404 · method_not_allowed 405 · conflict 409 · too_large 413 ·
    queue_full, node_full 429 · not_leader / unavailable 503 (with Retry-After) · internal 500

A 503 from the cluster (this member is not the leader and cannot forward, no leader is known,
the outcome of a forward is unknown) says what to do next, and names the leader's gRPC address
when another member leads: ``"leader"`` in the error object, and "retry, or send it to the
leader at ADDR" in the message.

Reads (a task, a page of tasks, the queues) are linearizable: they wait for the store's read
barrier first (``NodeService.fresh``). ``?stale=true`` serves this replica as it is, at once.

A store whose disk refuses writes (``StorageFault``) is a 503 "unavailable" whose message is
the fault's own (what is wrong, where, what an operator must do), never "retry shortly"; it
carries Retry-After only when writes come back by themselves (space freed).

Reading bodies and the error shape itself live in ``messages``. Bad input is never a 500:
malformed JSON, invalid UTF-8, a non-JSON content type and a non-object body are 400s; a body
over ``max_body`` is refused from its Content-Length or, when
that is absent or lies, as soon as the streamed bytes pass the limit — a body is never
buffered beyond ``max_body``. A JSON number the node could not store exactly (beyond 64-bit
integers, underflowing, more digits than a double) is a 400 naming where it is
(``jsonnum``). Path and query parameters go through the same ``validate`` checks as gRPC's
fields. Error messages quote at most a short prefix of what the client sent. An unexpected
exception is logged with its traceback and answered with a 500 JSON error.

Things outside the service (cluster status, worker registry, readiness, metrics) arrive as
plain callables in ``HttpExtras``, so this module depends on nothing but the service.
``/`` and ``/static/...`` serve the monitor page (``taskd.web.assets``).
``/api/v1/events`` is the event stream (WebSocket, ``events``; docs/monitor.md): its hub is
``app.state.events``, which the node tells ``close_all`` when it shuts down.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from taskd import __version__
from taskd.errors import CallerError, ClusterError, NotLeader, StorageFault
from taskd.node import limits
from taskd.node.api import validate
from taskd.node.api.codes import cluster_hint, cluster_message
from taskd.node.api.http import openapi
from taskd.node.api.http.events import (
    Authorize,
    EventsEndpoint,
    NodePicture,
    allow_all,
    not_upgraded,
)
from taskd.node.api.http.messages import check_fields, error_response, json_response, read_object
from taskd.node.api.http.origin import OriginGuard, OriginPolicy
from taskd.node.api.http.workers import HttpWorkerTracker
from taskd.node.api.present import stats_to_json, task_to_json, work_item_to_json
from taskd.node.app.cluster import ClusterAdmin
from taskd.node.app.service import NodeService
from taskd.queue.commands import State
from taskd.web.assets import MonitorAssets
from taskd.web.stream import StreamConfig, StreamHub

log = logging.getLogger("taskd.http")

_RETRY_AFTER = "1"
_RETRY_AFTER_DISK_FULL = "5"  # an operator must free space first; then writes resume by themselves
_MAX_LEASE_BATCH = limits.MAX_LEASE_BATCH
_MAX_WAIT = limits.MAX_LEASE_WAIT
_MAX_ERROR = limits.MAX_ERROR
_LIST_PARAMS = frozenset({"queue", "state", "limit", "after", "stale"})
_STALE = {"true": True, "1": True, "false": False, "0": False}
_STATES = ", ".join(state.value for state in State)

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class HttpExtras:
    """What the node supplies besides the service."""

    cluster_status: Callable[[], dict[str, Any]]
    workers: Callable[[], list[dict[str, Any]]]
    ready: Callable[[], bool]
    metrics: Callable[[], bytes]  # Prometheus text exposition
    max_payload: int = 1 << 20  # bytes of one payload or result as compact JSON
    max_body: int = (2 << 20) + (64 << 10)  # bytes of one request body
    http_lease_ttl: float = 30.0  # seconds an HTTP worker's lease lasts between heartbeats
    http_workers: HttpWorkerTracker | None = None  # lists HTTP workers in GET /api/v1/workers
    # why writes are refused although the node runs (a full or failing disk), or None
    not_ready_reason: Callable[[], str | None] = lambda: None
    origin: OriginPolicy = OriginPolicy()  # noqa: RUF009  # frozen; Host/Origin/Content-Type rules
    # membership and leadership transfer (``/api/v1/cluster/...``); None: not offered
    cluster_admin: ClusterAdmin | None = None
    # the leader's gRPC address when another member leads (named in 503s), else None
    leader: Callable[[], str | None] = lambda: None
    # the event stream's authentication hook: None allows, a reason refuses (401/403)
    authorize_events: Authorize = allow_all
    stream: StreamConfig = StreamConfig()  # noqa: RUF009  # frozen; the event stream's timing


# ---- responses and errors ------------------------------------------------------------------


def _error_for(exc: Exception, request: Request, leader: Callable[[], str | None]) -> Response:
    if isinstance(exc, CallerError):
        return error_response(exc.code, exc.message, exc.field)
    if isinstance(exc, StorageFault):  # an operator must act: no "retry shortly" here
        retry = {"Retry-After": _RETRY_AFTER_DISK_FULL} if exc.resumes_by_itself else {}
        return error_response("unavailable", str(exc), status=503, **retry)
    if isinstance(exc, ClusterError):
        code = "not_leader" if isinstance(exc, NotLeader) else "unavailable"
        hint = cluster_hint(exc, leader())
        return error_response(
            code,
            cluster_message(exc, hint),
            status=503,
            leader=hint,
            **{"Retry-After": _RETRY_AFTER},
        )
    if isinstance(exc, ClientDisconnect):
        return error_response("invalid", "the client went away mid-request", status=400)
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return error_response("internal", "internal error; the node logged the details", status=500)


def _endpoint(fn: Handler, leader: Callable[[], str | None]) -> Handler:
    """Map every exception a handler raises to the JSON error shape."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except Exception as exc:
            return _error_for(exc, request, leader)

    return wrapper


async def _http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (unknown path, wrong method) in the same shape as every other error."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return error_response(
            "method_not_allowed",
            f"{request.method} is not allowed on {request.url.path}; use {allow}",
            status=405,
            Allow=allow,
        )
    if exc.status_code == 404:
        return error_response("not_found", f"no such route: {request.url.path}", status=404)
    return error_response("invalid", exc.detail, status=exc.status_code)


def _epoch(obj: dict[str, Any]) -> int:
    value = obj.get("lease")
    if not validate.is_int(value) or value < 0:
        raise validate.invalid("lease must be the integer epoch the lease response gave", "lease")
    return value


def _stale(request: Request) -> bool:
    """``?stale=true``: serve from this replica without the read barrier."""
    values = request.query_params.getlist("stale")
    if not values:
        return False
    if len(values) > 1 or values[0].lower() not in _STALE:
        raise validate.invalid("stale must be true or false (given once)", "stale")
    return _STALE[values[0].lower()]


def _only_stale(request: Request) -> bool:
    """``_stale`` for a route whose only query parameter is ``stale``."""
    for key in request.query_params:
        if key != "stale":
            raise validate.invalid(
                f"unknown query parameter {validate.echo(key)}; use stale", validate.clip(key)
            )
    return _stale(request)


def _task_id(request: Request) -> str:
    """The ``{id}`` of a task route, by the rule gRPC applies to ids."""
    return validate.check_id(request.path_params["id"], "id")


def _single_field(exc: CallerError) -> CallerError:
    """The scheduler names fields of a one-task submit ``tasks[0].x``; REST calls it ``x``."""
    if exc.field.startswith("tasks[0]."):
        return CallerError(exc.code, exc.message, exc.field.removeprefix("tasks[0]."))
    return exc


# ---- the app -------------------------------------------------------------------------------


class _Api:
    def __init__(self, service: NodeService, extras: HttpExtras) -> None:
        self.service = service
        self.extras = extras

    # tasks

    async def submit(self, request: Request) -> Response:
        obj = await read_object(request, self.extras.max_body)
        spec = validate.spec_from_json(
            obj, now=self.service.clock(), max_payload=self.extras.max_payload
        )
        try:
            [(task, duplicate)] = await self.service.submit([spec])
        except CallerError as exc:
            raise _single_field(exc) from None
        if duplicate:
            return json_response(task_to_json(task, duplicate=True), 200)
        return json_response(task_to_json(task), 201)

    async def submit_batch(self, request: Request) -> Response:
        obj = await read_object(request, self.extras.max_body)
        specs = validate.batch_from_json(
            obj, now=self.service.clock(), max_payload=self.extras.max_payload
        )
        submitted = await self.service.submit(specs)
        tasks = [task_to_json(task, duplicate=True if dup else None) for task, dup in submitted]
        return json_response({"tasks": tasks}, 201)

    async def get_task(self, request: Request) -> Response:
        task_id = _task_id(request)
        await self.service.fresh(_only_stale(request))
        return json_response(task_to_json(self.service.get(task_id)))

    async def list_tasks(self, request: Request) -> Response:
        params = request.query_params
        for key in params:
            if key not in _LIST_PARAMS:
                raise validate.invalid(
                    f"unknown query parameter {validate.echo(key)}; "
                    "use queue, state, limit, after, stale",
                    validate.clip(key),
                )
            if len(params.getlist(key)) > 1:
                raise validate.invalid(f"give {key} at most once", key)
        queue = params.get("queue")
        if queue is not None:
            validate.check_queue(queue, "queue")
        state = None
        if (text := params.get("state")) is not None:
            try:
                state = State(text)
            except ValueError:
                raise validate.invalid(f"state must be one of {_STATES}", "state") from None
        max_limit = self.service.config.max_list_limit
        limit = limits.DEFAULT_LIST_LIMIT
        if (text := params.get("limit")) is not None:
            # isascii: str.isdigit() also takes digits like "²" that int() refuses
            number = int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0
            limit = validate.check_list_limit(number, "limit", max_limit)
        after = params.get("after")
        if after is not None:
            validate.check_cursor(after, "after")
        await self.service.fresh(_stale(request))
        tasks, cursor = self.service.list(queue, state, limit, after)
        return json_response({"tasks": [task_to_json(t) for t in tasks], "next": cursor})

    async def cancel(self, request: Request) -> Response:
        return json_response(task_to_json(await self.service.cancel(_task_id(request))))

    async def retry(self, request: Request) -> Response:
        return json_response(task_to_json(await self.service.retry(_task_id(request))))

    # queues

    async def queues(self, request: Request) -> Response:
        await self.service.fresh(_only_stale(request))
        stats = self.service.queues()
        rates, consumers = self.service.rates.of, self.service.consumers()
        return json_response(
            {"queues": [stats_to_json(s, rates(s.name), consumers.get(s.name, 0)) for s in stats]}
        )

    async def pause(self, request: Request) -> Response:
        name = validate.check_queue(request.path_params["name"], "name")
        return json_response(
            stats_to_json(
                await self.service.pause(name),
                self.service.rates.of(name),
                self.service.consumers().get(name, 0),
            )
        )

    async def resume(self, request: Request) -> Response:
        name = validate.check_queue(request.path_params["name"], "name")
        return json_response(
            stats_to_json(
                await self.service.resume(name),
                self.service.rates.of(name),
                self.service.consumers().get(name, 0),
            )
        )

    # HTTP workers

    async def lease(self, request: Request) -> Response:
        queue = validate.check_queue(request.path_params["name"], "name")
        obj = await read_object(request, self.extras.max_body)
        check_fields(obj, frozenset({"worker", "max", "wait"}), frozenset({"worker"}))
        worker = validate.check_worker(obj["worker"], "worker")
        count = obj.get("max", 1)
        if not validate.is_int(count) or not 1 <= count <= _MAX_LEASE_BATCH:
            raise validate.invalid(f"max must be an integer 1-{_MAX_LEASE_BATCH}", "max")
        wait = obj.get("wait", 0)
        if not validate.is_number(wait) or not 0 <= wait <= _MAX_WAIT:
            raise validate.invalid(f"wait must be a number of seconds 0-{_MAX_WAIT:.0f}", "wait")
        ttl = self.extras.http_lease_ttl
        # Only the waiting is cancellable: a lease cut short could be committed yet unanswered.
        items = await self.service.lease(queue, worker, count, ttl)
        deadline = trio.current_time() + wait
        while not items and wait > 0:
            alive = False
            with trio.move_on_at(deadline):
                alive = await self._work_or_disconnect(request, queue)
            if not alive:  # time is up or the client hung up
                break
            items = await self.service.lease(queue, worker, count, ttl)
        if self.extras.http_workers is not None:
            self.extras.http_workers.leased(worker, queue, count, items)
        return json_response(
            {"tasks": [work_item_to_json(item) for item in items], "lease_seconds": ttl}
        )

    async def _work_or_disconnect(self, request: Request, queue: str) -> bool:
        """Wait until ``queue`` may have work (True) or the client hung up (False)."""
        gone = False

        async def watch_client(scope: trio.CancelScope) -> None:
            nonlocal gone
            while (await request.receive())["type"] != "http.disconnect":
                pass
            gone = True
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_client, nursery.cancel_scope)
            await self.service.wait_for_work([queue])
            nursery.cancel_scope.cancel()
        return not gone

    async def heartbeat(self, request: Request) -> Response:
        obj = await read_object(request, self.extras.max_body)
        check_fields(obj, frozenset({"lease"}), frozenset({"lease"}))
        task = await self.service.heartbeat(
            _task_id(request), _epoch(obj), self.extras.http_lease_ttl
        )
        return json_response(task_to_json(task))

    async def complete(self, request: Request) -> Response:
        obj = await read_object(request, self.extras.max_body)
        check_fields(obj, frozenset({"lease", "result"}), frozenset({"lease"}))
        epoch = _epoch(obj)
        result = validate.json_bytes(obj.get("result"), "result", self.extras.max_payload)
        task = await self.service.complete(_task_id(request), epoch, result)
        if self.extras.http_workers is not None:
            self.extras.http_workers.reported(task.id)
        return json_response(task_to_json(task))

    async def fail(self, request: Request) -> Response:
        obj = await read_object(request, self.extras.max_body)
        check_fields(
            obj,
            frozenset({"lease", "error", "retryable", "retry_delay"}),
            frozenset({"lease", "error"}),
        )
        epoch = _epoch(obj)
        error = obj["error"]
        if not isinstance(error, str) or not 0 < len(error) <= _MAX_ERROR:
            raise validate.invalid(f"error must be a string of 1-{_MAX_ERROR} characters", "error")
        retryable = obj.get("retryable", True)
        if not isinstance(retryable, bool):
            raise validate.invalid("retryable must be true or false", "retryable")
        delay = obj.get("retry_delay")
        retry_delay = 0.0 if delay is None else validate.check_retry_delay(delay, "retry_delay")
        task = await self.service.fail(
            _task_id(request), epoch, error, retryable=retryable, retry_delay=retry_delay
        )
        if self.extras.http_workers is not None:
            self.extras.http_workers.reported(task.id)
        return json_response(task_to_json(task))

    # node

    def workers_view(self) -> list[dict[str, Any]]:
        if self.extras.http_workers is not None:
            self.extras.http_workers.prune()
        return self.extras.workers()

    async def workers(self, request: Request) -> Response:
        return json_response({"workers": self.workers_view()})

    async def cluster(self, request: Request) -> Response:
        return json_response(self.extras.cluster_status())

    def _admin(self) -> ClusterAdmin:
        if self.extras.cluster_admin is None:
            raise CallerError("not_found", "this node offers no membership changes", "")
        return self.extras.cluster_admin

    async def add_member(self, request: Request) -> Response:
        obj = await read_object(request, self.extras.max_body)
        check_fields(obj, frozenset({"address"}), frozenset({"address"}))
        address = obj["address"]
        if not isinstance(address, str):
            raise validate.invalid("address must be a string host[:port]", "address")
        return json_response(await self._admin().add(address), 201)

    async def remove_member(self, request: Request) -> Response:
        address = validate.clip(request.path_params["address"], limits.MAX_ADDRESS + 1)
        return json_response(await self._admin().remove(address))

    async def transfer(self, request: Request) -> Response:
        address: Any = None
        if request.headers.get("content-length") not in (None, "0"):
            obj = await read_object(request, self.extras.max_body)
            check_fields(obj, frozenset({"address"}), frozenset())
            address = obj.get("address")
            if address is not None and not isinstance(address, str):
                raise validate.invalid("address must be a string host[:port], or absent", "address")
        return json_response(await self._admin().transfer(address or None))

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        reason = self.extras.not_ready_reason()
        if reason is not None:
            return error_response("unavailable", f"not ready: {reason}", status=503)
        if self.extras.ready():
            return json_response({"ready": True})
        return error_response(
            "unavailable",
            "not ready: starting, shutting down or without a leader",
            status=503,
            **{"Retry-After": _RETRY_AFTER},
        )

    async def metrics(self, request: Request) -> Response:
        return Response(
            self.extras.metrics(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @functools.cached_property
    def _openapi(self) -> bytes:
        return orjson.dumps(openapi.document(__version__))

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi, media_type="application/json")


def _by_method(handlers: dict[str, Handler]) -> Handler:
    """One endpoint per path, so a 405 lists every method the path allows."""
    if len(handlers) == 1:
        [handler] = handlers.values()
        return handler

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return dispatch


def create_app(service: NodeService, *, extras: HttpExtras) -> Starlette:
    """The REST app of one node."""
    api = _Api(service, extras)

    table: dict[str, dict[str, Handler]] = {
        "/api/v1/tasks": {"POST": api.submit, "GET": api.list_tasks},
        "/api/v1/tasks/batch": {"POST": api.submit_batch},
        "/api/v1/tasks/{id}": {"GET": api.get_task},
        "/api/v1/tasks/{id}/cancel": {"POST": api.cancel},
        "/api/v1/tasks/{id}/retry": {"POST": api.retry},
        "/api/v1/tasks/{id}/heartbeat": {"POST": api.heartbeat},
        "/api/v1/tasks/{id}/complete": {"POST": api.complete},
        "/api/v1/tasks/{id}/fail": {"POST": api.fail},
        "/api/v1/queues": {"GET": api.queues},
        "/api/v1/queues/{name}/pause": {"POST": api.pause},
        "/api/v1/queues/{name}/resume": {"POST": api.resume},
        "/api/v1/queues/{name}/lease": {"POST": api.lease},
        "/api/v1/workers": {"GET": api.workers},
        "/api/v1/cluster": {"GET": api.cluster},
        "/api/v1/cluster/members": {"POST": api.add_member},
        "/api/v1/cluster/members/{address}": {"DELETE": api.remove_member},
        "/api/v1/cluster/transfer": {"POST": api.transfer},
        "/api/v1/openapi.json": {"GET": api.openapi},
        "/healthz": {"GET": api.healthz},
        "/readyz": {"GET": api.readyz},
        "/metrics": {"GET": api.metrics},
        "/api/v1/events": {"GET": not_upgraded},  # a plain GET: how to use the WebSocket
    }
    assets = MonitorAssets()
    routes: list[BaseRoute] = [
        Route(path, _endpoint(_by_method(methods), extras.leader), methods=list(methods))
        for path, methods in table.items()
    ]
    routes += [
        Route("/", _endpoint(assets.index, extras.leader), methods=["GET"]),
        Mount("/static", app=assets.static, name="static"),
    ]
    hub = StreamHub(
        service.stream, NodePicture(service, extras.cluster_status, api.workers_view), extras.stream
    )
    routes.append(
        WebSocketRoute("/api/v1/events", EventsEndpoint(hub, extras.authorize_events).handle)
    )
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error},
        middleware=[Middleware(OriginGuard, policy=extras.origin)],  # before any handler
    )
    app.state.events = hub
    return app
