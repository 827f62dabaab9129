"""A worker waiting for work proposes its Lease right behind the Submit that brings it, so the
two share one durability round: pickup pays one fsync, not two (service.NodeService._expect).

Real Raft store on disk (its ``fsync_rounds`` counts rounds), the node's service, and a
worker loop shaped like the executors' (wait for work, then lease what the backlog says)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from taskd.exec.work import WorkItem
from taskd.node.app.machine import SchedulerMachine
from taskd.node.app.service import NodeService
from taskd.queue.commands import TaskSpec
from taskd.queue.task import SchedulerConfig
from taskd.store.raft.driver import RaftStore

pytestmark = pytest.mark.slow


async def worker(service: NodeService, leased: list[WorkItem], done: trio.Event) -> None:
    while True:
        await service.wait_for_work(["q"])
        want = service.backlog("q")
        if want:
            leased.extend(await service.lease("q", "w1", want, 30.0))
            if leased:
                done.set()
                return
        await trio.sleep(0.5)  # as the executors do when a backlog was not found


async def test_a_waiting_workers_lease_shares_the_submits_fsync(tmp_path: Path) -> None:
    # Given a node's service on a Raft store and a worker waiting for queue "q"
    machine = SchedulerMachine(SchedulerConfig())
    store = RaftStore(tmp_path, machine)
    service = NodeService(machine, store)
    leased: list[WorkItem] = []
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        nursery.start_soon(worker, service, leased, done)
        await trio.testing.wait_all_tasks_blocked()
        before = store.fsync_rounds
        # When a task is submitted to "q"
        [(task, _)] = await service.submit([TaskSpec(queue="q")])
        with trio.fail_after(5):
            await done.wait()
        # Expect the worker to hold it, the Submit and the Lease written in one round
        assert [item.id for item in leased] == [task.id]
        assert store.fsync_rounds - before == 1
        nursery.cancel_scope.cancel()


async def test_a_delayed_task_wakes_nobody_early(tmp_path: Path) -> None:
    # Given the same, and a task submitted to run in an hour
    machine = SchedulerMachine(SchedulerConfig())
    store = RaftStore(tmp_path, machine)
    service = NodeService(machine, store)
    leased: list[WorkItem] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        nursery.start_soon(worker, service, leased, trio.Event())
        await trio.testing.wait_all_tasks_blocked()
        before = store.fsync_rounds
        await service.submit([TaskSpec(queue="q", run_at=service.clock() + 3600)])
        await trio.testing.wait_all_tasks_blocked()
        # Expect one round (the Submit alone): no Lease was proposed, nothing is counted
        assert store.fsync_rounds - before == 1
        assert leased == [] and service.backlog("q") == 0
        nursery.cancel_scope.cancel()
