"""Property tests: random command sequences against the scheduler's invariants.

A ``RuleBasedStateMachine`` drives random submits (with delays, dependencies, refs and
idempotency keys), leases, heartbeats, completions (some with stale epochs), failures,
cancels, retries, pauses, lost workers and ticks while time advances. After every step it
checks the invariants of design.md §2 and §5, that the event stream accounts for every state
change, that a rejected command changed nothing, and that a scheduler restored from a
snapshot taken mid-run stays identical to the original.

The node-wide bounds are small here (``max_tasks`` 14, ``max_bytes`` 260), so runs keep hitting
them: after every step the incremental counts equal a recount, the task bound always holds,
the byte bound holds unless at most one finished task is left, evictions took the oldest
finished tasks, and a NODE_FULL refusal is checked against an unbounded twin that shows the
batch really did not fit beside the unfinished tasks.
"""

from __future__ import annotations

import os
from dataclasses import replace

from hypothesis import HealthCheck, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from taskd.queue.commands import (
    TERMINAL,
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
    ReleaseWorker,
    RenewLeases,
    ResumeQueue,
    Retry,
    SetConfig,
    SetLimits,
    State,
    Submit,
    TaskSpec,
    Tick,
)
from taskd.queue.holdings import task_size
from taskd.queue.scheduler import Scheduler
from taskd.queue.task import SchedulerConfig, Task

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
QUEUES = ("a", "b")
WORKERS = ("w1", "w2")
CONFIG = SchedulerConfig(
    retention=50.0,
    backoff_base=1.0,
    backoff_cap=8.0,
    max_queue_depth=12,
    max_tasks=14,
    max_bytes=260,
)


def finished_key(task: Task) -> tuple[float, int]:
    return (task.finished_at, task.seq)


def named_by(out: Outcome) -> set[str]:
    """The task ids a command's reply names (what its caller reads back)."""
    if isinstance(out.reply, str):
        return {out.reply}
    if isinstance(out.reply, tuple) and out.reply and isinstance(out.reply[0], tuple):
        return {task_id for task_id, _ in out.reply}
    return set()


