"""A recount of every index the scheduler derives from its task table.

Theory of operation: the scheduler keeps its indexes (per-queue counts and ready heaps, the
timer hints, the worker index, the id catalog, the held counts and eviction heap, the
idempotency keys, the dependents) in step incrementally, in ``Scheduler._transition``,
``_enter`` and ``_forget`` and in the hot paths that inline them. ``recount`` rebuilds what
each index must say from the task table alone and lists every difference, so a test can check
after every step that the incremental bookkeeping and the rule agree. It reads, never changes,
and costs O(tasks log tasks): for tests and debugging, never on a command's path.
"""

from __future__ import annotations

from collections.abc import Mapping

from taskd.queue.catalog import IdIndex
from taskd.queue.commands import State
from taskd.queue.holdings import Holdings, task_size
from taskd.queue.queues import QueueIndex
from taskd.queue.task import Task
from taskd.queue.timers import Timers, due_time


def recount(
    tasks: Mapping[str, Task],
    queues: Mapping[str, QueueIndex],
    timers: Timers,
    by_worker: Mapping[str, Mapping[str, None]],
    catalog: IdIndex,
    held: Holdings,
    idempotency: Mapping[tuple[str, str], str],
    dependents: Mapping[str, list[str]],
    retention: float,
) -> list[str]:
    """Every way the indexes disagree with the task table (empty when they all agree)."""
    problems: list[str] = []
    by_seq = sorted(tasks.values(), key=lambda t: t.seq)

    # Per-queue counts, priorities and ready heaps; no empty, unpaused queue is kept.
    for name, index in queues.items():
        members = [t for t in by_seq if t.queue == name]
        for state in State:
            want = sum(1 for t in members if t.state is state)
            if index.by_state[state] != want:
                problems.append(f"queue {name}: {index.by_state[state]} {state} counted, {want}")
        queued = [t for t in members if t.state is State.QUEUED]
        for priority in range(10):
            want = sum(1 for t in queued if t.priority == priority)
            if index.by_priority[priority] != want:
                problems.append(f"queue {name}: priority {priority} counts {want} wrongly")
        entries = set(index.heap)
        if {entry[2] for entry in entries} != index.in_heap:
            problems.append(f"queue {name}: in_heap is not the heap's ids")
        for task in queued:
            if (-task.priority, task.seq, task.id) not in entries:
                problems.append(f"queue {name}: queued {task.id} has no heap entry")
        if not members and not index.paused:
            problems.append(f"queue {name}: empty and unpaused, yet kept")
    for task in by_seq:
        if task.queue not in queues:
            problems.append(f"task {task.id}: its queue {task.queue} has no index")

    # The worker index: each worker's running tasks, in lease (epoch) order.
    want_workers: dict[str, list[str]] = {}
    for task in sorted(by_seq, key=lambda t: t.epoch):
        if task.state is State.RUNNING:
            want_workers.setdefault(task.worker, []).append(task.id)
    have_workers = {worker: list(ids) for worker, ids in by_worker.items()}
    if have_workers != want_workers:
        problems.append(f"worker index {have_workers} != {want_workers}")

    # Timer hints: every task with a due time has a live hint no later than it, in the heap.
    hints = {(when, task_id) for when, _, task_id in timers.heap}
    for task in by_seq:
        due = due_time(task, retention)
        if due is None:
            continue
        hint = timers.wake.get(task.id)
        if hint is None or hint > due or (hint, task.id) not in hints:
            problems.append(f"task {task.id}: due {due}, live timer hint {hint}")
    for task_id in timers.wake:
        if task_id not in tasks:
            problems.append(f"timer hint for forgotten task {task_id}")

    # The catalog holds every id, sorted; what it holds beyond them was removed lazily.
    if catalog.ids != sorted(catalog.ids):
        problems.append("catalog is not sorted")
    listed = set(catalog.ids)
    if not listed >= tasks.keys():
        problems.append(f"catalog misses {sorted(tasks.keys() - listed)}")
    if len(listed - tasks.keys()) > catalog.removed:
        problems.append("catalog holds more forgotten ids than it counts as removed")

    # What is held against the bounds, and every finished task ready to be evicted.
    finished = [t for t in by_seq if t.state.terminal]
    want_held = (
        len(by_seq),
        sum(task_size(t) for t in by_seq),
        len(finished),
        sum(task_size(t) for t in finished),
    )
    have_held = (held.tasks, held.bytes, held.finished_tasks, held.finished_bytes)
    if have_held != want_held:
        problems.append(f"held (tasks, bytes, finished, finished bytes) {have_held} != {want_held}")
    for task in by_seq:
        if task.size != task_size(task):
            problems.append(f"task {task.id}: size {task.size} != {task_size(task)}")
    evictable = {entry[2] for entry in held.heap if held.live(entry) is not None}
    if evictable != {t.id for t in finished}:
        problems.append("eviction heap does not hold exactly the finished tasks")

    # Idempotency keys, and dependents per dependency in seq order.
    want_keys = {(t.queue, t.idempotency_key): t.id for t in by_seq if t.idempotency_key}
    if dict(idempotency) != want_keys:
        problems.append(f"idempotency keys {dict(idempotency)} != {want_keys}")
    want_dependents: dict[str, list[str]] = {}
    for task in by_seq:
        for dep in task.depends_on:
            want_dependents.setdefault(dep, []).append(task.id)
    # A forgotten dependency's list goes with it (and a submit cannot name it again).
    want_dependents = {dep: ids for dep, ids in want_dependents.items() if dep in tasks}
    if dict(dependents) != want_dependents:
        problems.append(f"dependents {dict(dependents)} != {want_dependents}")
    return problems
