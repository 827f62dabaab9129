"""The event stream of real nodes under load, read with a WebSocket client (trio-websocket):
a flood coalesces into at most one sampled ``transitions`` message per cut whose counts add
up to every change, and a follower's stream is as live as the leader's."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from taskd.web.messages import SAMPLE
from taskd.web.stream import StreamConfig
from tests.conftest import NodeFactory, NodeProcess
from tests.web.streamclients import submit_batch

pytestmark = pytest.mark.slow

CUT = StreamConfig().cut  # what the node runs with
FLOOD, BATCH, PACE = 15_000, 250, 0.025  # 60 batches, one every 25 ms: 4 per cut


def ws_url(node: NodeProcess, query: str = "") -> str:
    return node.http_url.replace("http://", "ws://") + "/api/v1/events" + query


async def next_message(ws: WebSocketConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await ws.get_message())
    return message


async def test_a_flood_arrives_sampled_once_per_cut_with_every_change_counted(
    node_factory: NodeFactory,
) -> None:
    # Given a node and a subscriber to queue "flood" that has its first picture
    node = node_factory()
    transitions: list[tuple[float, dict[str, Any]]] = []
    stats: list[dict[str, Any]] = []
    async with open_websocket_url(ws_url(node, "?queue=flood"), max_message_size=1 << 24) as ws:
        assert (await next_message(ws))["type"] == "snapshot"
        # When 15,000 tasks are submitted in 60 batches over 1.5 s (10,000/s), and 500 to
        # another queue, which the filter leaves out
        async with trio.open_nursery() as nursery:

            async def flood() -> None:
                await trio.to_thread.run_sync(submit_batch, node.http_url, "other", 500)
                due = trio.current_time()
                for _ in range(FLOOD // BATCH):
                    await trio.to_thread.run_sync(submit_batch, node.http_url, "flood", BATCH)
                    due += PACE
                    await trio.sleep_until(due)

            nursery.start_soon(flood)
            matched = 0
            with trio.fail_after(30):
                # read until every change is accounted for and the stats have caught up
                while matched < FLOOD or sum(s["counts"]["submitted"] for s in stats) < FLOOD + 500:
                    message = await next_message(ws)
                    if message["type"] == "transitions":
                        transitions.append((time.monotonic(), message))
                        matched += len(message["events"]) + message["dropped"]
                    elif message["type"] == "stats":
                        stats.append(message)
    # Expect every change counted exactly once: events + dropped = the submits to "flood"
    assert matched == FLOOD
    events = [e for _, m in transitions for e in m["events"]]
    assert all(e["queue"] == "flood" and e["to"] == "queued" for e in events)
    # at most SAMPLE changes per message, and the flood did need sampling
    assert max(len(m["events"]) for _, m in transitions) == SAMPLE
    assert all(len(m["events"]) <= SAMPLE for _, m in transitions)
    assert any(m["dropped"] > 0 for _, m in transitions)
    # the sampled changes of a message in the order they happened (ids are ULIDs)
    for _, m in transitions:
        ids = [e["id"] for e in m["events"]]
        assert ids == sorted(ids)
    # at most one message per cut (100 ms), give or take the client's own scheduling: far
    # fewer than the 60 commands that made the changes
    span = transitions[-1][0] - transitions[0][0]
    assert span > 1.0
    assert len(transitions) <= span / CUT + 3, (len(transitions), span)
    # and the stats counted exactly the submits, of both queues
    assert sum(s["counts"]["submitted"] for s in stats) == FLOOD + 500


def cluster_status(node: NodeProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{node.http_url}/api/v1/cluster", timeout=5) as reply:
        status: dict[str, Any] = json.load(reply)
    return status


def settled(nodes: list[NodeProcess]) -> tuple[NodeProcess, list[NodeProcess]]:
    """The leader every member names, and the followers (polled, with a deadline)."""
    deadline = time.monotonic() + 15
    while True:
        statuses = [cluster_status(n) for n in nodes]
        leaders = [n for n, s in zip(nodes, statuses, strict=True) if s["role"] == "leader"]
        named = {s["leader"] for s in statuses}
        if len(leaders) == 1 and named == {leaders[0].grpc_address}:
            return leaders[0], [n for n in nodes if n is not leaders[0]]
        assert time.monotonic() < deadline, f"no settled leader: {statuses}"
        time.sleep(0.05)


async def test_a_followers_stream_shows_a_submit_to_the_leader_within_a_second(
    node_factory: NodeFactory,
) -> None:
    # Given a 3-node cluster and a subscriber to a follower's stream
    nodes = node_factory.cluster(3)
    leader, followers = await trio.to_thread.run_sync(settled, nodes)
    follower = followers[0]
    async with open_websocket_url(ws_url(follower, "?queue=replicated")) as ws:
        snapshot = await next_message(ws)
        # When a task is submitted to the leader
        submitted = time.monotonic()
        [task_id] = await trio.to_thread.run_sync(submit_batch, leader.http_url, "replicated", 1)
        seen: list[dict[str, Any]] = []
        with trio.fail_after(10):
            while not seen:
                message = await next_message(ws)
                if message["type"] == "transitions":
                    seen = [e for e in message["events"] if e["id"] == task_id]
        arrived = time.monotonic()
    # Expect the follower's picture naming the leader and itself a follower
    assert snapshot["type"] == "snapshot"
    assert snapshot["node"]["role"] == "follower"
    assert snapshot["node"]["id"] == follower.grpc_address
    assert snapshot["cluster"]["role"] == "follower"
    assert snapshot["cluster"]["leader"] == leader.grpc_address
    # and the transition on its stream within about a second of the submit
    assert seen[0]["to"] == "queued" and seen[0]["queue"] == "replicated"
    assert arrived - submitted < 1.0, arrived - submitted
