"""Every ended attempt is kept on the task: number, times, outcome, error, worker (bounded)."""

from __future__ import annotations

import msgpack

from taskd.queue import snapshot
from taskd.queue.commands import Complete
from taskd.queue.scheduler import Scheduler
from taskd.queue.task import MAX_ATTEMPT_ERROR, MAX_ATTEMPTS_KEPT, Attempt
from tests.queue.sched_helpers import Harness


def test_each_attempt_ends_in_the_history_with_its_error() -> None:
    # Given a task with two retries
    h = Harness(now=100.0)
    task_id = h.submit(max_retries=2, timeout=10.0)
    # When the first attempt fails, the second times out and the third succeeds
    h.fail(h.lease_one(worker="w1"), "boom")
    h.tick(200.0)
    h.lease_one(worker="w2")
    h.tick(211.0)
    h.tick(1000.0)
    h.complete(h.lease_one(worker="w3"), b"done")
    # Expect all three, in order, each with who ran it and how it ended
    assert h.task(task_id).attempts == (
        Attempt(1, 100.0, 100.0, "failed", "boom", "w1"),
        Attempt(2, 200.0, 211.0, "timeout", "timeout", "w2"),
        Attempt(3, 1000.0, 1000.0, "succeeded", "", "w3"),
    )


def test_a_canceled_running_attempt_is_kept_and_history_survives_a_retry() -> None:
    h = Harness()
    task_id = h.submit(max_retries=0)
    h.lease_one()
    h.cancel(task_id)
    h.retry(task_id)
    h.fail(h.lease_one(), "again", retryable=False)
    outcomes = [(a.number, a.outcome, a.error) for a in h.task(task_id).attempts]
    assert outcomes == [(1, "canceled", "canceled"), (1, "failed", "again")]


def test_the_history_is_bounded_in_length_and_error_size() -> None:
    h = Harness()
    task_id = h.submit(max_retries=100)
    for n in range(MAX_ATTEMPTS_KEPT + 5):
        h.fail(h.lease_one(), f"{n}:" + "x" * (MAX_ATTEMPT_ERROR * 2))
        h.tick(h.now + 10_000)
    history = h.task(task_id).attempts
    assert len(history) == MAX_ATTEMPTS_KEPT
    assert history[0].number == 6 and history[-1].number == MAX_ATTEMPTS_KEPT + 5
    assert all(len(a.error) == MAX_ATTEMPT_ERROR for a in history)


def test_the_history_survives_a_snapshot_and_old_snapshots_still_load() -> None:
    # Given a scheduler whose task has a history
    h = Harness()
    task_id = h.submit(max_retries=1)
    h.fail(h.lease_one(), "boom")
    data = h.s.snapshot()
    # Expect it back after a restore, byte for byte
    restored = Scheduler.restore(data)
    assert restored.get(task_id).attempts == h.task(task_id).attempts  # type: ignore[union-attr]
    assert restored.snapshot() == data
    # When a snapshot written before the history (25-field task rows) is read
    body = msgpack.unpackb(data, raw=False, use_list=True)
    body[4] = [row[:25] for row in body[4]]
    old = Scheduler.restore(msgpack.packb(body, use_bin_type=True))
    # Expect the task with an empty history, and everything else as it was
    task = old.get(task_id)
    assert task is not None and task.attempts == () and task.error == "boom"
    assert snapshot.decode(old.snapshot()).tasks[0].attempts == ()


def test_a_successful_runs_stderr_tail_is_kept_and_survives_a_snapshot() -> None:
    # Given a task whose run succeeded with a stderr tail, and one whose run left none
    h = Harness()
    chatty, quiet = h.submit(), h.submit()
    first = h.lease_one()
    assert first.task_id == chatty  # FIFO within a priority
    h.ok(Complete(chatty, first.epoch, b"ok", "x" * (MAX_ATTEMPT_ERROR + 10)))
    h.complete(h.lease_one())
    # Expect the tail (its last MAX_ATTEMPT_ERROR characters) in the attempt
    [attempt] = h.task(chatty).attempts
    assert attempt.outcome == "succeeded" and attempt.log == "x" * MAX_ATTEMPT_ERROR
    # and both histories back from a snapshot, the quiet one's row still six fields
    data = h.s.snapshot()
    restored = Scheduler.restore(data)
    assert restored.get(chatty).attempts == h.task(chatty).attempts  # type: ignore[union-attr]
    assert restored.get(quiet).attempts == h.task(quiet).attempts  # type: ignore[union-attr]
    rows = {row[0]: row for row in msgpack.unpackb(data, raw=False)[4]}
    assert len(rows[quiet][25][0]) == 6 and len(rows[chatty][25][0]) == 7
