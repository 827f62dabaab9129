"""The local command executor: ``--exec QUEUE=COMMAND`` (design.md §3, a contract).

Theory of operation: one ``LocalExecutor`` serves one queue. Its lease loop keeps up to
``target`` attempts running (``Scaler`` moves the target between the configured minimum and
maximum with the backlog), leases every free slot in one ``lease`` call, and otherwise sleeps
in ``source.wait_for_work`` or until a slot frees; it never polls for work. Each leased item
runs as an ``Attempt`` in the executor's nursery; when the command ends, its slot frees at
once and the outcome is reported with the lease's epoch (the report waits for durability, the
next attempt does not wait for the report).

Revocation: ``revoke`` SIGKILLs the attempt's process group at once and marks that
(task, epoch) so its outcome is never reported: a revoked attempt's result is not valid.
A report the store refuses (a full disk) is tried again every second until it is taken.
A lease call that failed may still have been granted (its commit reached the log, its answer
did not): the executor then reads back the leases held in its name for its queue and fails
the ones it is not running (``lease lost``, retried as a lost worker's are), before it leases
again; otherwise such a task would stay running, unheld, until its timeout.
Shutdown: ``drain`` stops leasing, lets running attempts finish for ``grace`` seconds, then
kills the rest and fails them with ``node shutting down`` so they retry elsewhere; ``serve``
returns once every outcome is reported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import trio

from taskd.errors import ClusterError, TaskdError
from taskd.exec.attempt import Attempt, AttemptResult
from taskd.exec.concurrency import Concurrency, Scaler
from taskd.exec.spawn import Spawner
from taskd.exec.work import WorkerHandle, WorkerRegistry, WorkItem, WorkSource

log = logging.getLogger(__name__)

SHUTTING_DOWN = "node shutting down"
_RECHECK_GROWTH = 1.0  # while saturated with work waiting, look at the backlog this often
_LEASE_RETRY = 0.5  # after a lease error, or a backlog that a lease did not find
_REPORT_RETRY = 1.0  # between tries of a report the store refused (a full disk)
LEASE_LOST = (
    "worker lost: the lease was granted but its answer never reached this node's executor "
    "(the store failed after committing it); the task runs again"
)


class LocalExecutor:
    def __init__(
        self,
        queue: str,
        argv: Sequence[str],
        source: WorkSource,
        *,
        worker: str,
        concurrency: Concurrency,
        registry: WorkerRegistry | None = None,
        output_limit: int = 1 << 20,
        kill_grace: float = 5.0,
        idle_shrink_after: float = 30.0,
        die_with_node: bool = True,
    ) -> None:
        if not argv:
            raise ValueError(f"--exec {queue}=: the command is empty")
        self.queue = queue
        self.worker = worker
        self.argv = tuple(argv)
        self.concurrency = concurrency
        self._source = source
        self._registry = registry if registry is not None else WorkerRegistry()
        self._output_limit = output_limit
        self._kill_grace = kill_grace
        self._idle_shrink_after = idle_shrink_after
        self._spawner = Spawner(die_with_node=die_with_node)
        self._env = dict(os.environ)
        self._attempts: dict[str, Attempt] = {}  # running commands, by task id
        self._revoked: set[tuple[str, int]] = set()  # (task id, epoch): never report these
        self._handle: WorkerHandle | None = None
        self._draining = False
        self._grace_over = False
        self._changed = trio.Event()  # set (and replaced) whenever an attempt ends
        self._wake: trio.CancelScope | None = None  # the lease loop's current wait
        self._stopped = trio.Event()
        self._lease_error: str | None = None  # the last lease refusal, logged once
        self._unsure = False  # a lease call failed: leases may be held in its name, unknown

    @property
    def running(self) -> int:
        return len(self._attempts)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until ``drain`` has finished; started with ``nursery.start``."""
        scaler = Scaler(self.concurrency, self._idle_shrink_after, trio.current_time())
        self._handle = self._registry.join(
            self.worker, "local", [self.queue], scaler.target, holder=self
        )
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await self._lease_loop(nursery, scaler)
        finally:
            self._handle.leave()
            self._spawner.close()
            self._stopped.set()

    async def drain(self, grace: float) -> None:
        """Stop leasing; after ``grace`` seconds kill what still runs; wait for ``serve``."""
        self._draining = True
        self._poke()
        if self._handle is None:
            return  # never served
        with trio.move_on_after(grace):
            while self._attempts:
                await self._changed.wait()
        self._grace_over = True
        for attempt in list(self._attempts.values()):
            attempt.kill(SHUTTING_DOWN)
        await self._stopped.wait()

    def revoke(self, task_id: str, epoch: int, reason: str) -> None:
        """The node took this lease back: kill the attempt now and never report it."""
        attempt = self._attempts.get(task_id)
        if attempt is None or attempt.item.epoch != epoch:
            return
        log.info("revoking %s (epoch %d) on %s: %s", task_id, epoch, self.queue, reason)
        self._revoked.add((task_id, epoch))
        attempt.kill(f"revoked: {reason}")

    async def _lease_loop(self, nursery: trio.Nursery, scaler: Scaler) -> None:
        assert self._handle is not None
        while not self._draining:
            now = trio.current_time()
            backlog = self._source.backlog(self.queue)
            running = len(self._attempts)
            target = scaler.observe(now, running, backlog)
            self._handle.set_capacity(target)
            free = target - running
            if self._unsure and not await self._reclaim():
                await trio.sleep(_LEASE_RETRY)
                continue
            if free > 0 and backlog > 0:
                items = await self._lease(free)
                for item in items:
                    self._start(nursery, item)
                if items:
                    scaler.worked(now)
                    continue
                await trio.sleep(_LEASE_RETRY)  # the backlog promised work the lease did not find
                continue
            deadline = scaler.shrink_at()
            if free <= 0 and backlog > 0 and target < scaler.range.max:
                deadline = min(deadline, now + _RECHECK_GROWTH)
            with trio.CancelScope(deadline=deadline) as self._wake:
                if free > 0:
                    await self._source.wait_for_work([self.queue])
                else:
                    await trio.sleep_forever()  # until an attempt ends (``_poke``)
            self._wake = None

    async def _lease(self, free: int) -> list[WorkItem]:
        try:
            items = await self._source.lease(self.queue, self.worker, free)
        except TaskdError as exc:
            self._unsure = True  # granted, perhaps, with the answer lost: see _reclaim
            # The store may refuse for a long time (a full disk): say so once, not per retry.
            if str(exc) != self._lease_error:
                log.warning("cannot lease from %s (retrying): %s", self.queue, exc)
                self._lease_error = str(exc)
            return []
        if self._lease_error is not None:
            log.warning("leasing from %s again", self.queue)
            self._lease_error = None
        return items

    async def _reclaim(self) -> bool:
        """After a failed lease call: fail the leases held in this executor's name for its
        queue that it does not run (their grant's answer was lost). True once checked."""
        try:
            held = await self._source.leases_of(self.worker, self.queue)
            lost = [
                (task_id, epoch)
                for task_id, epoch in held
                if (attempt := self._attempts.get(task_id)) is None or attempt.item.epoch != epoch
            ]
            for task_id, epoch in lost:
                log.warning("%s (epoch %d): %s", task_id, epoch, LEASE_LOST)
                await self._source.fail(task_id, epoch, LEASE_LOST)
        except TaskdError:
            return False  # the store still refuses: checked again before the next lease
        self._unsure = False
        return True

    def _start(self, nursery: trio.Nursery, item: WorkItem) -> None:
        assert self._handle is not None
        attempt = Attempt(
            item,
            self.argv,
            self._spawner,
            env=self._env,
            output_limit=self._output_limit,
            kill_grace=self._kill_grace,
        )
        self._attempts[item.id] = attempt
        self._handle.started(item.id, item.epoch)
        if self._grace_over:  # leased while the drain ran out of grace: fail it, do not run it
            attempt.kill(SHUTTING_DOWN)
        nursery.start_soon(self._run, attempt)

    async def _run(self, attempt: Attempt) -> None:
        item = attempt.item
        try:
            outcome = await attempt.run()
        finally:
            if self._attempts.get(item.id) is attempt:
                del self._attempts[item.id]
            self._poke()
        revoked = (item.id, item.epoch) in self._revoked
        self._revoked.discard((item.id, item.epoch))
        try:
            if revoked:
                return  # the node already ended this attempt; its outcome is not valid
            accepted = await self._report(item, outcome)
            if not accepted:
                log.info(
                    "stale lease: the outcome of %s (epoch %d) was ignored", item.id, item.epoch
                )
        except TaskdError as exc:  # the lease will lapse and the task run again
            log.warning("cannot report %s (epoch %d): %s", item.id, item.epoch, exc)
        finally:
            assert self._handle is not None
            if self._handle.running.get(item.id) == item.epoch:
                self._handle.finished(item.id)

    async def _report(self, item: WorkItem, outcome: AttemptResult) -> bool:
        """Report an outcome; True if taken, False if the lease was stale.

        While the store refuses writes (a full disk) the report is tried again every
        ``_REPORT_RETRY`` seconds: a local lease lasts days, so a dropped report would leave
        the task running until the node restarts. A node that shuts down stops trying (its
        restart releases the lease and the task runs again).
        """
        warned = False
        while True:
            try:
                if outcome.ok:
                    return await self._source.complete(
                        item.id, item.epoch, outcome.result, log=outcome.log
                    )
                return await self._source.fail(item.id, item.epoch, outcome.error)
            except ClusterError as exc:
                if self._draining:
                    raise
                if not warned:
                    log.warning(
                        "cannot report %s (epoch %d) yet, retrying every %.0fs: %s",
                        item.id,
                        item.epoch,
                        _REPORT_RETRY,
                        exc,
                    )
                    warned = True
            await trio.sleep(_REPORT_RETRY)

    def _poke(self) -> None:
        """Wake the lease loop and anyone waiting for an attempt to end."""
        self._changed.set()
        self._changed = trio.Event()
        if self._wake is not None:
            self._wake.cancel()
