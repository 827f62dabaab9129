"""Prometheus metrics of one node, exposed at ``GET /metrics``.

Counters are bumped from the applied-command listener (so they count committed work, replay
included); queue depths and the node-wide holdings (tasks and bytes held against
``--max-tasks`` / ``--max-memory``) are read from the scheduler when scraped, so they cost
nothing between scrapes. Finished tasks evicted before their retention ended are counted in
``taskd_tasks_evicted_total`` and logged, at most one line per ``_EVICTION_LOG_EVERY`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from taskd.queue.commands import Command, Outcome, State
from taskd.queue.scheduler import Scheduler
from taskd.store.seam import StatusView

log = logging.getLogger("taskd.node")
_EVICTION_LOG_EVERY = 10.0  # seconds between eviction log lines (a flood evicts per submit)


class _QueueCollector(Collector):
    def __init__(self, scheduler: Callable[[], Scheduler]) -> None:
        self._scheduler = scheduler

    def collect(self) -> Iterator[GaugeMetricFamily]:
        scheduler = self._scheduler()
        depth = GaugeMetricFamily(
            "taskd_queue_tasks", "Tasks per queue and state", labels=["queue", "state"]
        )
        paused = GaugeMetricFamily(
            "taskd_queue_paused", "1 when the queue is paused", labels=["queue"]
        )
        for name in scheduler.queue_names():
            stats = scheduler.queue_stats(name)
            for state, count in stats.by_state.items():
                depth.add_metric([name, state.value], count)
            paused.add_metric([name], 1 if stats.paused else 0)
        tasks = GaugeMetricFamily(
            "taskd_tasks_held", "Tasks held in memory, terminal ones included"
        )
        tasks.add_metric([], len(scheduler))
        held = scheduler.holdings()
        yield depth
        yield paused
        yield tasks
        for name, help_text, value in (
            ("taskd_tasks_max", "Node-wide bound on tasks held (--max-tasks)", held.max_tasks),
            (
                "taskd_tasks_finished_held",
                "Finished tasks held for --retention (evicted first at a bound)",
                held.finished_tasks,
            ),
            (
                "taskd_held_bytes",
                "Bytes of payloads, results, errors, labels and ids held",
                held.bytes,
            ),
            (
                "taskd_held_bytes_finished",
                "The part of taskd_held_bytes that finished tasks hold",
                held.finished_bytes,
            ),
            (
                "taskd_held_bytes_max",
                "Node-wide bound on held bytes (--max-memory)",
                held.max_bytes,
            ),
        ):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], value)
            yield gauge


# (name, help, labels, [(label values, value), ...]): a gauge the node reads when scraped
NodeGauge = tuple[str, str, list[str], list[tuple[list[str], float]]]


class _NodeCollector(Collector):
    """Gauges of the node's own parts (the store's writability, the listeners' connections),
    read from a callable the node supplies, so this module depends on none of them."""

    def __init__(self, gauges: Callable[[], Iterable[NodeGauge]]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, help_text, labels, samples in self._gauges():
            gauge = GaugeMetricFamily(name, help_text, labels=labels)
            for values, value in samples:
                gauge.add_metric(values, value)
            yield gauge


class NodeMetrics:
    def __init__(
        self,
        scheduler: Callable[[], Scheduler],
        node_gauges: Callable[[], Iterable[NodeGauge]] = tuple,
    ) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "taskd_commands_total",
            "Commands applied, by kind and result",
            ["kind", "result"],
            registry=self.registry,
        )
        self.transitions = Counter(
            "taskd_task_transitions_total",
            "Task state changes, by queue and new state",
            ["queue", "state"],
            registry=self.registry,
        )
        self.propose_seconds = Histogram(
            "taskd_propose_seconds",
            "Time from proposing a command to its durable application",
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0),
        )
        self.evicted = Counter(
            "taskd_tasks_evicted",
            "Finished tasks forgotten before their retention ended, to stay within the bounds",
            registry=self.registry,
        )
        self._evicted_unlogged = 0
        self._eviction_logged_at = -_EVICTION_LOG_EVERY
        self.registry.register(_QueueCollector(scheduler))
        self.registry.register(_NodeCollector(node_gauges))
        self._command_children: dict[tuple[type, str], Any] = {}
        self._transition_children: dict[tuple[str, State], Any] = {}

    def on_applied(self, command: Command, outcome: Outcome) -> None:
        # Children are cached: ``labels()`` costs microseconds, and this runs per command.
        result = "ok" if outcome.rejection is None else outcome.rejection.code.value
        key = (type(command), result)
        counter = self._command_children.get(key)
        if counter is None:
            counter = self.commands.labels(type(command).__name__.lower(), result)
            self._command_children[key] = counter
        counter.inc()
        children = self._transition_children
        for event in outcome.events:
            tkey = (event.queue, event.current)
            child = children.get(tkey)
            if child is None:
                child = children[tkey] = self.transitions.labels(event.queue, event.current.value)
            child.inc()
        if outcome.evicted:
            self._note_evicted(len(outcome.evicted))

    def _note_evicted(self, count: int) -> None:
        self.evicted.inc(count)
        self._evicted_unlogged += count
        now = time.monotonic()
        if now - self._eviction_logged_at >= _EVICTION_LOG_EVERY:
            log.warning(
                "the node reached --max-tasks or --max-memory: evicted %d finished tasks before "
                "their --retention ended (oldest first). Shorten --retention, raise the limits, "
                "or read results sooner",
                self._evicted_unlogged,
            )
            self._evicted_unlogged = 0
            self._eviction_logged_at = now

    def render(self) -> bytes:
        return generate_latest(self.registry)


def cluster_gauges(status: StatusView) -> list[NodeGauge]:
    """The cluster as this node sees it, for alerts: no leader, leadership churning (the
    term), a member falling behind (its index against the commit index)."""
    members = [([m.id, m.role], float(m.match_index)) for m in status.members]
    return [
        (
            "taskd_cluster_leader",
            "1 when this node leads",
            [],
            [([], float(status.role == "leader"))],
        ),
        (
            "taskd_cluster_leader_known",
            "1 when this node knows a leader (0: an election or takeover is under way)",
            [],
            [([], float(status.leader is not None))],
        ),
        (
            "taskd_cluster_term",
            "The current term (leaderships so far)",
            [],
            [([], float(status.term))],
        ),
        (
            "taskd_cluster_commit_index",
            "The log's durable end, as this node knows it",
            [],
            [([], float(status.commit_index))],
        ),
        (
            "taskd_cluster_applied_index",
            "How far this node applied the log",
            [],
            [([], float(status.applied_index))],
        ),
        (
            "taskd_cluster_member_index",
            "Each member's log index as this node knows it (the leader's view on Raft; each "
            "node's own report on a shared store); members up, by address and role",
            ["member", "role"],
            members,
        ),
    ]
