"""A tiny REST client for integration tests: stdlib only, so tests exercise the node, not a SDK."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import orjson


def call(
    method: str,
    url: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    content_type: str | None = "application/json",
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """One request; ``content_type=None`` sends none (the node refuses such a POST)."""
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        status = exc.code
    try:
        return status, orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        return status, payload.decode(errors="replace")


def post(url: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    return call("POST", url, body, **kw)


def get(url: str, **kw: Any) -> tuple[int, Any]:
    return call("GET", url, **kw)


def wait_for_task(
    base: str, task_id: str, states: set[str], deadline: float = 20.0
) -> dict[str, Any]:
    """Poll until the task reaches one of ``states``; fail with its last view otherwise."""
    end = time.monotonic() + deadline
    task: dict[str, Any] = {}
    while time.monotonic() < end:
        status, task = get(f"{base}/api/v1/tasks/{task_id}")
        assert status == 200, task
        if task["state"] in states:
            return task
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} never reached {states}: {task}")
