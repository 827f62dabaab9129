"""What the event stream learns from every applied command: counts, latencies, transitions.

Theory of operation: ``StreamTracker.on_applied`` is a listener of the node's state machine,
called synchronously for every committed command on every member (so a follower's stream is
fed by the same log as the leader's). It must stay cheap at 10,000 transitions/s, so per state
change it only bumps counters, adds a latency sample when a task starts or ends an attempt,
and, while someone watches, keeps a reference to the command's list of changes (one append
per command, not per change) until the stream's next 100 ms cut takes them (``take``).

- Counts (``transitions``, ``submitted``, ``finished``) are totals since ``start``; the stream
  turns them into exact per-interval figures by difference.
- Pickup latency of a queue: from the moment a task became runnable to its lease; run
  latency: from the lease to the end of the attempt (success, failure, timeout, loss). Both
  are measured in the leader's time stamped into the commands, so every member reports the
  same. When a task became runnable is in its record for the usual paths (submitted runnable:
  ``created_at``; after a delay or a retry's backoff: ``run_at``); for the others (its
  dependencies succeeded, a ``Retry`` of a finished task) the tracker notes the time, for at
  most ``MAX_NOTED`` tasks at once (beyond that, the oldest notes are forgotten and those
  tasks' pickups count from ``max(created_at, run_at)``).
- The transition buffer holds at most ``MAX_BUFFERED`` changes per cut; the excess is counted
  in ``overflow`` (reported as dropped).

Replay at start-up is not counted: ``start`` is called once the store serves.
"""

from __future__ import annotations

from collections.abc import Callable

from taskd.queue.commands import TERMINAL, Command, Outcome, State, StateChanged
from taskd.queue.task import Task
from taskd.web.latency import LatencyWindow

MAX_BUFFERED = 100_000  # state changes kept between two cuts (100 ms): 1M/s, far beyond a node
MAX_NOTED = 100_000  # tasks whose "runnable since" the tracker notes at once

_QUEUED, _RUNNING, _PENDING = State.QUEUED, State.RUNNING, State.PENDING

Batch = tuple[float, list[StateChanged]]  # (leader time of the command, its state changes)


class QueueLatency:
    __slots__ = ("pickup", "run")

    def __init__(self) -> None:
        self.pickup = LatencyWindow()
        self.run = LatencyWindow()

    def view(self, now: float) -> dict[str, dict[str, float | None]]:
        return {"pickup_ms": self.pickup.percentiles(now), "run_ms": self.run.percentiles(now)}


class StreamTracker:
    def __init__(self, task: Callable[[str], Task | None], now: Callable[[], float]) -> None:
        """``task`` finds a task by id in the applied state; ``now`` is the leader time of the
        command being applied."""
        self._task = task
        self._now = now
        self.enabled = False
        self.buffering = False  # set while the stream has subscribers
        self.transitions = 0
        self.submitted = 0
        self.finished = 0
        self.overflow = 0  # changes not buffered since the last ``take`` (over MAX_BUFFERED)
        self.latest = 0.0  # leader time of the newest command counted
        self._buffer: list[Batch] = []
        self._buffered = 0
        self._latency: dict[str, QueueLatency] = {}
        self._runnable_since: dict[str, float] = {}

    def start(self) -> None:
        """Count from now on (called once recovery replayed the log)."""
        self.enabled = True

    # ---- the listener ------------------------------------------------------------------

    def on_applied(self, command: Command, outcome: Outcome) -> None:
        events = outcome.events
        if not events or not self.enabled:
            return
        now = self._now()
        if now > self.latest:
            self.latest = now
        n = len(events)
        self.transitions += n
        if self.buffering:
            if self._buffered + n <= MAX_BUFFERED:
                self._buffer.append((now, events))
                self._buffered += n
            else:
                self.overflow += n
        for event in events:
            previous, current = event.previous, event.current
            if previous is None:
                self.submitted += 1
            if current in TERMINAL:
                self.finished += 1
            if current is _RUNNING:
                self._picked_up(event, now)
            elif previous is _RUNNING:
                self._ran(event, now)
            elif current is _QUEUED and previous is not None and previous is not _PENDING:
                self._note_runnable(event.task_id, now)

    def _latency_of(self, queue: str) -> QueueLatency:
        found = self._latency.get(queue)
        if found is None:
            found = self._latency[queue] = QueueLatency()
        return found

    def _picked_up(self, event: StateChanged, now: float) -> None:
        since = self._runnable_since.pop(event.task_id, None)
        if since is None:
            task = self._task(event.task_id)
            if task is None:
                return
            since = max(task.created_at, task.run_at)
        self._latency_of(event.queue).pickup.add(max(0.0, now - since) * 1000.0, now)

    def _ran(self, event: StateChanged, now: float) -> None:
        task = self._task(event.task_id)
        if task is None or not task.started_at:
            return
        self._latency_of(event.queue).run.add(max(0.0, now - task.started_at) * 1000.0, now)

    def _note_runnable(self, task_id: str, now: float) -> None:
        noted = self._runnable_since
        noted.pop(task_id, None)  # re-insert at the end: the oldest note goes first
        noted[task_id] = now
        if len(noted) > MAX_NOTED:
            del noted[next(iter(noted))]

    # ---- what the stream reads ---------------------------------------------------------

    def take(self) -> tuple[list[Batch], int]:
        """The changes buffered since the last call, and how many did not fit."""
        batches, overflow = self._buffer, self.overflow
        self._buffer, self._buffered, self.overflow = [], 0, 0
        return batches, overflow

    def latency(self, queue: str, now: float) -> dict[str, dict[str, float | None]]:
        """``{"pickup_ms": {p50, p95, p99}, "run_ms": {...}}`` of ``queue`` over the last
        minute of leader time ending at ``now`` (None values while there is no sample)."""
        found = self._latency.get(queue)
        if found is None:
            found = QueueLatency()  # not kept: a queue without samples costs nothing
        return found.view(now)

    def forget_idle(self, now: float) -> None:
        """Drop the windows of queues that had no sample in the last minute."""
        for queue in [q for q, lat in self._latency.items() if _empty(lat, now)]:
            del self._latency[queue]


def _empty(latency: QueueLatency, now: float) -> bool:
    latency.pickup.expire(now)
    latency.run.expire(now)
    return not latency.pickup.count and not latency.run.count
