"""The timer heap: when the next ``Tick`` has something to do.

Theory of operation: a task has at most one *due time*, a pure function of its fields
(``due_time``): a PENDING task's ``run_at``, a RUNNING task's earlier of lease expiry and
timeout, a terminal task's ``finished_at + retention``; BLOCKED and QUEUED tasks have none.
The heap holds *hints* ``(when, seq, task_id)`` with the invariant that every task with a due
time has a live hint no later than it. Hints are never removed eagerly: ``wake[task_id]``
records the task's live hint, a popped hint that is not live is dropped, and a live hint that
fires early (a heartbeat pushed the lease out, or the task moved on) is re-pushed at the real
due time. So a heartbeat costs no heap work, and a state change pushes only when it makes
the due time earlier than the live hint.

Because a Tick acts on due times computed from task fields, never on hint order, what a Tick
does depends only on the scheduler's logical state, and a restored snapshot (whose heap is
rebuilt exact) behaves identically.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from taskd.queue.commands import State
from taskd.queue.task import Task


def due_time(task: Task, retention: float) -> float | None:
    state = task.state
    if state is State.RUNNING:
        lease, timeout = task.lease_deadline, task.timeout_deadline
        return lease if lease < timeout else timeout
    if state is State.PENDING:
        return task.run_at
    if state is State.QUEUED or state is State.BLOCKED:
        return None
    return task.finished_at + retention


class Timers:
    __slots__ = ("heap", "wake")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, str]] = []
        self.wake: dict[str, float] = {}

    def schedule(self, when: float, seq: int, task_id: str) -> None:
        """Make sure a hint no later than ``when`` is live for the task."""
        current = self.wake.get(task_id)
        if current is None or when < current:
            self.wake[task_id] = when
            heapq.heappush(self.heap, (when, seq, task_id))

    def forget(self, task_id: str) -> None:
        self.wake.pop(task_id, None)

    def take_due(self, now: float, due: Callable[[str], tuple[float, int] | None]) -> list[str]:
        """Ids of every task due at ``now``, ordered by (due time, seq); their hints consumed.

        ``due(task_id)`` returns the task's (due time, seq), or None when it has none (or is
        gone). Hints that fired early are re-pushed at the task's real due time.
        """
        heap, wake = self.heap, self.wake
        fired: list[tuple[float, int, str]] = []
        while heap and heap[0][0] <= now:
            when, _, task_id = heapq.heappop(heap)
            if wake.get(task_id) != when:
                continue  # superseded hint
            del wake[task_id]
            found = due(task_id)
            if found is None:
                continue
            at, seq = found
            if at <= now:
                fired.append((at, seq, task_id))
            else:
                wake[task_id] = at
                heapq.heappush(heap, (at, seq, task_id))
        fired.sort()
        return [task_id for _, _, task_id in fired]

    def peek(self, due: Callable[[str], tuple[float, int] | None]) -> float | None:
        """The earliest real due time. Tidies stale hints off the top (no logical change)."""
        heap, wake = self.heap, self.wake
        while heap:
            when, _, task_id = heap[0]
            if wake.get(task_id) != when:
                heapq.heappop(heap)
                continue
            found = due(task_id)
            if found is None:
                heapq.heappop(heap)
                del wake[task_id]
                continue
            at, seq = found
            if at == when:
                return when
            heapq.heapreplace(heap, (at, seq, task_id))
            wake[task_id] = at
        return None
