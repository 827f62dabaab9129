"""Leases, fencing epochs, heartbeats, completions, failures, retries, timeouts, lost workers."""

from __future__ import annotations

import pytest

from taskd.queue.backoff import backoff
from taskd.queue.commands import (
    Complete,
    Fail,
    Heartbeat,
    Lease,
    Leased,
    PauseQueue,
    RejectCode,
    ReleaseWorker,
    RenewLeases,
    ResumeQueue,
    State,
    StateChanged,
)
from taskd.queue.task import SchedulerConfig
from tests.queue.sched_helpers import Harness


def test_lease_starts_an_attempt_with_a_fresh_epoch_and_deadlines() -> None:
    h = Harness(now=100.0)
    task_id = h.submit(timeout=60.0)
    out = h.ok(Lease("default", "w1", 5, 30.0))
    assert out.reply == (Leased(task_id, 1, 1, 130.0),)
    assert out.events == [StateChanged(task_id, "default", State.QUEUED, State.RUNNING, 1)]
    task = h.task(task_id)
    assert (task.state, task.worker, task.attempt, task.started_at) == (
        State.RUNNING,
        "w1",
        1,
        100.0,
    )
    assert (task.lease_deadline, task.timeout_deadline) == (130.0, 160.0)
    assert h.s.running_for("w1") == [task]


def test_epochs_are_globally_unique_and_increasing() -> None:
    h = Harness()
    for queue in ("a", "b", "a"):
        h.submit(queue=queue)
    epochs = [x.epoch for x in h.lease("a", n=2)] + [x.epoch for x in h.lease("b")]
    assert epochs == [1, 2, 3]


def test_lease_hands_out_at_most_max_and_nothing_from_empty_or_unknown_queue() -> None:
    h = Harness()
    for _ in range(5):
        h.submit()
    assert len(h.lease(n=3)) == 3
    assert len(h.lease(n=3)) == 2
    assert h.lease(n=3) == []
    assert h.lease("nowhere") == []


def test_paused_queue_hands_out_nothing_until_resumed() -> None:
    h = Harness()
    task_id = h.submit()
    h.ok(PauseQueue("default"))
    assert h.lease() == []
    assert h.s.runnable("default") == 0
    assert h.s.queue_stats("default").paused
    h.ok(ResumeQueue("default"))
    assert h.s.runnable("default") == 1
    assert [x.task_id for x in h.lease()] == [task_id]


def test_pausing_an_empty_queue_makes_it_visible() -> None:
    h = Harness()
    h.ok(PauseQueue("later"))
    assert h.s.queue_names() == ["later"]
    h.ok(ResumeQueue("later"))
    assert h.s.queue_names() == []


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (Lease("", "w", 1, 1.0), "queue"),
        (Lease("q", "", 1, 1.0), "worker"),
        (Lease("q", "w", 0, 1.0), "max"),
        (Lease("q", "w", 1, 0.0), "lease_ttl"),
        (Lease("q", "w", 1, float("nan")), "lease_ttl"),
        (Heartbeat("T000001", 1, -1.0), "lease_ttl"),
        (ReleaseWorker(""), "worker"),
        (PauseQueue(""), "queue"),
    ],
)
def test_bad_arguments_are_invalid(command: Lease | Heartbeat | ReleaseWorker, field: str) -> None:
    h = Harness()
    h.submit()
    h.rejected(command, RejectCode.INVALID, field)


def test_complete_with_the_current_epoch_succeeds_and_stores_the_result() -> None:
    h = Harness(now=10.0)
    task_id = h.submit()
    leased = h.lease_one()
    h.now = 12.0
    out = h.complete(leased, b"42")
    assert out.reply == task_id
    assert out.events == [StateChanged(task_id, "default", State.RUNNING, State.SUCCEEDED, 1)]
    task = h.task(task_id)
    assert (task.state, task.result, task.finished_at) == (State.SUCCEEDED, b"42", 12.0)
    assert h.s.running_for("w1") == []


