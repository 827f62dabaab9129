"""HTTP workers appear in the registry while they keep calling, and vanish when they stop."""

from __future__ import annotations

from taskd.exec.work import WorkerRegistry, WorkItem
from taskd.node.api.http.workers import HttpWorkerTracker


def _item(task_id: str, epoch: int) -> WorkItem:
    return WorkItem(task_id, "q", "", b"", 1, epoch, 60.0, {})


def test_a_worker_is_listed_until_it_stops_calling() -> None:
    # Given an HTTP worker that leased two tasks of two queues at t=0
    now = [0.0]
    registry = WorkerRegistry()
    tracker = HttpWorkerTracker(registry, lease_ttl=30.0, clock=lambda: now[0])
    tracker.leased("w", "a", 2, [_item("t1", 1)])
    tracker.leased("w", "b", 1, [_item("t2", 2)])
    [info] = registry.workers()
    assert (info.name, info.kind, info.queues, info.capacity) == ("w", "http", ("a", "b"), 2)
    assert info.running == ("t1", "t2")
    # When it completes one at t=50, and nothing more until t=111
    now[0] = 50.0
    tracker.reported("t1")
    tracker.prune()
    assert registry.workers()[0].running == ("t2",)
    now[0] = 111.0
    tracker.prune()
    # Expect it gone after twice the lease time without a call
    assert registry.workers() == []
    assert registry.holder_of("t2") is None
