"""A three-node cluster's leader SIGKILLed under a running ``taskd worker`` that knows all three.

Given a cluster, a worker process connected to the leader (first of the three addresses it was
given) and a steady submit load spread over the members,
When the leader is SIGKILLed,
Expect the worker to move to another member by itself, every acknowledged task to succeed, and
no handler to run twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster, loading
from tests.worker.conftest import SpawnWorker
from tests.worker.procs import all_succeeded, unfinished, wait_until

pytestmark = pytest.mark.slow

WORKER = """
worker = Worker(queues=["ha"], concurrency=4)


@worker.task()
def handle(task):
    note("start", task)
    time.sleep(0.02)
    note("done", task)
    return {"n": task.json()}
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path / "cluster", 3, spare=0)
    try:
        made.start()
        yield made
    finally:
        made.cleanup()


def test_the_worker_follows_the_cluster_when_its_leader_is_killed(
    cluster: Cluster, spawn_worker: SpawnWorker
) -> None:
    # Given a worker on the leader, then the two others, and a steady load
    leader = cluster.wait_for_leader()
    others = cluster.followers(leader)
    servers = ",".join(m.address for m in [leader, *others])
    worker = spawn_worker(WORKER, "--server", servers)
    with loading(cluster, queue="ha") as load:
        wait_until(lambda: len(worker.count("done")) >= 30, 15, "30 tasks done", worker.describe)
        code, listed = leader.get("/api/v1/workers")
        assert code == 200 and "stream" in {w["kind"] for w in listed["workers"]}, listed
        # When the leader is SIGKILLed
        leader.kill()
        survivor = cluster.wait_for_leader(among=others)
        done_at_kill = len(worker.count("done"))
        wait_until(
            lambda: len(worker.count("done")) >= done_at_kill + 30,
            15,
            "30 more tasks done after the failover",
            worker.describe,
        )
    acknowledged = load.acknowledged
    # Expect every acknowledged task to succeed
    wait_until(
        lambda: all_succeeded(survivor.http_url, "ha", acknowledged),
        15,
        f"all {len(acknowledged)} acknowledged tasks succeeded",
        lambda: f"{unfinished(survivor.http_url, 'ha', acknowledged)}\n{worker.describe()}",
    )
    # and no handler to have run twice
    started, done = worker.count("start"), worker.count("done")
    twice = {i: n for i, n in (started + done).items() if n != 2}
    assert not twice, f"handlers that did not run exactly once: {twice}\n{worker.describe()}"
    # the worker moved to another member by itself
    assert worker.alive(), worker.describe()
    log = worker.stderr_text()
    assert f"stream to {leader.address} ended" in log, worker.describe()
