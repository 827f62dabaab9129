"""The scheduler: the one object that owns every task and applies commands to it.

Theory of operation: ``apply(command, now, entropy)`` is the only mutator. It validates the
whole command against the current state first (a bad command returns a ``Rejection`` and
changes nothing), then makes every change through ``_transition``, which checks the move
against the transition table, keeps the per-queue counts, ready heaps, timer hints, worker
index and held counts in step, and records a ``StateChanged`` event (``_enter`` and
``_forget`` do the same for a task that appears or goes; see "the one place that keeps the
indexes" below for the three hot paths that carry specialised copies). Time comes only from
``now``, randomness only from ``entropy``, so replicas applying the same log reach the same
state (and snapshot bytes).

What lives where: ``submit`` plans batches, ``queues`` keeps per-queue heaps and counts,
``timers`` decides when a ``Tick`` has work, ``backoff`` draws retry jitter, ``catalog``
serves list pages, ``snapshot`` encodes state, ``holdings`` counts what is held against the
node-wide bounds and ``eviction`` decides what a submit may add and which finished tasks make
room. Every setting that shapes a decision (retention, backoff, the bounds) is a
``SchedulerConfig`` that changes only through ``SetConfig`` (or the older ``SetLimits``) and is
kept in snapshots, so replicas decide alike whatever flags they were started with. Leases that
end without their holder asking (cancel, timeout, lease expiry, a lost worker) are returned as
``Outcome.revoked``: the node stops their holders from that, not from the command type.
The dependency graph is two maps here: ``task.waiting_on`` (unfinished dependencies, on the
dependent) and ``_dependents`` (dependent ids per dependency, in seq order, so cascades run in
a deterministic order).

Invariants (checked by the property tests): each task is in exactly one state and counted in
exactly one queue bucket; a BLOCKED task waits on at least one unfinished dependency and no
non-terminal task has a failed or canceled dependency; a RUNNING task holds the epoch of its
live lease, epochs only grow; a task is leased only when QUEUED, which requires its
dependencies to have succeeded and its ``run_at`` to have passed.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from heapq import heapify, heappush
from itertools import pairwise

from taskd.queue import snapshot as snapshot_codec
from taskd.queue.audit import recount
from taskd.queue.backoff import backoff
from taskd.queue.catalog import IdIndex
from taskd.queue.commands import (
    DEFAULT_TIMEOUT,
    Cancel,
    Command,
    Complete,
    Fail,
    Heartbeat,
    Lease,
    Leased,
    Outcome,
    PauseQueue,
    RejectCode,
    Rejection,
    ReleaseWorker,
    RenewLeases,
    ResumeQueue,
    Retry,
    Revoked,
    SetConfig,
    SetLimits,
    State,
    StateChanged,
    Submit,
    Tick,
)
from taskd.queue.dependencies import DependencyRules
from taskd.queue.eviction import EvictionRules
from taskd.queue.holdings import HeldCounts, Holdings, spec_size
from taskd.queue.queues import QueueIndex, QueueStats
from taskd.queue.submit import SubmitPlan, check_queue_name, plan_submit
from taskd.queue.task import NO_LABELS, NO_WAIT, SchedulerConfig, Task, end_attempt
from taskd.queue.timers import Timers, due_time
from taskd.queue.transitions import InvariantError, Trigger, allowed, check

__all__ = ["HeldCounts", "QueueStats", "Scheduler"]

_PENDING, _BLOCKED, _QUEUED, _RUNNING = State.PENDING, State.BLOCKED, State.QUEUED, State.RUNNING
_SUCCEEDED, _FAILED, _CANCELED = State.SUCCEEDED, State.FAILED, State.CANCELED
_MAX_LEASE_BATCH = 10_000
# How an attempt that did not succeed ended, by what ended it (the attempt history's outcome).
_OUTCOME = {
    Trigger.FAIL: "failed",
    Trigger.TIMEOUT: "timeout",
    Trigger.LEASE_EXPIRED: "lease expired",
    Trigger.WORKER_LOST: "worker lost",
}
_MAX_WORKER_NAME = 255


def _invalid(message: str, field: str) -> Outcome:
    return Outcome(rejection=Rejection(RejectCode.INVALID, message, field))


def _positive_seconds(value: object) -> bool:
    return type(value) in (float, int) and 0 < value < math.inf  # type: ignore[operator]


class Scheduler(EvictionRules, DependencyRules):
    def __init__(self, config: SchedulerConfig = SchedulerConfig()) -> None:  # noqa: B008
        config.validate()
        self._config = config
        self._retention = config.retention
        self._tasks: dict[str, Task] = {}
        self._queues: dict[str, QueueIndex] = {}
        self._timers = Timers()
        self._dependents: dict[str, list[str]] = {}
        self._idempotency: dict[tuple[str, str], str] = {}
        self._by_worker: dict[str, dict[str, None]] = {}
        self._catalog = IdIndex()
        self._held = Holdings(self._tasks)
        self._seq = 0
        self._epoch = 0
        self._handlers: dict[type, Callable[[object, float, int], Outcome]] = {
            Submit: self._submit,  # type: ignore[dict-item]
            Lease: self._lease,  # type: ignore[dict-item]
            Complete: self._complete,  # type: ignore[dict-item]
            Heartbeat: self._heartbeat,  # type: ignore[dict-item]
            Fail: self._fail,  # type: ignore[dict-item]
            Tick: self._tick,  # type: ignore[dict-item]
            Cancel: self._cancel,  # type: ignore[dict-item]
            Retry: self._retry,  # type: ignore[dict-item]
            PauseQueue: self._pause,  # type: ignore[dict-item]
            ResumeQueue: self._resume,  # type: ignore[dict-item]
            ReleaseWorker: self._release_worker,  # type: ignore[dict-item]
            RenewLeases: self._renew_leases,  # type: ignore[dict-item]
            SetConfig: self._set_config,  # type: ignore[dict-item]
            SetLimits: self._set_limits,  # type: ignore[dict-item]
        }

    # ---- the mutator ---------------------------------------------------------------------

    def apply(self, command: Command, now: float, entropy: int) -> Outcome:
        """Apply one command at leader time ``now`` with leader-drawn ``entropy``."""
        handler = self._handlers.get(type(command))
        if handler is None:
            return _invalid(f"unknown command {type(command).__name__}", "command")
        if type(now) not in (float, int) or not -math.inf < now < math.inf:
            return _invalid("now must be a finite time", "now")
        if type(entropy) is not int:
            return _invalid("entropy must be an integer", "entropy")
        outcome = handler(command, now, entropy)
        held, config = self._held, self._config
        if (
            outcome.events
            and (held.bytes > config.max_bytes or held.tasks > config.max_tasks)
            and type(command) is not Submit  # a submit makes its own room (see _submit)
        ):
            # Results, errors or a cascade took what is held past a bound (or lowered bounds
            # left it there): make room, but keep the task the command named (its caller reads
            # it back right away). Only commands that changed a task do this, so a Tick with
            # nothing due still changes nothing.
            reply = outcome.reply
            outcome.evicted = self._make_room((reply,) if type(reply) is str else ())
        return outcome

    # ---- the one place that keeps the indexes: a task enters, moves, leaves ----------------
    #
    # Every derived index (per-queue counts and ready heaps, timer hints, the worker index, the
    # catalog, the held counts, idempotency keys, dependents) changes only here: ``_enter``
    # when a task appears, ``_transition`` when it changes state, ``_forget`` when it goes.
    # Three hot paths keep specialised copies for speed: ``_create`` (``_enter`` for a batch),
    # ``_lease`` (QUEUED -> RUNNING) and ``_complete`` (RUNNING -> SUCCEEDED); each says which
    # rule it copies, and ``audit.recount`` checks every index against the task table after
    # every step of the property tests, so a copy that drifts from the rule fails there.

    def _transition(
        self, task: Task, new: State, trigger: Trigger, events: list[StateChanged]
    ) -> None:
        """Move ``task`` to ``new``; its time fields must already be set for the new state."""
        old = task.state
        check(old, trigger, new)
        task.state = new
        self._held.moved(task, old.terminal)
        index = self._queues[task.queue]
        by_state = index.by_state
        by_state[old] -= 1
        by_state[new] += 1
        if old is _QUEUED:
            index.by_priority[task.priority] -= 1
        elif old is _RUNNING:
            del self._by_worker[task.worker][task.id]
            if not self._by_worker[task.worker]:
                del self._by_worker[task.worker]
        if new is _QUEUED:
            index.by_priority[task.priority] += 1
            index.push(task.priority, task.seq, task.id)
        elif new is _RUNNING:
            self._by_worker.setdefault(task.worker, {})[task.id] = None
        due = due_time(task, self._retention)
        if due is not None:
            self._timers.schedule(due, task.seq, task.id)
        events.append(StateChanged(task.id, task.queue, old, new, task.epoch))

    def _enter(self, task: Task) -> None:
        """Add a task (new, or restored from a snapshot) to every index."""
        self._tasks[task.id] = task
        self._catalog.add(task.id)
        self._held.add(task)
        index = self._queues.get(task.queue)
        if index is None:
            index = self._queues[task.queue] = QueueIndex(task.queue)
        index.by_state[task.state] += 1
        state = task.state
        if state is _QUEUED:
            index.by_priority[task.priority] += 1
            index.push(task.priority, task.seq, task.id)
        elif state is _RUNNING:
            self._by_worker.setdefault(task.worker, {})[task.id] = None
        if task.idempotency_key:
            self._idempotency[(task.queue, task.idempotency_key)] = task.id
        for dep in task.depends_on:
            if dep in self._tasks:  # restored after a forgotten dependency: no list for it
                self._dependents.setdefault(dep, []).append(task.id)
        due = due_time(task, self._retention)
        if due is not None:
            self._timers.schedule(due, task.seq, task.id)

    def _enter_restored(self, tasks: builtins.list[Task]) -> None:
        """``_enter`` for every task of a snapshot, in seq order, with the id index and the
        ready heaps built in bulk (a sort and a heapify instead of an insert per task)."""
        table, queues, held, timers = self._tasks, self._queues, self._held, self._timers
        idempotency, dependents, retention = self._idempotency, self._dependents, self._retention
        ids = self._catalog.ids
        assert not ids and not queues, "restore into an empty scheduler"
        index: QueueIndex | None = None
        for task in tasks:
            task_id = task.id
            table[task_id] = task
            ids.append(task_id)
            held.add(task)
            name = task.queue
            if index is None or index.name != name:
                index = queues.get(name)
                if index is None:
                    index = queues[name] = QueueIndex(name)
            state = task.state
            index.by_state[state] += 1
            if state is _QUEUED:
                priority = task.priority
                index.by_priority[priority] += 1
                index.heap.append((-priority, task.seq, task_id))
                index.in_heap.add(task_id)
            if task.idempotency_key:
                idempotency[(name, task.idempotency_key)] = task_id
            for dep in task.depends_on:
                if dep in table:  # restored after a forgotten dependency: no list for it
                    dependents.setdefault(dep, []).append(task_id)
            due = due_time(task, retention)
            if due is not None:
                timers.schedule(due, task.seq, task_id)
        ids.sort()  # ULIDs: nearly sorted already
        for index in queues.values():
            heapify(index.heap)

    def _forget(self, task: Task) -> None:
        check(task.state, Trigger.FORGET, None)
        task_id = task.id
        del self._tasks[task_id]
        self._held.remove(task)
        self._catalog.remove(self._tasks)
        self._timers.forget(task_id)
        key = (task.queue, task.idempotency_key)
        if task.idempotency_key and self._idempotency.get(key) == task_id:
            del self._idempotency[key]
        self._dependents.pop(task_id, None)
        for dep in task.depends_on:
            siblings = self._dependents.get(dep)
            if siblings is not None:
                siblings.remove(task_id)
                if not siblings:
                    del self._dependents[dep]
        index = self._queues[task.queue]
        index.by_state[task.state] -= 1
        if not index.paused and index.total() == 0:
            del self._queues[task.queue]

    # ---- commands ------------------------------------------------------------------------

    def _submit(self, command: Submit, now: float, entropy: int) -> Outcome:
        plan = plan_submit(
            command,
            now,
            self._tasks,
            self._idempotency,
            self.depth,
            self._config.max_queue_depth,
        )
        if isinstance(plan, Rejection):
            return Outcome(rejection=plan)
        # Sizes of the new tasks (hot path: the common spec has no labels, deps or error), and
        # the finished tasks that must stay: those the reply names (idempotent repeats), and
        # the ended dependencies of those and of new tasks canceled at birth (see _make_room).
        ids, states, depends_on, error = command.ids, plan.state, plan.depends_on, plan.error
        sizes: builtins.list[int] = []
        kept: dict[str, Task] = {}
        ended: builtins.list[str] = []  # dependency ids to follow
        new_tasks = new_bytes = 0
        for i, spec in enumerate(command.specs):
            if states[i] is None:
                target = self._tasks.get(plan.reply[i][0])
                if target is not None and target.state.terminal:
                    kept[target.id] = target
                    if target.state is _CANCELED:
                        ended.extend(target.depends_on)
                sizes.append(0)
                continue
            if states[i] is _CANCELED:
                ended.extend(depends_on[i])
            if spec.labels or depends_on[i] or error[i]:
                size = spec_size(spec, ids[i], depends_on[i], error[i])
            else:
                size = len(ids[i]) + len(spec.name) + len(spec.payload) + len(spec.idempotency_key)
            sizes.append(size)
            new_bytes += size
            new_tasks += 1
        if ended:
            self._ended_ancestors(ended, kept)
        if new_tasks:
            full = self._node_full(new_tasks, new_bytes, builtins.list(kept.values()))
            if full is not None:
                return Outcome(rejection=full)
        outcome = self._create(command, plan, float(now), sizes)
        held, config = self._held, self._config
        held.tasks += new_tasks
        held.bytes += new_bytes
        if held.tasks > config.max_tasks or held.bytes > config.max_bytes:
            keep = set(kept)
            keep.update(ids[i] for i in range(len(ids)) if states[i] is not None)
            outcome.evicted = self._make_room(keep)
        return outcome

    def _create(
        self, command: Submit, plan: SubmitPlan, now: float, sizes: builtins.list[int]
    ) -> Outcome:
        # The hot path of a submit: _enter inlined, with per-batch lookups hoisted.
        events: list[StateChanged] = []
        append = events.append
        states, depends_on, waiting_on = plan.state, plan.depends_on, plan.waiting_on
        ids = command.ids
        seq = self._seq
        tasks, queues, timers = self._tasks, self._queues, self._timers
        catalog = self._catalog
        catalog_ids = catalog.ids
        retention = self._retention
        held = self._held
        index: QueueIndex | None = None
        for i, spec in enumerate(command.specs):
            state = states[i]
            if state is None:
                continue
            seq += 1
            task_id = ids[i]
            queue = spec.queue
            priority = spec.priority
            deps = depends_on[i]
            task = Task(
                task_id,
                queue,
                spec.name,
                priority,
                spec.payload,
                # the usual values as shared objects: a float of its own is 24 bytes a task
                DEFAULT_TIMEOUT if spec.timeout == DEFAULT_TIMEOUT else float(spec.timeout),
                spec.max_retries,
                float(spec.run_at) if spec.run_at else 0.0,
                deps,
                spec.idempotency_key,
                dict(spec.labels) if spec.labels else NO_LABELS,
                now,
                seq,
                state,
                waiting_on=waiting_on[i],
                size=sizes[i],
            )
            tasks[task_id] = task
            if catalog_ids and task_id > catalog_ids[-1]:
                catalog_ids.append(task_id)
            else:
                catalog.add(task_id)
            if index is None or index.name != queue:
                index = queues.get(queue)
                if index is None:
                    index = queues[queue] = QueueIndex(queue)
            index.by_state[state] += 1
            if state is _QUEUED:
                index.by_priority[priority] += 1
                index.in_heap.add(task_id)
                heappush(index.heap, (-priority, seq, task_id))
            elif state is _PENDING:
                timers.schedule(task.run_at, seq, task_id)
            elif state is _CANCELED:
                task.error = plan.error[i]
                task.canceled_by = plan.canceled_by[i]
                task.finished_at = now
                timers.schedule(now + retention, seq, task_id)
                held.finished_new(task)
            if spec.idempotency_key:
                self._idempotency[(queue, spec.idempotency_key)] = task_id
            if deps:
                dependents = self._dependents
                for dep in deps:
                    dependents.setdefault(dep, []).append(task_id)
            append(StateChanged(task_id, queue, None, state, 0))
        self._seq = seq
        return Outcome(reply=plan.reply, events=events)

    def _lease(self, command: Lease, now: float, entropy: int) -> Outcome:
        bad = check_queue_name(command.queue, "queue")
        if bad is not None:
            return Outcome(rejection=bad)
        worker, count, ttl = command.worker, command.max, command.lease_ttl
        if type(worker) is not str or not 0 < len(worker) <= _MAX_WORKER_NAME:
            return _invalid(f"worker must be 1..{_MAX_WORKER_NAME} characters", "worker")
        if type(count) is not int or not 0 < count <= _MAX_LEASE_BATCH:
            return _invalid(f"max must be an integer 1..{_MAX_LEASE_BATCH}", "max")
        if not _positive_seconds(ttl):
            return _invalid("lease_ttl must be a positive number of seconds", "lease_ttl")
        index = self._queues.get(command.queue)
        if index is None or index.paused:
            return Outcome(reply=())
        tasks = self._tasks

        def live(task_id: str) -> bool:
            task = tasks.get(task_id)
            return task is not None and task.state is _QUEUED

        # The hot path of a lease: _transition specialised for QUEUED -> RUNNING (no size or
        # bucket change; counts settled once per batch). Calling _transition per task costs
        # 14-22% of lease+complete throughput; audit.recount checks that this agrees with it.
        check(_QUEUED, Trigger.LEASE, _RUNNING)
        events: list[StateChanged] = []
        leased: list[Leased] = []
        append_event, append_leased = events.append, leased.append
        deadline = now + ttl
        by_priority = index.by_priority
        held = self._by_worker.get(worker)
        if held is None:
            held = self._by_worker[worker] = {}
        schedule = self._timers.schedule
        queue = command.queue
        epoch = self._epoch
        while len(leased) < count:
            task_id = index.pop(live)
            if task_id is None:
                break
            task = tasks[task_id]
            epoch += 1
            task.epoch = epoch
            task.attempt = attempt = task.attempt + 1
            task.worker = worker
            task.started_at = now
            task.lease_deadline = deadline
            task.timeout_deadline = timeout_deadline = now + task.timeout
            task.state = _RUNNING
            by_priority[task.priority] -= 1
            held[task_id] = None
            schedule(
                deadline if deadline < timeout_deadline else timeout_deadline, task.seq, task_id
            )
            append_event(StateChanged(task_id, queue, _QUEUED, _RUNNING, epoch))
            append_leased(Leased(task_id, epoch, attempt, deadline))
        self._epoch = epoch
        if not held:
            del self._by_worker[worker]
        if leased:
            index.by_state[_QUEUED] -= len(leased)
            index.by_state[_RUNNING] += len(leased)
        index.compact(live)
        return Outcome(reply=tuple(leased), events=events)

    def _running(self, task_id: object, epoch: object, trigger: Trigger) -> Task | Outcome:
        """The RUNNING task a worker's call names, or the rejection to return."""
        if type(task_id) is not str:
            return _invalid("id must be a string", "id")
        if type(epoch) is not int:
            return _invalid("lease must be an integer epoch", "lease")
        task = self._tasks.get(task_id)
        if task is None:
            return Outcome(rejection=Rejection(RejectCode.NOT_FOUND, "no such task", "id"))
        if not allowed(task.state, trigger) or task.epoch != epoch:
            current = f"lease {task.epoch}" if task.state is _RUNNING else "no lease"
            return Outcome(
                rejection=Rejection(
                    RejectCode.CONFLICT,
                    f"stale lease {epoch}: task is {task.state.value} ({current})",
                    "lease",
                )
            )
        return task

    def _heartbeat(self, command: Heartbeat, now: float, entropy: int) -> Outcome:
        if not _positive_seconds(command.lease_ttl):
            return _invalid("lease_ttl must be a positive number of seconds", "lease_ttl")
        task = self._running(command.task_id, command.epoch, Trigger.HEARTBEAT)
        if isinstance(task, Outcome):
            return task
        deadline = now + command.lease_ttl
        if deadline > task.lease_deadline:
            task.lease_deadline = deadline  # a later due time: the timer hint stays valid
        return Outcome(reply=task.id)

    def _complete(self, command: Complete, now: float, entropy: int) -> Outcome:
        if type(command.result) is not bytes:
            return _invalid("result must be bytes", "result")
        task = self._running(command.task_id, command.epoch, Trigger.COMPLETE)
        if isinstance(task, Outcome):
            return task
        # The hot path of a completion: _transition specialised for RUNNING -> SUCCEEDED (the
        # result is the only size change; the task is finished, so due at now + retention).
        # Calling _transition here costs 12-16% of lease+complete throughput (bench_apply);
        # audit.recount checks after every property-test step that this agrees with it.
        task_id = task.id
        end_attempt(task, "succeeded", "", now, command.log)
        task.result = command.result
        task.finished_at = now
        task.lease_deadline = task.timeout_deadline = 0.0
        task.state = _SUCCEEDED
        self._held.completed(task, len(command.result))
        by_state = self._queues[task.queue].by_state
        by_state[_RUNNING] -= 1
        by_state[_SUCCEEDED] += 1
        held = self._by_worker[task.worker]
        del held[task_id]
        if not held:
            del self._by_worker[task.worker]
        self._timers.schedule(now + self._retention, task.seq, task_id)
        events = [StateChanged(task_id, task.queue, _RUNNING, _SUCCEEDED, task.epoch)]
        dependents = self._dependents.get(task_id)
        if dependents:
            tasks = self._tasks
            for dependent_id in dependents:
                dependent = tasks[dependent_id]
                waiting = dependent.waiting_on
                if dependent.state is _BLOCKED and task.id in waiting:
                    assert isinstance(waiting, set)  # NO_WAIT holds nothing
                    waiting.discard(task.id)
                    if not waiting:
                        new = _PENDING if dependent.run_at > now else _QUEUED
                        self._transition(dependent, new, Trigger.DEPS_MET, events)
        return Outcome(reply=task.id, events=events)

    def _fail(self, command: Fail, now: float, entropy: int) -> Outcome:
        if type(command.error) is not str:
            return _invalid("error must be a string", "error")
        if type(command.retryable) is not bool:
            return _invalid("retryable must be a boolean", "retryable")
        delay = command.retry_delay
        if type(delay) not in (float, int) or not 0 <= delay < math.inf:
            return _invalid("retry_delay must be a finite number of seconds >= 0", "retry_delay")
        task = self._running(command.task_id, command.epoch, Trigger.FAIL)
        if isinstance(task, Outcome):
            return task
        events: list[StateChanged] = []
        # A failure reported at or past the attempt's deadline is its timeout (the worker's own
        # timer, or a handler that ended late) whichever of it and the Tick came first.
        late = 0 < task.timeout_deadline <= now
        self._end_attempt(
            task,
            command.error,
            command.retryable,
            Trigger.TIMEOUT if late else Trigger.FAIL,
            now,
            entropy,
            events,
            retry_delay=float(delay),
        )
        return Outcome(reply=task.id, events=events)

    def _end_attempt(
        self,
        task: Task,
        error: str,
        retryable: bool,
        trigger: Trigger,
        now: float,
        entropy: int,
        events: list[StateChanged],
        revoked: list[Revoked] | None = None,
        *,
        retry_delay: float = 0.0,
    ) -> None:
        """A running attempt failed: back off and retry while retries remain, else fail.

        The wait is ``retry_delay`` when the worker asked for one (> 0), else the backoff.
        ``revoked`` collects the lease when the attempt ended without its holder asking.
        """
        if revoked is not None:
            revoked.append(Revoked(task.id, task.epoch, error))
        end_attempt(task, _OUTCOME[trigger], error, now)
        task.error = error
        task.lease_deadline = task.timeout_deadline = 0.0
        config = self._config
        if retryable and task.attempt <= task.max_retries:
            wait = retry_delay or backoff(
                config.backoff_base, config.backoff_cap, task.attempt, entropy, task.seq
            )
            task.run_at = now + wait
            self._transition(task, _PENDING, trigger, events)
        else:
            task.finished_at = now
            self._transition(task, _FAILED, trigger, events)
            self._cascade(task, now, events)

    def _cancel(self, command: Cancel, now: float, entropy: int) -> Outcome:
        task = self._lookup(command.task_id)
        if isinstance(task, Outcome):
            return task
        if not allowed(task.state, Trigger.CANCEL):
            return self._conflict(f"task is already {task.state.value}")
        events: list[StateChanged] = []
        revoked = (Revoked(task.id, task.epoch, "canceled"),) if task.state is _RUNNING else ()
        if revoked:
            end_attempt(task, "canceled", "canceled", now)
        task.error = "canceled"
        task.canceled_by = ""
        task.finished_at = now
        task.lease_deadline = task.timeout_deadline = 0.0
        task.waiting_on = NO_WAIT
        self._transition(task, _CANCELED, Trigger.CANCEL, events)
        self._cascade(task, now, events)
        return Outcome(reply=task.id, events=events, revoked=revoked)

    def _retry(self, command: Retry, now: float, entropy: int) -> Outcome:
        task = self._lookup(command.task_id)
        if isinstance(task, Outcome):
            return task
        if not allowed(task.state, Trigger.RETRY):
            return self._conflict(
                f"only failed or canceled tasks retry; task is {task.state.value}"
            )
        ended = self._ended_dependency(task)
        if ended is not None:
            return self._conflict(f"dependency {ended.id} is {ended.state.value}")
        events: list[StateChanged] = []
        waiting = self._reset(task)
        if waiting:
            new = _BLOCKED
        else:
            new = _PENDING if task.run_at > now else _QUEUED
        self._transition(task, new, Trigger.RETRY, events)
        self._restore_dependents(task, events)
        return Outcome(reply=task.id, events=events)

    def _pause(self, command: PauseQueue, now: float, entropy: int) -> Outcome:
        bad = check_queue_name(command.queue, "queue")
        if bad is not None:
            return Outcome(rejection=bad)
        index = self._queues.get(command.queue)
        if index is None:
            index = self._queues[command.queue] = QueueIndex(command.queue)
        index.paused = True
        return Outcome()

    def _resume(self, command: ResumeQueue, now: float, entropy: int) -> Outcome:
        bad = check_queue_name(command.queue, "queue")
        if bad is not None:
            return Outcome(rejection=bad)
        index = self._queues.get(command.queue)
        if index is not None:
            index.paused = False
            if index.total() == 0:
                del self._queues[command.queue]
        return Outcome()

    def _release_worker(self, command: ReleaseWorker, now: float, entropy: int) -> Outcome:
        worker = command.worker
        if type(worker) is not str or not 0 < len(worker) <= _MAX_WORKER_NAME:
            return _invalid(f"worker must be 1..{_MAX_WORKER_NAME} characters", "worker")
        events: list[StateChanged] = []
        revoked: list[Revoked] = []
        held = self._by_worker.get(worker)
        if held:
            for task_id in list(held):  # lease order: epochs ascend
                task = self._tasks[task_id]
                self._end_attempt(
                    task, "worker lost", True, Trigger.WORKER_LOST, now, entropy, events, revoked
                )
        return Outcome(events=events, revoked=tuple(revoked))

    def _renew_leases(self, command: RenewLeases, now: float, entropy: int) -> Outcome:
        if not _positive_seconds(command.lease_ttl):
            return _invalid("lease_ttl must be a positive number of seconds", "lease_ttl")
        deadline = now + command.lease_ttl
        for held in self._by_worker.values():
            for task_id in held:
                task = self._tasks[task_id]
                if deadline > task.lease_deadline:
                    task.lease_deadline = deadline  # later only: the timer hint stays valid
        return Outcome()

    def _set_config(self, command: SetConfig, now: float, entropy: int) -> Outcome:
        config = command.config
        if type(config) is not SchedulerConfig:
            return _invalid("config must be a SchedulerConfig", "config")
        return self._reconfigure(config)

    def _set_limits(self, command: SetLimits, now: float, entropy: int) -> Outcome:
        limits = (command.max_queue_depth, command.max_tasks, command.max_bytes)
        for name, value in zip(("max_queue_depth", "max_tasks", "max_bytes"), limits, strict=True):
            if type(value) is not int or value < 1:
                return _invalid(f"{name} must be an integer >= 1", name)
        return self._reconfigure(
            replace(
                self._config,
                max_queue_depth=command.max_queue_depth,
                max_tasks=command.max_tasks,
                max_bytes=command.max_bytes,
            )
        )

    def _reconfigure(self, config: SchedulerConfig) -> Outcome:
        """Decide under ``config`` from now on (validated whole first, like every command)."""
        found = config.problem()
        if found is not None:
            return _invalid(found[1], found[0])
        retention_changed = config.retention != self._retention
        self._config = config
        self._retention = config.retention
        if retention_changed:
            # A shorter retention makes finished tasks due earlier than their timer hints:
            # hint them again (a longer one needs nothing: early hints re-push themselves).
            schedule = self._timers.schedule
            for task in self._tasks.values():
                if task.state.terminal:
                    schedule(task.finished_at + config.retention, task.seq, task.id)
        # Lower bounds take effect now: finished tasks beyond them go (unfinished ones stay,
        # and submits are refused until enough of them finish). Retention waits for a Tick.
        return Outcome(evicted=self._make_room(()))

    @property
    def config(self) -> SchedulerConfig:
        """The configuration every decision is made under (the log's, not the flags')."""
        return self._config

    def limits(self) -> tuple[int, int, int]:
        """The bounds in effect: (max_queue_depth, max_tasks, max_bytes)."""
        config = self._config
        return (config.max_queue_depth, config.max_tasks, config.max_bytes)

    def _due(self, task_id: str) -> tuple[float, int] | None:
        """When the timer of ``task_id`` fires, with its FIFO tie-breaker; None if it has none."""
        task = self._tasks.get(task_id)
        if task is None:
            return None
        at = due_time(task, self._retention)
        return None if at is None else (at, task.seq)

    def _tick(self, command: Tick, now: float, entropy: int) -> Outcome:
        events: list[StateChanged] = []
        revoked: list[Revoked] = []
        forgotten: list[str] = []
        tasks = self._tasks
        while True:
            fired = self._timers.take_due(now, self._due)
            if not fired:
                break
            for task_id in fired:
                found = tasks.get(task_id)
                if found is None:
                    continue  # forgotten earlier in this Tick, with an ended dependency
                task = found
                state = task.state
                if state is _PENDING:
                    self._transition(task, _QUEUED, Trigger.RUN_AT, events)
                elif state is _RUNNING:
                    if task.timeout_deadline <= task.lease_deadline:
                        trigger, error = Trigger.TIMEOUT, "timeout"
                    else:
                        trigger, error = Trigger.LEASE_EXPIRED, "lease expired"
                    self._end_attempt(task, error, True, trigger, now, entropy, events, revoked)
                elif state is _SUCCEEDED:
                    self._forget(task)
                    forgotten.append(task.id)
                elif state.terminal:
                    # A task canceled because of this one would take it for succeeded once it
                    # is gone (and could be retried and run): they are forgotten together.
                    for member in self._doomed_with(task):
                        self._forget(member)
                        forgotten.append(member.id)
                else:
                    raise InvariantError(f"timer fired for {state.value} task {task_id}")
        return Outcome(events=events, revoked=tuple(revoked), forgotten=tuple(forgotten))

    def _lookup(self, task_id: object) -> Task | Outcome:
        if type(task_id) is not str:
            return _invalid("id must be a string", "id")
        task = self._tasks.get(task_id)
        if task is None:
            return Outcome(rejection=Rejection(RejectCode.NOT_FOUND, "no such task", "id"))
        return task

    @staticmethod
    def _conflict(message: str) -> Outcome:
        return Outcome(rejection=Rejection(RejectCode.CONFLICT, message, "id"))

    # ---- queries (read-only) -------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def list(
        self,
        queue: str | None = None,
        state: State | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> tuple[list[Task], str | None]:
        """A page of tasks, newest first, older than cursor ``after``; and the next cursor."""
        if limit <= 0:
            return [], None
        tasks = self._tasks

        def match(task_id: str) -> bool:
            task = tasks.get(task_id)
            return (
                task is not None
                and (queue is None or task.queue == queue)
                and (state is None or task.state is state)
            )

        ids, cursor = self._catalog.page(after, limit, match)
        return [tasks[task_id] for task_id in ids], cursor

    def queue_names(self) -> builtins.list[str]:
        return sorted(self._queues)

    def queue_stats(self, queue: str) -> QueueStats:
        index = self._queues.get(queue)
        return (index if index is not None else QueueIndex(queue)).stats()

    def runnable(self, queue: str) -> int:
        index = self._queues.get(queue)
        return 0 if index is None else index.runnable()

    def is_paused(self, queue: str) -> bool:
        index = self._queues.get(queue)
        return index is not None and index.paused

    def depth(self, queue: str) -> int:
        index = self._queues.get(queue)
        return 0 if index is None else index.depth()

    def next_deadline(self) -> float | None:
        """The earliest ``now`` at which a ``Tick`` changes something, or None."""
        return self._timers.peek(self._due)

    def running_for(self, worker: str) -> builtins.list[Task]:
        return [self._tasks[task_id] for task_id in self._by_worker.get(worker, ())]

    def dependency_results(self, task_id: str) -> dict[str, bytes]:
        task = self._tasks.get(task_id)
        if task is None:
            return {}
        results: dict[str, bytes] = {}
        for dep_id in task.depends_on:
            dep = self._tasks.get(dep_id)
            if dep is not None and dep.state is _SUCCEEDED and dep.result is not None:
                results[dep_id] = dep.result
        return results

    def audit(self) -> builtins.list[str]:
        """Every index that disagrees with a recount from the task table (for tests)."""
        return recount(
            self._tasks,
            self._queues,
            self._timers,
            self._by_worker,
            self._catalog,
            self._held,
            self._idempotency,
            self._dependents,
            self._retention,
        )

    def __len__(self) -> int:
        return len(self._tasks)

    def tasks(self) -> Iterator[Task]:
        """Every task held, in no particular order."""
        return iter(self._tasks.values())

    def holdings(self) -> HeldCounts:
        """What is held against the node-wide bounds, and the bounds (O(1))."""
        held, config = self._held, self._config
        return HeldCounts(
            tasks=held.tasks,
            bytes=held.bytes,
            finished_tasks=held.finished_tasks,
            finished_bytes=held.finished_bytes,
            max_tasks=config.max_tasks,
            max_bytes=config.max_bytes,
        )

    # ---- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> bytes:
        paused = [name for name, index in self._queues.items() if index.paused]
        state = snapshot_codec.SnapshotState(
            self._seq, self._epoch, paused, list(self._tasks.values()), config=self._config
        )
        return snapshot_codec.encode(state)

    @classmethod
    def restore(cls, data: bytes, config: SchedulerConfig = SchedulerConfig()) -> Scheduler:  # noqa: B008
        state = snapshot_codec.decode(data)
        # What the log set wins over ``config`` (today's flags): SetConfig recorded it whole,
        # snapshots from the SetLimits days the bounds only.
        if state.config is not None:
            config = state.config
        elif state.limits is not None:
            depth, max_tasks, max_bytes = state.limits
            config = replace(
                config, max_queue_depth=depth, max_tasks=max_tasks, max_bytes=max_bytes
            )
        scheduler = cls(config)
        scheduler._seq = state.seq
        scheduler._epoch = state.epoch
        tasks = state.tasks
        if any(a.seq >= b.seq for a, b in pairwise(tasks)):
            tasks = sorted(tasks, key=lambda t: t.seq)  # snapshots are written in seq order
        scheduler._enter_restored(tasks)
        # The worker index is in lease order (epoch order); rebuild it that way.
        running = [task for task in tasks if task.state is _RUNNING]
        for task in sorted(running, key=lambda t: t.epoch):
            scheduler._by_worker.setdefault(task.worker, {})[task.id] = None
        for name in state.paused:
            index = scheduler._queues.get(name)
            if index is None:
                index = scheduler._queues[name] = QueueIndex(name)
            index.paused = True
        return scheduler
