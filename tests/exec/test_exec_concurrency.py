"""Concurrency parsing, the Scaler's decisions (plain numbers, exact times), the registry."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskd.exec.concurrency import Concurrency, Scaler
from taskd.exec.work import WorkerInfo, WorkerRegistry


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8", Concurrency(8, 8)), ("2-16", Concurrency(2, 16)), (" 1 - 4 ", Concurrency(1, 4))],
)
def test_parse_accepts_n_and_min_max(text, expected):
    assert Concurrency.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("eight", "not a number N or a range MIN-MAX"),
        ("4-", "not a number N or a range MIN-MAX"),
        ("-3", "not a number N or a range MIN-MAX"),
        ("0", "minimum must be at least 1, not 0"),
        ("8-2", "maximum 2 is below the minimum 8"),
    ],
)
def test_parse_names_the_problem(text, problem):
    with pytest.raises(ValueError, match=problem):
        Concurrency.parse(text)


def test_scaler_grows_to_the_balance_point_in_one_step():
    scaler = Scaler(Concurrency(1, 8), idle_after=30, now=0)
    assert scaler.observe(0, running=0, backlog=1) == 1
    assert scaler.observe(1, running=1, backlog=3) == 2  # ceil((1 + 3) / 2)
    assert scaler.observe(2, running=2, backlog=100) == 8  # capped at the maximum
    assert scaler.observe(3, running=8, backlog=1) == 8


def test_scaler_does_not_grow_while_running_covers_the_backlog():
    scaler = Scaler(Concurrency(2, 8), idle_after=30, now=0)
    assert scaler.observe(0, running=2, backlog=2) == 2


def test_scaler_shrinks_after_an_idle_period_never_below_what_runs():
    scaler = Scaler(Concurrency(1, 8), idle_after=30, now=0)
    scaler.observe(0, running=0, backlog=100)
    assert scaler.shrink_at() == 30
    scaler.worked(10)
    assert scaler.observe(39.9, running=0, backlog=0) == 8
    assert scaler.observe(40, running=3, backlog=0) == 3  # three still run
    assert scaler.shrink_at() == 70
    assert scaler.observe(70, running=0, backlog=0) == 1
    assert scaler.shrink_at() == math.inf


@given(
    st.integers(1, 5),
    st.integers(0, 10),
    st.lists(st.tuples(st.floats(0, 100), st.integers(0, 20), st.integers(0, 50))),
)
def test_scaler_target_stays_within_the_range(low, extra, steps):
    concurrency = Concurrency(low, low + extra)
    scaler = Scaler(concurrency, idle_after=5, now=0)
    now = 0.0
    for delta, running, backlog in steps:
        now += delta
        assert low <= scaler.observe(now, running, backlog) <= low + extra


class Holder:
    def __init__(self) -> None:
        self.revoked: list[tuple[str, int, str]] = []

    def revoke(self, task_id: str, epoch: int, reason: str) -> None:
        self.revoked.append((task_id, epoch, reason))


def test_registry_lists_workers_and_routes_revocations_by_epoch():
    registry, holder = WorkerRegistry(clock=lambda: 1000.0), Holder()
    local = registry.join("n1/local/q", "local", ["q"], 4, holder)
    http = registry.join("h1", "http", ["q"], 2)
    local.started("t1", 3)
    http.started("t2", 1)
    assert registry.workers() == [
        WorkerInfo("h1", "http", ("q",), 2, ("t2",), 1000.0),
        WorkerInfo("n1/local/q", "local", ("q",), 4, ("t1",), None),
    ]
    assert not registry.revoke("t1", 2, "timeout")  # not the epoch it holds
    assert registry.revoke("t1", 3, "timeout")
    assert holder.revoked == [("t1", 3, "timeout")]
    assert registry.revoke("t2", 1, "canceled")  # an HTTP worker learns of it from a 409
    assert registry.holder_of("t2") is None
    local.leave()
    assert [w.name for w in registry.workers()] == ["h1"]
    assert registry.holder_of("t1") is None


def test_a_re_lease_elsewhere_is_not_undone_by_the_old_holder():
    registry = WorkerRegistry()
    old, new = registry.join("a", "stream", ["q"], 1), registry.join("b", "stream", ["q"], 1)
    old.started("t1", 1)
    new.started("t1", 2)
    old.finished("t1")
    assert registry.holder_of("t1") == "b"


def test_a_worker_is_heard_from_when_it_joins_and_whenever_it_speaks():
    # Given a registry on a clock we move, a stream worker and a local executor joining at 100
    now = [100.0]
    registry = WorkerRegistry(clock=lambda: now[0])
    stream = registry.join("w1", "stream", ["q"], 8)
    local = registry.join("n1/local/q", "local", ["q"], 4)
    joined = stream.info().last_seen
    # When 30 s pass and the stream worker says something
    now[0] = 130.0
    stream.heard()
    # Expect it last heard at 130 (joined at 100); the local executor, inside the node, never
    assert (joined, stream.info().last_seen) == (100.0, 130.0)
    assert local.info().last_seen is None
