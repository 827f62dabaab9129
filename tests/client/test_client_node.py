"""The SDK against real node processes: the founding document's example as written, the sync,
asyncio and trio clients over every operation, results through ``wait``, coalesced submits
from many threads, idempotent retries, failover between members, and deadlines against a node
that stopped answering (SIGSTOP)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from taskd.client import (
    AsyncTaskSchedulerClient,
    Conflict,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    Priority,
    TaskFailed,
    TaskSchedulerClient,
    TaskState,
    Unavailable,
    Worker,
)
from tests.conftest import NodeFactory, NodeProcess, free_ports

pytestmark = pytest.mark.slow


@contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    """``worker.run()`` in a thread for the duration of the block; drained at its end."""
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the worker did not drain within 15 s"


def leader_of(nodes: list[NodeProcess]) -> NodeProcess:
    with urllib.request.urlopen(f"{nodes[0].http_url}/api/v1/cluster", timeout=5) as reply:
        leader = json.load(reply)["leader"]
    return next(n for n in nodes if n.grpc_address == leader)


def echo_worker(node: NodeProcess, queue: str = "default") -> Worker:
    worker = Worker(queues=[queue], concurrency=4, servers=node.grpc_address)

    @worker.task()
    def anything(task):  # type: ignore[no-untyped-def]
        body = task.json()
        if isinstance(body, dict) and body.get("fail"):
            raise RuntimeError(f"asked to fail: {body['fail']}")
        return {"echo": body, "attempt": task.attempt}

    return worker


def test_the_founding_documents_example_runs_as_written(
    node_factory: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a node, named by TASKD_SERVER as a user would
    node = node_factory()
    monkeypatch.setenv("TASKD_SERVER", node.grpc_address)
    data = [1, 2, 3]
    # When the migration example runs as written, and a worker serves the default queue
    client = TaskSchedulerClient()
    try:
        task = client.submit_task(
            priority=Priority.HIGH, payload=json.dumps({"data": data}), timeout=300
        )
        state = client.get_task(task.id).state
        with running(echo_worker(node)):
            done = client.wait(task, timeout=20)
    finally:
        client.close()
    # Expect the task queued at high priority, then its result back through wait
    assert task.priority == Priority.HIGH and task.queue == "default"
    assert state in (TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED)
    assert done.state is TaskState.SUCCEEDED
    assert done.result == {"echo": {"data": data}, "attempt": 1}


def test_every_operation_of_the_sync_client(node_factory: NodeFactory) -> None:
    # Given a node and a sync client
    node = node_factory()
    with TaskSchedulerClient(node.grpc_address) as client:
        # When tasks are submitted one by one and as a batch with refs
        first = client.submit_task({"n": 1}, queue="ops", labels={"team": "a"})
        later = client.submit_task(b"\x00\xff", queue="ops", delay="1h")
        batch = client.submit_batch(
            [
                {"ref": "a", "queue": "ops", "payload": "one"},
                {"queue": "ops", "payload": "two", "depends_on": ["a"]},
            ]
        )
        # Expect each readable, listed newest first, and their changes applied
        assert client.get_task(first.id).labels == {"team": "a"}
        assert client.get_task(later.id).payload == b"\x00\xff"
        assert client.get_task(batch[1].id).depends_on == (batch[0].id,)
        assert batch[1].depends_on == (batch[0].id,)
        assert client.get_task(batch[1].id).state is TaskState.BLOCKED
        listed = [t.id for t in client.list_tasks(queue="ops", page_size=2)]
        assert listed == [batch[1].id, batch[0].id, later.id, first.id]
        assert [t.id for t in client.list_tasks(queue="ops", limit=1)] == [batch[1].id]
        canceled = client.cancel(later)
        assert canceled.state is TaskState.CANCELED
        with pytest.raises(Conflict):
            client.cancel(later)
        assert client.retry(later).state is TaskState.PENDING  # its run_at is an hour away
        with pytest.raises(NotFound):
            client.get_task("01NOSUCHTASK0000000000000")
        with pytest.raises(InvalidArgument) as bad:
            client.submit_task(queue="bad queue name!")
        assert bad.value.field == "queue"
        # and a failed attempt's error reaches wait(raise_on_failure=True)
        failing = client.submit_task({"fail": "boom"}, queue="ops2", max_retries=0)
        with running(echo_worker(node, "ops2")):
            with pytest.raises(TaskFailed) as failed:
                client.wait(failing, timeout=20, raise_on_failure=True)
        assert "asked to fail: boom" in failed.value.task.error
        ended = client.get_task(failing.id)
        assert [a.outcome for a in ended.attempts] == ["failed"]
        assert "asked to fail: boom" in ended.attempts[0].error


def test_the_async_client_on_asyncio(node_factory: NodeFactory) -> None:
    # Given a node and a worker
    node = node_factory()

    async def main() -> tuple[list[object], list[str]]:
        async with AsyncTaskSchedulerClient(node.grpc_address) as client:
            # When 20 tasks are submitted concurrently and awaited, while a watch follows them
            seen: list[str] = []

            async def follow() -> None:
                async for event in client.watch(queue="aio"):
                    seen.append(event.task.state.value)

            watcher = asyncio.create_task(follow())
            await asyncio.sleep(0.2)
            tasks = await asyncio.gather(
                *(client.submit_task({"i": i}, queue="aio") for i in range(20))
            )
            done = await asyncio.gather(*(client.wait(t, timeout=20) for t in tasks))
            await asyncio.sleep(0.2)
            watcher.cancel()
            return [t.result["echo"]["i"] for t in done], seen

    with running(echo_worker(node, "aio")):
        results, seen = asyncio.run(main())
    # Expect every result, in submission order, and the watch saw them succeed
    assert results == list(range(20))
    assert seen.count("succeeded") == 20, seen


async def test_the_async_client_on_trio(node_factory: NodeFactory) -> None:
    # Given a node, a worker, and the async client used from trio
    node = node_factory()
    with running(echo_worker(node, "trio")):
        async with AsyncTaskSchedulerClient(node.grpc_address) as client:
            results: dict[int, object] = {}

            async def one(i: int) -> None:
                task = await client.submit_task({"i": i}, queue="trio")
                results[i] = (await client.wait(task, timeout=20)).result["echo"]["i"]

            # When 10 trio tasks each submit and wait
            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(one, i)
            listed = [t async for t in client.list_tasks(queue="trio")]
    # Expect every result, and the list of all ten
    assert results == {i: i for i in range(10)}
    assert len(listed) == 10


def test_submits_from_many_threads_share_a_connection_and_are_coalesced(
    node_factory: NodeFactory,
) -> None:
    # Given one client shared by 8 threads
    node = node_factory()
    ids: list[str] = []
    lock = threading.Lock()
    with TaskSchedulerClient(node.grpc_address) as client:

        def submitter(t: int) -> None:
            for i in range(50):
                task = client.submit_task({"t": t, "i": i}, queue="many")
                with lock:
                    ids.append(task.id)

        # When each submits 50 tasks, one call at a time
        threads = [threading.Thread(target=submitter, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        batches = client.batches_sent
        listed = {t.id for t in client.list_tasks(queue="many")}
    # Expect 400 distinct tasks, all stored, sent in far fewer than 400 calls
    assert len(set(ids)) == 400 and listed == set(ids)
    assert batches < 200, batches


def test_a_repeated_idempotency_key_returns_the_first_task(node_factory: NodeFactory) -> None:
    # Given a node and a task submitted with a key
    node = node_factory()
    with TaskSchedulerClient(node.grpc_address) as client:
        first = client.submit_task({"n": 1}, queue="idem", idempotency_key="order-7")
        # When the same key is submitted again (as a retry after a lost answer would)
        again = client.submit_task({"n": 2}, queue="idem", idempotency_key="order-7")
        # Expect the first task back, marked a duplicate, and only one task stored
        assert again.id == first.id and again.duplicate and not first.duplicate
        assert len(list(client.list_tasks(queue="idem"))) == 1


def test_a_member_that_is_down_is_skipped_for_the_next(node_factory: NodeFactory) -> None:
    # Given a client whose first address has nothing listening, and a live node second
    node = node_factory()
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    with TaskSchedulerClient([dead, node.grpc_address], call_timeout=5) as client:
        # When it submits and reads
        started = time.monotonic()
        task = client.submit_task({"n": 1}, queue="fo")
        got = client.get_task(task.id)
        # Expect both to reach the live node, quickly, and the client to call it first now
        assert got.id == task.id
        assert time.monotonic() - started < 5
        assert client.servers[0] == node.grpc_address


def test_a_node_that_stopped_answering_gives_an_error_by_the_deadline(
    node_factory: NodeFactory,
) -> None:
    # Given a node frozen with SIGSTOP (its socket accepts, nothing answers)
    node = node_factory()
    with TaskSchedulerClient(node.grpc_address, call_timeout=1.5) as client:
        client.get_task(client.submit_task(queue="frozen").id)  # connected first
        os.kill(node.pid, signal.SIGSTOP)
        try:
            # When a read and a submit are made
            for call in (
                lambda: client.get_task("01NOSUCHTASK0000000000000"),
                lambda: client.submit_task(queue="frozen"),
            ):
                started = time.monotonic()
                with pytest.raises((DeadlineExceeded, Unavailable)):
                    call()
                # Expect an error by the call's deadline, never a hang
                assert time.monotonic() - started < 4.0
        finally:
            os.kill(node.pid, signal.SIGCONT)
        # and the client works again once the node does
        assert client.submit_task(queue="frozen").queue == "frozen"


def test_a_cluster_client_keeps_submitting_when_the_leader_is_killed(
    node_factory: NodeFactory,
) -> None:
    # Given a three-node cluster and a client that knows every member
    nodes = node_factory.cluster(3)
    with TaskSchedulerClient([n.grpc_address for n in nodes], call_timeout=10) as client:
        before = [client.submit_task({"n": n}, queue="ha") for n in range(20)]
        # When the leader is SIGKILLed
        leader = leader_of(nodes)
        leader.kill()
        # Expect later submits to succeed through another member, and nothing lost
        after = [client.submit_task({"n": n}, queue="ha") for n in range(20, 40)]
        stored = {t.id for t in client.list_tasks(queue="ha")}
    assert {t.id for t in before + after} <= stored
