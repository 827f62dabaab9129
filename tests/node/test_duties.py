"""The leader duties' supervisor: duties start when leadership is gained and stop when it is
lost, restart in a newer term, and a refused takeover is retried before any duty (or lease) runs.

Real ``Leadership`` signal, real ``NodeService`` over the memory store where writes matter;
virtual time (autojump_clock) and ``wait_all_tasks_blocked`` make every step exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from taskd.node.app.duties import LeaderDuties
from taskd.node.app.service import DUTY_RETRY
from taskd.store.leadership import Leadership
from tests.node.test_leader_duties import FULL, make_service


class Recorder:
    """Records what the supervisor ran: prepares (with their term), takeovers, duty lifetimes."""

    def __init__(self) -> None:
        self.prepared: list[int] = []
        self.takeovers = 0
        self.running = 0
        self.started = 0
        self.stopped = 0

    async def prepare(self, term: int) -> None:
        self.prepared.append(term)
        await trio.lowlevel.checkpoint()

    async def takeover(self) -> None:
        self.takeovers += 1
        await trio.lowlevel.checkpoint()

    async def duty(self) -> None:
        self.started += 1
        self.running += 1
        try:
            await trio.sleep_forever()
        finally:
            self.running -= 1
            self.stopped += 1


async def never_retry(name: str, write: object) -> None:
    raise AssertionError(f"nothing was refused, yet {name} was retried")


@asynccontextmanager
async def supervising(duties: LeaderDuties) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(duties.run)
        await trio.testing.wait_all_tasks_blocked()
        yield
        nursery.cancel_scope.cancel()


def supervisor(leadership: Leadership, rec: Recorder, duties: int = 2) -> LeaderDuties:
    return LeaderDuties(
        leadership,
        prepare=rec.prepare,
        takeover=rec.takeover,
        retry=never_retry,
        duties=[rec.duty] * duties,
    )


async def test_nothing_runs_until_leadership_is_gained_then_duties_start_and_stop_on_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    leadership, rec = Leadership(), Recorder()
    duties = supervisor(leadership, rec)
    async with supervising(duties):
        # Not leading: nothing of a leader runs, however long we wait; settled answers at once
        await trio.sleep(3600)
        assert (rec.prepared, rec.takeovers, rec.started) == ([], 0, 0)
        assert not duties.taken_over()
        with trio.fail_after(0.001):
            await duties.settled()
        # Gained in term 3: prepare(3), the takeover, then both duties
        leadership.gained(3)
        await trio.testing.wait_all_tasks_blocked()
        assert (rec.prepared, rec.takeovers, rec.running) == ([3], 1, 2)
        assert duties.taken_over()
        # Lost: both duties are cancelled, the gate closes, nothing starts again
        leadership.lost()
        await trio.testing.wait_all_tasks_blocked()
        assert (rec.running, rec.stopped) == (0, 2)
        assert not duties.taken_over()
        await trio.sleep(3600)
        assert (rec.prepared, rec.takeovers, rec.started) == ([3], 1, 2)


async def test_a_newer_term_restarts_the_duties_and_the_takeover(
    autojump_clock: trio.testing.MockClock,
) -> None:
    leadership, rec = Leadership(), Recorder()
    duties = supervisor(leadership, rec, duties=1)
    async with supervising(duties):
        leadership.gained(1)
        await trio.testing.wait_all_tasks_blocked()
        leadership.gained(1)  # the term already held: no change
        await trio.testing.wait_all_tasks_blocked()
        assert (rec.prepared, rec.started, rec.stopped) == ([1], 1, 0)
        leadership.gained(2)  # straight to a newer term, without a loss in between
        await trio.testing.wait_all_tasks_blocked()
        assert (rec.prepared, rec.takeovers, rec.started, rec.stopped) == ([1, 2], 2, 2, 1)
        assert rec.running == 1 and duties.terms_led == 2 and duties.taken_over()
        # and after a loss, gaining again starts them once more
        leadership.lost()
        leadership.gained(5)
        await trio.testing.wait_all_tasks_blocked()
        assert (rec.prepared, rec.running, duties.terms_led) == ([1, 2, 5], 1, 3)


async def test_a_refused_takeover_settles_then_is_retried_before_any_duty_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Given the real service over a store whose disk is full, leading in term 1
    service, store = make_service()
    store.refusing = FULL
    rec = Recorder()

    async def takeover() -> None:
        await service.release_worker("local@n1")
        await service.renew_leases(30)

    duties = LeaderDuties(
        store.leadership,
        prepare=rec.prepare,
        takeover=takeover,
        retry=service.until_written,
        duties=[rec.duty],
    )
    async with supervising(duties):
        # Expect the supervisor settled after the first refusal (the node may report ready)
        with trio.fail_after(0.001):
            await duties.settled()
        # and while the disk stays full: retried once per DUTY_RETRY, the gate shut, no duty
        await trio.sleep(10 * DUTY_RETRY)
        assert 10 <= store.refused <= 12
        assert not duties.taken_over() and rec.started == 0
        # Once space is back: written within one retry, then the duties start
        store.refusing = None
        await trio.sleep(DUTY_RETRY)
        await trio.testing.wait_all_tasks_blocked()
        assert duties.taken_over() and rec.running == 1


async def test_settled_waits_for_the_first_takeover_attempt_of_the_current_term(
    autojump_clock: trio.testing.MockClock,
) -> None:
    leadership, rec = Leadership(), Recorder()
    slow_done = trio.Event()

    async def slow_takeover() -> None:
        await trio.sleep(5)
        slow_done.set()

    duties = LeaderDuties(
        leadership, prepare=rec.prepare, takeover=slow_takeover, retry=never_retry, duties=[]
    )
    leadership.gained(1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(duties.run)
        await duties.settled()  # before the supervisor even ran
        assert slow_done.is_set() and duties.taken_over()
        assert trio.current_time() == 5
        nursery.cancel_scope.cancel()
