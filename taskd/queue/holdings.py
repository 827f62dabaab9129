"""What the scheduler holds in memory, counted incrementally, and which finished task goes first.

Theory of operation: the node-wide bounds (``SchedulerConfig.max_tasks`` and ``max_bytes``,
changed through the log by ``SetConfig`` and kept in snapshots) limit every task the scheduler
holds, finished ones included, because finished tasks kept for
``retention`` occupy memory just like unfinished ones. A task's *size* (``task_size``) is the
bytes of its variable-length fields: id, name, payload, idempotency key, labels, resolved
dependency ids, result and error (characters of a ``str`` count as bytes; CPython stores ASCII
at one byte each). The fixed per-task cost (objects, indexes: about 1 KiB) is what
``max_tasks`` bounds. ``Holdings`` keeps the totals for all tasks and for finished ones, O(1)
per change: the scheduler calls ``add``/``remove`` when a task appears or is forgotten and
``moved`` after every state change (which is also when ``result`` and ``error`` change).

The rule the scheduler applies with these counts (``eviction``): a submit that the unfinished
tasks alone (plus the batch) would push past a bound is refused whole (``NODE_FULL``); else the
oldest finished tasks are evicted early — before their retention ends — until the node is
back within its bounds. Results and errors of running tasks are never refused (their size is
bounded at the API by ``max_payload``); they may push the bytes past the bound, which evicts
finished tasks too. "Oldest" is the smallest ``(finished_at, seq)``: a pure function of the
state, so a replica restored from a snapshot evicts exactly what the original evicts.

``heap`` holds ``(finished_at, seq, id)`` entries, deleted lazily: an entry is live while its
task is held, terminal and still has that ``finished_at``. Stale entries are dropped once they
outnumber live ones, which keeps the heap proportional to the finished tasks.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from taskd.queue.commands import TaskSpec
from taskd.queue.task import Task

__all__ = ["HeldCounts", "Holdings", "spec_size", "task_size"]


@dataclass(frozen=True, slots=True)
class HeldCounts:
    """Tasks and bytes held (finished ones included) against the node-wide bounds."""

    tasks: int
    bytes: int
    finished_tasks: int
    finished_bytes: int
    max_tasks: int
    max_bytes: int


def task_size(task: Task) -> int:
    """The bytes of ``task``'s variable-length fields (what ``max_bytes`` bounds)."""
    size = len(task.id) + len(task.name) + len(task.payload) + len(task.idempotency_key)
    size += len(task.error)
    if task.result is not None:
        size += len(task.result)
    if task.labels:
        for key, value in task.labels.items():
            size += len(key) + len(value)
    for dep in task.depends_on:
        size += len(dep)
    return size


def spec_size(spec: TaskSpec, task_id: str, depends_on: tuple[str, ...], error: str) -> int:
    """``task_size`` of the task ``spec`` will become, before it exists."""
    size = len(task_id) + len(spec.name) + len(spec.payload) + len(spec.idempotency_key)
    size += len(error)
    for key, value in spec.labels:
        size += len(key) + len(value)
    for dep in depends_on:
        size += len(dep)
    return size


class Holdings:
    __slots__ = ("_held", "bytes", "finished_bytes", "finished_tasks", "heap", "tasks")

    def __init__(self, held: Mapping[str, Task]) -> None:
        self._held = held  # the scheduler's task table, to tell live heap entries from stale
        self.tasks = 0
        self.bytes = 0
        self.finished_tasks = 0
        self.finished_bytes = 0
        self.heap: list[tuple[float, int, str]] = []

    @property
    def unfinished_tasks(self) -> int:
        return self.tasks - self.finished_tasks

    @property
    def unfinished_bytes(self) -> int:
        return self.bytes - self.finished_bytes

    def add(self, task: Task) -> None:
        """A task appeared (created or restored); sets ``task.size``."""
        size = task.size = task_size(task)
        self.tasks += 1
        self.bytes += size
        if task.state.terminal:
            self._finished(task, size)

    def finished_new(self, task: Task) -> None:
        """A task created finished (canceled at submit): the submit hot path counts ``tasks``
        and ``bytes`` of a whole batch itself, and calls this for the finished part only."""
        self._finished(task, task.size)

    def remove(self, task: Task) -> None:
        """A task was forgotten (it is terminal: only terminal tasks are forgotten)."""
        self.tasks -= 1
        self.bytes -= task.size
        if task.state.terminal:
            self.finished_tasks -= 1
            self.finished_bytes -= task.size
        self._compact_if_stale()

    def moved(self, task: Task, was_terminal: bool) -> None:
        """``task`` changed state (and maybe its result or error): settle its size and bucket."""
        old = task.size
        new = task.size = task_size(task)
        self.bytes += new - old
        if was_terminal:
            self.finished_tasks -= 1
            self.finished_bytes -= old
        if task.state.terminal:
            self._finished(task, new)
        elif was_terminal:
            self._compact_if_stale()

    def completed(self, task: Task, result_size: int) -> None:
        """The hot path of a completion: RUNNING -> SUCCEEDED with a result of this size."""
        task.size += result_size
        self.bytes += result_size
        self._finished(task, task.size)

    def _finished(self, task: Task, size: int) -> None:
        self.finished_tasks += 1
        self.finished_bytes += size
        heapq.heappush(self.heap, (task.finished_at, task.seq, task.id))

    def live(self, entry: tuple[float, int, str]) -> Task | None:
        """The task a heap entry stands for, or None when the entry is stale."""
        task = self._held.get(entry[2])
        if task is None or not task.state.terminal or task.finished_at != entry[0]:
            return None
        return task

    def _compact_if_stale(self) -> None:
        """Drop stale heap entries once they dominate (no logical change)."""
        if len(self.heap) <= 2 * self.finished_tasks + 64:
            return
        seen: set[str] = set()
        live: list[tuple[float, int, str]] = []
        for entry in self.heap:
            if entry[2] not in seen and self.live(entry) is not None:
                seen.add(entry[2])
                live.append(entry)
        heapq.heapify(live)
        self.heap = live
