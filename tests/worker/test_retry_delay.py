"""``raise Retry(reason, delay=s)`` under a real ``taskd worker``: the attempt fails and the node
re-queues the task no earlier than ``s`` seconds later, counting the attempt against
``max_retries``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from itertools import pairwise
from typing import Any

import pytest

from tests.conftest import NodeFactory
from tests.node.rest import post
from tests.worker.conftest import SpawnWorker
from tests.worker.procs import task, wait_until

pytestmark = pytest.mark.slow

WORKER = """
worker = Worker(queues=["later"], concurrency=2)


@worker.task("busy_once")
def busy_once(task):
    note("start", task)
    if task.attempt == 1:
        raise Retry("busy", delay=2)
    return {"attempt": task.attempt}


@worker.task("always_busy")
async def always_busy(task):
    note("start", task)
    raise Retry("still busy", delay=0.5)
"""


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def submit(base: str, name: str, **spec: object) -> str:
    code, body = post(f"{base}/api/v1/tasks", {"queue": "later", "name": name, **spec})
    assert code == 201, body
    return str(body["id"])


def finished(base: str, task_id: str, describe: Callable[[], str]) -> Any:
    return wait_until(
        lambda: (t := task(base, task_id))["state"] in ("succeeded", "failed") and t,
        15,
        f"{task_id} finished",
        describe,
    )


def test_a_retry_with_a_delay_runs_again_no_earlier_than_asked(
    node_factory: NodeFactory, spawn_worker: SpawnWorker
) -> None:
    # Given a handler that asks for a retry in 2 s on its first attempt
    node = node_factory()
    worker = spawn_worker(WORKER, "--server", node.grpc_address)
    task_id = submit(node.http_url, "busy_once", max_retries=3)
    # When it has run
    done = finished(node.http_url, task_id, worker.describe)
    # Expect a second attempt that started at least 2 s after the first one ended
    assert (done["state"], done["result"]) == ("succeeded", {"attempt": 2}), done
    first, second = done["attempts"]
    assert (first["outcome"], first["error"]) == ("failed", "Retry: busy")
    gap = seconds(second["started_at"]) - seconds(first["finished_at"])
    assert 1.999 <= gap < 4.0  # stamps are shown to the ms, (gap, done)


def test_retries_asked_for_still_end_at_max_retries(
    node_factory: NodeFactory, spawn_worker: SpawnWorker
) -> None:
    # Given a handler that always asks for a retry, and a task with 2 retries
    node = node_factory()
    worker = spawn_worker(WORKER, "--server", node.grpc_address)
    task_id = submit(node.http_url, "always_busy", max_retries=2)
    # Expect three attempts, each 0.5 s or more after the last, then failed
    done = finished(node.http_url, task_id, worker.describe)
    assert (done["state"], done["attempt"], done["error"]) == ("failed", 3, "Retry: still busy")
    attempts = done["attempts"]
    assert [a["outcome"] for a in attempts] == ["failed"] * 3
    for before, after in pairwise(attempts):
        assert seconds(after["started_at"]) - seconds(before["finished_at"]) >= 0.499
    assert worker.count("start")[task_id] == 3
