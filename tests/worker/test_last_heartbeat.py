"""A connected worker's ``last_heartbeat``: set when it connects, moved forward by whatever it
sends (here: results), and shown by REST and gRPC ``ListWorkers`` alike."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import grpclib.client
import pytest

from taskd.api.taskd import v1 as pb
from tests.conftest import NodeFactory
from tests.node.rest import get, post
from tests.worker.conftest import SpawnWorker
from tests.worker.procs import all_succeeded, wait_until

pytestmark = pytest.mark.slow

WORKER = """
worker = Worker(queues=["beat"], concurrency=1, name="beating")


@worker.task()
def handle(task):
    note("done", task)
"""


def listed(base: str) -> dict[str, Any] | None:
    code, body = get(f"{base}/api/v1/workers")
    assert code == 200, body
    mine = [w for w in body["workers"] if w["worker"] == "beating"]
    return mine[0] if mine else None


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


async def grpc_heartbeat_ms(host: str, port: int) -> int:
    async with grpclib.client.Channel(host, port) as channel:
        reply = await pb.ClusterServiceStub(channel).list_workers(pb.ListWorkersRequest())
    return next(w.last_heartbeat_ms for w in reply.workers if w.worker == "beating")


def test_a_workers_last_heartbeat_moves_when_it_reports(
    node_factory: NodeFactory, spawn_worker: SpawnWorker
) -> None:
    # Given a node with a local executor, and an SDK worker connected to it
    node = node_factory("--exec", "local=true")
    spawn_worker(WORKER, "--server", node.grpc_address)
    wait_until(lambda: listed(node.http_url) is not None, 10, "the worker listed")
    first = listed(node.http_url)
    assert first is not None and first["last_heartbeat"] is not None
    joined = seconds(first["last_heartbeat"])
    assert abs(time.time() - joined) < 10
    # When, a moment later, it runs a task and reports its result
    time.sleep(0.3)
    code, body = post(f"{node.http_url}/api/v1/tasks", {"queue": "beat"})
    assert code == 201, body
    wait_until(lambda: all_succeeded(node.http_url, "beat", [body["id"]]), 10, "the task done")
    later = listed(node.http_url)
    # Expect its last heartbeat after the connect, over gRPC as over REST
    assert later is not None and seconds(later["last_heartbeat"]) >= joined + 0.25
    host, port = node.grpc_address.rsplit(":", 1)
    ms = asyncio.run(grpc_heartbeat_ms(host, int(port)))
    assert ms >= round(seconds(later["last_heartbeat"]) * 1000)  # it may speak in between
    assert ms <= time.time() * 1000
    # and the local executor, inside the node, has none
    workers = get(f"{node.http_url}/api/v1/workers")[1]["workers"]
    assert [w["last_heartbeat"] for w in workers if w["kind"] == "local"] == [None]
