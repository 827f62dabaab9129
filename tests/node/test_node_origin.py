"""Writes from another origin, replayed against a real node process over real sockets.

The reproductions: a cancel with ``Origin: http://evil.example`` and a form content type
succeeded; a submit without a Content-Type succeeded; any ``Host`` was served (DNS rebinding).
``http.client`` is used so that exactly the headers a browser would send go on the wire (urllib
adds a form content type to any body on its own).
"""

from __future__ import annotations

import http.client
from typing import Any

import orjson
import pytest

from taskd.node.config import ConfigError, load
from tests.conftest import free_ports
from tests.node.rest import get, post

pytestmark = pytest.mark.slow

EVIL = "http://evil.example"


def raw(
    node: Any, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One request with exactly ``headers`` (plus Host unless given, and Content-Length)."""
    conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=10)
    try:
        all_headers = {"Host": f"127.0.0.1:{node.http_port}", **(headers or {})}
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in all_headers.items():
            conn.putheader(key, value)
        if body or method == "POST":
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        data = response.read()
        parsed = orjson.loads(data) if data else None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
    finally:
        conn.close()


def state_of(node: Any, task_id: str) -> str:
    status, task = get(f"{node.http_url}/api/v1/tasks/{task_id}")
    assert status == 200, task
    state: str = task["state"]
    return state


def submit(node: Any, queue: str = "q") -> str:
    status, task = post(f"{node.http_url}/api/v1/tasks", {"queue": queue})
    assert status == 201, task
    task_id: str = task["id"]
    return task_id


def test_the_reproductions_are_refused_and_change_nothing(node_factory):
    node = node_factory()
    task_id = submit(node)

    # A page on evil.example posts a form to cancel the task
    status, _, body = raw(
        node,
        "POST",
        f"/api/v1/tasks/{task_id}/cancel",
        b"confirm=1",
        {"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 403 and body["error"]["code"] == "forbidden", body
    assert state_of(node, task_id) == "queued"

    # The same page pauses a queue with no body at all
    status, _, body = raw(node, "POST", "/api/v1/queues/q/pause", headers={"Origin": EVIL})
    assert status == 403, body
    assert get(f"{node.http_url}/api/v1/queues")[1]["queues"][0]["paused"] is False

    # A submit without a Content-Type (what a form-less fetch or sendBeacon can send)
    status, _, body = raw(node, "POST", "/api/v1/tasks", b'{"queue": "sneaky"}')
    assert status == 415 and "Content-Type: application/json" in body["error"]["message"]
    assert get(f"{node.http_url}/api/v1/tasks?queue=sneaky")[1]["tasks"] == []

    # A body-less cancel without a Content-Type
    status, _, body = raw(node, "POST", f"/api/v1/tasks/{task_id}/cancel")
    assert status == 415, body
    assert state_of(node, task_id) == "queued"

    # DNS rebinding: evil.example now resolves to 127.0.0.1; the browser sends its own Host
    for method, path in [("GET", f"/api/v1/tasks/{task_id}"), ("GET", "/api/v1/tasks")]:
        status, _, body = raw(node, method, path, headers={"Host": "evil.example:8080"})
        assert status == 403 and "--allow-host" in body["error"]["message"], body
    status, _, body = raw(
        node,
        "POST",
        f"/api/v1/tasks/{task_id}/cancel",
        headers={
            "Host": "evil.example:8080",
            "Origin": "http://evil.example:8080",
            "Content-Type": "application/json",
        },
    )
    assert status == 403, body
    assert state_of(node, task_id) == "queued"

    # A foreign preflight is refused, so the browser never sends the JSON request
    status, headers, _ = raw(
        node,
        "OPTIONS",
        "/api/v1/tasks",
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert status == 403 and "access-control-allow-origin" not in headers

    # Our own clients (JSON content type, no Origin) still work
    status, canceled = post(f"{node.http_url}/api/v1/tasks/{task_id}/cancel")
    assert status == 200 and canceled["state"] == "canceled"


def test_an_allowed_origin_may_write_after_a_preflight(node_factory):
    node = node_factory("--allow-origin", "https://app.example.com")
    task_id = submit(node)
    origin = "https://app.example.com"
    status, headers, _ = raw(
        node,
        "OPTIONS",
        f"/api/v1/tasks/{task_id}/cancel",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert status == 204
    assert headers["access-control-allow-origin"] == origin
    assert "POST" in headers["access-control-allow-methods"]
    status, headers, body = raw(
        node,
        "POST",
        f"/api/v1/tasks/{task_id}/cancel",
        headers={"Origin": origin, "Content-Type": "application/json"},
    )
    assert status == 200 and body["state"] == "canceled", body
    assert headers["access-control-allow-origin"] == origin
    # The allowed origin still needs the JSON content type; others stay refused
    status, _, _ = raw(
        node, "POST", "/api/v1/tasks", b"{}", {"Origin": origin, "Content-Type": "text/plain"}
    )
    assert status == 415
    status, _, _ = raw(
        node, "POST", "/api/v1/tasks", b"{}", {"Origin": EVIL, "Content-Type": "application/json"}
    )
    assert status == 403


def test_allow_host_serves_another_name_on_a_loopback_listener(node_factory):
    node = node_factory(env={"TASKD_ALLOW_HOST": "taskd.internal"})
    status, _, _ = raw(node, "GET", "/healthz", headers={"Host": "taskd.internal:9000"})
    assert status == 200
    status, _, _ = raw(node, "GET", "/healthz", headers={"Host": "other.internal"})
    assert status == 403


def test_a_non_loopback_listener_warns_truthfully_and_serves_any_host(node_factory):
    [port] = free_ports(1)
    # --http given twice: the last one wins, so the node listens on every address
    node = node_factory("--http", f"0.0.0.0:{port}", http_port=port)
    stderr = node.stderr_text()
    assert "no authentication" in stderr and "anyone" in stderr
    assert "token configured" not in stderr
    status, _, _ = raw(node, "GET", "/healthz", headers={"Host": "node7.lan"})
    assert status == 200


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--allow-origin", "evil.example"], "--allow-origin"),
        (["--allow-origin", "http://a.example/path"], "--allow-origin"),
        (["--allow-host", "a.example:8080"], "--allow-host"),
        (["--allow-host", "http://a.example"], "--allow-host"),
    ],
)
def test_bad_allow_flags_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(argv, env={})


def test_allow_flags_repeat_and_read_the_environment() -> None:
    config = load(
        ["--allow-origin", "https://A.example", "--allow-origin", "http://b.example:81"], env={}
    )
    assert config.allow_origins == ("https://a.example:443", "http://b.example:81")
    config = load([], env={"TASKD_ALLOW_ORIGIN": "*", "TASKD_ALLOW_HOST": "x.lan, Y.lan"})
    assert (config.allow_origins, config.allow_hosts) == (("*",), ("x.lan", "y.lan"))
