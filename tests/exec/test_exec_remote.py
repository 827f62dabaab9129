"""StreamSession: the node's side of a worker stream, driven like a gRPC handler drives it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from taskd.errors import CallerError
from taskd.exec.remote import Assignment, Outbound, ResultAck, Revocation, StreamSession
from taskd.exec.work import WorkerRegistry, WorkItem
from taskd.queue.commands import State


class Peer:
    """The worker's end of the stream: records what the node pushed."""

    def __init__(self) -> None:
        self.received: list[Outbound] = []
        self._changed = trio.Event()

    async def send(self, message: Outbound) -> None:
        self.received.append(message)
        self._changed.set()
        self._changed = trio.Event()

    def assigned(self) -> list[WorkItem]:
        return [i for m in self.received if isinstance(m, Assignment) for i in m.items]

    def of(self, kind: type) -> list:
        return [m for m in self.received if isinstance(m, kind)]

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()


@pytest.fixture
def registry() -> WorkerRegistry:
    return WorkerRegistry()


async def open_session(nursery, source, registry, **options) -> tuple[StreamSession, Peer]:
    session, peer = StreamSession(source, registry, **options), Peer()
    await nursery.start(session.run, peer.send)
    return session, peer


async def test_never_more_in_flight_than_the_capacity(source, registry, autojump_clock):
    # Given ten queued tasks and a worker with capacity 3
    tasks = [source.submit() for _ in range(10)]
    async with trio.open_nursery() as nursery:
        session, peer = await open_session(nursery, source, registry, lease_ttl=20)
        session.hello("w1", ["q"], 3)
        # Expect one Assignment of three, leased in one call
        await peer.until(lambda: len(peer.assigned()) == 3)
        assert peer.received == [Assignment(tuple(peer.assigned()), 20)]
        assert source.lease_calls == [("q", 3, 3)]
        # When results come back one by one, Expect a new task per freed slot, never more
        done = 0
        while done < 10:
            item = peer.assigned()[done]
            await session.on_result(item.id, item.epoch, True, b"ok", "")
            done += 1
            await source.until(lambda d=done: source.tasks[tasks[d - 1]].state.terminal)
            await peer.until(lambda d=done: len(peer.assigned()) >= min(10, d + 3))
            assert len(peer.assigned()) - done <= 3
            assert session.in_flight <= 3
        session.close()
    assert all(source.tasks[t].state is State.SUCCEEDED for t in tasks)
    # (the source may briefly count a 4th RUNNING task: one the worker finished whose
    # completion is still being made durable; the worker's slot is free by then)
    assert len(peer.of(ResultAck)) == 10 and all(a.accepted for a in peer.of(ResultAck))


async def test_closing_the_stream_fails_held_leases_as_worker_lost(source, registry):
    # Given a worker holding two tasks (one of them retryable)
    first, second = source.submit(retries=1), source.submit()
    async with trio.open_nursery() as nursery:
        session, peer = await open_session(nursery, source, registry)
        session.hello("w1", ["q"], 2)
        await peer.until(lambda: len(peer.assigned()) == 2)
        assert [w.running for w in registry.workers()] == [(first, second)]
        # When the worker hangs up
        session.close()
    # Expect both released at once: one queued to retry, one failed, and the worker gone
    assert source.tasks[first].state is State.QUEUED
    assert source.tasks[first].errors == ["worker lost"]
    assert source.tasks[second].state is State.FAILED
    assert source.tasks[second].error == "worker lost"
    assert registry.workers() == []


async def test_a_broken_stream_also_releases_its_leases(source, registry):
    task = source.submit()
    async with trio.open_nursery() as nursery:
        session, peer = await open_session(nursery, source, registry)
        session.hello("w1", ["q"], 1)
        await peer.until(lambda: len(peer.assigned()) == 1)
        nursery.cancel_scope.cancel()  # the handler's receive loop died
    assert source.tasks[task].error == "worker lost"


async def test_a_hello_listing_what_it_holds_releases_the_rest_of_its_leases(source, registry):
    # Given two leases of worker w1 from a stream of a node that since restarted: one it still
    # runs (carried over), one whose assignment never reached it; and a lease of worker w2
    carried, lost, other = source.submit(retries=1), source.submit(retries=1), source.submit()
    epochs = {item.id: item.epoch for item in await source.lease("q", "w1", 2)}
    await source.lease("q", "w2", 1)
    # When w1 reconnects saying it holds only the first
    async with trio.open_nursery() as nursery:
        session, _ = await open_session(nursery, source, registry)
        session.hello("w1", ["q"], 0, [(carried, epochs[carried])])
        await source.until(lambda: source.tasks[lost].errors != [])
        session.close()
    # Expect the lost one released (queued to run again) and nothing else touched
    assert (source.tasks[lost].state, source.tasks[lost].errors) == (State.QUEUED, ["worker lost"])
    assert source.tasks[carried].state is State.RUNNING and source.tasks[carried].errors == []
    assert source.tasks[other].state is State.RUNNING


