"""Eviction rules of the scheduler: what a submit may add, and which finished tasks make room.

Theory of operation (the counting itself is ``holdings``): a submit is refused whole
(``NODE_FULL``) when the unfinished tasks, the new ones and the finished tasks that must stay
would not fit in ``max_tasks`` / ``max_bytes``; otherwise, after it is applied, the oldest
finished tasks are forgotten early until the node is within its bounds again. What must stay:
the tasks a command's reply names (its caller reads them back) and, with them, their failed or
canceled dependencies. A failed or canceled task always leaves together with every task
depending on it, transitively (all canceled, by the scheduler's invariants): a task whose
dependency is gone takes that dependency for succeeded, so a dependent left behind could be
retried and run although its dependency never succeeded. Retention forgets the same groups.

A mixin of ``Scheduler``: it owns no state, only these rules over the scheduler's tables.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from heapq import heappop, heappush
from typing import TYPE_CHECKING

from taskd.queue.commands import RejectCode, Rejection, State, TaskSpec
from taskd.queue.holdings import Holdings
from taskd.queue.task import SchedulerConfig, Task
from taskd.queue.transitions import InvariantError

_SUCCEEDED, _FAILED, _CANCELED = State.SUCCEEDED, State.FAILED, State.CANCELED


class EvictionRules:
    _tasks: dict[str, Task]
    _dependents: dict[str, list[str]]
    _held: Holdings
    _config: SchedulerConfig

    if TYPE_CHECKING:

        def _forget(self, task: Task) -> None: ...

        def depth(self, queue: str) -> int: ...

    def certain_refusal(self, specs: Sequence[TaskSpec]) -> Rejection | None:
        """The rejection (``QUEUE_FULL``, then ``NODE_FULL``, in the order applying checks
        them) that a ``Submit`` of ``specs`` is certain to get if applied now, or None. The
        leader asks before proposing, so a flood of refused submits does not grow the log.
        Certain, because it counts as applying does, with payloads as a lower bound of each
        task's size. A batch with idempotency keys, dependencies or refs is left to applying
        (a keyed task may be a repeat, which adds nothing; a dependent may be canceled at
        birth, which the depth does not count; refs and dependencies have rules of their own
        that applying checks first). Applying the command still decides."""
        if any(spec.idempotency_key or spec.depends_on or spec.ref for spec in specs):
            return None
        config = self._config
        room: dict[str, int] = {}
        for i, spec in enumerate(specs):
            queue = spec.queue
            left = room.get(queue)
            if left is None:
                left = config.max_queue_depth - self.depth(queue)
            room[queue] = left - 1
            if left <= 0:  # the same words and field as applying the submit gives
                return Rejection(
                    RejectCode.QUEUE_FULL,
                    f"queue {queue!r} holds its maximum of {config.max_queue_depth} "
                    "unfinished tasks",
                    f"tasks[{i}].queue",
                )
        return self._node_full(len(specs), sum(len(spec.payload) for spec in specs), [])

    def _node_full(self, new_tasks: int, new_bytes: int, kept: list[Task]) -> Rejection | None:
        """Refuse a submit that would not fit even with every other finished task evicted."""
        held, config = self._held, self._config
        tasks = held.unfinished_tasks + new_tasks + len(kept)
        size = held.unfinished_bytes + new_bytes + sum(t.size for t in kept)
        if tasks > config.max_tasks:
            return Rejection(
                RejectCode.NODE_FULL,
                f"the node is full: it holds {held.unfinished_tasks} unfinished tasks, this "
                f"submit adds {new_tasks} and the node-wide limit is {config.max_tasks} "
                "(--max-tasks); let workers drain the queues, cancel unneeded tasks, or raise "
                "--max-tasks",
                "tasks",
            )
        if size > config.max_bytes:
            return Rejection(
                RejectCode.NODE_FULL,
                f"the node is full: unfinished tasks hold {held.unfinished_bytes} bytes of "
                f"payloads, labels and results, this submit adds {new_bytes} and the node-wide "
                f"limit is {config.max_bytes} (--max-memory); let workers drain the queues, "
                "send smaller payloads, or raise --max-memory",
                "tasks",
            )
        return None

    def _make_room(self, keep: Collection[str]) -> tuple[str, ...]:
        """Evict the oldest finished tasks (but those in ``keep``) until within the bounds.

        A failed or canceled task goes together with the tasks its ending canceled (they all
        depend on it, transitively): a task whose dependency is gone takes that dependency for
        succeeded, so a dependent left behind could be retried and run without it.
        """
        held, config = self._held, self._config
        if held.tasks <= config.max_tasks and held.bytes <= config.max_bytes:
            return ()
        evicted: list[str] = []
        spared: list[tuple[float, int, str]] = []
        heap = held.heap
        while heap and (held.tasks > config.max_tasks or held.bytes > config.max_bytes):
            entry = heappop(heap)
            task = held.live(entry)
            if task is None:
                continue
            group = [task] if task.state is _SUCCEEDED else self._doomed_with(task)
            if any(member.id in keep for member in group):
                spared.append(entry)
                continue
            for member in group:
                self._forget(member)
                evicted.append(member.id)
            heap = held.heap  # forgetting may have compacted it
        for entry in spared:
            heappush(held.heap, entry)
        return tuple(evicted)

    def _ended_ancestors(self, stack: list[str], found: dict[str, Task]) -> None:
        """Add to ``found`` the failed or canceled tasks among ``stack``'s ids, and theirs."""
        tasks = self._tasks
        while stack:
            task = tasks.get(stack.pop())
            if task is not None and task.id not in found and task.state in (_FAILED, _CANCELED):
                found[task.id] = task
                stack.extend(task.depends_on)

    def _doomed_with(self, root: Task) -> list[Task]:
        """``root`` (failed or canceled) and every task depending on it, transitively; by the
        invariants, all of them are canceled."""
        tasks, dependents = self._tasks, self._dependents
        group = [root]
        seen = {root.id}
        i = 0
        while i < len(group):
            for dependent_id in dependents.get(group[i].id, ()):
                if dependent_id not in seen:
                    seen.add(dependent_id)
                    dependent = tasks[dependent_id]
                    if dependent.state is not _CANCELED:
                        raise InvariantError(
                            f"{dependent.state.value} task {dependent_id} depends on ended "
                            f"task {group[i].id}"
                        )
                    group.append(dependent)
            i += 1
        return group
