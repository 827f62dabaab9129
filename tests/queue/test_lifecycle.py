"""Cancel, retry, retention, stats and queries."""

from __future__ import annotations

from taskd.queue.commands import Cancel, Complete, RejectCode, Retry, State, StateChanged, Tick
from taskd.queue.task import SchedulerConfig
from tests.queue.sched_helpers import Harness, spec


def test_cancel_of_a_running_task_revokes_its_lease() -> None:
    h = Harness()
    task_id = h.submit()
    leased = h.lease_one()
    out = h.cancel(task_id)
    assert out.events == [
        StateChanged(task_id, "default", State.RUNNING, State.CANCELED, leased.epoch)
    ]
    assert h.s.running_for("w1") == []
    h.rejected(Complete(task_id, leased.epoch, b""), RejectCode.CONFLICT, "lease")


def test_cancel_of_queued_pending_and_blocked_tasks() -> None:
    h = Harness(now=0.0)
    queued = h.submit()
    pending = h.submit(run_at=50.0)
    blocked = h.submit(depends_on=(queued,))
    for task_id in (pending, blocked, queued):
        assert h.cancel(task_id).ok
        assert h.state(task_id) is State.CANCELED
    assert h.lease() == []
    h.tick(50.0)
    assert h.state(pending) is State.CANCELED


def test_cancel_of_a_terminal_task_is_a_conflict() -> None:
    h = Harness()
    task_id = h.submit()
    h.run()
    h.rejected(Cancel(task_id), RejectCode.CONFLICT, "id")
    h.rejected(Cancel("missing"), RejectCode.NOT_FOUND, "id")


def test_retry_gives_a_failed_task_fresh_attempts() -> None:
    h = Harness()
    task_id = h.submit(max_retries=0)
    h.fail(h.lease_one(), "first")
    out = h.retry(task_id)
    assert out.events == [StateChanged(task_id, "default", State.FAILED, State.QUEUED, 1)]
    task = h.task(task_id)
    assert (task.attempt, task.error, task.finished_at) == (0, "", 0.0)
    assert h.lease_one().attempt == 1


def test_retry_of_a_non_failed_task_is_a_conflict() -> None:
    h = Harness()
    task_id = h.submit()
    h.rejected(Retry(task_id), RejectCode.CONFLICT, "id")
    h.run()
    h.rejected(Retry(task_id), RejectCode.CONFLICT, "id")


def test_retry_respects_a_future_run_at() -> None:
    h = Harness(now=0.0)
    task_id = h.submit(run_at=100.0)
    h.cancel(task_id)
    h.retry(task_id)
    assert h.state(task_id) is State.PENDING


def test_terminal_tasks_are_forgotten_after_retention_with_their_idempotency_keys() -> None:
    h = Harness(SchedulerConfig(retention=60.0), now=0.0)
    task_id = h.submit(idempotency_key="k")
    h.run()
    assert h.s.next_deadline() == 60.0
    h.tick(59.0)
    assert h.s.get(task_id) is not None
    h.tick(60.0)
    assert h.s.get(task_id) is None
    assert len(h.s) == 0
    assert h.s.queue_names() == []
    assert h.s.next_deadline() is None
    again = h.submit(idempotency_key="k")
    assert again != task_id


def test_retention_zero_forgets_in_the_same_tick() -> None:
    h = Harness(SchedulerConfig(retention=0.0), now=0.0)
    h.submit(timeout=5.0, max_retries=0)
    h.lease_one(ttl=100.0)
    h.tick(5.0)
    assert len(h.s) == 0


def test_queue_stats_count_by_state_and_queued_by_priority() -> None:
    h = Harness()
    h.ok(h.batch(spec(priority=1), spec(priority=1), spec(priority=9), spec(queue="x")))
    h.lease_one()  # the priority-9 one
    stats = h.s.queue_stats("default")
    assert stats.by_state[State.QUEUED] == 2
    assert stats.by_state[State.RUNNING] == 1
    assert stats.by_priority[1] == 2 and stats.by_priority[9] == 0
    assert (h.s.depth("default"), h.s.runnable("default")) == (3, 2)
    assert h.s.queue_names() == ["default", "x"]
    assert h.s.queue_stats("nowhere").by_state[State.QUEUED] == 0


def test_list_pages_newest_first_with_a_cursor_and_filters() -> None:
    h = Harness()
    ids = [h.submit(queue="a" if i % 2 else "b") for i in range(7)]
    page, cursor = h.s.list(limit=3)
    assert [t.id for t in page] == ids[::-1][:3] and cursor == ids[4]
    page, cursor = h.s.list(limit=3, after=cursor)
    assert [t.id for t in page] == ids[::-1][3:6] and cursor == ids[1]
    page, cursor = h.s.list(limit=3, after=cursor)
    assert [t.id for t in page] == [ids[0]] and cursor is None
    page, _ = h.s.list(queue="a", limit=10)
    assert [t.id for t in page] == [ids[5], ids[3], ids[1]]
    h.run("a")
    page, cursor = h.s.list(state=State.SUCCEEDED, limit=1)
    assert [t.id for t in page] == [ids[1]] and cursor is None


def test_next_deadline_is_the_earliest_timer() -> None:
    h = Harness(now=0.0)
    assert h.s.next_deadline() is None
    h.submit(run_at=100.0)
    h.submit(timeout=40.0)
    assert h.s.next_deadline() == 100.0
    h.lease_one(ttl=50.0)
    assert h.s.next_deadline() == 40.0
    assert h.ok(Tick()).events == []


def test_queries_do_not_change_state() -> None:
    h = Harness()
    task_id = h.submit()
    h.lease_one()
    before = h.s.snapshot()
    h.s.list(limit=5)
    h.s.queue_stats("default")
    h.s.next_deadline()
    h.s.dependency_results(task_id)
    h.s.running_for("w1")
    assert h.s.snapshot() == before
