"""The worker's transport: one ``WorkerService.Work`` stream at a time, on asyncio (grpclib).

Theory of operation: ``Runtime.run`` connects to the member ``Rotation`` names, sends a
``WorkerHello`` with the capacity the ``Ledger`` allows, and then runs two loops on the stream
until it breaks or the worker has drained: ``_receive`` (assignments start handlers,
revocations stop them, acks settle results) and ``_pump`` (everything the worker sends:
credits, results batched into one ``TaskResults``, heartbeats of every running attempt in one
``WorkerHeartbeat``). Handlers belong to the runtime, not to a stream: a stream that breaks
leaves them running; the next stream carries their heartbeats and results (``Ledger``). Every
hello lists the attempts carried over with ``holds_all``, so the node at once releases any
other lease under this worker's name: an assignment lost with the broken stream.
Decisions — what capacity to announce, what to heartbeat and when, when to grow or shrink,
where to reconnect and how long to wait — are taken by the I/O-free classes; this module only
moves bytes and wakes up when one of them says something is due.

Timeouts: an async handler past its attempt's timeout is cancelled and the attempt reported as
``timeout``. A sync handler runs in a thread, which cannot be stopped: at the timeout the
attempt is reported as ``timeout`` (its later result is discarded) but its slot stays taken
until the thread returns, so the worker never runs more threads than its concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import betterproto2
import grpclib
from grpclib.client import Channel, Stream
from grpclib.const import Cardinality, Status

from taskd.api.taskd import v1 as pb
from taskd.client.errors import from_status, leader_hint, trailers_of
from taskd.client.targets import Rotation, Target
from taskd.client.worker.handlers import Handlers, Registered
from taskd.client.worker.heartbeat import Heartbeats
from taskd.client.worker.job import WorkerTask
from taskd.client.worker.ledger import Ledger
from taskd.client.worker.outcome import TIMEOUT, Outcome, encode_result, failure
from taskd.client.worker.scaling import Autoscaler, Concurrency
from taskd.client.worker.threads import DaemonThreads

log = logging.getLogger("taskd.worker")

WORK = "/taskd.v1.WorkerService/Work"
_BROKEN = (grpclib.GRPCError, grpclib.exceptions.StreamTerminatedError, OSError, EOFError)


@dataclass(frozen=True, slots=True)
class Settings:
    queues: tuple[str, ...]
    concurrency: Concurrency
    targets: tuple[Target, ...]
    name: str
    max_result: int
    drain_timeout: float | None  # seconds to finish running handlers after a stop; None: wait
    shrink_after: float = 10.0  # seconds slots stay unused before the worker gives them back


@dataclass(slots=True)
class Stats:
    """What the worker did, for tests and benchmarks."""

    started: int = 0
    succeeded: int = 0
    failed: int = 0
    acked: int = 0  # results the node accepted
    rejected: int = 0  # results the node refused (stale lease)
    revoked: int = 0
    connects: int = 0
    accepted: dict[str, int] = field(default_factory=dict)  # task id -> accepted results


# What a node built before WorkerHello.held_* / holds_all and retry_delay_seconds says when it
# meets them (it refuses unknown fields; taskd/node/api/grpc/wire.py).
_NEWER_FIELDS = ("in WorkerHello", "in TaskResults", "in TaskResult;")


def _newer_than_node(exc: grpclib.GRPCError) -> bool:
    text = exc.message or ""
    return (
        exc.status is Status.INVALID_ARGUMENT
        and "unknown field number" in text
        and any(where in text for where in _NEWER_FIELDS)
    )


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Runtime:
    def __init__(
        self,
        settings: Settings,
        handlers: Handlers,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_start: Callable[[WorkerTask], None] | None = None,
    ) -> None:
        self.settings = settings
        self.handlers = handlers
        self.clock = clock
        self.ledger = Ledger()
        self.scaler = Autoscaler(settings.concurrency, clock(), shrink_after=settings.shrink_after)
        self.heartbeats = Heartbeats()
        self.rotation = Rotation(settings.targets, rng or random.Random())
        self.stats = Stats()
        self.on_start = on_start
        self._threads = DaemonThreads(settings.concurrency.max)
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._cancellable: dict[tuple[str, int], asyncio.Task[None]] = {}  # async handlers
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopped_at = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._announced = -1
        self._drain_limit = settings.drain_timeout
        self._failures = 0  # streams that failed in a row (to log an outage once)
        self._older_node = False  # it refused this SDK's newer fields: leave them out
        self._last_connects = 0

    def abandon_now(self) -> None:
        """Stop without waiting for running handlers (a second SIGINT)."""
        self._drain_limit = 0.0
        self.stop()

    # -- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Take no more work; finish what runs, report it, then ``run`` returns."""
        if not self._stop.is_set():
            log.info("worker %s: stopping, %d running", self.settings.name, self.ledger.busy)
            self._stopped_at = self.clock()
            self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _drained(self) -> bool:
        if not self.stopping:
            return False
        if not self.ledger.held:
            return True
        limit = self._drain_limit
        return limit is not None and self.clock() - self._stopped_at >= limit

    async def run(self) -> None:
        try:
            while not self._drained():
                target = self.rotation.current
                hint: str | None = None
                try:
                    await self._session(target)
                    if self._drained():
                        break
                    detail = "the node ended the stream"
                except grpclib.GRPCError as exc:
                    detail = f"{exc.status.name}: {exc.message}"
                    if not self._older_node and _newer_than_node(exc):
                        # a node from before these fields: speak its dialect, at once
                        log.info(
                            "worker %s: %s is an older node (%s); not telling it the leases "
                            "held or retry delays",
                            self.settings.name,
                            target,
                            exc.message,
                        )
                        self._older_node = True
                        continue
                    if exc.status in (Status.INVALID_ARGUMENT, Status.UNIMPLEMENTED):
                        # the worker itself is wrong: reconnecting cannot help
                        raise from_status(exc.status, exc.message, self._trailers) from None
                    hint = leader_hint(exc.message or "", self._trailers)
                except _BROKEN as exc:
                    detail = f"{type(exc).__name__}: {exc}"
                wait = self.rotation.failed(target, hint)
                if self.stats.connects != self._last_connects:  # it had connected: a new outage
                    self._last_connects, self._failures = self.stats.connects, 0
                # An outage is one warning, then one every 30 tries, not a line per try.
                level = logging.WARNING if self._failures % 30 == 0 else logging.DEBUG
                self._failures += 1
                log.log(
                    level,
                    "worker %s: stream to %s ended (%s); reconnecting to %s in %.2f s",
                    self.settings.name,
                    target,
                    detail,
                    self.rotation.current,
                    wait,
                )
                await self._pause(wait)
        finally:
            await self._abandon()
            self._threads.shutdown()

    async def _pause(self, seconds: float) -> None:
        """Wait before reconnecting; a stop with nothing left to report ends the wait."""
        end = self.clock() + seconds
        while not self._drained() and (left := end - self.clock()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    async def _abandon(self) -> None:
        """``run`` ends: handlers still running (a drain timeout, an error) are cancelled."""
        for task in self._running.values():
            task.cancel()
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=1.0)

    # -- one stream ---------------------------------------------------------------------------

    _trailers: dict[str, str] | None = None

    async def _session(self, target: Target) -> None:
        channel = Channel(target.host, target.port)
        self._trailers = None
        stream: Stream[pb.WorkerMessage, pb.NodeMessage] = channel.request(
            WORK, Cardinality.STREAM_STREAM, pb.WorkerMessage, pb.NodeMessage
        )
        receiver: asyncio.Task[None] | None = None
        try:
            async with stream:
                self.ledger.new_stream()
                self.heartbeats.reset()
                capacity = self._capacity()
                held = list(self.ledger.held)  # carried over: the node releases its others
                hello = pb.WorkerHello(
                    worker=self.settings.name,
                    queues=list(self.settings.queues),
                    capacity=capacity,
                )
                if not self._older_node:
                    hello.held_ids = [task_id for task_id, _ in held]
                    hello.held_leases = [epoch for _, epoch in held]
                    hello.holds_all = True
                await stream.send_message(pb.WorkerMessage(hello=hello))
                self._announced = capacity
                self.stats.connects += 1
                if self._failures:
                    log.info("worker %s: connected to %s", self.settings.name, target)
                if self.ledger.alive():
                    self.heartbeats.carried(self.clock())
                receiver = asyncio.create_task(self._receive(stream, target))
                await self._pump(stream, receiver)
                await receiver  # the node ends its side after ours
        finally:
            if stream.trailing_metadata is not None:
                self._trailers = trailers_of(stream.trailing_metadata)
            if receiver is not None and not receiver.done():
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError, *_BROKEN):
                    await receiver
            channel.close()

    def _capacity(self) -> int:
        if self.stopping:
            return 0
        return self.ledger.capacity(self.scaler.observe(self.clock(), self.ledger.busy))

    async def _pump(
        self, stream: Stream[pb.WorkerMessage, pb.NodeMessage], receiver: asyncio.Task[None]
    ) -> None:
        """Send what is due until the worker has drained (then end our side) or the stream
        breaks (the receiver's error is raised here)."""
        while True:
            self._wake.clear()
            if receiver.done():
                receiver.result()  # raises what broke the stream
                raise EOFError("the node ended the stream")
            now = self.clock()
            self._expire(now)
            capacity = self._capacity()
            if capacity != self._announced:
                await stream.send_message(
                    pb.WorkerMessage(credit=pb.WorkerCredit(capacity=capacity))
                )
                self._announced = capacity
            reports = self.ledger.unsent()
            if reports:
                delays = [r.retry_delay for r in reports]
                results = pb.TaskResults(
                    ids=[r.id for r in reports],
                    leases=[r.epoch for r in reports],
                    success=[r.success for r in reports],
                    results=[r.result for r in reports],
                    errors=[r.error for r in reports],
                    retry_delay_seconds=delays if any(delays) and not self._older_node else [],
                )
                await stream.send_message(pb.WorkerMessage(results=results))
            alive = self.ledger.alive()
            if self.heartbeats.due(now, len(alive)):
                beat = pb.WorkerHeartbeat(ids=[i for i, _ in alive], leases=[e for _, e in alive])
                await stream.send_message(pb.WorkerMessage(heartbeat=beat))
            if self._drained():
                await stream.end()
                return
            self._arm(now)
            await self._wake.wait()

    def _arm(self, now: float) -> None:
        """Wake the pump at the next moment a decision is due."""
        when = min(
            self.heartbeats.next_at(),
            self.ledger.next_deadline(),
            self.scaler.next_decision(now),
            self._stopped_at + (math.inf if self._drain_limit is None else self._drain_limit),
        )
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when < math.inf:
            loop = asyncio.get_running_loop()
            delay = max(0.0, when - now)
            self._timer = loop.call_later(delay, self._wake.set)

    async def _receive(
        self, stream: Stream[pb.WorkerMessage, pb.NodeMessage], target: Target
    ) -> None:
        first = True
        try:
            while (message := await stream.recv_message()) is not None:
                if first:  # the member answers: it is the one to come back to
                    self.rotation.succeeded(target)
                    first = False
                _, value = betterproto2.which_one_of(message, "kind")
                if isinstance(value, pb.Assignment):
                    self._assigned(value)
                elif isinstance(value, pb.Revocation):
                    self._revoked(value)
                elif isinstance(value, pb.ResultAck):
                    self._acked(value.id, value.lease, value.accepted, value.error)
                elif isinstance(value, pb.ResultAcks):
                    for task_id, lease in zip(value.ids, value.leases, strict=True):
                        self._acked(task_id, lease, True, "")
                    for ack in value.rejected:
                        self._acked(ack.id, ack.lease, ack.accepted, ack.error)
        finally:
            self._wake.set()

    # -- what the node says -------------------------------------------------------------------

    def _assigned(self, assignment: pb.Assignment) -> None:
        now = self.clock()
        self.heartbeats.leased(now, assignment.lease_seconds)
        for item in assignment.items:
            timeout = item.timeout_seconds if item.timeout_seconds > 0 else math.inf
            if not self.ledger.take(item.id, item.lease, now + timeout):
                continue
            task = WorkerTask(
                id=item.id,
                queue=item.queue,
                name=item.name,
                payload=bytes(item.payload),
                attempt=item.attempt,
                timeout=item.timeout_seconds,
                lease=item.lease,
                dependency_results=dict(item.dependency_results),
            )
            self.stats.started += 1
            if self.on_start is not None:
                self.on_start(task)
            handler = self.handlers.find(item.name)
            key = (item.id, item.lease)
            if handler is None:
                self._finish(task, Outcome(False, error=self.handlers.missing(item.name)))
                self.ledger.returned(*key)
                continue
            running = asyncio.create_task(self._run(handler, task))
            self._running[key] = running
            if handler.is_async:
                self._cancellable[key] = running
        self._wake.set()

    def _revoked(self, revocation: pb.Revocation) -> None:
        self.stats.revoked += 1
        key = (revocation.id, revocation.lease)
        log.info("worker %s: task %s revoked (%s)", self.settings.name, key[0], revocation.reason)
        if self.ledger.revoke(*key):
            self._cancel(key)
        self._wake.set()

    def _acked(self, task_id: str, lease: int, accepted: bool, error: str) -> None:
        if accepted:
            self.stats.acked += 1
            self.stats.accepted[task_id] = self.stats.accepted.get(task_id, 0) + 1
        else:
            self.stats.rejected += 1
            log.info("worker %s: result of %s refused: %s", self.settings.name, task_id, error)
        self.ledger.acked(task_id, lease)
        self._wake.set()

    # -- handlers -----------------------------------------------------------------------------

    async def _run(self, handler: Registered, task: WorkerTask) -> None:
        key = (task.id, task.lease)
        try:
            if handler.is_async:
                value = await handler.fn(task)
            else:
                # not cancellable: at a timeout or revocation the thread runs on, holding its slot
                value = await self._threads.run(handler.fn, task)
            outcome = encode_result(value, self.settings.max_result)
        except asyncio.CancelledError:
            self._returned(key)
            raise
        except Exception as exc:
            outcome = failure(exc)
        self._finish(task, outcome)
        self._returned(key)

    def _returned(self, key: tuple[str, int]) -> None:
        self.ledger.returned(*key)
        self._running.pop(key, None)
        self._cancellable.pop(key, None)
        self._wake.set()

    def _finish(self, task: WorkerTask, outcome: Outcome) -> None:
        if self.ledger.finish(
            task.id, task.lease, outcome.success, outcome.result, outcome.error, outcome.retry_delay
        ):
            if outcome.success:
                self.stats.succeeded += 1
            else:
                self.stats.failed += 1
                last = outcome.error.strip().splitlines()[-1:] or [""]
                log.info("worker %s: task %s failed: %s", self.settings.name, task.id, last[0])

    def _cancel(self, key: tuple[str, int]) -> None:
        """Stop an async handler; a sync one cannot be stopped (see the module docstring)."""
        running = self._cancellable.get(key)
        if running is not None:
            running.cancel()

    def _expire(self, now: float) -> None:
        for task_id, epoch in self.ledger.expired(now):
            self.ledger.finish(task_id, epoch, False, b"", TIMEOUT)
            self.stats.failed += 1
            log.info("worker %s: task %s timed out", self.settings.name, task_id)
            self._cancel((task_id, epoch))
