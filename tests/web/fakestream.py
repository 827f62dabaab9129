"""A fake node for page tests that need exact control of the event stream.

``FakeStreamServer`` serves the monitor page exactly as a node does (``taskd.web.assets``:
``/`` and ``/static/...``) and an ``/api/v1/events`` WebSocket that speaks the monitor
protocol (prompts' monitor-protocol.md; the real one is ``taskd/node/api/http``) under the
test's hand: every new connection gets ``snapshot()`` of ``self.picture``, then whatever the
test pushes (``push``), floods (``flood``) or ends (``drop`` sends a ``bye`` and closes with
1001, as a node going down does; ``refuse`` turns upgrades away, as a node that is not
there). It runs hypercorn on trio in a thread of its own, so synchronous Playwright tests
drive it with plain calls. Anything else (REST) is a 404 in the API's error shape.

The message builders (``queue``, ``snapshot``, ``stats``, ``transitions``) make protocol
shapes with defaults, so a test names only what it checks.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import hypercorn.trio
import orjson
import trio
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from taskd.web.assets import MonitorAssets
from tests.conftest import free_ports

STATES = ("pending", "blocked", "queued", "running", "succeeded", "failed", "canceled")
TERMINAL = {"succeeded", "failed", "canceled"}
Msg = dict[str, Any]


def now_rfc3339(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def queue(
    name: str,
    *,
    paused: bool = False,
    consumers: int = 1,
    by_state: dict[str, int] | None = None,
    by_priority: dict[int, int] | None = None,
    rates: tuple[float, float] = (0.0, 0.0),
    pickup_ms: tuple[float, float, float] | None = None,
    run_ms: tuple[float, float, float] | None = None,
) -> Msg:
    """One QUEUE object (``GET /api/v1/queues`` plus ``latency``)."""
    counts = {state: 0 for state in STATES} | (by_state or {})

    def pct(values: tuple[float, float, float] | None) -> dict[str, float | None]:
        p50, p95, p99 = values if values else (None, None, None)
        return {"p50": p50, "p95": p95, "p99": p99}

    return {
        "name": name,
        "paused": paused,
        "consumers": consumers,
        "depth": sum(n for state, n in counts.items() if state not in TERMINAL),
        "by_state": counts,
        "by_priority": {str(p): n for p, n in sorted((by_priority or {}).items())},
        "rates": {"submitted_per_second": rates[0], "finished_per_second": rates[1]},
        "latency": {"pickup_ms": pct(pickup_ms), "run_ms": pct(run_ms)},
    }


def totals(queues: list[Msg]) -> Msg:
    return {"by_state": {s: sum(q["by_state"][s] for q in queues) for s in STATES}}


CLUSTER: Msg = {
    "id": "127.0.0.1:1",
    "role": "leader",
    "term": 1,
    "leader": "127.0.0.1:1",
    "commit_index": 10,
    "members": [{"address": "127.0.0.1:1", "role": "leader", "match_index": 10, "reachable": True}],
}


@dataclass
class Picture:
    """What a new connection's snapshot shows."""

    queues: list[Msg] = field(default_factory=list)
    workers: list[Msg] = field(default_factory=list)
    cluster: Msg = field(default_factory=lambda: dict(CLUSTER))
    node: Msg = field(
        default_factory=lambda: {"id": "127.0.0.1:1", "role": "leader", "version": "0.0.0-fake"}
    )
    interval_ms: int = 1000


def snapshot(picture: Picture) -> Msg:
    return {
        "type": "snapshot",
        "at": now_rfc3339(),
        "node": picture.node,
        "queues": picture.queues,
        "workers": picture.workers,
        "cluster": picture.cluster,
        "totals": totals(picture.queues),
        "interval_ms": picture.interval_ms,
    }


def stats(
    queues: list[Msg], *, submitted: float = 0.0, finished: float = 0.0, at: float | None = None
) -> Msg:
    return {
        "type": "stats",
        "at": now_rfc3339(at),
        "queues": queues,
        "totals": totals(queues),
        "rates": {
            "submitted_per_s": submitted,
            "finished_per_s": finished,
            "transitions_per_s": submitted + finished,
        },
    }


def transition(
    task_id: str,
    queue_name: str,
    from_state: str | None,
    to: str,
    *,
    attempt: int = 0,
    priority: int = 5,
    name: str | None = None,
) -> Msg:
    return {
        "id": task_id,
        "queue": queue_name,
        "name": name,
        "from": from_state,
        "to": to,
        "at": now_rfc3339(),
        "attempt": attempt,
        "priority": priority,
    }


def transitions(events: list[Msg], dropped: int = 0) -> Msg:
    return {"type": "transitions", "events": events, "dropped": dropped}


_CLOSE = object()  # in a connection's outbox: send the bye that precedes it, then close


class _Connection:
    def __init__(self) -> None:
        self.outbox_send, self.outbox = trio.open_memory_channel[Any](10_000)


