"""The worker's I/O-free decisions on plain numbers: autoscaling, the ledger, heartbeats."""

from __future__ import annotations

import math

import pytest

from taskd.client.worker.heartbeat import Heartbeats
from taskd.client.worker.ledger import Ledger
from taskd.client.worker.scaling import Autoscaler, Concurrency

# -- Concurrency ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(8, (8, 8)), ((2, 16), (2, 16)), ([1, 4], (1, 4)), ("3", (3, 3)), ("2-16", (2, 16))],
)
def test_concurrency_accepts_a_number_a_pair_or_a_range(value: object, expected: tuple) -> None:
    c = Concurrency.of(value)
    assert (c.min, c.max) == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (0, "at least 1"),
        ((4, 2), "below the minimum"),
        ("many", "not a number"),
        (True, "int or a (min, max)"),
        ((1, 2, 3), "int or a (min, max)"),
        (20_000, "at most 10000"),
    ],
)
def test_concurrency_refuses_nonsense_naming_the_problem(value: object, says: str) -> None:
    with pytest.raises(ValueError, match="concurrency") as info:
        Concurrency.of(value)
    assert says in str(info.value)


# -- Autoscaler -----------------------------------------------------------------------------


def test_a_saturated_worker_grows_by_half_after_grow_after_up_to_the_maximum() -> None:
    # Given 2..10, starting at the minimum
    scaler = Autoscaler(Concurrency(2, 10), now=0.0, grow_after=0.2, shrink_after=10.0)
    assert scaler.target == 2
    # When every slot is busy, but not yet for grow_after
    assert scaler.observe(0.0, running=2) == 2
    assert scaler.next_decision(0.0) == pytest.approx(0.2)
    assert scaler.observe(0.1, running=2) == 2
    # Expect: growth by half (at least one) each time saturation lasted grow_after
    assert scaler.observe(0.2, running=2) == 3
    assert scaler.observe(0.3, running=3) == 3
    assert scaler.observe(0.5, running=3) == 5
    assert scaler.observe(0.5, running=5) == 5
    assert scaler.observe(0.75, running=5) == 8
    assert scaler.observe(0.75, running=8) == 8
    assert scaler.observe(1.0, running=8) == 10
    # and never past the maximum
    assert scaler.observe(5.0, running=10) == 10
    assert scaler.next_decision(5.0) == pytest.approx(1.0 + 10.0)


def test_slots_refilled_within_a_round_trip_keep_a_worker_saturated() -> None:
    # Given 1..4, with short tasks: every 0.05 s a handler ends and its slot is refilled 10 ms
    # later (a backlog the node keeps handing out)
    scaler = Autoscaler(Concurrency(1, 4), now=0.0, grow_after=0.2, refill=0.1)
    targets = []
    now = 0.0
    for _ in range(40):
        scaler.observe(now, running=scaler.target)  # every slot busy
        now += 0.05
        scaler.observe(now, running=scaler.target - 1)  # one ended
        now += 0.01
        targets.append(scaler.target)
    # Expect it to grow all the way to the maximum
    assert targets[-1] == 4, targets


def test_a_slot_free_longer_than_refill_breaks_saturation() -> None:
    # Given a saturated worker at 2 of 1..4
    scaler = Autoscaler(Concurrency(1, 4), now=0.0, grow_after=0.2, refill=0.1)
    scaler.target = 2
    scaler.observe(0.0, running=2)
    # When a slot stays free for 0.15 s (the queue ran dry), then fills again
    scaler.observe(0.1, running=1)
    assert scaler.next_decision(0.1) == pytest.approx(0.2, abs=1e-5)  # to see if it stays free
    assert scaler.observe(0.25, running=2) == 2
    # Expect saturation to count from the refill, not from 0.0
    assert scaler.next_decision(0.25) == pytest.approx(0.45)
    assert scaler.observe(0.44, running=2) == 2
    assert scaler.observe(0.45, running=2) == 3


def test_an_idle_worker_shrinks_to_its_peak_of_the_period_never_below_the_minimum() -> None:
    scaler = Autoscaler(Concurrency(2, 10), now=0.0, grow_after=0.2, shrink_after=10.0)
    scaler.target = 10
    # Given a period in which at most 4 ran at once
    scaler.observe(1.0, running=4)
    scaler.observe(2.0, running=1)
    # When shrink_after has passed since the period began
    assert scaler.observe(9.9, running=0) == 10
    assert scaler.observe(10.0, running=0) == 4
    # Expect: the next idle period takes it to the minimum, and no further
    assert scaler.next_decision(10.0) == pytest.approx(20.0)
    assert scaler.observe(20.0, running=0) == 2
    assert scaler.observe(40.0, running=0) == 2
    assert scaler.next_decision(40.0) == math.inf


