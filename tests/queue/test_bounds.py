"""Node-wide bounds: tasks and bytes held across every queue, eviction of finished tasks first.

Ids made by the harness are 7 characters ("T000001"), so a task with no other variable data
counts 7 bytes against ``max_bytes``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskd.queue.commands import Complete, Fail, RejectCode, SetLimits, State
from taskd.queue.holdings import task_size
from taskd.queue.scheduler import Scheduler
from taskd.queue.task import SchedulerConfig
from tests.queue.sched_helpers import Harness, spec

ID = 7  # bytes of one harness id


def bounded(max_tasks: int = 1000, max_bytes: int = 1 << 20) -> Harness:
    return Harness(SchedulerConfig(max_tasks=max_tasks, max_bytes=max_bytes, retention=3600.0))


def finish(h: Harness, queue: str = "default") -> str:
    h.now += 1.0  # distinct finish times: "oldest" is well defined
    return h.run(queue)


@pytest.mark.parametrize("queues", [1, 3, 7])
def test_unfinished_tasks_across_queues_fill_the_node_then_submits_are_refused(
    queues: int,
) -> None:
    h = bounded(max_tasks=7)
    for i in range(7):
        h.submit(queue=f"q{i % queues}")
    out = h.rejected(h.batch(spec(queue="fresh")), RejectCode.NODE_FULL, "tasks")
    assert out.rejection is not None
    assert "7 unfinished tasks" in out.rejection.message
    assert "--max-tasks" in out.rejection.message
    assert len(h.s) == 7


@pytest.mark.parametrize("held,batch", [(0, 6), (3, 3), (5, 2), (4, 4)])
def test_a_batch_that_does_not_fit_is_refused_whole(held: int, batch: int) -> None:
    h = bounded(max_tasks=5)
    for _ in range(held):
        h.submit()
    h.rejected(h.batch(*[spec(queue=f"q{i}") for i in range(batch)]), RejectCode.NODE_FULL)
    assert len(h.s) == held


def test_a_batch_that_exactly_fits_is_accepted() -> None:
    h = bounded(max_tasks=5)
    h.submit()
    h.ok(h.batch(*[spec(queue=f"q{i}") for i in range(4)]))
    assert h.s.holdings().tasks == 5


def test_oldest_finished_tasks_are_evicted_to_make_room_and_reported() -> None:
    h = bounded(max_tasks=4)
    ids = [h.submit() for _ in range(3)]
    done = [finish(h) for _ in range(3)]
    assert done == ids
    h.submit()  # 4 held: at the bound, nothing evicted yet
    out = h.ok(h.batch(spec(), spec()))
    assert out.evicted == (ids[0], ids[1])
    assert h.s.get(ids[0]) is None and h.s.get(ids[1]) is None
    assert h.state(ids[2]) is State.SUCCEEDED
    assert h.s.holdings().tasks == 4


def test_finished_tasks_never_cause_a_refusal() -> None:
    h = bounded(max_tasks=3)
    for _ in range(20):
        h.submit()
        finish(h)
    held = h.s.holdings()
    assert (held.tasks, held.finished_tasks) == (3, 3)


def test_failed_and_canceled_tasks_are_finished_too() -> None:
    h = bounded(max_tasks=3)
    failed = h.submit(max_retries=0)
    h.fail(h.lease_one(), retryable=False)
    h.now += 1
    canceled = h.submit()
    h.cancel(canceled)
    h.now += 1
    h.submit()
    out = h.ok(h.batch(spec()))
    assert out.evicted == (failed,)
    out = h.ok(h.batch(spec(queue="other")))
    assert out.evicted == (canceled,)
    h.rejected(h.batch(spec()), RejectCode.NODE_FULL)


def test_payload_labels_and_names_count_as_bytes() -> None:
    h = bounded(max_bytes=100)
    task_id = h.submit(payload=b"x" * 40, name="nm", labels=(("key", "value"),))
    assert h.task(task_id).size == ID + 40 + 2 + 3 + 5
    assert h.s.holdings().bytes == ID + 40 + 2 + 3 + 5
    out = h.rejected(h.batch(spec(payload=b"y" * 50)), RejectCode.NODE_FULL, "tasks")
    assert out.rejection is not None and "--max-memory" in out.rejection.message
    h.submit(payload=b"y" * (100 - 57 - ID))  # exactly fills the bound
    assert h.s.holdings().bytes == 100


def test_bytes_of_finished_tasks_are_reclaimed_oldest_first() -> None:
    h = bounded(max_bytes=200)
    old = h.submit(payload=b"a" * 80)
    finish(h)
    young = h.submit(payload=b"b" * 80)
    finish(h)
    out = h.ok(h.batch(spec(payload=b"c" * 30)))
    assert out.evicted == (old,)
    assert h.state(young) is State.SUCCEEDED


def test_a_result_is_never_refused_for_memory_and_evicts_older_finished_tasks() -> None:
    h = bounded(max_bytes=120)
    old = h.submit()
    finish(h)
    running = h.submit()
    leased = h.lease_one()
    out = h.ok(Complete(running, leased.epoch, b"r" * 150))
    assert out.evicted == (old,)
    # Over the bound with only the fresh result held: it stays readable for its caller.
    assert h.task(running).result == b"r" * 150
    held = h.s.holdings()
    assert held.bytes > 120 and held.finished_tasks == 1
    # Unfinished work cannot fit until something finishes; finished results do not block it.
    h.submit(payload=b"p")
    assert h.s.get(running) is None


def test_errors_of_failed_attempts_count_and_are_never_refused() -> None:
    h = bounded(max_bytes=60)
    task_id = h.submit()
    leased = h.lease_one()
    h.ok(Fail(task_id, leased.epoch, "e" * 100, retryable=True))
    assert h.task(task_id).size == ID + 100
    assert h.state(task_id) is State.PENDING
    h.rejected(h.batch(spec()), RejectCode.NODE_FULL)


def test_timeouts_firing_at_the_bound_change_nothing_else() -> None:
    h = bounded(max_tasks=2)
    h.submit()
    finish(h)
    h.submit(timeout=5.0)
    h.lease_one()
    out = h.tick(h.now + 10)  # the attempt times out: an error grows, no task is added
    assert out.evicted == ()
    assert h.s.holdings().tasks == 2


def test_an_idempotent_repeat_of_a_finished_task_is_answered_and_kept() -> None:
    h = bounded(max_tasks=2)
    first = h.submit(idempotency_key="k")
    finish(h)
    h.submit()
    out = h.ok(h.batch(spec(idempotency_key="k")))
    assert out.reply == ((first, True),)
    assert out.evicted == ()
    assert h.state(first) is State.SUCCEEDED


def test_a_new_task_canceled_at_submit_is_kept_with_its_cause_for_its_reply() -> None:
    h = bounded(max_tasks=3)
    h.submit()
    finish(h)
    dep = h.submit(max_retries=0)
    h.fail(h.lease_one(), retryable=False)
    h.submit(queue="busy")  # unfinished
    # Given 3 held (one old success, one failure, one queued), a child of the failure arrives
    out = h.ok(h.batch(spec(depends_on=(dep,))))
    [(child, _)] = out.reply  # type: ignore[misc]
    # Expect the old success evicted, the failure kept: the child's reply and error name it
    assert h.state(child) is State.CANCELED and h.state(dep) is State.FAILED
    assert len(out.evicted) == 1 and h.s.holdings().tasks == 3
    # A second child takes the first one's room; their cause stays for it
    h.now += 1
    out = h.ok(h.batch(spec(depends_on=(dep,))))
    [(second, _)] = out.reply  # type: ignore[misc]
    assert out.evicted == (child,)
    assert h.state(dep) is State.FAILED
    # Unfinished work beats finished: the cause goes with its child when room is needed
    out = h.ok(h.batch(spec(queue="busy"), spec(queue="busy")))
    assert out.evicted == (dep, second)
    assert h.s.holdings().finished_tasks == 0


def test_an_ended_task_is_evicted_with_the_tasks_it_canceled() -> None:
    h = bounded(max_tasks=5)
    cause = h.submit(max_retries=0)
    out = h.ok(h.batch(spec(depends_on=(cause,), ref="a"), spec(depends_on=("a",))))
    children = [task_id for task_id, _ in out.reply]  # type: ignore[attr-defined]
    h.now += 1
    h.fail(h.lease_one(), retryable=False)  # cascades: both children canceled
    assert {h.state(c) for c in children} == {State.CANCELED}
    h.now += 1
    h.submit()
    finish(h)  # a younger success
    h.now += 1
    h.submit()
    out = h.ok(h.batch(spec()))
    # Expect the cause to go with its children (a child left behind could be retried and run
    # although its dependency failed), and the younger success to stay.
    assert out.evicted == (cause, *children)
    assert h.s.holdings().tasks == 3


def test_a_canceled_dependent_cannot_outlive_its_cause() -> None:
    h = bounded(max_tasks=4)
    cause = h.submit(max_retries=0)
    child = h.submit(depends_on=(cause,))
    h.cancel(child)  # canceled by hand, at the same time as...
    h.fail(h.lease_one(), retryable=False)  # ...its dependency fails
    h.submit()
    h.submit()
    out = h.ok(h.batch(spec()))
    assert set(out.evicted) == {cause, child}


def test_counts_survive_a_snapshot_and_the_restored_twin_decides_the_same() -> None:
    config = SchedulerConfig(max_tasks=6, max_bytes=400, retention=3600.0)
    h = Harness(config)
    for i in range(4):
        h.submit(payload=b"z" * (10 * i), labels=(("n", str(i)),))
        finish(h)
    for _ in range(3):
        h.submit(payload=b"w" * 20)
    twin = Scheduler.restore(h.s.snapshot(), config)
    assert twin.holdings() == h.s.holdings()
    batch = h.batch(spec(payload=b"v" * 30), spec())
    a = h.s.apply(batch, h.now, 1)
    b = twin.apply(batch, h.now, 1)
    assert (a.reply, a.evicted, a.rejection) == (b.reply, b.evicted, b.rejection)
    assert a.evicted
    assert twin.snapshot() == h.s.snapshot()
    assert twin.holdings() == h.s.holdings()
    assert h.s.holdings().bytes == sum(task_size(t) for t in h.s.list(limit=100)[0])


def test_a_restore_keeps_the_logged_limits_whatever_the_config_says() -> None:
    h = bounded(max_tasks=10)
    h.ok(SetLimits(50, 4, 500))
    for _ in range(4):
        h.submit()
    # Given a restart with other settings (other flags, another machine's memory)
    twin = Scheduler.restore(h.s.snapshot(), SchedulerConfig(max_tasks=100, retention=3600.0))
    # Expect the limits of the log, so the twin refuses exactly what the original refuses
    assert twin.limits() == h.s.limits() == (50, 4, 500)
    batch = h.batch(spec())
    assert (
        twin.apply(batch, h.now, 1).rejection == h.rejected(batch, RejectCode.NODE_FULL).rejection
    )


def test_lower_limits_evict_finished_tasks_at_once_and_keep_unfinished_ones() -> None:
    h = bounded(max_tasks=10)
    for _ in range(4):
        h.submit()
        finish(h)
    for _ in range(3):
        h.submit()
    out = h.ok(SetLimits(1000, 2, 1 << 20))
    assert len(out.evicted) == 4 and len(h.s) == 3  # over the bound: only unfinished are left
    h.rejected(h.batch(spec()), RejectCode.NODE_FULL)
    assert h.s.holdings().max_tasks == 2
    out = h.ok(SetLimits(1, 10, 1 << 20))
    assert out.evicted == () and h.s.limits() == (1, 10, 1 << 20)
    h.rejected(h.batch(spec()), RejectCode.QUEUE_FULL)  # max_queue_depth is logged too


@pytest.mark.parametrize(
    "limits,field",
    [((0, 1, 1), "max_queue_depth"), ((1, 0, 1), "max_tasks"), ((1, 1, -5), "max_bytes"),
     ((1, 1.5, 1), "max_tasks"), ((True, 1, 1), "max_queue_depth")],
)  # fmt: skip
def test_bad_limits_are_rejected_naming_the_field(limits: tuple[int, int, int], field: str) -> None:
    h = bounded()
    h.rejected(SetLimits(*limits), RejectCode.INVALID, field)


def test_bounds_are_validated() -> None:
    with pytest.raises(ValueError, match="max_tasks"):
        SchedulerConfig(max_tasks=0).validate()
    with pytest.raises(ValueError, match="max_bytes"):
        SchedulerConfig(max_bytes=0).validate()


def test_retention_forgets_an_ended_task_together_with_the_tasks_it_canceled() -> None:
    # Given a dependency that failed long ago, and a child submitted (canceled) much later
    h = Harness(SchedulerConfig(retention=100.0))
    dep = h.submit(max_retries=0)
    h.fail(h.lease_one(), retryable=False)
    h.now += 90
    child = h.submit(depends_on=(dep,))
    assert h.state(child) is State.CANCELED
    # When the dependency's retention passes
    h.tick(h.now + 11)
    # Expect the child gone with it: left behind, a retry would run it as if the dependency
    # had succeeded
    assert h.s.get(dep) is None and h.s.get(child) is None
    assert h.s.holdings().tasks == 0


@settings(max_examples=300, deadline=None)
@given(
    held=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 40), st.booleans()), max_size=9),
    batch=st.lists(
        st.tuples(st.sampled_from("abcd"), st.integers(0, 40), st.sampled_from(["", "k1", "k2"])),
        min_size=1,
        max_size=5,
    ),
    max_tasks=st.integers(1, 10),
    max_bytes=st.integers(20, 300),
    max_depth=st.integers(1, 4),
)
def test_the_early_refusal_is_certain_and_agrees_with_applying(
    held: list[tuple[str, int, bool]],
    batch: list[tuple[str, int, str]],
    max_tasks: int,
    max_bytes: int,
    max_depth: int,
) -> None:
    # Given a node with some tasks held (some finished), under small bounds
    h = Harness(
        SchedulerConfig(max_tasks=max_tasks, max_bytes=max_bytes, max_queue_depth=max_depth)
    )
    for queue, size, done in held:
        out = h.apply(h.batch(spec(queue=queue, payload=b"p" * size)))
        if out.rejection is None and done:
            finish(h, queue)
    specs = [spec(queue=q, payload=b"x" * n, idempotency_key=key) for q, n, key in batch]
    # When the leader asks before proposing, then applies the submit anyway
    early = h.s.certain_refusal(specs)
    applied = h.apply(h.batch(*specs))
    # Expect: an early refusal only where applying refuses too, with the same code and field
    if early is not None:
        assert applied.rejection is not None
        assert applied.rejection.code is early.code
        if early.code is RejectCode.QUEUE_FULL:
            assert applied.rejection.field == early.field