def test_stale_epoch_is_rejected_for_every_worker_call() -> None:
    h = Harness()
    h.submit(max_retries=1)
    old = h.lease_one()
    h.fail(old)  # back to pending with a backoff
    h.tick(h.now + 10)
    new = h.lease_one()
    assert new.epoch > old.epoch
    for command in (
        Complete(old.task_id, old.epoch, b""),
        Fail(old.task_id, old.epoch, "x"),
        Heartbeat(old.task_id, old.epoch, 5.0),
    ):
        out = h.rejected(command, RejectCode.CONFLICT, "lease")
        assert out.rejection is not None and f"lease {new.epoch}" in out.rejection.message
    h.complete(new)


def test_second_completion_is_rejected_at_most_one_terminal_outcome() -> None:
    h = Harness()
    h.submit()
    leased = h.lease_one()
    h.complete(leased)
    out = h.rejected(Complete(leased.task_id, leased.epoch, b"again"), RejectCode.CONFLICT)
    assert out.rejection is not None and "succeeded" in out.rejection.message
    h.rejected(Fail(leased.task_id, leased.epoch, "late"), RejectCode.CONFLICT)


def test_unknown_task_is_not_found() -> None:
    h = Harness()
    h.rejected(Complete("nope", 1, b""), RejectCode.NOT_FOUND, "id")
    h.rejected(Heartbeat("nope", 1, 1.0), RejectCode.NOT_FOUND, "id")


def test_heartbeat_extends_the_lease_and_never_shortens_it() -> None:
    h = Harness(now=0.0)
    h.submit()
    leased = h.lease_one(ttl=30.0)
    h.now = 20.0
    assert h.heartbeat(leased, ttl=30.0).ok
    assert h.task(leased.task_id).lease_deadline == 50.0
    assert h.heartbeat(leased, ttl=5.0).ok
    assert h.task(leased.task_id).lease_deadline == 50.0
    h.tick(49.0)
    assert h.state(leased.task_id) is State.RUNNING
    assert h.s.next_deadline() == 50.0


def test_missed_heartbeat_expires_the_lease_and_the_attempt_is_retried() -> None:
    h = Harness(now=0.0)
    task_id = h.submit(max_retries=2)
    leased = h.lease_one(ttl=30.0)
    out = h.tick(30.0)
    assert out.events == [StateChanged(task_id, "default", State.RUNNING, State.PENDING, 1)]
    task = h.task(task_id)
    assert task.error == "lease expired"
    assert 30.0 <= task.run_at <= 31.0  # first retry waits uniform(0, base=1)
    h.rejected(Complete(task_id, leased.epoch, b""), RejectCode.CONFLICT, "lease")


def test_timeout_fails_the_attempt_with_error_timeout() -> None:
    h = Harness(now=0.0)
    task_id = h.submit(timeout=10.0, max_retries=0)
    leased = h.lease_one(ttl=30.0)
    h.tick(9.99)
    assert h.state(task_id) is State.RUNNING
    out = h.tick(10.0)
    assert out.events == [
        StateChanged(task_id, "default", State.RUNNING, State.FAILED, leased.epoch)
    ]
    assert h.task(task_id).error == "timeout"


def test_timeout_still_applies_to_a_heartbeating_task() -> None:
    h = Harness(now=0.0)
    task_id = h.submit(timeout=45.0, max_retries=0)
    leased = h.lease_one(ttl=20.0)
    for t in (10.0, 20.0, 30.0, 40.0):
        h.now = t
        assert h.heartbeat(leased, ttl=20.0).ok
        h.tick()
    h.tick(45.0)
    assert (h.state(task_id), h.task(task_id).error) == (State.FAILED, "timeout")


def test_a_failure_reported_at_or_past_the_deadline_is_a_timed_out_attempt() -> None:
    # Given two running attempts with a 10 s timeout
    h = Harness(now=0.0)
    early, late = h.submit(timeout=10.0), h.submit(timeout=10.0)
    first, second = h.lease("default", 2)
    # When one fails before its deadline and the other at it (before any Tick ran)
    h.now = 9.5
    h.fail(first, "ValueError: no")
    h.now = 10.0
    h.fail(second, "timeout")
    # Expect the first a failed attempt, the second a timed-out one (as the Tick would say)
    assert [a.outcome for a in h.task(early).attempts] == ["failed"]
    assert [(a.outcome, a.error) for a in h.task(late).attempts] == [("timeout", "timeout")]
    assert h.state(late) is State.PENDING


