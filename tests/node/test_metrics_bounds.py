"""/metrics shows the node-wide holdings and bounds, and counts evictions (logging them)."""

from __future__ import annotations

import logging
import re

import pytest

from taskd.node.observe.metrics import NodeMetrics, cluster_gauges
from taskd.queue.commands import Complete, Lease, Submit, TaskSpec
from taskd.queue.scheduler import Scheduler
from taskd.queue.task import SchedulerConfig
from taskd.store.seam import Member, StoreStatus


def value(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


def test_holdings_bounds_and_evictions_are_exposed(caplog: pytest.LogCaptureFixture) -> None:
    # Given a scheduler with small bounds and metrics listening to what it applies
    scheduler = Scheduler(SchedulerConfig(max_tasks=3, max_bytes=1000))
    metrics = NodeMetrics(lambda: scheduler)

    def apply(command: Submit | Lease | Complete) -> None:
        metrics.on_applied(command, scheduler.apply(command, 1000.0, 1))

    apply(Submit((TaskSpec(payload=b"x" * 10),), ("A0000001",)))
    apply(Lease("default", "w", 1, 30.0))
    task = scheduler.get("A0000001")
    assert task is not None
    apply(Complete("A0000001", task.epoch, b"r" * 5))
    apply(Submit((TaskSpec(), TaskSpec()), ("A0000002", "A0000003")))
    text = metrics.render().decode()
    assert value(text, "taskd_tasks_held") == 3
    assert value(text, "taskd_tasks_max") == 3
    assert value(text, "taskd_tasks_finished_held") == 1
    assert value(text, "taskd_held_bytes") == 8 + 10 + 5 + 8 + 8
    assert value(text, "taskd_held_bytes_finished") == 8 + 10 + 5
    assert value(text, "taskd_held_bytes_max") == 1000
    assert value(text, "taskd_tasks_evicted_total") == 0
    # When one more task arrives, the finished one is evicted: counted and logged once
    with caplog.at_level(logging.WARNING, logger="taskd.node"):
        apply(Submit((TaskSpec(),), ("A0000004",)))
        apply(Lease("default", "w", 1, 30.0))
        leased = scheduler.get("A0000002")
        assert leased is not None
        apply(Complete("A0000002", leased.epoch, b""))
        apply(Submit((TaskSpec(),), ("A0000005",)))
    text = metrics.render().decode()
    assert value(text, "taskd_tasks_evicted_total") == 2
    warnings = [r for r in caplog.records if "evicted" in r.getMessage()]
    assert len(warnings) == 1, "evictions are logged at most once per interval"
    assert "--retention" in warnings[0].getMessage()


def test_node_gauges_are_exposed_with_their_labels() -> None:
    # Given metrics whose node reports its store and two listeners
    def gauges() -> list[tuple[str, str, list[str], list[tuple[list[str], float]]]]:
        return [
            ("taskd_store_writable", "store", [], [([], 0.0)]),
            ("taskd_connections", "open", ["listener"], [(["gRPC"], 3.0), (["HTTP"], 1.0)]),
        ]

    metrics = NodeMetrics(lambda: Scheduler(SchedulerConfig()), gauges)
    # When scraped
    text = metrics.render().decode()
    # Expect: each gauge, read at scrape time
    assert value(text, "taskd_store_writable") == 0
    assert 'taskd_connections{listener="gRPC"} 3.0' in text
    assert 'taskd_connections{listener="HTTP"} 1.0' in text


def test_the_cluster_as_this_node_sees_it_is_exposed() -> None:
    # Given a follower that knows a leader, in term 7, one member behind
    status = StoreStatus(
        id="b:1",
        role="follower",
        term=7,
        leader="a:1",
        commit_index=40,
        applied_index=39,
        members=[Member("b:1", "follower", 39, True), Member("a:1", "leader", 40, True)],
    )
    metrics = NodeMetrics(lambda: Scheduler(SchedulerConfig()), lambda: cluster_gauges(status))
    # When scraped, expect what an alert needs: not leading, a leader known, the term, the
    # indexes, and each member's index by address and role
    text = metrics.render().decode()
    assert value(text, "taskd_cluster_leader") == 0
    assert value(text, "taskd_cluster_leader_known") == 1
    assert value(text, "taskd_cluster_term") == 7
    assert value(text, "taskd_cluster_commit_index") == 40
    assert value(text, "taskd_cluster_applied_index") == 39
    assert 'taskd_cluster_member_index{member="a:1",role="leader"} 40.0' in text
    assert 'taskd_cluster_member_index{member="b:1",role="follower"} 39.0' in text
    # and a node that knows no leader says so
    alone = StoreStatus("b:1", "candidate", 8, None, 40, 40, [])
    text = (
        NodeMetrics(lambda: Scheduler(SchedulerConfig()), lambda: cluster_gauges(alone))
        .render()
        .decode()
    )
    assert value(text, "taskd_cluster_leader_known") == 0
