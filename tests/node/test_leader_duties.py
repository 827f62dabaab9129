"""Leader duties and the API's answers while the store refuses writes (a full or failing disk).

The store here is the in-memory one with a switch that makes it refuse every write with the
``StorageFault`` a broken disk gives (stores are not something users touch); the real disk is
exercised end to end in tests/node/test_disk_faults.py. Virtual time (autojump_clock) makes
the pauses exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from taskd.errors import StorageFault
from taskd.node.api.http.app import HttpExtras, create_app
from taskd.node.app.machine import SchedulerMachine
from taskd.node.app.service import DUTY_RETRY, NodeService
from taskd.queue.commands import State, TaskSpec
from taskd.queue.task import SchedulerConfig
from taskd.store.memory import MemoryStore
from tests.http.asgi import call
from tests.http.conftest import CLUSTER, WORKERS

FULL = StorageFault("disk full at /data: ...; free space on the filesystem", resumes_by_itself=True)
BROKEN = StorageFault("disk failure at /data: fsync failed; restart", resumes_by_itself=False)


class SwitchableStore(MemoryStore):
    """Refuses every write while ``refusing`` is set, and counts the refusals."""

    def __init__(self, machine: SchedulerMachine) -> None:
        super().__init__(machine)
        self.refusing: StorageFault | None = None
        self.refused = 0

    async def propose(self, data: bytes) -> object:
        await trio.lowlevel.checkpoint()
        if self.refusing is not None:
            self.refused += 1
            raise self.refusing
        return await super().propose(data)

    async def propose_many(self, items: Sequence[bytes]) -> list[object]:
        return [await self.propose(item) for item in items]


def make_service() -> tuple[NodeService, SwitchableStore]:
    machine = SchedulerMachine(SchedulerConfig())
    store = SwitchableStore(machine)
    store.start()
    return NodeService(machine, store, clock=trio.current_time), store


async def test_the_timer_loop_pauses_while_writes_are_refused_and_catches_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Given a task delayed by 5 s and a store that refuses writes from the start
    service, store = make_service()
    [(task, _)] = await service.submit([TaskSpec(queue="q", run_at=trio.current_time() + 5)])
    store.refusing = FULL
    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.run_timers)
        # When its deadline passes and a minute goes by
        await trio.sleep(60)
        # Expect the loop alive, retrying once per DUTY_RETRY, the task still pending
        assert 50 / DUTY_RETRY <= store.refused <= 60 / DUTY_RETRY
        assert service.get(task.id).state is State.PENDING
        # and once writes are taken again, the task is queued within one retry
        store.refusing = None
        await trio.sleep(DUTY_RETRY + 0.01)
        assert service.get(task.id).state is State.QUEUED
        nursery.cancel_scope.cancel()


async def test_until_written_retries_a_refused_duty_until_the_store_takes_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    service, store = make_service()
    store.refusing = BROKEN
    done = trio.Event()

    async def duty() -> None:
        await service.until_written("release", lambda: service.release_worker("local@n1"))
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(duty)
        await trio.sleep(10)
        assert not done.is_set() and store.refused >= 5
        store.refusing = None
        with trio.fail_after(DUTY_RETRY + 0.5):
            await done.wait()


def _app(service: NodeService, reason: list[str | None]) -> object:
    extras = HttpExtras(
        lambda: CLUSTER,
        lambda: WORKERS,
        lambda: True,
        lambda: b"",
        not_ready_reason=lambda: reason[0],
    )
    return create_app(service, extras=extras)


async def test_writes_get_the_disk_reason_and_readyz_says_why() -> None:
    service, store = make_service()
    [(task, _)] = await service.submit([TaskSpec(queue="q")])
    reason: list[str | None] = [None]
    app = _app(service, reason)
    assert (await call(app, "GET", "/readyz")).status == 200
    for fault, retry_after in ((FULL, "5"), (BROKEN, None)):
        store.refusing = fault
        reason[0] = str(fault)
        for method, path, body in (
            ("POST", "/api/v1/tasks", {"payload": 1}),
            ("POST", "/api/v1/tasks/batch", {"tasks": [{}, {}]}),
            ("POST", f"/api/v1/tasks/{task.id}/cancel", None),
            ("POST", "/api/v1/queues/q/pause", None),
            ("POST", "/api/v1/queues/q/lease", {"worker": "w", "max": 1}),
        ):
            reply = await call(app, method, path, body)
            assert reply.status == 503, (path, reply.body)
            assert reply.error["message"] == str(fault)  # as it is: no "retry shortly"
            assert reply.headers.get("retry-after") == retry_after
        ready = await call(app, "GET", "/readyz")
        assert ready.status == 503 and ready.error["message"] == f"not ready: {fault}"
        for path in (f"/api/v1/tasks/{task.id}", "/api/v1/tasks", "/api/v1/queues", "/healthz"):
            assert (await call(app, "GET", path)).status == 200, path