def test_a_fixed_concurrency_never_moves() -> None:
    scaler = Autoscaler(Concurrency(8, 8), now=0.0)
    assert scaler.observe(100.0, running=8) == 8
    assert scaler.observe(1000.0, running=0) == 8
    assert scaler.next_decision(1000.0) == math.inf


# -- Ledger ---------------------------------------------------------------------------------


def test_capacity_counts_slots_the_current_stream_does_not_see() -> None:
    ledger = Ledger()
    ledger.new_stream()
    # Given two attempts running on stream 1
    assert ledger.take("a", 1, deadline=10.0)
    assert ledger.take("b", 1, deadline=10.0)
    assert ledger.capacity(4) == 4  # the node counts both as in flight on this stream
    # When the stream breaks and a new one begins, both still running
    ledger.new_stream()
    # Expect: the new stream is offered only the free slots
    assert ledger.capacity(4) == 2
    # and when one returns, its slot comes back
    assert ledger.finish("a", 1, True, b"1", "")
    ledger.returned("a", 1)
    assert ledger.capacity(4) == 3


def test_a_timed_out_thread_keeps_its_slot_until_it_returns() -> None:
    ledger = Ledger()
    ledger.new_stream()
    ledger.take("a", 7, deadline=5.0)
    # When its timeout passes, the attempt is reported as timed out
    assert ledger.expired(4.9) == []
    assert ledger.expired(5.0) == [("a", 7)]
    assert ledger.finish("a", 7, False, b"", "timeout")
    # Expect: one report, not heartbeated any more, but the slot is still taken
    [report] = ledger.unsent()
    assert (report.id, report.success, report.error) == ("a", False, "timeout")
    assert ledger.alive() == []
    assert ledger.capacity(1) == 0
    ledger.acked("a", 7)
    assert ledger.capacity(1) == 0
    # and the thread's late result is discarded; its return frees the slot
    assert not ledger.finish("a", 7, True, b"late", "")
    ledger.returned("a", 7)
    assert ledger.capacity(1) == 1
    assert ledger.held == {}


def test_unacked_results_are_sent_again_on_a_new_stream_and_once_per_stream() -> None:
    ledger = Ledger()
    ledger.new_stream()
    ledger.take("a", 1, deadline=math.inf)
    ledger.finish("a", 1, True, b'"ok"', "")
    ledger.returned("a", 1)
    assert [r.id for r in ledger.unsent()] == ["a"]
    assert ledger.unsent() == []  # once per stream
    ledger.new_stream()
    assert [r.id for r in ledger.unsent()] == ["a"]  # again on the next
    ledger.acked("a", 1)
    ledger.new_stream()
    assert ledger.unsent() == []
    assert ledger.held == {}


def test_a_revocation_stops_a_running_attempt_and_drops_its_result() -> None:
    ledger = Ledger()
    ledger.new_stream()
    ledger.take("a", 1, deadline=math.inf)
    assert ledger.revoke("a", 1)  # running: stop it
    assert not ledger.finish("a", 1, True, b"", "")  # its result is not reported
    assert ledger.unsent() == []
    ledger.returned("a", 1)
    assert ledger.held == {}
    assert not ledger.revoke("a", 1)  # a stale revocation changes nothing


def test_a_new_lease_of_a_task_still_running_under_an_old_one_is_held_beside_it() -> None:
    ledger = Ledger()
    ledger.new_stream()
    assert ledger.take("a", 1, deadline=math.inf)
    assert not ledger.take("a", 1, deadline=math.inf)  # the same lease twice: run once
    ledger.new_stream()
    assert ledger.take("a", 2, deadline=math.inf)  # re-leased after a reconnect
    assert sorted(ledger.alive()) == [("a", 1), ("a", 2)]
    assert ledger.busy == 2


# -- Heartbeats -----------------------------------------------------------------------------


def test_heartbeats_come_every_third_of_the_lease_while_something_runs() -> None:
    beats = Heartbeats()
    assert not beats.due(100.0, running=0)
    # Given an assignment with a 3 s lease at t=0
    beats.leased(0.0, lease_seconds=3.0)
    assert beats.interval == pytest.approx(1.0)
    assert not beats.due(0.5, running=1)
    # Expect: one each second
    assert beats.due(1.0, running=1)
    assert not beats.due(1.5, running=1)
    assert beats.next_at() == pytest.approx(2.0)
    assert beats.due(2.0, running=1)
    # and none once nothing runs
    assert not beats.due(3.0, running=0)
    assert beats.next_at() == math.inf


def test_attempts_carried_to_a_new_stream_are_heartbeated_at_once() -> None:
    beats = Heartbeats(lease_seconds=30.0)
    beats.reset()
    beats.carried(now=50.0)
    assert beats.due(50.0, running=2)
    assert beats.next_at() == pytest.approx(60.0)
