"""The scheduler decides only from what was logged: ``SetConfig``, and revocation as an effect.

``SetConfig`` carries every setting that shapes a decision; these tests show a changed setting
takes effect when the command applies (and not before), that snapshots and the codec keep it,
and that a scheduler restored under other settings (another node's flags) still decides as the
log says. ``Outcome.revoked`` names exactly the leases a command took from their holders.
"""

from __future__ import annotations

from dataclasses import replace

import msgpack
import pytest

from taskd.queue import codec
from taskd.queue.backoff import backoff
from taskd.queue.commands import (
    Complete,
    Fail,
    RejectCode,
    ReleaseWorker,
    Revoked,
    SetConfig,
    SetLimits,
    State,
    TaskSpec,
    Tick,
)
from taskd.queue.scheduler import Scheduler
from taskd.queue.snapshot import SNAPSHOT_VERSION
from taskd.queue.task import SchedulerConfig
from tests.queue.sched_helpers import Harness

LOGGED = SchedulerConfig(
    retention=100.0, backoff_base=2.0, backoff_cap=4.0, max_queue_depth=3, max_tasks=50,
    max_bytes=10_000,
)  # fmt: skip


def test_set_config_round_trips_through_the_codec() -> None:
    data = codec.encode(SetConfig(LOGGED), 5.0, 0)
    assert codec.decode(data) == (SetConfig(LOGGED), 5.0, 0)
    assert msgpack.unpackb(data)[1] == 13


def test_a_config_takes_effect_when_applied_and_survives_a_snapshot() -> None:
    # Given a scheduler under the defaults, with a finished task
    h = Harness(now=0.0)
    h.submit()
    done = h.run()
    # When the log sets a shorter retention
    h.ok(SetConfig(LOGGED))
    assert h.s.config == LOGGED and h.s.limits() == (3, 50, 10_000)
    # Expect the finished task due at its new retention end (not a week later)
    assert h.s.next_deadline() == 100.0
    h.tick(at=100.0)
    assert h.s.get(done) is None
    # And expect a restore under other flags to keep the logged config
    twin = Scheduler.restore(h.s.snapshot(), SchedulerConfig(retention=5.0, max_queue_depth=9))
    assert twin.config == LOGGED
    assert twin.snapshot() == h.s.snapshot()


def test_the_logged_backoff_and_depth_decide() -> None:
    h = Harness(now=0.0)
    h.ok(SetConfig(LOGGED))
    first = h.submit()
    h.fail(h.lease_one())
    # The retry waits what the logged backoff draws, not what the defaults would
    task = h.task(first)
    logged = backoff(LOGGED.backoff_base, LOGGED.backoff_cap, 1, h.entropy, task.seq)
    default = backoff(1.0, 300.0, 1, h.entropy, task.seq)
    assert task.run_at == logged != default
    h.submit()
    h.submit()
    h.rejected(h.batch(TaskSpec()), RejectCode.QUEUE_FULL)  # logged max_queue_depth 3


@pytest.mark.parametrize(
    "change,field",
    [
        ({"retention": -1.0}, "retention"),
        ({"retention": float("inf")}, "retention"),
        ({"backoff_base": 0.0}, "backoff_base"),
        ({"backoff_cap": 0.5}, "backoff_base"),
        ({"max_tasks": 0}, "max_tasks"),
        ({"max_bytes": 1.5}, "max_bytes"),
        ({"max_queue_depth": True}, "max_queue_depth"),
    ],
)
def test_a_bad_config_is_rejected_naming_the_field(change: dict[str, object], field: str) -> None:
    h = Harness()
    h.rejected(SetConfig(replace(SchedulerConfig(), **change)), RejectCode.INVALID, field)  # type: ignore[arg-type]
    assert h.s.config == SchedulerConfig()


def test_kind_12_set_limits_still_applies_over_the_rest_of_the_config() -> None:
    h = Harness()
    h.ok(SetConfig(LOGGED))
    h.ok(SetLimits(7, 8, 9))
    assert h.s.config == replace(LOGGED, max_queue_depth=7, max_tasks=8, max_bytes=9)


def test_a_snapshot_from_the_set_limits_days_restores_its_bounds() -> None:
    old = msgpack.packb([SNAPSHOT_VERSION, 0, 0, [], [], [4, 5, 6]])
    restored = Scheduler.restore(old, SchedulerConfig(retention=9.0))
    assert restored.config == SchedulerConfig(
        retention=9.0, max_queue_depth=4, max_tasks=5, max_bytes=6
    )


# ---- revocation is an effect --------------------------------------------------------------


def test_cancel_of_a_running_task_revokes_its_lease_and_of_a_queued_one_nothing() -> None:
    h = Harness()
    h.submit()
    leased = h.lease_one()
    queued = h.submit()
    assert h.cancel(queued).revoked == ()
    assert h.cancel(leased.task_id).revoked == (Revoked(leased.task_id, leased.epoch, "canceled"),)


def test_timeouts_and_lease_expiries_revoke_with_their_reason() -> None:
    h = Harness(now=0.0)
    slow = h.submit(timeout=5.0)
    quiet = h.submit(timeout=100.0)
    a = h.lease_one(ttl=50.0)  # times out at 5
    b = h.lease_one(ttl=10.0)  # its lease expires at 10
    assert (a.task_id, b.task_id) == (slow, quiet)
    assert h.tick(at=5.0).revoked == (Revoked(slow, a.epoch, "timeout"),)
    assert h.tick(at=10.0).revoked == (Revoked(quiet, b.epoch, "lease expired"),)
    assert h.tick(at=11.0).revoked == ()


def test_a_lost_worker_has_every_lease_revoked_in_lease_order() -> None:
    h = Harness()
    for _ in range(3):
        h.submit()
    mine = h.lease(n=2, worker="w1")
    other = h.lease_one(worker="w2")
    out = h.ok(ReleaseWorker("w1"))
    assert out.revoked == tuple(Revoked(x.task_id, x.epoch, "worker lost") for x in mine)
    assert h.state(other.task_id) is State.RUNNING


def test_a_workers_own_complete_or_fail_revokes_nothing() -> None:
    h = Harness()
    h.submit()
    h.submit()
    one, two = h.lease(n=2)
    assert h.ok(Complete(one.task_id, one.epoch, b"")).revoked == ()
    assert h.ok(Fail(two.task_id, two.epoch, "x", False)).revoked == ()
    assert h.ok(Tick()).revoked == ()
