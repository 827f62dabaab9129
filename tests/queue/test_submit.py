"""Submit: initial states, priority order, FIFO ties, delays, idempotency, depth, validation."""

from __future__ import annotations

import pytest

from taskd.queue.commands import RejectCode, State, StateChanged, Submit, TaskSpec
from taskd.queue.task import SchedulerConfig
from tests.queue.sched_helpers import Harness, spec


def test_new_task_without_dependencies_or_delay_is_queued() -> None:
    h = Harness()
    out = h.ok(h.batch(spec(name="hello", payload=b"p", labels=(("a", "1"),))))
    assert isinstance(out.reply, tuple)
    task_id, duplicate = out.reply[0]
    assert not duplicate
    task = h.task(task_id)
    assert task.state is State.QUEUED
    assert (task.created_at, task.seq, task.attempt, task.labels) == (h.now, 1, 0, {"a": "1"})
    assert out.events == [StateChanged(task_id, "default", None, State.QUEUED, 0)]


def test_higher_priority_is_leased_first_and_equal_priorities_in_submission_order() -> None:
    h = Harness()
    low = h.submit(priority=2)
    first_high = h.submit(priority=7)
    critical = h.submit(priority=9)
    second_high = h.submit(priority=7)
    leased = [leased.task_id for leased in h.lease(n=10)]
    assert leased == [critical, first_high, second_high, low]


def test_priority_order_holds_per_queue() -> None:
    h = Harness()
    a = h.submit(queue="a", priority=1)
    b = h.submit(queue="b", priority=9)
    assert [x.task_id for x in h.lease("a", n=5)] == [a]
    assert [x.task_id for x in h.lease("b", n=5)] == [b]


def test_delayed_task_is_pending_until_a_tick_at_run_at() -> None:
    h = Harness(now=100.0)
    task_id = h.submit(run_at=160.0)
    assert h.state(task_id) is State.PENDING
    assert h.lease(n=5) == []
    assert h.s.next_deadline() == 160.0
    h.tick(159.9)
    assert h.state(task_id) is State.PENDING
    out = h.tick(160.0)
    assert out.events == [StateChanged(task_id, "default", State.PENDING, State.QUEUED, 0)]
    assert [x.task_id for x in h.lease()] == [task_id]


def test_run_at_in_the_past_is_queued_at_once() -> None:
    h = Harness(now=100.0)
    assert h.state(h.submit(run_at=50.0)) is State.QUEUED


def test_idempotency_key_returns_the_first_task() -> None:
    h = Harness()
    first = h.submit(idempotency_key="k1")
    out = h.ok(h.batch(spec(idempotency_key="k1", priority=9)))
    assert out.reply == ((first, True),)
    assert out.events == []
    assert len(h.s) == 1


def test_idempotency_key_is_per_queue() -> None:
    h = Harness()
    h.submit(idempotency_key="k1", queue="a")
    out = h.ok(h.batch(spec(idempotency_key="k1", queue="b")))
    assert out.reply[0][1] is False  # type: ignore[index]


def test_idempotency_within_one_batch_maps_to_the_first_spec() -> None:
    h = Harness()
    cmd = h.batch(spec(idempotency_key="k"), spec(idempotency_key="k"), spec())
    out = h.ok(cmd)
    assert out.reply == ((cmd.ids[0], False), (cmd.ids[0], True), (cmd.ids[2], False))
    assert len(h.s) == 2


def test_queue_full_rejects_the_whole_batch() -> None:
    h = Harness(SchedulerConfig(max_queue_depth=2))
    h.submit()
    h.submit(queue="other")
    h.rejected(
        h.batch(spec(), spec(queue="other"), spec()), RejectCode.QUEUE_FULL, "tasks[2].queue"
    )
    assert len(h.s) == 2
    h.ok(h.batch(spec()))  # exactly up to the limit is fine
    h.rejected(h.batch(spec()), RejectCode.QUEUE_FULL, "tasks[0].queue")


def test_terminal_tasks_do_not_count_towards_queue_depth() -> None:
    h = Harness(SchedulerConfig(max_queue_depth=1))
    h.submit()
    h.run()
    h.submit()
    assert h.s.depth("default") == 1


