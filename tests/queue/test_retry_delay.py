"""A worker's retry delay: ``Fail(retry_delay=s)`` re-queues no earlier than ``s`` seconds later.

The delay replaces the backoff for that attempt only; the attempt is still counted and
``max_retries`` still decides whether there is another one.
"""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskd.queue import codec
from taskd.queue.backoff import backoff
from taskd.queue.commands import Fail, RejectCode, State
from taskd.queue.task import SchedulerConfig
from tests.queue.sched_helpers import Harness


def test_a_retry_delay_keeps_the_task_pending_until_it_has_passed() -> None:
    # Given a running task with retries left
    h = Harness(now=100.0)
    task_id = h.submit(max_retries=3)
    leased = h.lease_one()
    # When its worker fails it asking for a retry in 30 s
    h.ok(Fail(task_id, leased.epoch, "Retry: busy", True, 30.0))
    # Expect: pending until exactly 130, the attempt counted with its error
    task = h.task(task_id)
    assert (task.state, task.run_at, task.attempt, task.error) == (
        State.PENDING,
        130.0,
        1,
        "Retry: busy",
    )
    assert h.s.next_deadline() == 130.0
    h.tick(129.999)
    assert h.state(task_id) is State.PENDING
    assert h.lease() == []
    h.tick(130.0)
    assert h.state(task_id) is State.QUEUED
    assert h.lease_one().attempt == 2


def test_a_retry_delay_does_not_grant_an_attempt_beyond_max_retries() -> None:
    # Given a task on its last attempt
    h = Harness(now=0.0)
    task_id = h.submit(max_retries=1)
    h.ok(Fail(task_id, h.lease_one().epoch, "first", True, 5.0))
    h.tick(5.0)
    last = h.lease_one()
    # When the last attempt also asks for a retry later
    h.ok(Fail(task_id, last.epoch, "Retry: again", True, 5.0))
    # Expect: failed for good, as any failure of the last attempt
    task = h.task(task_id)
    assert (task.state, task.attempt, task.error) == (State.FAILED, 2, "Retry: again")


def test_a_retry_delay_with_retryable_false_fails_for_good() -> None:
    h = Harness()
    task_id = h.submit(max_retries=5)
    h.ok(Fail(task_id, h.lease_one().epoch, "bad input", False, 30.0))
    assert h.state(task_id) is State.FAILED


def test_no_retry_delay_means_the_backoff() -> None:
    # Given a scheduler whose backoff is never zero-width
    config = SchedulerConfig(backoff_base=4.0, backoff_cap=60.0)
    h = Harness(config, now=0.0)
    task_id = h.submit(max_retries=3)
    # When an attempt fails with retry_delay 0
    h.ok(Fail(task_id, h.lease_one().epoch, "boom", True, 0.0))
    # Expect: the backoff's own draw
    task = h.task(task_id)
    assert task.run_at == pytest.approx(backoff(4.0, 60.0, 1, h.entropy, task.seq))


@pytest.mark.parametrize("delay", [-1.0, math.inf, math.nan, True, "30", None])
def test_a_bad_retry_delay_is_invalid_and_changes_nothing(delay: object) -> None:
    h = Harness()
    task_id = h.submit()
    leased = h.lease_one()
    h.rejected(
        Fail(task_id, leased.epoch, "x", True, delay),  # type: ignore[arg-type]  # on purpose
        RejectCode.INVALID,
        "retry_delay",
    )
    assert h.state(task_id) is State.RUNNING


@given(
    delay=st.floats(min_value=0.001, max_value=366 * 86400.0),
    now=st.floats(min_value=0.0, max_value=1e9),
    max_retries=st.integers(0, 4),
    attempts=st.integers(1, 5),
)
def test_a_delayed_retry_is_never_runnable_early_and_always_counted(
    delay: float, now: float, max_retries: int, attempts: int
) -> None:
    # Given a task failed `attempts` times, each time asking for `delay`
    h = Harness(now=now)
    task_id = h.submit(max_retries=max_retries)
    for attempt in range(1, attempts + 1):
        if h.state(task_id) is not State.QUEUED:
            break
        leased = h.lease_one()
        assert leased.attempt == attempt
        failed_at = h.now
        h.ok(Fail(task_id, leased.epoch, f"e{attempt}", True, delay))
        task = h.task(task_id)
        # Expect: pending exactly `delay` later while retries remain, failed once they are out
        if attempt <= max_retries:
            assert task.state is State.PENDING
            assert task.run_at == failed_at + delay
            before = math.nextafter(task.run_at, -math.inf)
            if before > h.now:
                h.tick(before)
                assert h.state(task_id) is State.PENDING
            h.tick(task.run_at)
            assert h.state(task_id) is State.QUEUED
        else:
            assert task.state is State.FAILED
            assert task.attempt == max_retries + 1
        # and every attempt is in the history
        assert [a.error for a in task.attempts][-1] == f"e{attempt}"


def test_a_delayed_fail_has_its_own_log_kind_and_a_plain_fail_keeps_its_bytes() -> None:
    # Given the same failure with and without a delay
    plain = codec.encode(Fail("id", 3, "boom", True), 1.0, 2)
    delayed = codec.encode(Fail("id", 3, "boom", True, 30.0), 1.0, 2)
    # Expect: the plain one is kind 8 as older builds wrote it; the delayed one round-trips
    assert msgpack.unpackb(plain) == [codec.FORMAT_VERSION, 8, 1.0, 2, "id", 3, "boom", True]
    assert msgpack.unpackb(delayed)[1] == 14
    assert codec.decode(delayed) == (Fail("id", 3, "boom", True, 30.0), 1.0, 2)
    assert codec.decode(plain) == (Fail("id", 3, "boom", True), 1.0, 2)
