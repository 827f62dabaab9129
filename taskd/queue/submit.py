"""Planning a ``Submit``: validate the whole batch and decide every new task's fate.

Theory of operation: ``plan_submit`` only reads scheduler state. It checks every spec's fields,
maps idempotent repeats to the task they repeat (a retained task, or an earlier spec of the
same batch), resolves ``depends_on`` entries (a batch ``ref`` first, else an existing task
id), rejects self-dependencies and cycles, enforces ``max_queue_depth``, and decides each new
task's initial state in dependency order. It returns either a ``Rejection`` naming the field
(``tasks[i].depends_on[j]``) or a ``SubmitPlan`` that the scheduler applies without further
checks, so a rejected batch changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from taskd.queue.commands import RejectCode, Rejection, State, Submit, TaskSpec
from taskd.queue.task import NO_WAIT, Task

MAX_QUEUE_NAME = 128
MAX_IDEMPOTENCY_KEY = 255
MAX_PRIORITY = 9
MAX_RETRIES = 100
_INF = math.inf
_ENDED_BADLY = (State.FAILED, State.CANCELED)


@dataclass(slots=True)
class SubmitPlan:
    """What applying a valid ``Submit`` does. Lists are indexed by spec; ``state[i]`` is None
    for an idempotent repeat (nothing is created for it)."""

    reply: tuple[tuple[str, bool], ...]
    state: list[State | None]
    depends_on: list[tuple[str, ...]]
    waiting_on: list[set[str] | frozenset[str]]  # NO_WAIT for a task that waits for nothing
    error: list[str]
    canceled_by: list[str]


def _invalid(message: str, field: str) -> Rejection:
    return Rejection(RejectCode.INVALID, message, field)


def check_queue_name(queue: object, field: str) -> Rejection | None:
    if type(queue) is not str or not 0 < len(queue) <= MAX_QUEUE_NAME:
        return _invalid(f"queue name must be 1..{MAX_QUEUE_NAME} characters", field)
    return None


def check_spec(spec: TaskSpec, at: str) -> Rejection | None:
    """Field checks of one spec; ``at`` is its field prefix, e.g. ``tasks[3]``."""
    if type(spec) is not TaskSpec:
        return _invalid("not a task spec", at)
    bad = check_queue_name(spec.queue, f"{at}.queue")
    if bad is not None:
        return bad
    if type(spec.name) is not str:
        return _invalid("name must be a string", f"{at}.name")
    priority = spec.priority
    if type(priority) is not int or not 0 <= priority <= MAX_PRIORITY:
        return _invalid(f"priority must be an integer 0..{MAX_PRIORITY}", f"{at}.priority")
    if type(spec.payload) is not bytes:
        return _invalid("payload must be bytes", f"{at}.payload")
    timeout = spec.timeout
    if type(timeout) not in (float, int) or not 0 < timeout < _INF:
        return _invalid("timeout must be a positive number of seconds", f"{at}.timeout")
    retries = spec.max_retries
    if type(retries) is not int or not 0 <= retries <= MAX_RETRIES:
        return _invalid(f"max_retries must be an integer 0..{MAX_RETRIES}", f"{at}.max_retries")
    run_at = spec.run_at
    if type(run_at) not in (float, int) or not 0 <= run_at < _INF:
        return _invalid("run_at must be a finite time >= 0", f"{at}.run_at")
    key = spec.idempotency_key
    if type(key) is not str or len(key) > MAX_IDEMPOTENCY_KEY:
        return _invalid(
            f"idempotency_key must be at most {MAX_IDEMPOTENCY_KEY} characters",
            f"{at}.idempotency_key",
        )
    if type(spec.ref) is not str:
        return _invalid("ref must be a string", f"{at}.ref")
    if type(spec.depends_on) is not tuple:
        return _invalid("depends_on must be a tuple", f"{at}.depends_on")
    for j, dep in enumerate(spec.depends_on):
        if type(dep) is not str or not dep:
            return _invalid("a dependency must be a non-empty id or ref", f"{at}.depends_on[{j}]")
    if type(spec.labels) is not tuple:
        return _invalid("labels must be a tuple of pairs", f"{at}.labels")
    for j, pair in enumerate(spec.labels):
        if (
            type(pair) is not tuple
            or len(pair) != 2
            or type(pair[0]) is not str
            or type(pair[1]) is not str
        ):
            return _invalid("a label must be a (string, string) pair", f"{at}.labels[{j}]")
    return None


def plan_submit(
    command: Submit,
    now: float,
    tasks: Mapping[str, Task],
    idempotency: Mapping[tuple[str, str], str],
    depth: Callable[[str], int],
    max_queue_depth: int,
) -> SubmitPlan | Rejection:
    specs, ids = command.specs, command.ids
    if type(specs) is not tuple or not specs:
        return _invalid("a submit needs at least one task", "tasks")
    count = len(specs)
    if type(ids) is not tuple or len(ids) != count:
        return _invalid("one id per task is required", "ids")

    # Field checks, refs, idempotent repeats, fresh ids.
    refs: dict[str, int] = {}
    batch_keys: dict[tuple[str, str], int] = {}
    target: list[str] = list(ids)  # the id each spec's reply names
    state: list[State | None] = [State.QUEUED] * count
    any_deps = False
    seen_ids: set[str] = set()
    for i, spec in enumerate(specs):
        bad = check_spec(spec, f"tasks[{i}]")
        if bad is not None:
            return bad
        if spec.ref:
            if spec.ref in refs:
                return _invalid(f"duplicate ref {spec.ref!r}", f"tasks[{i}].ref")
            refs[spec.ref] = i
        if spec.depends_on:
            any_deps = True
        key = spec.idempotency_key
        if key:
            qkey = (spec.queue, key)
            existing = idempotency.get(qkey)
            if existing is not None:
                target[i], state[i] = existing, None
                continue
            first = batch_keys.get(qkey)
            if first is not None:
                target[i], state[i] = ids[first], None
                continue
            batch_keys[qkey] = i
        task_id = ids[i]
        if type(task_id) is not str or not task_id or task_id in tasks or task_id in seen_ids:
            return _invalid("task id is empty or already in use", f"ids[{i}]")
        seen_ids.add(task_id)

    empty: tuple[str, ...] = ()
    depends_on: list[tuple[str, ...]] = [empty] * count
    waiting_on: list[set[str] | frozenset[str]] = []
    error = [""] * count
    canceled_by = [""] * count
    if any_deps:
        bad = _plan_dependencies(
            specs, ids, now, tasks, refs, target, state, depends_on, error, canceled_by
        )
        if bad is not None:
            return bad
        new_ids = {ids[k]: k for k in range(count) if state[k] is not None}
        for i, deps in enumerate(depends_on):
            waiting: set[str] = set()
            if state[i] is State.BLOCKED:
                for dep in deps:
                    k = new_ids.get(dep)
                    dep_state = state[k] if k is not None else tasks[dep].state
                    if dep_state is not None and not dep_state.terminal:
                        waiting.add(dep)
            waiting_on.append(waiting or NO_WAIT)
    else:
        for i, spec in enumerate(specs):
            if spec.run_at > now and state[i] is not None:
                state[i] = State.PENDING
        waiting_on = [NO_WAIT] * count

    # Queue depth: non-terminal tasks per queue, counted in spec order.
    room: dict[str, int] = {}
    canceled = State.CANCELED
    for i, spec in enumerate(specs):
        new_state = state[i]
        if new_state is None or new_state is canceled:
            continue
        queue = spec.queue
        left = room.get(queue)
        if left is None:
            left = max_queue_depth - depth(queue)
        room[queue] = left - 1
        if left <= 0:
            return Rejection(
                RejectCode.QUEUE_FULL,
                f"queue {queue!r} holds its maximum of {max_queue_depth} unfinished tasks",
                f"tasks[{i}].queue",
            )

    reply = tuple((target[i], state[i] is None) for i in range(count))
    return SubmitPlan(reply, state, depends_on, waiting_on, error, canceled_by)


def _plan_dependencies(
    specs: tuple[TaskSpec, ...],
    ids: tuple[str, ...],
    now: float,
    tasks: Mapping[str, Task],
    refs: dict[str, int],
    target: list[str],
    state: list[State | None],
    depends_on: list[tuple[str, ...]],
    error: list[str],
    canceled_by: list[str],
) -> Rejection | None:
    """Resolve refs, reject unknowns, self-dependencies and cycles, then set initial states."""
    count = len(specs)
    new_index = {ids[i]: i for i in range(count) if state[i] is not None}
    edges: list[list[tuple[int, int]]] = [[] for _ in range(count)]  # (dep spec, entry j)
    for i, spec in enumerate(specs):
        if state[i] is None:
            continue  # an idempotent repeat creates nothing; its dependencies are moot
        resolved: dict[str, None] = {}
        for j, entry in enumerate(spec.depends_on):
            at = f"tasks[{i}].depends_on[{j}]"
            k = refs.get(entry)
            if k is not None:
                dep = target[k]
            elif entry in tasks:
                dep = entry
            else:
                return _invalid(f"unknown dependency {entry!r}", at)
            if dep == ids[i]:
                return _invalid("a task cannot depend on itself", at)
            if dep not in resolved:
                resolved[dep] = None
                k2 = new_index.get(dep)
                if k2 is not None:
                    edges[i].append((k2, j))
        depends_on[i] = tuple(resolved)

    # Depth-first search in spec order: a grey node reached again closes a cycle.
    white, grey, black = 0, 1, 2
    color = [white] * count
    order: list[int] = []  # dependencies before dependents
    for root in range(count):
        if color[root] != white or state[root] is None:
            continue
        color[root] = grey
        stack: list[tuple[int, int]] = [(root, 0)]
        while stack:
            node, nxt = stack[-1]
            if nxt < len(edges[node]):
                stack[-1] = (node, nxt + 1)
                child, j = edges[node][nxt]
                if color[child] == grey:
                    return _invalid("dependency cycle", f"tasks[{node}].depends_on[{j}]")
                if color[child] == white:
                    color[child] = grey
                    stack.append((child, 0))
            else:
                color[node] = black
                order.append(node)
                stack.pop()

    for i in order:
        new_state = State.QUEUED
        for dep in depends_on[i]:
            k = new_index.get(dep)
            if k is not None:
                dep_state = state[k]
                dep_error, dep_cause = error[k], canceled_by[k]
            else:
                task = tasks[dep]
                dep_state, dep_error, dep_cause = task.state, task.error, task.canceled_by
            if dep_state in _ENDED_BADLY:
                assert dep_state is not None
                new_state = State.CANCELED
                error[i] = dep_error if dep_cause else f"dependency {dep} {dep_state.value}"
                canceled_by[i] = dep
                break
            if dep_state is not State.SUCCEEDED:
                new_state = State.BLOCKED
        if new_state is State.QUEUED and specs[i].run_at > now:
            new_state = State.PENDING
        state[i] = new_state
    return None