def test_duplicates_do_not_count_towards_queue_depth() -> None:
    h = Harness(SchedulerConfig(max_queue_depth=1))
    h.submit(idempotency_key="k")
    h.ok(h.batch(spec(idempotency_key="k")))


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (spec(priority=10), "tasks[1].priority"),
        (spec(priority=-1), "tasks[1].priority"),
        (spec(max_retries=101), "tasks[1].max_retries"),
        (spec(max_retries=-1), "tasks[1].max_retries"),
        (spec(timeout=0.0), "tasks[1].timeout"),
        (spec(timeout=float("nan")), "tasks[1].timeout"),
        (spec(timeout=float("inf")), "tasks[1].timeout"),
        (spec(idempotency_key="k" * 256), "tasks[1].idempotency_key"),
        (spec(queue=""), "tasks[1].queue"),
        (spec(queue="q" * 129), "tasks[1].queue"),
        (spec(run_at=float("nan")), "tasks[1].run_at"),
        (spec(payload="text"), "tasks[1].payload"),
        (spec(depends_on=("nope",)), "tasks[1].depends_on[0]"),
        (spec(labels=(("a",),)), "tasks[1].labels[0]"),
    ],
)
def test_invalid_spec_is_rejected_naming_the_field_and_nothing_is_applied(
    bad: TaskSpec, field: str
) -> None:
    h = Harness()
    h.submit()
    h.rejected(h.batch(spec(), bad, spec()), RejectCode.INVALID, field)
    assert len(h.s) == 1


def test_limits_themselves_are_valid() -> None:
    h = Harness()
    h.ok(
        h.batch(
            spec(priority=0, max_retries=0, idempotency_key="k" * 255, queue="q" * 128),
            spec(priority=9, max_retries=100, timeout=0.001),
        )
    )


def test_batch_shape_is_validated() -> None:
    h = Harness()
    h.rejected(Submit((), ()), RejectCode.INVALID, "tasks")
    h.rejected(Submit((TaskSpec(),), ()), RejectCode.INVALID, "ids")
    h.rejected(Submit((TaskSpec(), TaskSpec()), ("x", "x")), RejectCode.INVALID, "ids[1]")
    existing = h.submit()
    h.rejected(Submit((TaskSpec(),), (existing,)), RejectCode.INVALID, "ids[0]")


def test_refs_resolve_within_a_batch_and_dependencies_may_point_forward() -> None:
    h = Harness()
    cmd = h.batch(spec(ref="b", depends_on=("a",)), spec(ref="a"))
    h.ok(cmd)
    child, parent = cmd.ids
    assert h.task(child).depends_on == (parent,)
    assert h.state(child) is State.BLOCKED
    assert h.state(parent) is State.QUEUED


@pytest.mark.parametrize(
    ("specs", "field", "message"),
    [
        ((spec(ref="a"), spec(ref="a")), "tasks[1].ref", "duplicate ref"),
        ((spec(ref="a", depends_on=("a",)),), "tasks[0].depends_on[0]", "itself"),
        ((spec(ref="a", depends_on=("b",)), spec(ref="b", depends_on=("a",))),
         "tasks[1].depends_on[0]", "cycle"),
        ((spec(ref="a", depends_on=("c",)), spec(ref="b", depends_on=("a",)),
          spec(ref="c", depends_on=("x", "b"))), "tasks[2].depends_on[0]", "unknown"),
        ((spec(ref="a", depends_on=("c",)), spec(ref="b", depends_on=("a",)),
          spec(ref="c", depends_on=("b",))), "tasks[1].depends_on[0]", "cycle"),
    ],
)  # fmt: skip
def test_bad_batch_graphs_are_invalid(
    specs: tuple[TaskSpec, ...], field: str, message: str
) -> None:
    h = Harness()
    out = h.rejected(h.batch(*specs), RejectCode.INVALID, field)
    assert out.rejection is not None and message in out.rejection.message


def test_depending_on_an_existing_id() -> None:
    h = Harness()
    parent = h.submit()
    child = h.submit(depends_on=(parent,))
    assert h.task(child).waiting_on == {parent}
    assert h.state(child) is State.BLOCKED


def test_depending_on_a_succeeded_task_is_runnable_at_once() -> None:
    h = Harness()
    parent = h.submit()
    h.run()
    assert h.state(h.submit(depends_on=(parent,))) is State.QUEUED


def test_depending_on_a_failed_task_creates_it_canceled() -> None:
    h = Harness()
    parent = h.submit(max_retries=0)
    h.fail(h.lease_one())
    cmd = h.batch(spec(ref="c", depends_on=(parent,)), spec(depends_on=("c",)))
    out = h.ok(cmd)
    assert [e.current for e in out.events] == [State.CANCELED, State.CANCELED]
    for task_id in cmd.ids:
        assert h.task(task_id).error == f"dependency {parent} failed"
    assert h.task(cmd.ids[1]).canceled_by == cmd.ids[0]


def test_seq_increases_globally_across_queues() -> None:
    h = Harness()
    a, b = h.submit(queue="a"), h.submit(queue="b")
    assert h.task(b).seq == h.task(a).seq + 1
