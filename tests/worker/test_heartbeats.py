"""Heartbeats under a real ``taskd worker``: a task that runs several times longer than the
node's ``--worker-lease`` keeps its lease and succeeds on its first attempt."""

from __future__ import annotations

import pytest

from tests.conftest import NodeFactory
from tests.node.rest import post
from tests.worker.conftest import SpawnWorker
from tests.worker.procs import task, wait_until

pytestmark = pytest.mark.slow

WORKER = """
worker = Worker(queues=["long"], concurrency=2)


@worker.task()
def slow(task):
    note("start", task)
    time.sleep(3.5)
    note("done", task)
    return "still mine"


@worker.task("async_slow")
async def async_slow(task):
    note("start", task)
    await asyncio.sleep(3.5)
    note("done", task)
    return "still mine"
"""


def test_heartbeats_keep_a_task_longer_than_the_lease(
    node_factory: NodeFactory, spawn_worker: SpawnWorker
) -> None:
    # Given a node whose worker leases last 1 s unless heartbeated
    node = node_factory("--worker-lease", "1")
    worker = spawn_worker(WORKER, "--server", node.grpc_address)
    # When a sync and an async handler each run 3.5 s
    ids = []
    for name in (None, "async_slow"):
        code, body = post(f"{node.http_url}/api/v1/tasks", {"queue": "long", "name": name})
        assert code == 201, body
        ids.append(body["id"])
    # Expect both to succeed on their first attempt: no lease lapsed, nothing ran twice
    for task_id in ids:
        done = wait_until(
            lambda task_id=task_id: (
                (t := task(node.http_url, task_id))["state"] in ("succeeded", "failed") and t
            ),
            15,
            f"{task_id} finished",
            worker.describe,
        )
        assert (done["state"], done["result"], done["attempt"]) == ("succeeded", "still mine", 1)
        assert [a["outcome"] for a in done["attempts"]] == ["succeeded"], done["attempts"]
    assert worker.count("start") == {task_id: 1 for task_id in ids}
