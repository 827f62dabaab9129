"""Per-task timeouts under a real ``taskd worker``: an async handler is cancelled, a sync one
(a thread, which cannot be stopped) is reported as timed out; both attempts show as timed out
on the task, and the worker goes on taking work."""

from __future__ import annotations

import pytest

from tests.conftest import NodeFactory
from tests.node.rest import post
from tests.worker.conftest import SpawnWorker
from tests.worker.procs import task, wait_until

pytestmark = pytest.mark.slow

WORKER = """
worker = Worker(queues=["timeouts"], concurrency=2)


@worker.task("async_sleep")
async def async_sleep(task):
    note("start", task)
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        note("cancelled", task)
        raise
    note("done", task)


@worker.task("sync_sleep")
def sync_sleep(task):
    note("start", task)
    time.sleep(2.5)
    note("done", task)
    return "too late"


@worker.task("quick")
def quick(task):
    note("done", task)
    return "ok"
"""


def submit(base: str, name: str, **spec: object) -> str:
    code, body = post(f"{base}/api/v1/tasks", {"queue": "timeouts", "name": name, **spec})
    assert code == 201, body
    return str(body["id"])


def test_timed_out_async_and_sync_handlers_are_timed_out_attempts(
    node_factory: NodeFactory, spawn_worker: SpawnWorker
) -> None:
    # Given a worker with an async and a sync handler that both outlast a 1 s timeout
    node = node_factory()
    worker = spawn_worker(WORKER, "--server", node.grpc_address)
    async_id = submit(node.http_url, "async_sleep", timeout=1, max_retries=0)
    sync_id = submit(node.http_url, "sync_sleep", timeout=1, max_retries=0)
    # When their timeouts pass
    ended = {
        task_id: wait_until(
            lambda task_id=task_id: (t := task(node.http_url, task_id))["state"] == "failed" and t,
            10,
            f"{task_id} failed",
            worker.describe,
        )
        for task_id in (async_id, sync_id)
    }
    # Expect both attempts timed out, as the task shows them
    for view in ended.values():
        assert view["error"] == "timeout", view
        assert [a["outcome"] for a in view["attempts"]] == ["timeout"], view
    # the async handler cancelled soon after its timeout
    wait_until(lambda: worker.count("cancelled")[async_id], 3, "the async handler cancelled")
    assert not worker.count("done")[async_id]
    # the sync one ran on in its thread, and its late result changed nothing
    wait_until(lambda: worker.count("done")[sync_id], 5, "the sync handler's thread ended")
    after = task(node.http_url, sync_id)
    assert (after["state"], after["result"], after["error"]) == ("failed", None, "timeout")
    # and the worker still takes work
    quick = submit(node.http_url, "quick")
    done = wait_until(
        lambda: (t := task(node.http_url, quick))["state"] == "succeeded" and t,
        10,
        "a task after the timeouts succeeded",
        worker.describe,
    )
    assert done["result"] == "ok"
