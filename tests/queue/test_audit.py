"""The recount behind the property tests finds each kind of index drift it claims to find."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from taskd.queue.commands import State
from taskd.queue.scheduler import Scheduler
from tests.queue.sched_helpers import Harness


def busy() -> Harness:
    h = Harness(now=0.0)
    parent = h.submit(idempotency_key="k", priority=3)
    h.submit(depends_on=(parent,))
    h.submit(run_at=50.0)
    h.submit(priority=7)
    h.lease_one()
    h.submit()
    h.run()
    return h


def drop_count(s: Scheduler) -> None:
    s._queues["default"].by_state[State.QUEUED] -= 1


def drop_priority(s: Scheduler) -> None:
    s._queues["default"].by_priority[5] += 1


def drop_heap_entry(s: Scheduler) -> None:
    index = s._queues["default"]
    index.heap.pop()
    index.in_heap = {entry[2] for entry in index.heap}


def drop_worker(s: Scheduler) -> None:
    s._by_worker.clear()


def drop_timer(s: Scheduler) -> None:
    s._timers.wake.clear()


def drop_held_bytes(s: Scheduler) -> None:
    s._held.bytes += 1


def drop_key(s: Scheduler) -> None:
    s._idempotency.clear()


def drop_dependents(s: Scheduler) -> None:
    s._dependents.clear()


def drop_catalog(s: Scheduler) -> None:
    s._catalog.ids.pop()


@pytest.mark.parametrize(
    "corrupt,finds",
    [
        (drop_count, "queued counted"),
        (drop_priority, "priority 5"),
        (drop_heap_entry, "no heap entry"),
        (drop_worker, "worker index"),
        (drop_timer, "live timer hint"),
        (drop_held_bytes, "held (tasks, bytes"),
        (drop_key, "idempotency keys"),
        (drop_dependents, "dependents"),
        (drop_catalog, "catalog misses"),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_the_recount_finds_a_drifted_index(
    corrupt: Callable[[Scheduler], None], finds: str
) -> None:
    h = busy()
    assert h.s.audit() == []
    corrupt(h.s)
    problems = h.s.audit()
    assert any(finds in p for p in problems), problems