class FakeStreamServer:
    def __init__(self) -> None:
        self.picture = Picture()
        self.received: list[Msg] = []  # what pages sent (subscribe)
        self.queries: list[str] = []  # the query string of every upgrade asked for
        self.accepted = 0  # connections accepted so far
        self.refused = 0  # upgrades turned away while refusing
        self._refusing = False
        self._connections: set[_Connection] = set()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"

    # ---- control, from the test's thread ------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=lambda: trio.run(self._main, ready), name="fake-stream", daemon=True
        )
        self._thread.start()
        if not ready.wait(15):
            raise RuntimeError("the fake stream server did not start within 15 s")

    def stop(self) -> None:
        if self._stop is not None and self._token is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        if self._thread is not None:
            self._thread.join(15)

    def connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def wait_for(
        self, condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
    ) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise AssertionError(f"fake stream server: no {what} within {timeout} s")
            time.sleep(0.02)

    def push(self, message: Msg) -> None:
        """Send one message to every open connection."""
        self._in_loop(self._enqueue, orjson.dumps(message).decode())

    def drop(self, reason: str = "node shutting down", code: int = 1001) -> None:
        """Every connection gets a ``bye`` and is closed with ``code``."""
        self._in_loop(
            self._enqueue, orjson.dumps({"type": "bye", "reason": reason}).decode(), (_CLOSE, code)
        )

    def _in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` in the server's trio loop (channels are not thread-safe)."""
        if threading.current_thread() is self._thread:
            fn(*args)
        else:
            assert self._token is not None, "start() the server first"
            trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def _enqueue(self, *items: Any) -> None:
        with self._lock:
            for conn in self._connections:
                for item in items:
                    conn.outbox_send.send_nowait(item)

    def refuse(self, refusing: bool) -> None:
        self._refusing = refusing

    def flood(
        self, seconds: float, *, queues: int = 50, per_second: int = 10_000, seed: int = 1
    ) -> dict[str, int]:
        """What the node sends at ``per_second`` transitions/s, for ``seconds``: a
        ``transitions`` message every 100 ms (a sample of at most 200, the rest counted in
        ``dropped``) and a ``stats`` message every second covering ``queues`` queues.
        Blocks until done; returns how many of each it sent."""
        assert self._token is not None
        return trio.from_thread.run(
            self._flood, seconds, queues, per_second, seed, trio_token=self._token
        )

    # ---- the server, in its own trio loop ------------------------------------------------

    async def _main(self, ready: threading.Event) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        assets = MonitorAssets()

        async def not_found(request: Request) -> Response:
            return JSONResponse(
                {
                    "error": {
                        "code": "not_found",
                        "message": f"the fake node has no {request.url.path}",
                        "field": None,
                    }
                },
                404,
            )

        app = Starlette(
            routes=[
                Route("/", assets.index),
                Mount("/static", app=assets.static),
                WebSocketRoute("/api/v1/events", self._events),
                Route("/{rest:path}", not_found, methods=["GET", "POST"]),
            ]
        )
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: hypercorn.trio.serve(app, config, shutdown_trigger=self._stop.wait)
            )  # type: ignore[arg-type]
            await _wait_listening(self.port)
            ready.set()

    async def _events(self, ws: WebSocket) -> None:
        self.queries.append(ws.scope["query_string"].decode())
        if self._refusing:
            self.refused += 1
            await ws.close(code=1008)  # before accept: the upgrade is answered 403
            return
        await ws.accept()
        conn = _Connection()
        with self._lock:
            self._connections.add(conn)
            self.accepted += 1
        try:
            await ws.send_text(orjson.dumps(snapshot(self.picture)).decode())
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    try:
                        while True:
                            self.received.append(orjson.loads(await ws.receive_text()))
                    except WebSocketDisconnect:
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(read)
                async for item in conn.outbox:
                    if isinstance(item, tuple) and item[0] is _CLOSE:
                        await ws.close(code=item[1])
                        break
                    await ws.send_text(item)
                nursery.cancel_scope.cancel()
        except (WebSocketDisconnect, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with self._lock:
                self._connections.discard(conn)

    async def _flood(
        self, seconds: float, n_queues: int, per_second: int, seed: int
    ) -> dict[str, int]:
        rng = random.Random(seed)
        names = [f"flood-{i:03d}" for i in range(n_queues)]
        ids = (f"01FLOOD{n:019d}" for n in itertools.count())
        per_tick = per_second // 10
        sent = {"transitions": 0, "stats": 0, "events": 0, "dropped": 0}
        start = trio.current_time()
        tick = 0
        while trio.current_time() - start < seconds:
            tick += 1
            events = []
            for _ in range(min(200, per_tick)):
                frm, to = rng.choice(
                    [
                        (None, "queued"),
                        ("queued", "running"),
                        ("running", "succeeded"),
                        ("running", "failed"),
                    ]
                )
                events.append(
                    transition(
                        next(ids), rng.choice(names), frm, to, attempt=1, priority=rng.randint(0, 9)
                    )
                )
            dropped = max(0, per_tick - len(events))
            self.push(transitions(events, dropped))
            sent["transitions"] += 1
            sent["events"] += len(events)
            sent["dropped"] += dropped
            if tick % 10 == 0:
                qs = [
                    queue(
                        name,
                        by_state={
                            "queued": rng.randint(0, 5000),
                            "running": rng.randint(0, 64),
                            "succeeded": rng.randint(0, 10**6),
                        },
                        by_priority={p: rng.randint(0, 500) for p in range(10)},
                        rates=(per_second / 2 / n_queues, per_second / 2 / n_queues),
                        pickup_ms=(rng.uniform(1, 5), rng.uniform(5, 50), rng.uniform(50, 200)),
                        run_ms=(rng.uniform(5, 20), rng.uniform(20, 80), rng.uniform(80, 300)),
                    )
                    for name in names
                ]
                self.push(stats(qs, submitted=per_second / 2, finished=per_second / 2))
                sent["stats"] += 1
            await trio.sleep_until(start + tick * 0.1)
        return sent


async def _wait_listening(port: int) -> None:
    for _ in range(500):
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.01)
            continue
        await stream.aclose()
        return
    raise RuntimeError(f"the fake stream server did not listen on {port}")


@contextmanager
def running_fake() -> Iterator[FakeStreamServer]:
    server = FakeStreamServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
