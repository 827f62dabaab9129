"""The store conformance suite: what every ``taskd.store.seam.Store`` does, whatever keeps it.

Each test runs against every store kind in conftest.py (memory, Raft, a three-member Raft
cluster), with the same assertions: results come back in order and to their caller, a batch is
applied whole and contiguously or not at all, durable stores recover what they acknowledged
(and the memory store says it is not durable), the leadership signal is gained once with the
store's term and lost on stop, the read barrier answers only while serving (disk faults
included), status has one shape, and a broken disk is reported as a ``StorageFault`` while
reads go on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from taskd.errors import NotLeader, StorageFault, Unavailable
from taskd.store.seam import Store
from tests.store.conftest import StoreKind


@asynccontextmanager
async def serving(store: Store) -> AsyncIterator[Store]:
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        yield store
        nursery.cancel_scope.cancel()


def index_of(result: object) -> int:
    assert isinstance(result, tuple), result  # AppendLog answers (index, position)
    index, _ = result
    assert isinstance(index, int)
    return index


async def test_results_come_back_in_order_and_batches_are_contiguous(kind: StoreKind) -> None:
    store, machine = kind.open()
    async with serving(store):
        first = await store.propose(b"a")
        batch = await store.propose_many([b"b", b"c", b"d"])
        last = await store.propose(b"e")
        assert await store.propose_many([]) == []
    assert machine.items == [b"a", b"b", b"c", b"d", b"e"]
    positions = [r[1] for r in [first, *batch, last] if isinstance(r, tuple)]
    assert positions == [0, 1, 2, 3, 4]
    indexes = [index_of(r) for r in [first, *batch, last]]
    assert indexes == sorted(set(indexes))  # strictly increasing
    assert [index_of(r) for r in batch] == list(range(index_of(batch[0]), index_of(batch[0]) + 3))


async def test_concurrent_callers_each_get_their_own_results_and_batches_stay_whole(
    kind: StoreKind,
) -> None:
    store, machine = kind.open()
    answers: dict[bytes, object] = {}
    batches: list[list[object]] = []

    async def proposer(worker: int) -> None:
        for n in range(20):
            data = f"{worker}:{n}".encode()
            if n % 3:
                answers[data] = await store.propose(data)
            else:
                items = [data + b"/0", data + b"/1", data + b"/2"]
                results = await store.propose_many(items)
                batches.append(results)
                answers.update(zip(items, results, strict=True))

    async with serving(store):
        async with trio.open_nursery() as nursery:
            for worker in range(6):
                nursery.start_soon(proposer, worker)
    assert len(machine.items) == len(answers) == 6 * (13 + 7 * 3)
    for data, result in answers.items():
        assert isinstance(result, tuple)
        assert machine.items[result[1]] == data  # the caller got its own command's result
    for results in batches:
        positions = [r[1] for r in results if isinstance(r, tuple)]
        assert positions == list(range(positions[0], positions[0] + 3))  # nothing in between


async def test_what_was_acknowledged_survives_a_restart_if_and_only_if_the_store_is_durable(
    kind: StoreKind,
) -> None:
    store, _ = kind.open()
    async with serving(store):
        await store.propose(b"a")
        await store.propose_many([b"b", b"c"])
        term = store.status().term
    again, machine = kind.open()
    async with serving(again):
        if again.durable:
            assert machine.items == [b"a", b"b", b"c"]
            assert again.status().term > term  # a restart is a new term
        else:
            assert machine.items == []
        await again.propose(b"d")
        assert machine.items[-1] == b"d"


async def test_leadership_is_gained_once_with_the_term_and_lost_on_stop(kind: StoreKind) -> None:
    store, _ = kind.open()
    assert (store.leadership.term, store.leadership.version) == (None, 0)
    woken: list[int | None] = []

    async def watch() -> None:
        await store.leadership.changed(0)
        woken.append(store.leadership.term)

    async with trio.open_nursery() as outer:
        outer.start_soon(watch)
        async with serving(store):
            term = store.status().term
            assert term >= 1
            assert (store.leadership.term, store.leadership.version) == (term, 1)
            await store.propose(b"x")  # writing changes nothing of leadership
            await trio.testing.wait_all_tasks_blocked()
            assert woken == [term] and store.leadership.version == 1
        assert (store.leadership.term, store.leadership.version) == (None, 2)
    again, _ = kind.open()
    async with serving(again):
        assert again.leadership.term == again.status().term >= term


async def test_the_read_barrier_answers_only_while_serving(kind: StoreKind) -> None:
    store, machine = kind.open()
    with pytest.raises((Unavailable, NotLeader)):
        await store.read_barrier()
    async with serving(store):
        await store.propose(b"a")
        await store.read_barrier()
        assert machine.items == [b"a"]  # what was acknowledged before the barrier is readable
    with pytest.raises((Unavailable, NotLeader)):
        await store.read_barrier()


async def test_status_has_one_shape(kind: StoreKind) -> None:
    store, _ = kind.open()
    before = store.status()
    assert before.role != "leader" and before.leader is None and before.term == 0
    async with serving(store):
        last = index_of(await store.propose(b"a"))
        s = store.status()
        assert isinstance(s.id, str) and s.id
        assert (s.role, s.leader, s.term) == ("leader", s.id, store.leadership.term)
        assert s.commit_index >= s.applied_index >= last
        [me] = [m for m in s.members if m.id == s.id]
        assert (me.role, me.reachable) == ("leader", True)
        assert all(isinstance(m.match_index, int) for m in s.members)


async def test_writes_before_serving_and_after_stop_are_refused_and_apply_nothing(
    kind: StoreKind,
) -> None:
    store, machine = kind.open()
    with pytest.raises((Unavailable, NotLeader)):
        await store.propose(b"early")
    with pytest.raises((Unavailable, NotLeader)):
        await store.propose_many([b"early", b"too"])
    async with serving(store):
        await store.propose(b"a")
    with pytest.raises((Unavailable, NotLeader)):
        await store.propose(b"late")
    with pytest.raises((Unavailable, NotLeader)):
        await store.propose_many([b"late", b"too"])
    assert machine.items == [b"a"]


async def test_a_broken_disk_is_reported_refuses_whole_batches_and_reads_go_on(
    kind: StoreKind,
) -> None:
    store, machine = kind.open()
    async with serving(store):
        await store.propose(b"a")
        assert store.fault is None
        term = store.leadership.term
        kind.break_writes(store)
        with pytest.raises(StorageFault):
            await store.propose(b"b")
        fault = store.fault
        assert isinstance(fault, StorageFault) and not fault.resumes_by_itself
        with pytest.raises(StorageFault):
            await store.propose_many([b"c", b"d", b"e"])
        assert machine.items == [b"a"]  # none of the refused commands was applied
        await store.read_barrier()  # reads go on
        assert store.leadership.term == term and store.status().role == "leader"
