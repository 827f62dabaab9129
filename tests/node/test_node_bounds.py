"""Node-wide memory bounds on a real node process: many queues cannot add up past them.

The reproduction: ``--max-queue-depth`` counted per queue, so 150 queues took 150 times the
limit. Here small ``--max-tasks`` / ``--max-memory`` bounds are filled across many queues over
REST and gRPC until 429 / RESOURCE_EXHAUSTED; reads keep working, a refused batch leaves
nothing behind, finished tasks make room (evicted, counted in /metrics, logged), and a
restart (replaying the log) decides exactly the same.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from taskd.api.taskd import v1 as pb
from tests.node.rest import get, post

pytestmark = pytest.mark.slow

MAX_TASKS = 40


def metric(node: Any, name: str) -> float:
    status, text = get(f"{node.http_url}/metrics")
    assert status == 200
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} missing from /metrics"
    return float(match.group(1))


def grpc_call(node: Any, call: Any) -> Any:
    async def session() -> Any:
        channel = Channel("127.0.0.1", node.grpc_port)
        try:
            return await call(pb.TaskServiceStub(channel))
        finally:
            channel.close()

    return asyncio.run(session())


def grpc_refused(node: Any, call: Any) -> str:
    with pytest.raises(GRPCError) as info:
        grpc_call(node, call)
    assert info.value.status == Status.RESOURCE_EXHAUSTED, info.value
    return str(info.value.message)


def held(node: Any) -> int:
    return int(metric(node, "taskd_tasks_held"))


def assert_full_everywhere(node: Any) -> None:
    """Every way of adding a task is refused whole, in any queue; reads still answer."""
    base = node.http_url
    before = held(node)
    status, body = post(f"{base}/api/v1/tasks", {"queue": "one-more"})
    assert status == 429, body
    assert body["error"]["code"] == "node_full"
    assert "--max-tasks" in body["error"]["message"]
    status, body = post(f"{base}/api/v1/tasks/batch", {"tasks": [{"queue": "b1"}, {"queue": "b2"}]})
    assert status == 429 and body["error"]["code"] == "node_full", body
    message = grpc_refused(node, lambda s: s.submit(pb.SubmitRequest(task=pb.TaskSpec(queue="g"))))
    assert "--max-tasks" in message
    grpc_refused(
        node,
        lambda s: s.submit_batch(
            pb.SubmitBatchRequest(tasks=[pb.TaskSpec(queue="g1"), pb.TaskSpec(queue="g2")])
        ),
    )
    for queue in ("one-more", "b1", "b2", "g", "g1", "g2"):
        assert get(f"{base}/api/v1/tasks?queue={queue}")[1]["tasks"] == [], queue
    assert held(node) == before
    # Reads are unaffected.
    assert get(f"{base}/api/v1/queues")[0] == 200
    assert get(f"{base}/api/v1/tasks?limit=5")[0] == 200
    assert get(f"{base}/healthz")[0] == 200


def test_many_queues_fill_the_node_then_every_submit_path_gets_429(node_factory):
    node = node_factory("--max-tasks", str(MAX_TASKS), "--max-queue-depth", "1000")
    base = node.http_url
    # Given tasks spread over many queues, each far below its own depth limit
    for i in range(MAX_TASKS // 2):
        status, body = post(f"{base}/api/v1/tasks", {"queue": f"rest-{i}"})
        assert status == 201, body
    reply = grpc_call(
        node,
        lambda s: s.submit_batch(
            pb.SubmitBatchRequest(
                tasks=[pb.TaskSpec(queue=f"grpc-{i}") for i in range(MAX_TASKS // 2)]
            )
        ),
    )
    assert len(reply.ids) == MAX_TASKS // 2
    # Then the node is full: nothing more is taken, whichever API or queue
    assert held(node) == MAX_TASKS
    assert metric(node, "taskd_tasks_max") == MAX_TASKS
    assert_full_everywhere(node)

    # When some tasks finish, new submits take their room (the oldest finished are evicted)
    status, body = post(f"{base}/api/v1/queues/rest-0/lease", {"worker": "w", "max": 1})
    assert status == 200 and len(body["tasks"]) == 1, body
    leased = body["tasks"][0]
    status, done = post(
        f"{base}/api/v1/tasks/{leased['id']}/complete", {"lease": leased["lease"], "result": 1}
    )
    assert status == 200 and done["state"] == "succeeded", done
    assert metric(node, "taskd_tasks_finished_held") == 1
    status, fresh = post(f"{base}/api/v1/tasks", {"queue": "after-finish"})
    assert status == 201, fresh
    assert get(f"{base}/api/v1/tasks/{leased['id']}")[0] == 404  # evicted early
    assert metric(node, "taskd_tasks_evicted_total") == 1
    assert "evicted 1 finished tasks" in node.stderr_text()
    assert_full_everywhere(node)

    # A restart replays the log and decides the same way
    node.restart()
    assert held(node) == MAX_TASKS
    assert get(f"{base}/api/v1/tasks/{fresh['id']}")[0] == 200
    assert get(f"{base}/api/v1/tasks/{leased['id']}")[0] == 404
    assert_full_everywhere(node)


def test_bytes_are_bounded_node_wide_and_a_refused_batch_leaves_nothing(node_factory):
    node = node_factory("--max-memory", "16K")
    base = node.http_url
    assert metric(node, "taskd_held_bytes_max") == 16 << 10
    payload = "x" * 1000
    accepted = 0
    status, body = 201, None
    while status == 201:
        assert accepted < 20, "the byte bound never refused a submit"
        status, body = post(f"{base}/api/v1/tasks", {"queue": f"q{accepted}", "payload": payload})
        accepted += status == 201
    assert status == 429 and body["error"]["code"] == "node_full", body
    assert "--max-memory" in body["error"]["message"]
    assert 10 <= accepted <= 16
    assert metric(node, "taskd_held_bytes") <= 16 << 10
    # A batch of small tasks that would fit one by one is refused whole with a big one
    status, body = post(
        f"{base}/api/v1/tasks/batch",
        {"tasks": [{"queue": "tiny"}, {"queue": "huge", "payload": "y" * 8000}]},
    )
    assert status == 429, body
    assert get(f"{base}/api/v1/tasks?queue=tiny")[1]["tasks"] == []
    message = grpc_refused(
        node, lambda s: s.submit(pb.SubmitRequest(task=pb.TaskSpec(payload=b"z" * 8000)))
    )
    assert "--max-memory" in message
    # Small tasks still fit in what is left, and reads are fine
    status, _ = post(f"{base}/api/v1/tasks", {"queue": "tiny"})
    assert status == 201
    assert len(get(f"{base}/api/v1/tasks?limit=100")[1]["tasks"]) == accepted + 1


def test_a_result_is_never_refused_for_memory(node_factory):
    node = node_factory("--max-memory", "8K")
    base = node.http_url
    status, task = post(f"{base}/api/v1/tasks", {"queue": "r"})
    assert status == 201
    status, body = post(f"{base}/api/v1/queues/r/lease", {"worker": "w"})
    [leased] = body["tasks"]
    status, done = post(
        f"{base}/api/v1/tasks/{leased['id']}/complete",
        {"lease": leased["lease"], "result": "r" * 20_000},
    )
    assert status == 200 and done["state"] == "succeeded", done
    assert get(f"{base}/api/v1/tasks/{task['id']}")[1]["result"] == "r" * 20_000
    # The finished result is evicted to make room for new work, not a reason to refuse it
    status, _ = post(f"{base}/api/v1/tasks", {"queue": "r"})
    assert status == 201
    assert get(f"{base}/api/v1/tasks/{task['id']}")[0] == 404
    assert metric(node, "taskd_tasks_evicted_total") == 1


@pytest.mark.parametrize("snapshot_every", ["100000", "7"])  # replay from the log, or a snapshot
def test_a_restart_with_lower_bounds_keeps_everything_acknowledged(node_factory, snapshot_every):
    node = node_factory("--max-tasks", "30", "--snapshot-every", snapshot_every)
    base = node.http_url
    ids = []
    for i in range(30):
        status, task = post(f"{base}/api/v1/tasks", {"queue": f"q{i % 7}"})
        assert status == 201, task
        ids.append(task["id"])
    # When the node restarts with a bound below what it holds (other flags, or a machine with
    # less memory deriving a smaller default)
    node.args[node.args.index("30")] = "10"
    node.restart()
    # Expect every acknowledged task back, and new submits refused until enough finish
    assert all(get(f"{base}/api/v1/tasks/{task_id}")[0] == 200 for task_id in ids)
    assert held(node) == 30 and metric(node, "taskd_tasks_max") == 10
    status, body = post(f"{base}/api/v1/tasks", {"queue": "new"})
    assert status == 429 and body["error"]["code"] == "node_full", body
    # And a restart with a higher bound takes new work again, still holding everything
    node.args[node.args.index("10")] = "31"
    node.restart()
    assert held(node) == 30
    assert post(f"{base}/api/v1/tasks", {"queue": "new"})[0] == 201
    assert post(f"{base}/api/v1/tasks", {"queue": "new"})[0] == 429
    node.restart()  # same flags: nothing new is logged, the same decisions replay
    assert held(node) == 31
    assert all(get(f"{base}/api/v1/tasks/{task_id}")[0] == 200 for task_id in ids)
