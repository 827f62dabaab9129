"""Dependency rules of the scheduler: cascade-cancel, and bringing dependents back on retry.

Theory of operation: ``_dependents`` maps a task id to the ids that depend on it. When a task
ends failed or canceled, every BLOCKED dependent is canceled, transitively, with an error naming
the cause and ``canceled_by`` recording it. When that cause is retried, exactly the dependents
it canceled come back as BLOCKED, transitively, unless another ended dependency still dooms
them (then that one becomes their ``canceled_by``, so retrying it brings them back). A
dependency that is gone had succeeded: a failed or canceled task is forgotten (retention, or
eviction at a memory bound) together with every task depending on it, so only succeeded tasks
can be depended on after they are gone.

A mixin of ``Scheduler``: it owns no state, only these rules over the scheduler's tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskd.queue.commands import State, StateChanged
from taskd.queue.task import NO_WAIT, Task
from taskd.queue.transitions import Trigger

_BLOCKED = State.BLOCKED
_CANCELED = State.CANCELED
_FAILED = State.FAILED


class DependencyRules:
    _tasks: dict[str, Task]
    _dependents: dict[str, list[str]]

    if TYPE_CHECKING:

        def _transition(
            self, task: Task, new: State, trigger: Trigger, events: list[StateChanged]
        ) -> None: ...

    def _cascade(self, root: Task, now: float, events: list[StateChanged]) -> None:
        """Cancel every BLOCKED dependent of ``root``, transitively, naming ``root``."""
        error = f"dependency {root.id} {root.state.value}"
        tasks = self._tasks
        frontier = [root.id]
        while frontier:
            next_frontier: list[str] = []
            for cause in frontier:
                for dependent_id in self._dependents.get(cause, ()):
                    dependent = tasks[dependent_id]
                    if dependent.state is not _BLOCKED:
                        continue
                    dependent.error = error
                    dependent.canceled_by = cause
                    dependent.finished_at = now
                    dependent.waiting_on = NO_WAIT
                    self._transition(dependent, _CANCELED, Trigger.DEP_ENDED, events)
                    next_frontier.append(dependent_id)
            frontier = next_frontier

    def _ended_dependency(self, task: Task, skip: str = "") -> Task | None:
        """The first dependency that ended failed or canceled (forgotten ones had succeeded)."""
        for dep_id in task.depends_on:
            dep = self._tasks.get(dep_id)
            if dep_id != skip and dep is not None and dep.state in (_FAILED, _CANCELED):
                return dep
        return None

    def _reset(self, task: Task) -> set[str] | frozenset[str]:
        """Clear a terminal task for a fresh set of attempts; returns its ``waiting_on``."""
        task.attempt = 0
        task.error = ""
        task.result = None
        task.canceled_by = ""
        task.finished_at = 0.0
        tasks = self._tasks
        waiting = {
            dep_id
            for dep_id in task.depends_on
            if (dep := tasks.get(dep_id)) is not None and not dep.state.terminal
        }
        task.waiting_on = waiting or NO_WAIT
        return task.waiting_on

    def _restore_dependents(self, root: Task, events: list[StateChanged]) -> None:
        """Bring back (as BLOCKED) the dependents canceled because of ``root``, transitively."""
        tasks = self._tasks
        frontier = [root.id]
        while frontier:
            next_frontier: list[str] = []
            for cause in frontier:
                for dependent_id in self._dependents.get(cause, ()):
                    dependent = tasks[dependent_id]
                    if dependent.state is not _CANCELED or dependent.canceled_by != cause:
                        continue
                    other = self._ended_dependency(dependent, skip=cause)
                    if other is not None:
                        # Still doomed by another dependency: blame that one instead, so
                        # retrying it brings this task back.
                        dependent.canceled_by = other.id
                        continue
                    self._reset(dependent)
                    self._transition(dependent, _BLOCKED, Trigger.DEP_RETRIED, events)
                    next_frontier.append(dependent_id)
            frontier = next_frontier
