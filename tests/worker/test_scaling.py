"""Concurrency between a minimum and a maximum under a real node: a ``taskd worker`` started
with ``--concurrency 1-4`` grows to 4 handlers at once under a backlog (never more) and gives
the slots back once the backlog is gone."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import NodeFactory
from tests.node.rest import get, post
from tests.worker.conftest import SpawnWorker
from tests.worker.procs import WorkerProcess, all_succeeded, wait_until

pytestmark = pytest.mark.slow

WORKER = """
worker = Worker(queues=["scale"], concurrency=1, name="scaler", shrink_after=1.0)


@worker.task()
def handle(task):
    note("start", task)
    time.sleep(0.3)
    note("done", task)
"""


def capacity(base: str) -> int | None:
    code, body = get(f"{base}/api/v1/workers")
    assert code == 200, body
    mine: list[dict[str, Any]] = [w for w in body["workers"] if w["worker"] == "scaler"]
    return mine[0]["capacity"] if mine else None


def most_at_once(worker: WorkerProcess) -> int:
    """The most handlers that ran at the same time, from the journal's start/done times."""
    edges = sorted((e.at, 0 if e.event == "done" else 1) for e in worker.journal())
    running = peak = 0
    for _, starting in edges:
        running += 1 if starting else -1
        peak = max(peak, running)
    return peak


def test_concurrency_grows_with_a_backlog_and_shrinks_after_it(
    node_factory: NodeFactory, spawn_worker: SpawnWorker
) -> None:
    # Given a worker whose module says 1, started with --concurrency 1-4
    node = node_factory()
    worker = spawn_worker(WORKER, "--server", node.grpc_address, "--concurrency", "1-4")
    wait_until(lambda: capacity(node.http_url) == 1, 10, "the worker at 1", worker.describe)
    # When a backlog of 40 tasks of 0.3 s arrives
    code, body = post(f"{node.http_url}/api/v1/tasks/batch", {"tasks": [{"queue": "scale"}] * 40})
    assert code == 201, body
    ids = [t["id"] for t in body["tasks"]]
    seen: set[int] = set()

    def finished() -> bool:
        seen.add(capacity(node.http_url) or 0)
        return all_succeeded(node.http_url, "scale", ids)

    wait_until(finished, 20, "the backlog done", worker.describe)
    # Expect it to have grown to 4 handlers at once, never more
    assert max(seen) == 4, seen
    assert most_at_once(worker) == 4, worker.journal()
    # and, with the backlog gone, to give the slots back
    wait_until(lambda: capacity(node.http_url) == 1, 5, "the worker back at 1", worker.describe)
