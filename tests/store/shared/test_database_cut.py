"""A node whose database goes away, through a TCP proxy in front of the real PostgreSQL or
Redis (chaos/proxy.py ``Link``: a cut resets every connection and refuses new ones): started
while the database is unreachable, it answers /readyz 503 naming the database and becomes
ready by itself once it answers; cut while in use, writes turn into 503 with the reason and
resume by themselves when it returns, with every acknowledged task still there. The URL the
node is given carries a password, which must never show in what it answers or logs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import trio

from chaos.proxy import Link
from tests.conftest import NodeFactory, NodeProcess
from tests.node.rest import get, post
from tests.store.shared import pgserver, redisserver

pytestmark = pytest.mark.slow

SECRET = "s3cret-pw"


@pytest.fixture(params=["postgres", "redis"])
def target(request: pytest.FixtureRequest) -> Iterator[tuple[int, Callable[[int], str]]]:
    """The database's port, and the --store URL through a proxy port (with a password)."""
    if request.param == "postgres":
        with pgserver.fresh_database() as dsn:
            database = dsn.rsplit("/", 1)[1]
            # trust auth: the password is carried, never checked (as a real one must not show)
            yield 5432, lambda port: f"postgres://postgres:{SECRET}@127.0.0.1:{port}/{database}"
    else:
        with redisserver.fresh_prefix() as prefix:
            yield 6379, lambda port: f"redis://127.0.0.1:{port}/0?prefix={prefix}"


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(partial(fn, *args))


async def until(condition: Callable[[], Any], deadline: float, what: str) -> None:
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        if await trio.to_thread.run_sync(condition):
            return
        await trio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {deadline} s")


def ready(node: NodeProcess) -> tuple[int, dict[str, Any]]:
    try:
        code, body = get(f"{node.http_url}/readyz")
    except OSError:
        return 0, {}
    return code, body


def submit(node: NodeProcess) -> tuple[int, dict[str, Any]]:
    code, body = post(f"{node.http_url}/api/v1/tasks", {"queue": "cut"})
    return code, body


# (``target`` before ``node_factory``: the node stops before its database is cleaned up, so
# that it cannot write a key under the prefix after the cleanup)
async def test_a_node_rides_out_its_database_going_away_at_start_and_in_use(
    target: tuple[int, Callable[[int], str]], node_factory: NodeFactory
) -> None:
    port, url_through = target
    link = Link("database", port)
    async with trio.open_nursery() as nursery:
        link.cut()  # unreachable from the start
        proxy_port = await nursery.start(link.serve, 0)
        # Given a node started while its database cannot be reached
        node = await call(
            partial(
                node_factory, "--store", url_through(proxy_port), "--store-lease", "2", wait=False
            )
        )
        # Expect it to answer, not ready, naming the database (never the password)
        await until(lambda: ready(node)[0] == 503, 15, "/readyz 503")
        code, body = await call(ready, node)
        text = str(body)
        assert f"127.0.0.1:{proxy_port}" in text and SECRET not in text, body
        # When the database answers: ready by itself, and writes are taken
        link.heal()
        await until(lambda: ready(node)[0] == 200, 20, "ready once the database answers")
        acknowledged = []
        for _ in range(10):
            code, body = await call(submit, node)
            assert code == 201, body
            acknowledged.append(body["id"])
        # When it is cut while in use: writes are refused with 503 and the reason
        link.cut()
        await until(lambda: submit(node)[0] == 503, 20, "writes refused")
        code, body = await call(submit, node)
        assert code == 503 and SECRET not in str(body), body
        # and when it returns: writes resume by themselves, nothing acknowledged is lost
        link.heal()
        await until(lambda: submit(node)[0] == 201, 30, "writes resuming")
        for task_id in acknowledged:
            code, task = await call(get, f"{node.http_url}/api/v1/tasks/{task_id}")
            assert code == 200 and task["state"] == "queued", (task_id, task)
        await call(node.terminate)
        nursery.cancel_scope.cancel()
    logged = node.stderr_text() + node.stdout_text()
    # (the test harness writes the command line itself at the head of each log)
    assert all(SECRET not in line for line in logged.splitlines() if "[conftest]" not in line)
