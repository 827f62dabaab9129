"""``taskd cluster add|remove|transfer`` against a member's REST app on a real socket (the
``FakeClusterStore`` of test_rest_cluster: membership that really changes)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from taskd.cli.commands import run_client
from taskd.node.api.http.app import HttpExtras, create_app
from taskd.node.app.cluster import ClusterAdmin
from taskd.node.app.machine import SchedulerMachine
from taskd.node.app.service import NodeService
from taskd.queue.task import SchedulerConfig
from tests.conftest import free_ports
from tests.http.test_rest_cluster import C, Cluster, FakeClusterStore

pytestmark = pytest.mark.slow


@pytest.fixture
async def member(nursery: trio.Nursery) -> AsyncIterator[tuple[FakeClusterStore, str]]:
    machine = SchedulerMachine(SchedulerConfig())
    store = FakeClusterStore(machine, Cluster())
    store.start()
    admin = ClusterAdmin(store)
    app = create_app(
        NodeService(machine, store),
        extras=HttpExtras(
            cluster_status=admin.status,
            workers=lambda: [],
            ready=lambda: True,
            metrics=lambda: b"",
            cluster_admin=admin,
            leader=admin.leader,
        ),
    )
    [port] = free_ports(1)
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    stop = trio.Event()
    await nursery.start(
        lambda task_status: serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)
    )
    yield store, f"http://127.0.0.1:{port}"
    stop.set()


async def taskd(*argv: str) -> int:
    code: int = await trio.to_thread.run_sync(run_client, list(argv))
    return code


async def test_add_follows_the_learner_until_it_votes(
    member: tuple[FakeClusterStore, str], capsys: Any
) -> None:
    store, url = member

    async def promote() -> None:  # the leader promotes it once caught up
        await trio.sleep(0.5)
        store.learners.remove("node-d:50051")
        store.voters.append("node-d:50051")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(promote)
        code = await taskd("cluster", "add", "node-d", "--server", url)
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == "added node-d:50051 as a learner"
    assert "node-d:50051: learner, catching up: match index 7 of 7" in out
    assert "node-d:50051 caught up and is a voter (follower)" in out


async def test_add_gives_up_after_wait_and_says_what_to_check(
    member: tuple[FakeClusterStore, str], capsys: Any
) -> None:
    _, url = member
    code = await taskd("cluster", "add", "node-e", "--wait", "0.3", "--server", url)
    assert code == 1
    assert "still a learner after 0.3s: is it running with --join" in capsys.readouterr().err


async def test_remove_transfer_and_refusals(
    member: tuple[FakeClusterStore, str], capsys: Any
) -> None:
    store, url = member
    assert await taskd("cluster", "remove", C, "--server", url) == 0
    assert f"removed {C}" in capsys.readouterr().out and C not in store.voters
    assert await taskd("cluster", "remove", C, "--server", url) == 1
    assert "is not a member" in capsys.readouterr().err
    assert await taskd("cluster", "transfer", "--server", url, "--json") == 0
    assert orjson.loads(capsys.readouterr().out)["leader"] == "10.0.0.2:50051"
    assert await taskd("cluster", "remove", "--server", url) == 2
    assert "needs the member's address" in capsys.readouterr().err