async def test_the_release_waits_for_a_leader_to_answer(source, registry, autojump_clock):
    # Given a lease lost with w1's last stream, and a cluster without a leader for a while
    lost = source.submit(retries=1)
    await source.lease("q", "w1", 1)
    source.leases_of_refusals = 3
    # When w1 reconnects holding nothing
    async with trio.open_nursery() as nursery:
        session, _ = await open_session(nursery, source, registry, lease_ttl=30.0)
        session.hello("w1", ["q"], 0, [])
        await source.until(lambda: source.tasks[lost].errors != [])
        # Expect it released once the check got an answer (three refusals, 0.5 s apart)
        assert trio.current_time() == pytest.approx(1.5)
        session.close()
    assert source.tasks[lost].errors == ["worker lost"]


async def test_a_hello_that_does_not_say_what_it_holds_releases_nothing(source, registry):
    task = source.submit()
    await source.lease("q", "w1", 1)
    async with trio.open_nursery() as nursery:
        session, _ = await open_session(nursery, source, registry)
        session.hello("w1", ["q"], 0)
        await trio.testing.wait_all_tasks_blocked()
        session.close()
    assert source.tasks[task].state is State.RUNNING


async def test_results_are_routed_and_stale_ones_rejected(source, registry):
    good, bad, stale = source.submit(), source.submit(), source.submit()
    async with trio.open_nursery() as nursery:
        session, peer = await open_session(nursery, source, registry)
        session.hello("w1", ["q"], 3)
        await peer.until(lambda: len(peer.assigned()) == 3)
        epochs = {i.id: i.epoch for i in peer.assigned()}
        await session.on_result(good, epochs[good], True, b'{"ok": true}', "")
        await session.on_result(bad, epochs[bad], False, b"", "ValueError: no")
        await session.on_result(stale, epochs[stale] + 7, True, b"late", "")
        await peer.until(lambda: len(peer.of(ResultAck)) == 3)
        session.close()
    assert source.tasks[good].result == b'{"ok": true}'
    assert source.tasks[bad].error == "ValueError: no"
    acks = {a.id: a for a in peer.of(ResultAck)}
    assert acks[good].accepted and acks[bad].accepted
    assert acks[stale] == ResultAck(stale, epochs[stale] + 7, False, "stale lease")
    assert source.tasks[stale].error == "worker lost"  # still held when the stream closed


async def test_revocation_is_pushed_and_frees_the_slot(source, registry):
    # Given a worker at capacity 1 running one task, with another waiting
    running, waiting = source.submit(), source.submit()
    async with trio.open_nursery() as nursery:
        session, peer = await open_session(nursery, source, registry)
        session.hello("w1", ["q"], 1)
        await peer.until(lambda: len(peer.assigned()) == 1)
        # When the node cancels the running one
        epoch = source.cancel(running)
        assert registry.revoke(running, epoch, "canceled")
        # Expect a Revocation, then the waiting task in the freed slot
        await peer.until(lambda: len(peer.assigned()) == 2)
        assert peer.received[1] == Revocation(running, epoch, "canceled")
        assert peer.assigned()[1].id == waiting
        session.close()
    assert source.tasks[running].state is State.CANCELED
    assert source.reports == [("fail", waiting, 1, True)]  # worker lost; nothing for `running`


async def test_a_stale_heartbeat_revokes_with_lease_expired(source, registry):
    task = source.submit()
    async with trio.open_nursery() as nursery:
        session, peer = await open_session(nursery, source, registry)
        session.hello("w1", ["q"], 1)
        await peer.until(lambda: len(peer.assigned()) == 1)
        epoch = peer.assigned()[0].epoch
        await session.on_heartbeat([task], [epoch])
        assert peer.of(Revocation) == []
        source.cancel(task)
        await session.on_heartbeat([task], [epoch])
        await peer.until(lambda: len(peer.of(Revocation)) == 1)
        assert peer.of(Revocation) == [Revocation(task, epoch, "lease expired")]
        assert session.in_flight == 0
        session.close()


async def test_credit_changes_the_capacity(source, registry):
    for _ in range(5):
        source.submit()
    async with trio.open_nursery() as nursery:
        session, peer = await open_session(nursery, source, registry)
        session.hello("w1", ["q"], 0)
        await trio.testing.wait_all_tasks_blocked()
        assert peer.assigned() == []
        session.on_credit(4)
        await peer.until(lambda: len(peer.assigned()) == 4)
        assert registry.workers()[0].capacity == 4
        session.close()


async def test_one_assignment_spans_the_worker_queues(source, registry):
    a, b = source.submit("a"), source.submit("b")
    async with trio.open_nursery() as nursery:
        session, peer = await open_session(nursery, source, registry)
        session.hello("w1", ["a", "b"], 5)
        await peer.until(lambda: len(peer.assigned()) == 2)
        assert [{i.id for i in m.items} for m in peer.of(Assignment)] == [{a, b}]
        # and work submitted later wakes the session (no polling)
        late = source.submit("b")
        await peer.until(lambda: len(peer.assigned()) == 3)
        assert peer.assigned()[2].id == late
        session.close()


@pytest.mark.parametrize(
    ("worker", "queues", "capacity", "field"),
    [
        ("", ["q"], 1, "hello.worker"),
        ("w", [], 1, "hello.queues"),
        ("w", ["q"], -1, "hello.capacity"),
    ],
)
def test_a_bad_hello_names_the_field(source, registry, worker, queues, capacity, field):
    with pytest.raises(CallerError) as caught:
        StreamSession(source, registry).hello(worker, queues, capacity)
    assert caught.value.field == field
