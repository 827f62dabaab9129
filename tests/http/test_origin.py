"""OriginGuard through the real REST app: Host names, foreign Origins, JSON on every write, CORS.

Every refusal is also checked to change nothing: the scheduler's snapshot bytes are equal
before and after.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Route

from taskd.node.api.http.app import HttpExtras, create_app
from taskd.node.api.http.origin import (
    OriginGuard,
    OriginPolicy,
    is_loopback_listener,
    normalize_origin,
)
from taskd.node.app.machine import SchedulerMachine
from taskd.node.app.service import NodeService
from taskd.queue.task import SchedulerConfig
from taskd.store.memory import MemoryStore
from tests.http.asgi import Reply, call

OWN = "http://localhost:8080"
EVIL = "http://evil.example"


class Node:
    def __init__(self, policy: OriginPolicy | None = None) -> None:
        machine = SchedulerMachine(SchedulerConfig())
        store = MemoryStore(machine)
        store.start()
        self.service = NodeService(machine, store)
        extras = HttpExtras(
            cluster_status=lambda: {},
            workers=lambda: [],
            ready=lambda: True,
            metrics=lambda: b"",
            origin=policy or OriginPolicy(),
        )
        self.app = create_app(self.service, extras=extras)

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Reply:
        if body is None:
            return await call(self.app, method, path, **kw)
        return await call(self.app, method, path, body, **kw)

    def state(self) -> bytes:
        return self.service.scheduler.snapshot()

    async def submit(self, **kw: Any) -> str:
        reply = await self.call("POST", "/api/v1/tasks", {"queue": "q"}, **kw)
        assert reply.status == 201, reply.body
        task_id: str = reply.json["id"]
        return task_id

    async def refused(
        self, status: int, method: str, path: str, body: Any = None, **kw: Any
    ) -> Reply:
        before = self.state()
        reply = await self.call(method, path, body, **kw)
        assert reply.status == status, reply.body
        assert self.state() == before, "a refused request changed state"
        return reply


def post_paths(app: Any, task_id: str) -> list[str]:
    """Every POST route of the app, so a route added later is covered without editing this."""
    paths = []
    for route in app.routes:
        if isinstance(route, Route) and route.methods and "POST" in route.methods:
            paths.append(route.path.replace("{id}", task_id).replace("{name}", "q"))
    assert len(paths) >= 10
    return paths


# ---- Host ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8080",
        "LOCALHOST:1",
        "localhost.:8080",
        "app.localhost:9",
        "127.0.0.1:8080",
        "127.3.4.5",
        "[::1]:8080",
        "[::1]",
    ],
)
async def test_a_loopback_listener_serves_loopback_names(host: str) -> None:
    node = Node()
    assert (await node.call("GET", "/healthz", host=host)).status == 200
    assert (await node.call("POST", "/api/v1/tasks", {}, host=host)).status == 201


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1.evil.example",
        "localhost.evil.example:8080",
        "10.0.0.1:8080",
        "[::2]:8080",
        "0.0.0.0:8080",
        "[::1",
        "",
    ],
)
async def test_a_loopback_listener_refuses_other_names_for_reads_and_writes(host: str) -> None:
    node = Node()
    task_id = await node.submit()
    for method, path in [
        ("GET", "/healthz"),
        ("GET", f"/api/v1/tasks/{task_id}"),
        ("POST", f"/api/v1/tasks/{task_id}/cancel"),
        ("POST", "/api/v1/tasks"),
    ]:
        reply = await node.refused(403, method, path, host=host)
        assert reply.error["code"] == "forbidden"
        assert "--allow-host" in reply.error["message"]


async def test_allow_host_adds_names_to_a_loopback_listener() -> None:
    node = Node(OriginPolicy(allow_hosts=("taskd.internal",)))
    assert (await node.call("GET", "/healthz", host="taskd.internal:8080")).status == 200
    assert (await node.call("GET", "/healthz", host="localhost:8080")).status == 200
    await node.refused(403, "GET", "/healthz", host="evil.example")


@pytest.mark.parametrize("host", ["evil.example", "10.1.2.3:8080", "node7.lan"])
async def test_a_non_loopback_listener_serves_any_name(host: str) -> None:
    node = Node(OriginPolicy(loopback=False))
    assert (await node.call("GET", "/healthz", host=host)).status == 200


async def test_a_non_loopback_listener_with_allow_host_serves_only_those() -> None:
    node = Node(OriginPolicy(loopback=False, allow_hosts=("taskd.example.com",)))
    assert (await node.call("GET", "/healthz", host="taskd.example.com")).status == 200
    assert (await node.call("GET", "/healthz", host="127.0.0.1:8080")).status == 200
    await node.refused(403, "GET", "/healthz", host="other.example.com")


async def test_allow_host_star_serves_any_name() -> None:
    node = Node(OriginPolicy(allow_hosts=("*",)))
    assert (await node.call("GET", "/healthz", host="whatever.example")).status == 200


# ---- Origin --------------------------------------------------------------------------------


async def test_the_reproduction_a_form_cancel_from_a_foreign_page_is_refused() -> None:
    node = Node()
    task_id = await node.submit()
    reply = await node.refused(
        403,
        "POST",
        f"/api/v1/tasks/{task_id}/cancel",
        raw=b"x=1",
        content_type="application/x-www-form-urlencoded",
        headers={"Origin": EVIL},
    )
    assert reply.error["code"] == "forbidden"
    assert "--allow-origin http://evil.example" in reply.error["message"]
    assert "access-control-allow-origin" not in reply.headers
    assert (await node.call("GET", f"/api/v1/tasks/{task_id}")).json["state"] == "queued"


@pytest.mark.parametrize(
    "origin",
    [
        EVIL,
        "http://localhost:9999",  # same name, another port: another origin
        "https://localhost:8080",  # another scheme
        "http://127.0.0.1:8080",  # another name for the same address is another origin
        "null",  # sandboxed frames and file: pages
        "http://localhost:8080/path",
        "garbage",
    ],
)
async def test_foreign_origins_are_refused_on_every_post_and_on_reads(origin: str) -> None:
    node = Node()
    task_id = await node.submit()
    for path in post_paths(node.app, task_id):
        await node.refused(403, "POST", path, {}, headers={"Origin": origin})
    await node.refused(403, "GET", "/api/v1/tasks", headers={"Origin": origin})


@pytest.mark.parametrize("origin", [OWN, "http://LOCALHOST:8080", "http://localhost:8080/"])
async def test_the_nodes_own_origin_may_write(origin: str) -> None:
    node = Node()
    reply = await node.call("POST", "/api/v1/tasks", {}, headers={"Origin": origin})
    assert reply.status == 201


async def test_own_origin_follows_the_host_header() -> None:
    node = Node()
    reply = await node.call(
        "POST", "/api/v1/tasks", {}, host="127.0.0.1", headers={"Origin": "http://127.0.0.1"}
    )
    assert reply.status == 201


async def test_an_allowed_origin_may_write_and_read_the_answer() -> None:
    node = Node(OriginPolicy(allow_origins=(normalize_origin("https://app.example.com"),)))
    reply = await node.call(
        "POST", "/api/v1/tasks", {}, headers={"Origin": "https://app.example.com"}
    )
    assert reply.status == 201
    assert reply.headers["access-control-allow-origin"] == "https://app.example.com"
    assert reply.headers["vary"] == "Origin"
    await node.refused(403, "POST", "/api/v1/tasks", {}, headers={"Origin": EVIL})


async def test_allow_origin_star_allows_every_origin() -> None:
    node = Node(OriginPolicy(allow_origins=("*",)))
    reply = await node.call("POST", "/api/v1/tasks", {}, headers={"Origin": EVIL})
    assert reply.status == 201


async def test_requests_without_origin_pass() -> None:
    node = Node()
    assert (await node.call("POST", "/api/v1/tasks", {})).status == 201


# ---- Content-Type on every write -----------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
        "text/plain; charset=utf-8",
        "",
        "application/jsonp",
        "json",
    ],
)
async def test_every_post_needs_a_json_content_type(content_type: str | None) -> None:
    node = Node()
    task_id = await node.submit()
    for path in post_paths(node.app, task_id):
        for body in ({}, None):
            reply = await node.refused(415, "POST", path, body, content_type=content_type)
            assert reply.error["code"] == "unsupported_media_type"
            assert "Content-Type: application/json" in reply.error["message"]


async def test_the_reproduction_a_submit_without_content_type_is_refused() -> None:
    node = Node()
    reply = await node.refused(
        415, "POST", "/api/v1/tasks", raw=b'{"queue": "x"}', content_type=None
    )
    assert "no Content-Type" in reply.error["message"]
    assert node.service.scheduler.list()[0] == []


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=utf-8", "application/x+json"]
)
async def test_json_content_types_pass_on_body_less_posts(content_type: str) -> None:
    node = Node()
    task_id = await node.submit()
    reply = await node.call("POST", f"/api/v1/tasks/{task_id}/cancel", content_type=content_type)
    assert reply.status == 200, reply.body


async def test_reads_need_no_content_type() -> None:
    node = Node()
    assert (await node.call("GET", "/api/v1/tasks", content_type=None)).status == 200


# ---- preflight -----------------------------------------------------------------------------


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }


@pytest.mark.parametrize("policy,origin", [
    (OriginPolicy(allow_origins=("https://app.example.com:443",)), "https://app.example.com"),
    (OriginPolicy(), OWN),
    (OriginPolicy(allow_origins=("*",)), EVIL),
])  # fmt: skip
async def test_preflight_of_an_allowed_origin_is_answered(
    policy: OriginPolicy, origin: str
) -> None:
    node = Node(policy)
    reply = await node.refused(
        204, "OPTIONS", "/api/v1/tasks", content_type=None, headers=preflight(origin)
    )
    assert reply.headers["access-control-allow-origin"] == origin
    assert "POST" in reply.headers["access-control-allow-methods"]
    assert "Content-Type" in reply.headers["access-control-allow-headers"]
    assert int(reply.headers["access-control-max-age"]) > 0


@pytest.mark.parametrize("origin", [EVIL, "null", "http://localhost:1"])
async def test_preflight_of_a_foreign_origin_is_refused(origin: str) -> None:
    node = Node()
    reply = await node.refused(
        403, "OPTIONS", "/api/v1/tasks", content_type=None, headers=preflight(origin)
    )
    assert "access-control-allow-origin" not in reply.headers


# ---- the middleware alone ------------------------------------------------------------------


async def test_a_foreign_websocket_handshake_is_closed_as_a_policy_violation() -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    guard = OriginGuard(app, OriginPolicy())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "scheme": "ws",
        "path": "/api/v1/events",
        "headers": [(b"host", b"localhost:8080"), (b"origin", EVIL.encode())],
    }
    await guard(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}] and reached == []
    await guard({**scope, "headers": [(b"host", b"localhost:8080")]}, receive, send)
    assert reached == ["websocket"]


async def test_lifespan_passes_through() -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    await OriginGuard(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert reached == ["lifespan"]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("https://App.Example.com", "https://app.example.com:443"),
        ("http://example.com:8080/", "http://example.com:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_origins_normalize(text: str, expected: str) -> None:
    assert normalize_origin(text) == expected


@pytest.mark.parametrize(
    "text", ["example.com", "ftp://example.com", "http://example.com/x", "http://a:99999", "null"]
)
def test_non_origins_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        normalize_origin(text)


@pytest.mark.parametrize(
    "host,loopback",
    [("127.0.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("127.0.0.2", True), ("0.0.0.0", False), ("::", False), ("192.168.1.4", False),
     ("node.lan", False)],
)  # fmt: skip
def test_loopback_listeners(host: str, loopback: bool) -> None:
    assert is_loopback_listener(host) is loopback
