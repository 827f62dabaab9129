"""The node's application layer: one place where API calls become scheduler commands.

REST, gRPC, the local executors and remote worker streams all call ``NodeService``. A write
is stamped here (leader time, ids, entropy), encoded, proposed to the store, and answered only
after the store made it durable and the scheduler applied it (on a follower the store forwards
it to the leader, which re-stamps its time, and answers once this node applied it too). Reads
go to the scheduler's applied state; the API layers first ``await fresh()``, the store's read
barrier, so a read reflects every write acknowledged anywhere before it (linearizable) unless
the client asked for a stale read from this replica. Rejections from the scheduler become
``CallerError``s that name the offending field; the API layers map them to status codes.

It also owns three loops of the node: the timer loop (proposes ``Tick`` when the scheduler's
next deadline passes), the wake-ups that tell executors work arrived, and the event fan-out
that feeds watchers and revokes attempts the scheduler took away. While the store refuses
writes (a full or failing disk), the timer loop and other leader duties (``until_written``)
pause and retry every ``DUTY_RETRY`` seconds instead of failing: deadlines that passed in the
meantime are handled by the first ``Tick`` that gets through.
"""

from __future__ import annotations

import builtins
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import trio

from taskd.errors import CallerError, ClusterError
from taskd.exec.work import Report, WorkItem
from taskd.node import limits
from taskd.node.app.ids import IdGenerator
from taskd.node.app.leaderclock import LeaderClock
from taskd.node.app.machine import SchedulerMachine
from taskd.node.observe.events import EventHub
from taskd.node.observe.rates import QueueRates
from taskd.queue import codec
from taskd.queue.commands import (
    Cancel,
    Command,
    Complete,
    Fail,
    Heartbeat,
    Lease,
    Leased,
    Outcome,
    PauseQueue,
    ReleaseWorker,
    RenewLeases,
    ResumeQueue,
    Retry,
    State,
    Submit,
    TaskSpec,
    Tick,
)
from taskd.queue.scheduler import QueueStats, Scheduler
from taskd.queue.task import Task
from taskd.store.seam import Store
from taskd.web.tracker import StreamTracker

log = logging.getLogger("taskd.service")
_ATTEMPT_FAILED = frozenset({State.PENDING, State.FAILED})  # retried later, or for good

# While the store refuses writes (a full or failing disk, no leader), leader duties wait this
# long between tries: each try is refused at once, without touching the disk.
DUTY_RETRY = 1.0


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    local_worker: str = "local@node"  # worker name of this node's local executors
    # The only member, for good (no --peers; membership changes are refused): every write it
    # acknowledged was applied before the acknowledgement, so a read needs no barrier.
    alone: bool = False
    local_lease_margin: float = 30.0  # local leases last timeout + this
    max_list_limit: int = limits.MAX_LIST_LIMIT