def test_non_retryable_failure_goes_straight_to_failed() -> None:
    h = Harness()
    task_id = h.submit(max_retries=5)
    h.fail(h.lease_one(), "bad input", retryable=False)
    assert (h.state(task_id), h.task(task_id).error) == (State.FAILED, "bad input")


def test_retries_until_exhausted_then_failed_with_attempts_counted() -> None:
    h = Harness(now=0.0)
    task_id = h.submit(max_retries=2)
    for attempt in (1, 2, 3):
        leased = h.lease_one()
        assert leased.attempt == attempt
        h.fail(leased, f"e{attempt}")
        deadline = h.s.next_deadline()
        if deadline is not None and h.state(task_id) is State.PENDING:
            h.tick(deadline)
    task = h.task(task_id)
    assert (task.state, task.attempt, task.error) == (State.FAILED, 3, "e3")


def test_backoff_is_full_jitter_within_exponential_bounds() -> None:
    config = SchedulerConfig(backoff_base=2.0, backoff_cap=20.0)
    h = Harness(config, now=0.0)
    task_id = h.submit(max_retries=10)
    waits = []
    for attempt in range(1, 8):
        h.entropy = attempt * 7919
        h.fail(h.lease_one())
        wait = h.task(task_id).run_at - h.now
        assert 0.0 <= wait < min(20.0, 2.0 * 2 ** (attempt - 1))
        assert wait == pytest.approx(backoff(2.0, 20.0, attempt, h.entropy, h.task(task_id).seq))
        waits.append(wait)
        h.tick(h.task(task_id).run_at)
    assert len(set(waits)) == len(waits)


def test_backoff_is_deterministic_and_spread_by_entropy_and_task() -> None:
    draws = {backoff(1.0, 300.0, 9, entropy, seq) for entropy in range(50) for seq in range(4)}
    assert len(draws) == 200
    assert all(0.0 <= d < 256.0 for d in draws)
    assert backoff(1.0, 300.0, 3, 99, 1) == backoff(1.0, 300.0, 3, 99, 1)
    samples = [backoff(1.0, 1.0, 1, e, 0) for e in range(2000)]
    assert 0.45 < sum(samples) / len(samples) < 0.55  # uniform on [0, 1)


def test_release_worker_fails_each_of_its_attempts_with_worker_lost() -> None:
    h = Harness()
    a, b, c = h.submit(), h.submit(), h.submit(max_retries=0)
    h.lease(n=2, worker="w1")
    h.lease(worker="w2")
    out = h.ok(ReleaseWorker("w1"))
    assert [(e.task_id, e.current) for e in out.events] == [
        (a, State.PENDING),
        (b, State.PENDING),
    ]
    assert h.task(a).error == "worker lost"
    assert h.state(c) is State.RUNNING
    assert h.s.running_for("w1") == []
    assert h.ok(ReleaseWorker("unknown")).events == []


def test_renew_leases_extends_every_running_lease_never_shortens() -> None:
    # Given two running tasks, one with a long lease and one about to expire
    h = Harness()
    a, b = h.submit(), h.submit()
    h.lease(worker="w1", ttl=5.0)
    h.lease(worker="w2", ttl=500.0)
    long_deadline = h.task(b).lease_deadline
    # When a new leader renews every lease by 60 s
    out = h.ok(RenewLeases(60.0))
    # Expect the short lease pushed out to now + 60 and the long one untouched
    assert out.events == []
    assert h.task(a).lease_deadline == h.now + 60.0
    assert h.task(b).lease_deadline == long_deadline
    h.rejected(RenewLeases(0.0), RejectCode.INVALID, "lease_ttl")
