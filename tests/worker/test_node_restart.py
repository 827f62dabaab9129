"""A node SIGKILLed and started again under a running ``taskd worker`` and a steady submit load.

Given a node, a worker process serving its queue and a thread submitting tasks every 10 ms,
When the node is SIGKILLed while tasks run, and started again on the same data dir,
Expect every task whose submit was acknowledged to succeed well within a lease period (an
assignment lost in flight is released when the worker reconnects), every handler to have run
(and completed) exactly once, and the same worker process to have reconnected by itself and
finished the work.
"""

from __future__ import annotations

import http.client
import threading
import time

import pytest

from tests.conftest import NodeFactory
from tests.node.rest import post
from tests.worker.conftest import SpawnWorker
from tests.worker.procs import all_succeeded, tasks_in, unfinished, wait_until

pytestmark = pytest.mark.slow

WORKER = """
worker = Worker(queues=["restart"], concurrency=4)


@worker.task()
def handle(task):
    note("start", task)
    time.sleep(0.05)
    note("done", task)
    return {"n": task.json()}
"""


class Submitter:
    """Submits one task every ``interval`` seconds from a thread; keeps the acknowledged ids."""

    def __init__(self, base: str, queue: str, interval: float = 0.01) -> None:
        self.base, self.queue, self.interval = base, queue, interval
        self.acknowledged: list[str] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Submitter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                code, body = post(
                    f"{self.base}/api/v1/tasks", {"queue": self.queue, "payload": n}, timeout=2
                )
            except (OSError, http.client.HTTPException):  # the node is down: not acknowledged
                code, body = 0, None
            if code == 201:
                self.acknowledged.append(body["id"])
            else:
                self.refused += 1
            time.sleep(self.interval)


def test_a_node_restart_under_a_running_worker_loses_nothing_and_runs_nothing_twice(
    node_factory: NodeFactory, spawn_worker: SpawnWorker
) -> None:
    # Given a node, a worker process and a steady submit load
    node = node_factory()
    worker = spawn_worker(WORKER, "--server", node.grpc_address)
    with Submitter(node.http_url, "restart") as load:
        wait_until(lambda: len(worker.count("done")) >= 50, 15, "50 tasks done", worker.describe)
        # When the node is SIGKILLed while handlers run, and started again
        wait_until(lambda: _running(worker), 5, "a handler running", worker.describe)
        node.kill()
        done_at_kill = len(worker.count("done"))
        time.sleep(0.5)  # the worker's stream is broken; it keeps reconnecting
        node.restart()
        wait_until(
            lambda: len(worker.count("done")) >= done_at_kill + 50,
            15,
            "50 more tasks done after the restart",
            worker.describe,
        )
    acknowledged = load.acknowledged
    # Expect every acknowledged task to succeed
    wait_until(
        lambda: all_succeeded(node.http_url, "restart", acknowledged),
        15,
        f"all {len(acknowledged)} acknowledged tasks succeeded",
        lambda: f"{unfinished(node.http_url, 'restart', acknowledged)}\n{worker.describe()}",
    )
    # and each handler to have started and completed exactly once
    started, done = worker.count("start"), worker.count("done")
    twice = {i: n for i, n in (started + done).items() if n != 2}
    assert not twice, f"handlers that did not run exactly once: {twice}\n{worker.describe()}"
    assert set(done) >= set(acknowledged)
    # by the same worker process, which reconnected by itself
    assert worker.alive(), worker.describe()
    assert {e.pid for e in worker.journal()} == {worker.pid}
    assert "reconnecting" in worker.stderr_text()
    # an attempt before the successful one can only be an assignment lost with the stream
    # (the node restarted with it in flight), released as soon as the worker reconnected
    finished = tasks_in(node.http_url, "restart", "succeeded")
    earlier = [a for i in acknowledged for a in finished[i]["attempts"][:-1]]
    assert all(a["error"] == "worker lost" for a in earlier), earlier


def _running(worker) -> bool:  # type: ignore[no-untyped-def]
    started, done = worker.count("start"), worker.count("done")
    return any(task_id not in done for task_id in started)