class NodeService:
    def __init__(
        self,
        machine: SchedulerMachine,
        store: Store,
        config: ServiceConfig = ServiceConfig(),
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.machine = machine
        self.store = store
        self.config = config
        self.clock = clock or LeaderClock()
        self.ids = IdGenerator(self.clock)
        self.events = EventHub()
        self.revoke: Callable[[str, int, str], object] = lambda task_id, epoch, reason: None
        # Workers per queue on this node (the runner wires its WorkerRegistry in): shown by
        # /queues, and a queue nobody serves gets a warning in the log when tasks arrive.
        self.consumers: Callable[[], Mapping[str, int]] = dict
        self._unserved_warned: dict[str, float] = {}  # queue → trio time of its warning
        self.log_failures = False  # set once recovery replayed the log: old news is not logged
        self._random = random.Random()
        self._work_arrived: dict[str, trio.Event] = {}
        # Tasks proposed here that will be runnable the moment their Submit applies, per
        # queue, until it does (``_expect``): counted in ``backlog`` so that a waiting worker
        # proposes its Lease right behind the Submit, into the same durability round.
        self._expected: dict[str, int] = {}
        self._expecting: dict[str, dict[str, int]] = {}  # first task id of a Submit → counts
        self._deadline_moved = trio.Event()
        self._sleeping_until: float | None = None
        self._paused_duties: set[str] = set()
        self.rates = QueueRates()
        # counts, latencies and transitions for the event stream (``start`` after recovery)
        self.stream = StreamTracker(lambda task_id: machine.scheduler.get(task_id), machine.now_of)
        machine.listeners.append(self._on_applied)
        machine.listeners.append(self.rates.on_applied)
        machine.listeners.append(self.stream.on_applied)

    @property
    def scheduler(self) -> Scheduler:
        return self.machine.scheduler

    # ---- writes ------------------------------------------------------------------------

    async def _propose(self, command: Command) -> Outcome:
        data = codec.encode(command, self.clock(), self._random.getrandbits(64))
        outcome = await self.store.propose(data)
        assert isinstance(outcome, Outcome), outcome
        if outcome.rejection is not None:
            r = outcome.rejection
            raise CallerError(r.code.value, r.message, r.field)
        return outcome

    def _admit(self, specs: Sequence[TaskSpec]) -> None:
        """Refuse before proposing what the scheduler is certain to refuse (node or queue
        full), so a flood of refused submits costs no log entries, fsyncs or memory."""
        refusal = self.scheduler.certain_refusal(specs)
        if refusal is not None:
            raise CallerError(refusal.code.value, refusal.message, refusal.field)

    async def submit(self, specs: Sequence[TaskSpec]) -> list[tuple[Task, bool]]:
        """Submit a batch, all or nothing; each task with whether it was an idempotent repeat."""
        self._admit(specs)
        ids = tuple(self.ids.new() for _ in specs)
        self._expect(ids, specs)
        try:
            outcome = await self._propose(Submit(tuple(specs), ids))
        finally:
            self._expected_applied(ids[0])
        self.warn_unserved({spec.queue for spec in specs})
        reply = outcome.reply
        assert isinstance(reply, tuple)
        return [(self._task(task_id), duplicate) for task_id, duplicate in reply]

    async def submit_ids(self, specs: Sequence[TaskSpec]) -> list[tuple[str, bool]]:
        """Like ``submit`` but answers ids only: the fast path for large batches."""
        self._admit(specs)
        ids = tuple(self.ids.new() for _ in specs)
        self._expect(ids, specs)
        try:
            outcome = await self._propose(Submit(tuple(specs), ids))
        finally:
            self._expected_applied(ids[0])
        self.warn_unserved({spec.queue for spec in specs})
        reply = outcome.reply
        assert isinstance(reply, tuple)
        return list(reply)

    async def cancel(self, task_id: str) -> Task:
        await self._known(task_id)
        await self._propose(Cancel(task_id))
        return self._task(task_id)

    async def retry(self, task_id: str) -> Task:
        await self._known(task_id)
        await self._propose(Retry(task_id))
        return self._task(task_id)

    async def _known(self, task_id: str) -> None:
        """Refuse an unknown id before proposing; a task this replica has not applied yet
        (submitted through another member a moment ago) is looked for after the barrier."""
        if self.scheduler.get(task_id) is None:
            await self.store.read_barrier()
            self._task(task_id)

    async def pause(self, queue: str) -> QueueStats:
        """Pause a known queue: one that holds tasks or that a worker serves. Pausing a name
        never seen is refused (404): it is a typo far more often than a plan."""
        if not self._known_queue(queue):
            await self.store.read_barrier()  # created through another member a moment ago?
            if not self._known_queue(queue):
                raise CallerError(
                    "not_found",
                    f"no queue {queue!r}: it holds no tasks and no worker serves it "
                    "(taskd queues lists the known ones)",
                    "name",
                )
        await self._propose(PauseQueue(queue))
        return self.scheduler.queue_stats(queue)

    def _known_queue(self, queue: str) -> bool:
        return queue in self.scheduler.queue_names() or queue in self.consumers()

    def warn_unserved(self, queues: Iterable[str]) -> None:
        """Log (at most once a minute per queue) that tasks wait in a queue nobody serves."""
        consumers = self.consumers()
        now = trio.current_time()
        for queue in queues:
            if consumers.get(queue, 0) or now - self._unserved_warned.get(queue, -1e9) < 60:
                continue
            self._unserved_warned[queue] = now
            log.warning(
                "tasks wait in queue %s, which no executor or worker serves: start a worker "
                "for it or give --exec %s=COMMAND",
                queue,
                queue,
                extra={"fields": {"queue": queue, "waiting": self.scheduler.depth(queue)}},
            )

    async def resume(self, queue: str) -> QueueStats:
        await self._propose(ResumeQueue(queue))
        return self.scheduler.queue_stats(queue)

    async def lease(self, queue: str, worker: str, max_tasks: int, ttl: float) -> list[WorkItem]:
        if max_tasks <= 0 or self.backlog(queue) == 0:
            return []
        outcome = await self._propose(Lease(queue, worker, max_tasks, ttl))
        leased = outcome.reply
        assert isinstance(leased, tuple)
        return [self._work_item(grant) for grant in leased]

    async def heartbeat(self, task_id: str, epoch: int, ttl: float) -> Task:
        await self._propose(Heartbeat(task_id, epoch, ttl))
        return self._task(task_id)

    async def complete(self, task_id: str, epoch: int, result: bytes, *, log: str = "") -> Task:
        await self._propose(Complete(task_id, epoch, result, log))
        return self._task(task_id)

    async def fail(
        self,
        task_id: str,
        epoch: int,
        error: str,
        *,
        retryable: bool = True,
        retry_delay: float = 0.0,
    ) -> Task:
        """``retry_delay`` > 0: the next attempt no earlier than that (else the backoff)."""
        await self._propose(Fail(task_id, epoch, error, retryable, retry_delay))
        return self._task(task_id)

    async def report_many(self, reports: Sequence[Report]) -> builtins.list[bool]:
        """Complete or fail several attempts in one durability round; False where stale."""
        now, commands = self.clock(), []
        for r in reports:
            command: Command = (
                Complete(r.task_id, r.epoch, r.result)
                if r.success
                else Fail(r.task_id, r.epoch, r.error, True, r.retry_delay)
            )
            commands.append(codec.encode(command, now, self._random.getrandbits(64)))
        outcomes = await self.store.propose_many(commands)
        accepted = []
        for outcome in outcomes:
            assert isinstance(outcome, Outcome), outcome
            rejection = outcome.rejection
            if rejection is not None and rejection.code.value not in ("conflict", "not_found"):
                raise CallerError(rejection.code.value, rejection.message, rejection.field)
            accepted.append(rejection is None)
        return accepted

    async def release_worker(self, worker: str) -> None:
        await self._propose(ReleaseWorker(worker))

    async def renew_leases(self, ttl: float) -> None:
        await self._propose(RenewLeases(ttl))

    # ---- reads -------------------------------------------------------------------------

    async def fresh(self, stale: bool = False) -> None:
        """Before a read: wait for the store's read barrier (linearizable), unless ``stale``
        (this replica as it is, possibly behind the leader). Raises ``ClusterError`` when
        this member cannot learn the leader's commit index. A node that is ``alone`` skips
        the barrier: its state already reflects every write acknowledged (it is the only
        member, and applies each write before acknowledging it)."""
        if not stale and not self.config.alone:
            await self.store.read_barrier()

    def _task(self, task_id: str) -> Task:
        task = self.scheduler.get(task_id)
        if task is None:
            raise CallerError("not_found", f"no task with id {task_id!r}", "id")
        return task

    def get(self, task_id: str) -> Task:
        return self._task(task_id)

    def list(
        self, queue: str | None, state: State | None, limit: int, after: str | None
    ) -> tuple[builtins.list[Task], str | None]:
        return self.scheduler.list(queue, state, limit, after)

    def queues(self) -> builtins.list[QueueStats]:
        """Every queue that holds tasks or that a worker of this node serves, by name."""
        names = sorted({*self.scheduler.queue_names(), *self.consumers()})
        return [self.scheduler.queue_stats(name) for name in names]

    def _work_item(self, grant: Leased) -> WorkItem:
        task = self._task(grant.task_id)
        deps = self.scheduler.dependency_results(task.id) if task.depends_on else {}
        return WorkItem(
            id=task.id,
            queue=task.queue,
            name=task.name,
            payload=task.payload,
            attempt=grant.attempt,
            epoch=grant.epoch,
            timeout=task.timeout,
            dependency_results=deps,
        )

    # ---- reacting to applied commands --------------------------------------------------

    def _on_applied(self, command: Command, outcome: Outcome) -> None:
        if self._expecting and isinstance(command, Submit) and command.ids:
            self._expected_applied(command.ids[0])
        for event in outcome.events:
            if event.current is State.QUEUED:
                self._wake(event.queue)
        if self.log_failures:
            for event in outcome.events:
                if event.previous is State.RUNNING and event.current in _ATTEMPT_FAILED:
                    self._log_failure(event.task_id, event.current)
        for revoked in outcome.revoked:  # the scheduler says which leases it took away
            self.revoke(revoked.task_id, revoked.epoch, revoked.reason)
        if isinstance(command, ResumeQueue):
            self._wake(command.queue)
        if outcome.events:
            self.events.publish(outcome.events)
        deadline = self.scheduler.next_deadline()
        if deadline is not None and (
            self._sleeping_until is None or deadline < self._sleeping_until
        ):
            self._deadline_moved.set()

    def _log_failure(self, task_id: str, state: State) -> None:
        task = self.scheduler.get(task_id)
        if task is None:
            return
        error = task.error if len(task.error) <= 200 else task.error[:200] + "…"
        then = "retrying later" if state is State.PENDING else "failed for good"
        log.warning(
            "task %s failed on attempt %d (%s): %s",
            task_id,
            task.attempt,
            then,
            error.splitlines()[-1] if error.strip() else "(no error text)",
            extra={
                "fields": {
                    "id": task_id,
                    "queue": task.queue,
                    "attempt": task.attempt,
                    "state": state.value,
                    "worker": task.worker,
                    "error": error,
                }
            },
        )

    def _wake(self, queue: str) -> None:
        event = self._work_arrived.pop(queue, None)
        if event is not None:
            event.set()

    async def wait_for_work(self, queues: Sequence[str]) -> None:
        """Return when one of ``queues`` may have runnable tasks (spurious returns allowed)."""
        if any(self.scheduler.runnable(q) for q in queues):
            return
        async with trio.open_nursery() as nursery:
            for queue in queues:
                event = self._work_arrived.setdefault(queue, trio.Event())
                nursery.start_soon(_wait_then_cancel, event, nursery.cancel_scope)

    def backlog(self, queue: str) -> int:
        """Tasks a lease of ``queue`` should find: the runnable ones, and those of Submits
        proposed here that have not applied yet (a Lease proposed now is applied after them)."""
        runnable = self.scheduler.runnable(queue)
        expected = self._expected.get(queue, 0)
        if expected and (runnable or not self.scheduler.is_paused(queue)):
            return runnable + expected
        return runnable

    def _expect(self, ids: Sequence[str], specs: Sequence[TaskSpec]) -> None:
        """Count the tasks of a Submit about to be proposed that will be runnable at once (no
        dependencies, no delay) and wake the workers of their queues: each proposes its Lease
        right after this Submit's entry, so both share one fsync (a round less of pickup)."""
        if not ids or not self._work_arrived or self.store.leadership.term is None:
            return  # nobody waits for work, or a follower: it forwards, and order is the leader's
        now = self.clock()
        counts: dict[str, int] = {}
        for spec in specs:
            if not spec.depends_on and spec.run_at <= now and spec.queue in self._work_arrived:
                counts[spec.queue] = counts.get(spec.queue, 0) + 1
        if not counts:
            return
        self._expecting[ids[0]] = counts
        expected = self._expected
        for queue, n in counts.items():
            expected[queue] = expected.get(queue, 0) + n
            self._wake(queue)

    def _expected_applied(self, first_id: str) -> None:
        """The Submit whose first task is ``first_id`` applied (or will not): stop counting."""
        counts = self._expecting.pop(first_id, None)
        if counts is None:
            return
        expected = self._expected
        for queue, n in counts.items():
            left = expected.get(queue, 0) - n
            if left > 0:
                expected[queue] = left
            else:
                expected.pop(queue, None)

    # ---- the timer loop ----------------------------------------------------------------

    async def pause_duty(self, duty: str, exc: ClusterError) -> None:
        """A leader duty's write was refused: say so (once per outage), wait, let it retry.

        Nothing is lost by waiting: deadlines that pass meanwhile are handled by the first
        ``Tick`` that gets through, and an unwritten release or renewal is simply tried again.
        """
        if duty not in self._paused_duties:
            self._paused_duties.add(duty)
            log.warning("%s is paused, retrying every %.0fs: %s", duty, DUTY_RETRY, exc)
        await trio.sleep(DUTY_RETRY)

    def _resumed_duty(self, duty: str) -> None:
        if duty in self._paused_duties:
            self._paused_duties.discard(duty)
            log.warning("%s runs again", duty)

    async def until_written(self, duty: str, write: Callable[[], Awaitable[object]]) -> None:
        """Run ``write`` until the store takes it, pausing between refusals."""
        while True:
            try:
                await write()
            except ClusterError as exc:
                await self.pause_duty(duty, exc)
                continue
            self._resumed_duty(duty)
            return

    async def run_timers(self) -> None:
        """Propose a ``Tick`` whenever the scheduler's earliest deadline has passed; while the
        store refuses writes, pause and retry rather than fail."""
        while True:
            self._deadline_moved = trio.Event()
            deadline = self.scheduler.next_deadline()
            self._sleeping_until = deadline
            if deadline is None:
                await self._deadline_moved.wait()
                continue
            delay = deadline - self.clock()
            if delay > 0:
                with trio.move_on_after(delay):
                    await self._deadline_moved.wait()
                continue
            self._sleeping_until = None
            try:
                await self._propose(Tick())
            except ClusterError as exc:
                await self.pause_duty("the timer loop (delays, lease expiry, timeouts)", exc)
                continue
            self._resumed_duty("the timer loop (delays, lease expiry, timeouts)")
            if (self.scheduler.next_deadline() or float("inf")) <= deadline:
                await trio.sleep(0.01)  # the clock stepped back; don't spin


async def _wait_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