def groups(s: Scheduler) -> dict[str, set[str]]:
    """Per finished task, what leaves with it: itself and, unless it succeeded, every task
    depending on it, transitively (a dependent must not outlive an ended dependency)."""
    tasks = {t.id: t for t in s.list(limit=100_000)[0]}
    dependents: dict[str, list[str]] = {}
    for t in tasks.values():
        for dep in t.depends_on:
            dependents.setdefault(dep, []).append(t.id)
    out: dict[str, set[str]] = {}
    for t in tasks.values():
        if not t.state.terminal:
            continue
        group = {t.id}
        if t.state is not State.SUCCEEDED:
            stack = [t.id]
            while stack:
                for d in dependents.get(stack.pop(), ()):
                    if d not in group:
                        group.add(d)
                        stack.append(d)
        out[t.id] = group
    return out


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.s = Scheduler(CONFIG)
        self.shadow: Scheduler | None = None  # restored from a snapshot, fed the same commands
        self.now = 1000.0
        self.ids = 0
        self.known: list[str] = []  # every id ever created (some may be forgotten)
        self.leases: list[Leased] = []  # every lease ever handed out (most go stale)
        self.model: dict[str, State] = {}  # state per task, as told by the events
        self.succeeded: set[str] = set()
        self.max_epoch = 0
        self.evicted_keys: dict[str, tuple[float, int]] = {}  # finished tasks' eviction order
        self.pre_deps: dict[str, tuple[str, ...]] = {}  # dependencies, before the command
        self.over_allowed: set[str] = set()  # finished tasks allowed while over the byte bound
        self.gone: dict[str, State] = {}  # forgotten tasks' last state
        self.lowered = False  # a SetLimits happened (it may leave unfinished tasks past a bound)

    # ---- applying ------------------------------------------------------------------------

    def apply(self, command: Command, entropy: int = 7) -> Outcome:
        before = self.s.snapshot()
        unbounded = None
        if isinstance(command, Submit):
            unbounded = Scheduler.restore(before, CONFIG)
            depth = self.s.limits()[0]
            assert unbounded.apply(SetLimits(depth, 10**9, 10**12), self.now, 0).ok
        held_tasks = self.s.list(limit=100_000)[0]
        self.evicted_keys = {t.id: finished_key(t) for t in held_tasks if t.state.terminal}
        self.pre_deps = {t.id: t.depends_on for t in held_tasks}
        out = self.s.apply(command, self.now, entropy)
        if out.rejection is not None and out.rejection.code is RejectCode.NODE_FULL:
            assert unbounded is not None, "only a submit is refused for memory"
            self.check_node_full(unbounded, command)
            note_event("submit refused: node full")
        if out.evicted:
            self.check_evicted(out)
            note_event(f"evicted by {type(command).__name__}")
        if self.shadow is not None:
            twin = self.shadow.apply(command, self.now, entropy)
            assert (twin.rejection, twin.reply, twin.events) == (
                out.rejection,
                out.reply,
                out.events,
            )
            assert self.shadow.snapshot() == self.s.snapshot()
        if not out.ok:
            assert out.events == []
            assert self.s.snapshot() == before, f"rejected {command} changed state"
            return out
        # Revocations are the effect the scheduler reports: exactly the leases that ended
        # without their holder asking (a worker's own Complete or Fail revokes nothing).
        ended = [(e.task_id, e.epoch) for e in out.events if e.previous is State.RUNNING]
        if isinstance(command, (Complete, Fail)):
            assert out.revoked == ()
        else:
            assert [(r.task_id, r.epoch) for r in out.revoked] == ended
        for event in out.events:
            assert self.model.get(event.task_id) == event.previous, event
            if event.previous is State.RUNNING:
                assert event.epoch > 0
            self.model[event.task_id] = event.current
            if event.current is State.SUCCEEDED:
                assert event.task_id not in self.succeeded, "second terminal success"
                self.succeeded.add(event.task_id)
        if out.events:
            # Past the byte bound after a command that changed tasks, only the finished tasks
            # leaving together with one the reply names may stay (all others were evicted).
            named = named_by(out)
            self.over_allowed = {f for f, g in groups(self.s).items() if g & named}
        return out

    def check_node_full(self, unbounded: Scheduler, command: Command) -> None:
        """The refused batch fits without bounds, but not beside the unfinished tasks."""
        assert isinstance(command, Submit)
        free = unbounded.apply(command, self.now, 7)
        assert free.ok, "NODE_FULL for a submit that is otherwise invalid"
        reply: tuple[tuple[str, bool], ...] = free.reply  # type: ignore[assignment]
        named = {task_id for task_id, _ in reply}
        unfinished = [t for t in unbounded.list(limit=100_000)[0] if not t.state.terminal]
        # What cannot be evicted: the unfinished, and every finished task leaving together
        # with one the reply names (the new tasks, idempotent repeats).
        must_keep = {t.id: t for t in unfinished}
        for finished, group in groups(unbounded).items():
            if group & named:
                must_keep[finished] = unbounded.get(finished)  # type: ignore[assignment]
        assert (
            len(must_keep) > self.s.holdings().max_tasks
            or sum(t.size for t in must_keep.values()) > self.s.holdings().max_bytes
        ), f"NODE_FULL but {len(must_keep)} tasks would fit after evicting finished ones"

    def check_evicted(self, out: Outcome) -> None:
        """Evicted tasks are gone, and no finished task left is older than the oldest-first
        choice made (bar those leaving together with a task the reply names)."""
        evicted = set(out.evicted)
        assert len(evicted) == len(out.evicted)
        for task_id in out.evicted:
            assert self.s.get(task_id) is None
            assert self.model[task_id] in TERMINAL or any(
                e.task_id == task_id and e.current in TERMINAL for e in out.events
            )
        # Roots were picked oldest first; the others went along with an ended dependency.
        roots = [i for i in out.evicted if not evicted & set(self.pre_deps.get(i, ()))]
        youngest_root = max(
            (self.evicted_keys[i] for i in roots if i in self.evicted_keys), default=None
        )
        if youngest_root is None:
            return
        named = named_by(out)
        for finished, group in groups(self.s).items():
            task = self.s.get(finished)
            assert task is not None
            if not group & named:
                assert finished_key(task) >= youngest_root, "evicted a younger task"

    # ---- rules ---------------------------------------------------------------------------

    @rule(
        data=st.data(),
        n=st.integers(1, 4),
    )
    def submit(self, data: st.DataObject, n: int) -> None:
        specs = []
        for i in range(n):
            deps: list[str] = []
            pick_existing: bool = data.draw(st.booleans())
            if self.known and pick_existing:
                deps.append(data.draw(st.sampled_from(self.known[-8:])))
            if i and data.draw(st.booleans()):
                deps.append(f"r{data.draw(st.integers(0, i - 1))}")
            specs.append(
                TaskSpec(
                    queue=data.draw(st.sampled_from(QUEUES)),
                    payload=data.draw(st.sampled_from([b"", b"", b"p" * 9, b"q" * 40])),
                    labels=data.draw(st.sampled_from([(), (("k", "v"),)])),
                    priority=data.draw(st.integers(0, 9)),
                    timeout=data.draw(st.sampled_from([3.0, 10.0, 100.0])),
                    max_retries=data.draw(st.integers(0, 2)),
                    run_at=self.now + data.draw(st.sampled_from([0.0, 0.0, 4.0, 15.0])),
                    depends_on=tuple(deps),
                    idempotency_key=data.draw(st.sampled_from(["", "", "", "k1", "k2"])),
                    ref=f"r{i}",
                )
            )
        ids = []
        for _ in specs:
            self.ids += 1
            ids.append(f"T{self.ids:06d}")
        out = self.apply(Submit(tuple(specs), tuple(ids)))
        if out.ok:
            self.known.extend(i for i in ids if self.s.get(i) is not None)

    @rule(
        queue=st.sampled_from(QUEUES),
        worker=st.sampled_from(WORKERS),
        n=st.integers(1, 3),
        ttl=st.sampled_from([2.0, 20.0]),
    )
    def lease(self, queue: str, worker: str, n: int, ttl: float) -> None:
        queued_before = {
            t.id: (t.priority, t.seq)
            for t in self.s.list(queue=queue, state=State.QUEUED, limit=10_000)[0]
        }
        out = self.apply(Lease(queue, worker, n, ttl))
        assert out.ok
        leased: tuple[Leased, ...] = out.reply  # type: ignore[assignment]
        if self.s.queue_stats(queue).paused:
            assert leased == ()
            return
        # Priority order: exactly the best `len(leased)` of what was queued, in order.
        best = sorted(queued_before, key=lambda i: (-queued_before[i][0], queued_before[i][1]))
        assert [x.task_id for x in leased] == best[: len(leased)]
        assert len(leased) == min(n, len(best))
        for x in leased:
            task = self.s.get(x.task_id)
            assert task is not None
            assert task.run_at <= self.now, "leased before run_at"
            for dep in task.depends_on:
                dep_task = self.s.get(dep)
                assert dep_task is None or dep_task.state is State.SUCCEEDED, "deps unfinished"
            assert x.epoch > self.max_epoch
            self.max_epoch = x.epoch
        self.leases.extend(leased)

    def live(self, x: Leased) -> bool:
        task = self.s.get(x.task_id)
        return task is not None and task.state is State.RUNNING and task.epoch == x.epoch

    def fenced(self, x: Leased, command: Command, entropy: int = 7) -> None:
        """Exactly the live lease's calls are accepted; stale epochs are rejected."""
        live = self.live(x)
        out = self.apply(command, entropy)
        assert out.ok == live, (command, out.rejection)

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), result=st.sampled_from([b"", b"ok", b"r" * 60]))
    def complete(self, data: st.DataObject, result: bytes) -> None:
        x = data.draw(st.sampled_from(self.leases[-6:]))
        self.fenced(x, Complete(x.task_id, x.epoch, result))

    @precondition(lambda self: self.leases)
    @rule(
        data=st.data(),
        retryable=st.booleans(),
        entropy=st.integers(0, 2**64 - 1),
        retry_delay=st.sampled_from([0.0, 0.5, 3.0, 40.0]),
    )
    def fail(self, data: st.DataObject, retryable: bool, entropy: int, retry_delay: float) -> None:
        x = data.draw(st.sampled_from(self.leases[-6:]))
        self.fenced(x, Fail(x.task_id, x.epoch, "boom", retryable, retry_delay), entropy)

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), ttl=st.sampled_from([1.0, 30.0]))
    def heartbeat(self, data: st.DataObject, ttl: float) -> None:
        x = data.draw(st.sampled_from(self.leases[-6:]))
        self.fenced(x, Heartbeat(x.task_id, x.epoch, ttl))

    def superseded(self) -> list[Leased]:
        """Old leases of tasks that are running again under a newer epoch."""
        return [x for x in self.leases if not self.live(x) and self.s.get(x.task_id) is not None
                and self.s.get(x.task_id).state is State.RUNNING]  # type: ignore[union-attr]  # fmt: skip

    @precondition(lambda self: self.superseded())
    @rule(data=st.data(), kind=st.sampled_from(["complete", "fail", "heartbeat"]))
    def stale_call_while_running_again(self, data: st.DataObject, kind: str) -> None:
        x = data.draw(st.sampled_from(self.superseded()))
        commands: dict[str, Command] = {
            "complete": Complete(x.task_id, x.epoch, b"stale"),
            "fail": Fail(x.task_id, x.epoch, "stale"),
            "heartbeat": Heartbeat(x.task_id, x.epoch, 5.0),
        }
        command = commands[kind]
        self.fenced(x, command)

    @precondition(lambda self: self.known)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.apply(Cancel(data.draw(st.sampled_from(self.known[-10:]))))

    @precondition(lambda self: self.known)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        self.apply(Retry(data.draw(st.sampled_from(self.known[-10:]))))

    @rule(queue=st.sampled_from(QUEUES), pause=st.booleans())
    def pause_or_resume(self, queue: str, pause: bool) -> None:
        assert self.apply(PauseQueue(queue) if pause else ResumeQueue(queue)).ok

    @rule(worker=st.sampled_from(WORKERS))
    def release_worker(self, worker: str) -> None:
        self.apply(ReleaseWorker(worker))

    @rule(ttl=st.sampled_from([1.0, 30.0]))
    def renew_leases(self, ttl: float) -> None:
        assert self.apply(RenewLeases(ttl)).ok

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0, 30.0]), entropy=st.integers(0, 2**64 - 1))
    def tick(self, dt: float, entropy: int) -> None:
        deadline = self.s.next_deadline()
        before = self.s.snapshot()
        self.now += dt
        out = self.apply(Tick(), entropy)
        if deadline is None or deadline > self.now:
            assert out.events == [] and self.s.snapshot() == before, "tick before its deadline"
        else:
            later = self.s.next_deadline()
            assert later is None or later > self.now, "a due timer survived the tick"

    @rule(spec=st.sampled_from([TaskSpec(priority=11), TaskSpec(timeout=-1.0), TaskSpec(queue="")]))
    def invalid_submit(self, spec: TaskSpec) -> None:
        self.ids += 1
        assert not self.apply(Submit((TaskSpec(), spec), (f"X{self.ids}", f"Y{self.ids}"))).ok

    @rule(
        max_tasks=st.sampled_from([4, 14, 30]),
        max_bytes=st.sampled_from([120, 260, 600]),
        depth=st.sampled_from([3, 12]),
    )
    def set_limits(self, max_tasks: int, max_bytes: int, depth: int) -> None:
        out = self.apply(SetLimits(depth, max_tasks, max_bytes))
        assert out.ok and self.s.limits() == (depth, max_tasks, max_bytes)
        self.over_allowed = set()  # every finished task past a bound was evicted
        self.lowered = True

    @rule(
        retention=st.sampled_from([5.0, 50.0, 200.0]),
        base=st.sampled_from([0.5, 1.0]),
        cap=st.sampled_from([1.0, 8.0]),
    )
    def set_config(self, retention: float, base: float, cap: float) -> None:
        # The rest of the config (the bounds) stays as logged; the timers follow the new
        # retention at once (the tick rule checks no due timer is missed or early).
        config = replace(self.s.config, retention=retention, backoff_base=base, backoff_cap=cap)
        out = self.apply(SetConfig(config))
        assert out.ok and self.s.config == config
        self.over_allowed = set()  # every finished task past a bound was evicted
        for task in self.s.list(limit=100_000)[0]:
            if task.state.terminal:
                due = task.finished_at + retention
                deadline = self.s.next_deadline()
                assert deadline is not None and deadline <= due

    @rule()
    def restore_shadow(self) -> None:
        self.shadow = Scheduler.restore(self.s.snapshot(), CONFIG)

    # ---- invariants ----------------------------------------------------------------------

    @invariant()
    def indexes_agree_with_a_recount(self) -> None:
        assert self.s.audit() == []
        if self.shadow is not None:
            assert self.shadow.audit() == []

    @invariant()
    def task_invariants(self) -> None:
        s = self.s
        tasks, _ = s.list(limit=100_000)
        assert len(tasks) == len(s)
        counts: dict[tuple[str, State], int] = {}
        running_epochs: set[int] = set()
        for task in tasks:
            counts[(task.queue, task.state)] = counts.get((task.queue, task.state), 0) + 1
            assert self.model[task.id] is task.state, "event stream disagrees with state"
            assert 0 <= task.attempt <= task.max_retries + 1
            deps = [s.get(d) for d in task.depends_on]
            if task.state is State.BLOCKED:
                assert task.waiting_on
                for dep_id in task.waiting_on:
                    dep = s.get(dep_id)
                    assert dep is not None and not dep.state.terminal
            else:
                assert not task.waiting_on
            if task.state in (State.PENDING, State.QUEUED, State.RUNNING, State.SUCCEEDED):
                assert all(d is None or d.state is State.SUCCEEDED for d in deps), task
            if not task.state.terminal:
                assert all(d is None or d.state not in (State.FAILED, State.CANCELED) for d in deps)
            if task.state is State.RUNNING:
                assert 0 < task.epoch <= self.max_epoch
                assert task.epoch not in running_epochs
                running_epochs.add(task.epoch)
                assert task in s.running_for(task.worker)
            if task.state is State.SUCCEEDED:
                assert task.id in self.succeeded
            if task.canceled_by:
                # Canceled because of a dependency that is still failed or canceled: a retry
                # of that dependency would have brought this task back.
                assert task.state is State.CANCELED
                cause = s.get(task.canceled_by)
                assert cause is None or cause.state in (State.FAILED, State.CANCELED), task
        for name in s.queue_names():
            stats = s.queue_stats(name)
            for state in State:
                assert stats.by_state[state] == counts.get((name, state), 0)
            queued = [t for t in tasks if t.queue == name and t.state is State.QUEUED]
            for p in range(10):
                assert stats.by_priority[p] == sum(1 for t in queued if t.priority == p)
        assert sum(counts.values()) == len(s)
        # The node-wide counts are kept incrementally; they equal a recount, and bound memory.
        held = s.holdings()
        finished = [t for t in tasks if t.state.terminal]
        assert held.tasks == len(tasks)
        assert held.bytes == sum(task_size(t) for t in tasks)
        assert held.finished_tasks == len(finished)
        assert held.finished_bytes == sum(task_size(t) for t in finished)
        assert all(t.size == task_size(t) for t in tasks)
        if held.tasks > held.max_tasks or held.bytes > held.max_bytes:
            assert {t.id for t in finished} <= self.over_allowed, "over a bound, not evicting"
        if held.tasks > held.max_tasks:
            assert self.lowered, "only lowered limits leave more tasks than max_tasks"
        # A task whose dependency was forgotten may take it for succeeded: it must have been.
        for task in tasks:
            for dep in task.depends_on:
                if s.get(dep) is None:
                    assert self.gone.get(dep, State.SUCCEEDED) is State.SUCCEEDED, (task, dep)
        # Forgotten tasks were terminal; drop them from the model.
        for task_id in [i for i in self.model if s.get(i) is None]:
            self.gone[task_id] = self.model.pop(task_id)
            assert self.gone[task_id].terminal


TestScheduler = SchedulerMachine.TestCase
TestScheduler.settings = settings(
    max_examples=1000 if THOROUGH else 120,
    stateful_step_count=80 if THOROUGH else 40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
