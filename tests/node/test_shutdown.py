"""Graceful shutdown: SIGTERM lets a running command finish, then the node exits 0."""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from collections.abc import AsyncIterator

import pytest
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError

from taskd.api.taskd import v1 as pb
from tests.node.rest import get, post, wait_for_task

pytestmark = pytest.mark.slow


def test_sigterm_lets_running_tasks_finish_and_exits_zero(node_factory, tmp_path):
    # Given a node running a command that takes about a second
    script = tmp_path / "slow.py"
    script.write_text("import time\ntime.sleep(1.0)\nprint('done')\n")
    node = node_factory(
        "--exec", f"slow={shlex.quote(sys.executable)} {script}", "--shutdown-grace", "20"
    )
    status, task = post(f"{node.http_url}/api/v1/tasks", {"queue": "slow"})
    assert status == 201
    wait_for_task(node.http_url, task["id"], {"running"})
    # When the node gets SIGTERM while the task runs
    started = time.monotonic()
    node.terminate()
    # Expect a clean exit after the task finished, and the success durable across a restart
    assert node.proc.returncode == 0, node.stderr_text()
    assert time.monotonic() - started < 15
    node.restart()
    status, done = get(f"{node.http_url}/api/v1/tasks/{task['id']}")
    assert status == 200 and done["state"] == "succeeded" and done["result"] == "done"


def test_sigterm_releases_what_connected_stream_workers_hold(node_factory):
    # Given a stream worker holding two tasks it never finishes
    node = node_factory()
    ids = [post(f"{node.http_url}/api/v1/tasks", {"queue": "held"})[1]["id"] for _ in range(2)]

    async def hold() -> None:
        channel = Channel("127.0.0.1", node.grpc_port)
        stub = pb.WorkerServiceStub(channel)
        hello = pb.WorkerMessage(hello=pb.WorkerHello(worker="holder", queues=["held"], capacity=2))

        async def outgoing() -> AsyncIterator[pb.WorkerMessage]:
            yield hello
            await asyncio.sleep(3600)  # keep our side open, send nothing more

        held: set[str] = set()
        try:
            async for message in stub.work(outgoing()):
                if message.assignment is not None:
                    held.update(item.id for item in message.assignment.items)
                if held == set(ids):
                    # When the node is told to stop while the worker holds both
                    await asyncio.to_thread(node.terminate)
        except (StreamTerminatedError, GRPCError, ConnectionError):
            pass  # the node closed the stream on its way down
        finally:
            channel.close()

    asyncio.run(asyncio.wait_for(hold(), 30))
    assert node.proc.returncode == 0, node.stderr_text()
    # Expect both attempts released as lost, so they retry without waiting for lease expiry
    node.restart()
    for task_id in ids:
        task = get(f"{node.http_url}/api/v1/tasks/{task_id}")[1]
        assert task["state"] in ("pending", "queued"), task
        assert task["error"] == "worker lost" and task["attempt"] == 1, task
