"""The event stream's hub: subscribers, the 100 ms cut of transitions, stats, worker and
cluster changes, and the slow-client rule (docs/monitor.md is the protocol).

Theory of operation: sans-I/O. ``StreamHub`` is driven by ``pump(mono, wall)``, which any
connection calls whenever ``next_due`` passes (each connection's ticker does; the first to
arrive does the work, the others find nothing due), so the hub needs no task of its own and
costs nothing while nobody watches. On each due moment it:

1. every ``cut`` (100 ms): takes the state changes the ``StreamTracker`` buffered, and for
   each distinct filter among the subscribers builds one ``transitions`` message (all the
   matching changes, or a uniform sample of ``SAMPLE`` of them, in order, with the rest in
   ``dropped``), shared by every subscriber with that filter; a message is built only when
   something matched. It also offers ``workers`` and ``cluster`` when a worker joined or left
   or the cluster's roles, term, leader or reachability changed;
2. every ``interval`` (1 s): offers one ``stats`` message (every queue, exact counts since the
   previous one), and ``workers``/``cluster`` again if anything in them changed (running
   tasks, replication indexes), so a page stays current without polling;
3. closes, with 1013 and a ``bye``, every subscriber whose pending send has waited
   ``slow_after`` seconds for its client to read.

Messages go into each subscriber's ``Outbox``, which keeps at most one per kind: the node's
memory per subscriber is bounded however slow the client. Costs at 10,000 transitions/s: the
tracker's per-change counters, plus per cut one filter pass, one sample of 200 and one
encoding per distinct filter, whatever the number of subscribers.

``mono`` is a monotonic clock (cuts, intervals, slowness); ``wall`` the epoch time shown in
``at`` and used for the last minute of latencies.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from taskd.queue.task import Task
from taskd.web import messages
from taskd.web.filters import TransitionFilter
from taskd.web.messages import SAMPLE, Transitions, transition_json
from taskd.web.outbox import GOING_AWAY, TRY_AGAIN_LATER, Outbox
from taskd.web.tracker import Batch, StreamTracker


@dataclass(frozen=True, slots=True)
class StreamConfig:
    interval: float = 1.0  # seconds between stats messages
    cut: float = 0.1  # seconds between transitions messages
    slow_after: float = 2.0  # seconds a send may wait for the client (2 * interval)
    max_queues: int = 1000  # queues per snapshot/stats message: the deepest ones

    def validate(self) -> None:
        if not 0 < self.cut <= self.interval:
            raise ValueError("need 0 < cut <= interval")
        if self.slow_after <= 0 or self.max_queues < 1:
            raise ValueError("slow_after must be > 0 and max_queues >= 1")


class Picture(Protocol):
    """What the node shows: the JSON views of ``GET /api/v1/...``."""

    def node(self) -> dict[str, Any]: ...  # {"id", "role", "version"}

    def queues(self, wall: float) -> list[dict[str, Any]]: ...  # by name, with "latency"

    def workers(self) -> list[dict[str, Any]]: ...

    def cluster(self) -> dict[str, Any]: ...

    def task(self, task_id: str) -> Task | None: ...


class Subscriber:
    __slots__ = ("filter", "outbox")

    def __init__(self, filter: TransitionFilter, outbox: Outbox) -> None:
        self.filter = filter
        self.outbox = outbox


def _cluster_key(cluster: dict[str, Any]) -> tuple[Any, ...]:
    members = tuple(
        (m.get("address"), m.get("role"), m.get("reachable")) for m in cluster.get("members", ())
    )
    return (cluster.get("role"), cluster.get("term"), cluster.get("leader"), members)


def _workers_key(workers: list[dict[str, Any]]) -> frozenset[tuple[Any, ...]]:
    return frozenset(
        (w.get("worker"), w.get("kind"), tuple(w.get("queues", ())), w.get("capacity"))
        for w in workers
    )


class StreamHub:
    def __init__(
        self,
        tracker: StreamTracker,
        picture: Picture,
        config: StreamConfig = StreamConfig(),  # frozen
        rng: random.Random | None = None,
    ) -> None:
        config.validate()
        self.tracker = tracker
        self.picture = picture
        self.config = config
        self._rng = rng or random.Random()
        self.subscribers: set[Subscriber] = set()
        self.closing: tuple[int, str] | None = None
        self._next_cut = 0.0
        self._next_stats = 0.0
        self._last_stats_at = 0.0
        self._counts = (0, 0, 0)  # tracker totals at the previous stats
        self._workers: list[dict[str, Any]] = []
        self._cluster: dict[str, Any] = {}
        self.built = 0  # transitions messages built (one per distinct filter per cut)

    # ---- subscribers -------------------------------------------------------------------

    def subscribe(
        self,
        filter: TransitionFilter,
        mono: float,
        wall: float,
        notify: Callable[[], None] = lambda: None,
    ) -> Subscriber:
        """A new subscriber, its snapshot already in its outbox (or, while the node shuts
        down, its bye)."""
        sub = Subscriber(filter, Outbox(self.config.slow_after, self._rng, notify))
        if self.closing is not None:
            sub.outbox.close(*self.closing)
            return sub
        if not self.subscribers:
            self._start(mono)
        self.subscribers.add(sub)
        sub.outbox.offer(self._snapshot(sub.filter, wall))
        return sub

    def resubscribe(self, sub: Subscriber, filter: TransitionFilter, wall: float) -> None:
        """Replace ``sub``'s filter; the answer is a fresh snapshot."""
        sub.filter = filter
        sub.outbox.offer(self._snapshot(filter, wall))

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers:
            self.tracker.buffering = False
            self.tracker.take()

    def close_all(self, code: int = GOING_AWAY, reason: str = "the node is shutting down") -> None:
        """Send every subscriber, and any that arrives from now on, a bye; then close."""
        self.closing = (code, reason)
        for sub in self.subscribers:
            sub.outbox.close(code, reason)

    def _start(self, mono: float) -> None:
        tracker = self.tracker
        tracker.take()  # changes from before anyone watched are not news
        tracker.buffering = True
        self._next_cut = mono + self.config.cut
        self._next_stats = mono + self.config.interval
        self._last_stats_at = mono
        self._counts = (tracker.transitions, tracker.submitted, tracker.finished)
        self._workers = self.picture.workers()
        self._cluster = self.picture.cluster()

    # ---- the pump ----------------------------------------------------------------------

    def next_due(self) -> float:
        return min(self._next_cut, self._next_stats)

    def pump(self, mono: float, wall: float) -> None:
        if not self.subscribers:
            return
        if mono >= self._next_cut:
            self._next_cut = _advance(self._next_cut, self.config.cut, mono)
            self._cut()
            self._changes(every=False)
        if mono >= self._next_stats:
            self._next_stats = _advance(self._next_stats, self.config.interval, mono)
            self._stats(mono, wall)
            self._changes(every=True)
        for sub in self.subscribers:
            if sub.outbox.too_slow(mono):
                sub.outbox.close(
                    TRY_AGAIN_LATER,
                    f"too slow: a message waited {self.config.slow_after:g} s for this client "
                    "to read; reconnect for a fresh snapshot",
                )

    def _cut(self) -> None:
        batches, overflow = self.tracker.take()
        if not batches and not overflow:
            return
        groups: dict[TransitionFilter, list[Subscriber]] = {}
        for sub in self.subscribers:
            groups.setdefault(sub.filter, []).append(sub)
        for filter, subs in groups.items():
            found = self._sample(batches, filter)
            if found is None and not overflow:
                continue
            message = found or Transitions([], 0)
            message.dropped += overflow
            self.built += 1
            for sub in subs:
                sub.outbox.offer(message)

    def _sample(self, batches: list[Batch], filter: TransitionFilter) -> Transitions | None:
        rng, task = self._rng, self.picture.task
        if filter.everything:
            total = sum(len(events) for _, events in batches)
            if not total:
                return None
            if total <= SAMPLE:
                chosen = [(at, ev) for at, events in batches for ev in events]
            else:
                chosen = _pick(batches, sorted(rng.sample(range(total), SAMPLE)))
        else:
            wants = filter.wants
            matched = [(at, ev) for at, events in batches for ev in events if wants(ev)]
            total = len(matched)
            if not total:
                return None
            if total <= SAMPLE:
                chosen = matched
            else:
                chosen = [matched[i] for i in sorted(rng.sample(range(total), SAMPLE))]
        events = [transition_json(ev, at, task(ev.task_id)) for at, ev in chosen]
        return Transitions(events, total - len(events))

    def _changes(self, *, every: bool) -> None:
        """Offer ``workers``/``cluster`` when they changed: membership and roles at every cut,
        anything at all (running tasks, indexes) once per interval."""
        workers, cluster = self.picture.workers(), self.picture.cluster()
        if _workers_key(workers) != _workers_key(self._workers) or (
            every and workers != self._workers
        ):
            self._workers = workers
            self._offer(messages.workers(workers))
        if _cluster_key(cluster) != _cluster_key(self._cluster) or (
            every and cluster != self._cluster
        ):
            self._cluster = cluster
            self._offer(messages.cluster(cluster))

    def _stats(self, mono: float, wall: float) -> None:
        tracker = self.tracker
        now = (tracker.transitions, tracker.submitted, tracker.finished)
        before, self._counts = self._counts, now
        seconds, self._last_stats_at = mono - self._last_stats_at, mono
        queues, omitted = self._queues(wall)
        self._offer(
            messages.stats(
                at=wall,
                queues=queues,
                queues_omitted=omitted,
                seconds=seconds,
                transitions=now[0] - before[0],
                submitted=now[1] - before[1],
                finished=now[2] - before[2],
            )
        )
        tracker.forget_idle(wall)

    def _offer(self, message: messages.Message) -> None:
        for sub in self.subscribers:
            sub.outbox.offer(message)

    # ---- pictures ----------------------------------------------------------------------

    def _queues(self, wall: float) -> tuple[list[dict[str, Any]], int]:
        """Every queue, or the ``max_queues`` deepest ones (by name) and how many were left."""
        queues = self.picture.queues(wall)
        limit = self.config.max_queues
        if len(queues) <= limit:
            return queues, 0
        deepest = sorted(queues, key=lambda q: -int(q["depth"]))[:limit]
        return sorted(deepest, key=lambda q: str(q["name"])), len(queues) - limit

    def _snapshot(self, filter: TransitionFilter, wall: float) -> messages.Message:
        queues, omitted = self._queues(wall)
        return messages.snapshot(
            at=wall,
            node=self.picture.node(),
            queues=queues,
            queues_omitted=omitted,
            workers=self.picture.workers(),
            cluster=self.picture.cluster(),
            interval_ms=round(self.config.interval * 1000),
            subscription=filter.to_json(),
        )


def _advance(due: float, step: float, mono: float) -> float:
    """The next due moment after ``mono`` on the grid ``due + k * step`` (late pumps skip)."""
    due += step
    if due <= mono:
        due = mono + step
    return due


def _pick(batches: list[Batch], indexes: list[int]) -> list[tuple[float, Any]]:
    """The changes at the sorted positions ``indexes`` of the batches laid end to end."""
    chosen: list[tuple[float, Any]] = []
    offset, i, n = 0, 0, len(indexes)
    for at, events in batches:
        end = offset + len(events)
        while i < n and indexes[i] < end:
            chosen.append((at, events[indexes[i] - offset]))
            i += 1
        if i == n:
            break
        offset = end
    return chosen
