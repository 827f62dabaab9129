"""Per-queue bookkeeping: the ready heap, counts by state and priority, the paused flag.

Theory of operation: a ``QueueIndex`` owns, for one queue, a binary heap of its runnable
(QUEUED) tasks keyed ``(-priority, seq)``: the smallest key is the highest priority, and among
equal priorities the earliest submitted, which is exactly the hand-out order design.md §2
promises. Entries are deleted lazily: a task that leaves QUEUED (canceled, say) stays in the
heap and is skipped when popped; ``in_heap`` remembers which ids have an entry so a task that
comes back to QUEUED is not pushed twice (its key never changes). The heap is rebuilt when
stale entries outnumber live ones, which bounds its size.

The index never decides anything: the scheduler calls ``count``/``push`` on every state change
and ``pop`` when leasing, and supplies the predicate telling live entries from stale ones.
Counts are kept incrementally so stats are O(1).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from taskd.queue.commands import State

TERMINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELED)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A read-only view of one queue. ``by_priority`` counts QUEUED tasks (keys 0..9)."""

    name: str
    paused: bool
    by_state: dict[State, int]
    by_priority: dict[int, int]


class QueueIndex:
    __slots__ = ("by_priority", "by_state", "heap", "in_heap", "name", "paused")

    def __init__(self, name: str) -> None:
        self.name = name
        self.paused = False
        self.heap: list[tuple[int, int, str]] = []
        self.in_heap: set[str] = set()
        self.by_state: dict[State, int] = dict.fromkeys(State, 0)
        self.by_priority: list[int] = [0] * 10  # QUEUED tasks per priority

    # -- counts ----------------------------------------------------------------------------

    def total(self) -> int:
        return sum(self.by_state.values())

    def depth(self) -> int:
        """Non-terminal tasks: what ``max_queue_depth`` limits."""
        by_state = self.by_state
        return (
            by_state[State.PENDING]
            + by_state[State.BLOCKED]
            + by_state[State.QUEUED]
            + by_state[State.RUNNING]
        )

    def runnable(self) -> int:
        return 0 if self.paused else self.by_state[State.QUEUED]

    def stats(self) -> QueueStats:
        return QueueStats(
            name=self.name,
            paused=self.paused,
            by_state=dict(self.by_state),
            by_priority=dict(enumerate(self.by_priority)),
        )

    # -- the ready heap --------------------------------------------------------------------

    def push(self, priority: int, seq: int, task_id: str) -> None:
        if task_id not in self.in_heap:
            self.in_heap.add(task_id)
            heapq.heappush(self.heap, (-priority, seq, task_id))

    def pop(self, live: Callable[[str], bool]) -> str | None:
        """The next live entry's id (removed from the heap), or None when none is left."""
        heap = self.heap
        while heap:
            task_id = heapq.heappop(heap)[2]
            self.in_heap.discard(task_id)
            if live(task_id):
                return task_id
        return None

    def compact(self, live: Callable[[str], bool]) -> None:
        """Drop stale entries once they dominate (keeps memory proportional to QUEUED tasks)."""
        if len(self.heap) <= 2 * self.by_state[State.QUEUED] + 64:
            return
        self.heap = [entry for entry in self.heap if live(entry[2])]
        heapq.heapify(self.heap)
        self.in_heap = {entry[2] for entry in self.heap}
