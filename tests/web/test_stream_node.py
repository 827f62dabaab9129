"""The event stream of a real node, read with a WebSocket client (trio-websocket): the first
message is the picture, a submit shows up as a transition, filters apply, and a bad query is
refused at the upgrade with 400 naming the field."""

from __future__ import annotations

import json
import urllib.request

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.conftest import NodeFactory

pytestmark = pytest.mark.slow


def submit(http_url: str, queue: str) -> str:
    body = json.dumps({"queue": queue}).encode()
    request = urllib.request.Request(
        f"{http_url}/api/v1/tasks", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        task_id: str = json.load(reply)["id"]
    return task_id


async def transitions_of(ws, task_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    seen: list[dict] = []  # type: ignore[type-arg]
    with trio.fail_after(10):
        while not seen:
            message = json.loads(await ws.get_message())
            if message["type"] == "transitions":
                seen = [e for e in message["events"] if e["id"] == task_id]
    return seen


async def test_a_submit_reaches_a_subscriber_after_the_first_picture(
    node_factory: NodeFactory,
) -> None:
    # Given a node and a subscriber to queue "watched"
    node = node_factory()
    ws_url = node.http_url.replace("http://", "ws://") + "/api/v1/events?queue=watched"
    async with open_websocket_url(ws_url) as ws:
        first = json.loads(await ws.get_message())
        # When a task is submitted to another queue, then to the watched one
        await trio.to_thread.run_sync(submit, node.http_url, "other")
        task_id = await trio.to_thread.run_sync(submit, node.http_url, "watched")
        events = await transitions_of(ws, task_id)
    # Expect the picture first, then only the watched queue's transition
    assert first["type"] == "snapshot" and "queues" in first and "cluster" in first
    assert events[0]["queue"] == "watched" and events[0]["to"] == "queued"


async def test_a_bad_query_is_refused_at_the_upgrade_naming_the_field(
    node_factory: NodeFactory,
) -> None:
    # Given a node / When a stream is asked for with an unknown state
    node = node_factory()
    ws_url = node.http_url.replace("http://", "ws://") + "/api/v1/events?state=done"
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(ws_url):
            pass
    # Expect 400 and an error naming the field
    assert rejected.value.status_code == 400
    assert json.loads(rejected.value.body)["error"]["field"] == "state"
