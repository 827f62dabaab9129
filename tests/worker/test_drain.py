"""SIGTERM to a ``taskd worker`` mid-task: it takes no new work, finishes and reports the running
task, and exits 0 within its drain timeout; past the drain timeout it exits anyway and the node
runs the abandoned task again."""

from __future__ import annotations

import signal
import time

import pytest

from tests.conftest import NodeFactory
from tests.node.rest import post
from tests.worker.conftest import SpawnWorker
from tests.worker.procs import task, wait_until

pytestmark = pytest.mark.slow

WORKER = """
worker = Worker(queues=["drain"], concurrency=1)


@worker.task()
def handle(task):
    note("start", task)
    time.sleep(task.json()["seconds"])
    note("done", task)
    return {"slept": task.json()["seconds"]}
"""


def submit(base: str, seconds: float) -> str:
    code, body = post(f"{base}/api/v1/tasks", {"queue": "drain", "payload": {"seconds": seconds}})
    assert code == 201, body
    return str(body["id"])


def test_sigterm_finishes_and_reports_the_running_task_then_exits_0(
    node_factory: NodeFactory, spawn_worker: SpawnWorker
) -> None:
    # Given a worker running a 1.5 s task, with two more tasks queued behind it
    node = node_factory()
    worker = spawn_worker(WORKER, "--server", node.grpc_address, "--drain-timeout", "10")
    running, *queued = [submit(node.http_url, 1.5) for _ in range(3)]
    wait_until(lambda: worker.count("start"), 15, "the first task started", worker.describe)
    assert list(worker.count("start")) == [running]
    # When it gets SIGTERM mid-task
    worker.signal(signal.SIGTERM)
    signalled = time.monotonic()
    # Expect it to exit 0 once the task is done and reported, well within its drain timeout
    assert worker.wait(10) == 0, worker.describe()
    took = time.monotonic() - signalled
    assert took < 5, f"drained in {took:.1f} s\n{worker.describe()}"
    finished = task(node.http_url, running)
    assert (finished["state"], finished["result"]) == ("succeeded", {"slept": 1.5}), finished
    # and to have taken no new work
    assert list(worker.count("start")) == [running]
    for task_id in queued:
        assert task(node.http_url, task_id)["state"] == "queued"


def test_past_its_drain_timeout_it_exits_and_the_node_runs_the_task_again(
    node_factory: NodeFactory, spawn_worker: SpawnWorker
) -> None:
    # Given a worker with a 1 s drain timeout, running a 30 s task
    node = node_factory()
    worker = spawn_worker(WORKER, "--server", node.grpc_address, "--drain-timeout", "1")
    long = submit(node.http_url, 30)
    wait_until(lambda: worker.count("start"), 15, "the task started", worker.describe)
    # When it gets SIGTERM
    worker.signal(signal.SIGTERM)
    signalled = time.monotonic()
    # Expect it to exit 0 soon after the drain timeout, its thread abandoned
    assert worker.wait(10) == 0, worker.describe()
    took = time.monotonic() - signalled
    assert 1 <= took < 4, f"exited after {took:.1f} s\n{worker.describe()}"
    assert not worker.count("done")
    # and the node to release the task at once (the stream ended): it runs again
    released = wait_until(
        lambda: (t := task(node.http_url, long))["state"] in ("pending", "queued") and t,
        5,
        "the abandoned task released",
    )
    assert released["attempts"][0]["error"] == "worker lost", released
