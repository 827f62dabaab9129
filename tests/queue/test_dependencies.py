"""Dependencies: blocking, release on success, cascade-cancel, retry restoring dependents."""

from __future__ import annotations

from taskd.queue.commands import RejectCode, Retry, State, StateChanged
from taskd.queue.task import SchedulerConfig
from tests.queue.sched_helpers import Harness, spec


def chain(h: Harness, n: int) -> list[str]:
    """Given a chain t0 <- t1 <- ... (each depends on the previous), submitted as one batch."""
    specs = [spec(ref="t0")] + [spec(ref=f"t{i}", depends_on=(f"t{i - 1}",)) for i in range(1, n)]
    cmd = h.batch(*specs)
    h.ok(cmd)
    return list(cmd.ids)


def test_dependent_waits_until_every_dependency_succeeded() -> None:
    h = Harness()
    a, b = h.submit(), h.submit()
    c = h.submit(depends_on=(a, b))
    assert h.state(c) is State.BLOCKED
    h.complete(h.lease_one())  # a
    assert (h.state(c), h.task(c).waiting_on) == (State.BLOCKED, {b})
    leased = h.lease_one()
    assert leased.task_id == b
    out = h.complete(leased)
    assert out.events[-1] == StateChanged(c, "default", State.BLOCKED, State.QUEUED, 0)
    assert h.lease_one().task_id == c


def test_a_blocked_task_is_never_leased() -> None:
    h = Harness()
    ids = chain(h, 3)
    assert [x.task_id for x in h.lease(n=10)] == [ids[0]]


def test_unblocked_task_with_future_run_at_becomes_pending() -> None:
    h = Harness(now=0.0)
    a = h.submit()
    b = h.submit(depends_on=(a,), run_at=100.0)
    h.run()
    assert h.state(b) is State.PENDING
    h.tick(100.0)
    assert h.state(b) is State.QUEUED


def test_dependency_results_are_given_for_succeeded_dependencies() -> None:
    h = Harness()
    a, b = h.submit(), h.submit()
    c = h.submit(depends_on=(a, b))
    h.complete(h.lease_one(), b"A")
    assert h.s.dependency_results(c) == {a: b"A"}
    h.complete(h.lease_one(), b"B")
    assert h.s.dependency_results(c) == {a: b"A", b: b"B"}
    assert h.s.dependency_results("unknown") == {}


def test_failure_cascades_cancel_transitively_naming_the_failed_task() -> None:
    h = Harness()
    t0, t1, t2 = chain(h, 3)
    other = h.submit(depends_on=(t0,))
    out = h.fail(h.lease_one(), retryable=False)
    assert [(e.task_id, e.current) for e in out.events] == [
        (t0, State.FAILED),
        (t1, State.CANCELED),
        (other, State.CANCELED),
        (t2, State.CANCELED),
    ]
    for task_id in (t1, t2, other):
        assert h.task(task_id).error == f"dependency {t0} failed"
    assert (h.task(t1).canceled_by, h.task(t2).canceled_by) == (t0, t1)


def test_cancel_cascades_to_dependents_naming_the_canceled_task() -> None:
    h = Harness()
    t0, t1 = chain(h, 2)
    out = h.cancel(t0)
    assert [(e.task_id, e.current) for e in out.events] == [
        (t0, State.CANCELED),
        (t1, State.CANCELED),
    ]
    assert h.task(t1).error == f"dependency {t0} canceled"
    assert h.task(t0).error == "canceled"


def test_retry_restores_the_dependents_canceled_because_of_it() -> None:
    h = Harness()
    t0, t1, t2 = chain(h, 3)
    unrelated = h.submit()
    h.cancel(unrelated)
    h.fail(h.lease_one(), retryable=False)
    out = h.retry(t0)
    assert out.ok
    assert [(e.task_id, e.previous, e.current) for e in out.events] == [
        (t0, State.FAILED, State.QUEUED),
        (t1, State.CANCELED, State.BLOCKED),
        (t2, State.CANCELED, State.BLOCKED),
    ]
    assert (h.task(t1).waiting_on, h.task(t2).waiting_on) == ({t0}, {t1})
    assert (h.task(t1).error, h.task(t1).attempt) == ("", 0)
    assert h.state(unrelated) is State.CANCELED
    for expected in (t0, t1, t2):
        assert h.run() == expected


def test_retry_of_a_task_whose_dependency_failed_is_a_conflict_naming_it() -> None:
    h = Harness()
    t0, t1 = chain(h, 2)
    h.fail(h.lease_one(), retryable=False)
    out = h.rejected(Retry(t1), RejectCode.CONFLICT, "id")
    assert out.rejection is not None and t0 in out.rejection.message


def test_restored_dependent_with_another_failed_dependency_stays_canceled() -> None:
    h = Harness()
    a = h.submit(max_retries=0)
    b = h.submit(max_retries=0)
    c = h.submit(depends_on=(a, b))
    h.fail(h.lease_one(), retryable=False)  # a fails: c canceled because of a
    h.cancel(b)
    assert h.task(c).canceled_by == a
    h.retry(a)
    assert h.state(c) is State.CANCELED
    assert h.task(c).canceled_by == b  # now retrying b brings it back
    h.retry(b)
    assert (h.state(c), h.task(c).waiting_on) == (State.BLOCKED, {a, b})


def test_retry_of_a_user_canceled_blocked_task_waits_again() -> None:
    h = Harness()
    t0, t1 = chain(h, 2)
    h.cancel(t1)
    h.retry(t1)
    assert (h.state(t1), h.task(t1).waiting_on) == (State.BLOCKED, {t0})


def test_a_dependency_on_a_forgotten_task_is_unknown() -> None:
    h = Harness(SchedulerConfig(retention=10.0), now=0.0)
    a = h.submit()
    h.run()
    h.tick(10.0)
    assert h.s.get(a) is None
    h.rejected(h.batch(spec(depends_on=(a,))), RejectCode.INVALID, "tasks[0].depends_on[0]")
