"""The PostgreSQL store's task table, as rows made from a round's results (its projection).

Theory of operation: the shared store applies a round's commands, then hands their results
(the scheduler's ``Outcome``s) here; every task a result changed (its ``events``) becomes one
row of ``taskd_tasks`` as the task stands after the round, or a deletion when the scheduler no
longer holds it. The store writes the rows in the same transaction as the commands
(docs/stores.md documents the table), so the table is never ahead of or behind the log. Only
tasks that changed are written: a round of 100 submits writes 100 rows. ``all_rows`` is every
task's row, for the store to replace the table with when it rebuilds a lost log from memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from taskd.queue.commands import Outcome
from taskd.queue.scheduler import Scheduler
from taskd.queue.task import Task
from taskd.store.shared.backend import Row


def projection(scheduler: Callable[[], Scheduler]) -> Callable[[Sequence[object]], list[Row]]:
    """The projection for a node whose scheduler is ``scheduler()`` (it is replaced on a
    snapshot restore, so it is looked up for every round)."""

    def rows(results: Sequence[object]) -> list[Row]:
        current = scheduler()
        changed: dict[str, None] = {}
        for result in results:
            if isinstance(result, Outcome):
                for event in result.events:
                    changed[event.task_id] = None
                for task_id in (*result.evicted, *result.forgotten):  # gone: rows deleted
                    changed[task_id] = None
        out: list[Row] = []
        for task_id in changed:
            task = current.get(task_id)
            out.append({"id": task_id, "deleted": True} if task is None else _row(task))
        return out

    return rows


def all_rows(scheduler: Callable[[], Scheduler]) -> Callable[[], list[Row]]:
    """Every task's row, as the scheduler holds it now."""
    return lambda: [_row(task) for task in scheduler().tasks()]


def _row(task: Task) -> Row:
    return {
        "id": task.id,
        "queue": task.queue,
        "name": task.name,
        "state": task.state.value,
        "priority": task.priority,
        "attempt": task.attempt,
        "created_at": task.created_at or None,
        "started_at": task.started_at or None,
        "finished_at": task.finished_at or None,
        "error": task.error or None,
        "labels": dict(task.labels),
    }
