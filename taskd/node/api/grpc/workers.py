"""``WorkerService.Work``: one bidirectional gRPC stream per remote worker.

The stream's logic (capacity, leases, acks, releasing on disconnect) lives transport-free in
``taskd.exec.remote.StreamSession``; this module only moves messages between grpclib (asyncio,
via trio-asyncio) and the session (trio). The first message must be a ``WorkerHello``. Every
message's fields are checked with the rules REST uses (``taskd.node.api.validate``: worker names,
queue names, ids, error texts, result sizes) before the session sees them; the wire-level
bounds were already enforced while decoding (``StrictCodec``).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import grpclib
import trio
from grpclib.const import Cardinality, Handler, Status

from taskd.api.taskd import v1 as pb
from taskd.errors import CallerError, ClusterError, first_of
from taskd.exec.remote import Assignment, Outbound, ResultAck, Revocation, StreamSession
from taskd.exec.work import Report, WorkerRegistry
from taskd.node import limits
from taskd.node.api import validate
from taskd.node.api.grpc.bridge import TrioBridge, mark_retrieved
from taskd.node.api.grpc.handlers import grpc_error
from taskd.node.app.service import NodeService
from taskd.node.app.sources import ServiceSource

# Back-pressure on one stream. Inbound: past this many messages not yet handled by the session,
# stop reading (HTTP/2 flow control then stops the worker). Outbound: past this many messages
# the worker has not read (acks pile up while it keeps sending results), end the stream.
MAX_INBOX = 1_000
MAX_UNSENT = 10_000


def to_pb(message: Outbound) -> pb.NodeMessage:
    if isinstance(message, Assignment):
        return pb.NodeMessage(
            assignment=pb.Assignment(
                items=[
                    pb.WorkItem(
                        id=item.id,
                        queue=item.queue,
                        name=item.name,
                        payload=item.payload,
                        attempt=item.attempt,
                        lease=item.epoch,
                        timeout_seconds=item.timeout,
                        dependency_results=dict(item.dependency_results),
                    )
                    for item in message.items
                ],
                lease_seconds=message.lease_seconds,
            )
        )
    if isinstance(message, Revocation):
        return pb.NodeMessage(
            revocation=pb.Revocation(id=message.id, lease=message.lease, reason=message.reason)
        )
    assert isinstance(message, ResultAck)
    return pb.NodeMessage(
        ack=pb.ResultAck(
            id=message.id, lease=message.lease, accepted=message.accepted, error=message.error
        )
    )


class WorkerStreamService(pb.WorkerServiceBase):
    """grpclib's side of the stream stays in asyncio; the session runs as trio code.

    Messages cross between the two through a trio memory channel (asyncio → trio) and an
    ``asyncio.Queue`` (trio → asyncio), both fed with synchronous calls, so no task is created
    per message (a ``trio_as_aio``/``aio_as_trio`` hop per message cost ~40% of the node's CPU
    in the W2 benchmark).
    """

    def __init__(
        self,
        service: NodeService,
        registry: WorkerRegistry,
        bridge: TrioBridge,
        *,
        lease_ttl: float,
        max_payload: int = limits.DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.source = ServiceSource(service, lease_ttl=lease_ttl)
        self.registry = registry
        self.bridge = bridge
        self.lease_ttl = lease_ttl
        self.max_payload = max_payload

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/taskd.v1.WorkerService/Work": Handler(
                self._work, Cardinality.STREAM_STREAM, pb.WorkerMessage, pb.NodeMessage
            )
        }

    async def _work(self, stream: Any) -> None:
        first = await stream.recv_message()
        if first is None or first.hello is None:
            raise grpclib.GRPCError(
                Status.INVALID_ARGUMENT,
                "hello: the first message on a Work stream must be a WorkerHello",
            )
        try:
            _check_hello(first.hello)
        except CallerError as exc:
            raise grpc_error(exc) from None
        inbox_send, inbox = trio.open_memory_channel[pb.WorkerMessage](math.inf)
        outbox: asyncio.Queue[pb.NodeMessage | None] = asyncio.Queue()
        drained = asyncio.Event()  # set by the session when its inbox is half empty again
        session_done = self.bridge.call(self._session, first.hello, inbox, outbox, drained)
        sender = asyncio.ensure_future(_send_all(stream, outbox))
        # Whatever ends first, nothing is left with an exception nobody reads: trio-asyncio
        # turns an asyncio "exception was never retrieved" into a crash of the whole node.
        # A session that fails while the client is still sending ends the call at once.
        work = asyncio.current_task()
        receiving = [True]

        def session_ended(future: asyncio.Future[None]) -> None:
            if _failed(future) and receiving[0]:
                assert work is not None
                work.cancel()

        session_done.add_done_callback(session_ended)
        sender.add_done_callback(mark_retrieved)
        try:
            try:
                while (message := await stream.recv_message()) is not None:
                    _check_message(message, self.max_payload)  # refused here: the call ends
                    inbox_send.send_nowait(message)
                    if outbox.qsize() > MAX_UNSENT:
                        raise grpclib.GRPCError(
                            Status.RESOURCE_EXHAUSTED,
                            f"the worker left {outbox.qsize()} of the node's messages unread "
                            f"(at most {MAX_UNSENT}): read the stream while sending results",
                        )
                    if inbox_send.statistics().current_buffer_used > MAX_INBOX:
                        drained.clear()
                        await drained.wait()
            except asyncio.CancelledError:
                if not _failed(session_done):
                    raise  # the client or the server went away
                # the session failed and cancelled us: its error below is the call's answer
            finally:
                receiving[0] = False
            inbox_send.close()
            await session_done
            await sender
        except (CallerError, ClusterError, BaseExceptionGroup) as exc:
            # the session runs in a nursery: its errors may arrive wrapped in a group
            fault = first_of(exc, CallerError) or first_of(exc, ClusterError)
            if fault is None:
                raise
            raise grpc_error(fault) from None
        finally:
            inbox_send.close()  # a broken stream: the session releases what it holds
            sender.cancel()

    async def _session(
        self,
        hello: pb.WorkerHello,
        inbox: trio.MemoryReceiveChannel[pb.WorkerMessage],
        outbox: asyncio.Queue[pb.NodeMessage | None],
        drained: asyncio.Event,
    ) -> None:
        session = StreamSession(self.source, self.registry, lease_ttl=self.lease_ttl)
        held = list(zip(hello.held_ids, hello.held_leases, strict=True))
        session.hello(
            hello.worker, list(hello.queues), hello.capacity, held if hello.holds_all else None
        )

        async def send(message: Outbound) -> None:
            outbox.put_nowait(to_pb(message))
            await trio.lowlevel.checkpoint()

        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(session.run, send)
                async for message in inbox:
                    await self._dispatch(session, message)
                    if inbox.statistics().current_buffer_used <= MAX_INBOX // 2:
                        drained.set()
                session.close()
        finally:
            drained.set()
            outbox.put_nowait(None)

    @staticmethod
    async def _dispatch(session: StreamSession, message: pb.WorkerMessage) -> None:
        session.heard()
        if message.result is not None:
            r = message.result
            await session.on_result(
                r.id, r.lease, r.success, r.result, r.error, r.retry_delay_seconds
            )
        elif message.results is not None:
            await session.on_results(_reports(message.results))
        elif message.heartbeat is not None:
            await session.on_heartbeat(list(message.heartbeat.ids), list(message.heartbeat.leases))
        elif message.credit is not None:
            session.on_credit(message.credit.capacity)
        elif message.hello is not None:
            raise CallerError("invalid", "hello was already sent on this stream", "hello")
        else:
            raise CallerError("invalid", "empty WorkerMessage: set one of its fields", "kind")


async def _send_all(stream: Any, outbox: asyncio.Queue[pb.NodeMessage | None]) -> None:
    """Send in order until the ``None`` sentinel; acks waiting together go out as one message."""
    while True:
        batch = [await outbox.get()]
        while not outbox.empty():
            batch.append(outbox.get_nowait())
        acks: list[pb.ResultAck] = []
        for message in batch:
            if message is not None and message.ack is not None:
                acks.append(message.ack)
                continue
            await _send_acks(stream, acks)
            acks = []
            if message is None:
                return
            await stream.send_message(message)
        await _send_acks(stream, acks)


async def _send_acks(stream: Any, acks: list[pb.ResultAck]) -> None:
    if len(acks) == 1:
        await stream.send_message(pb.NodeMessage(ack=acks[0]))
    elif acks:
        accepted = [ack for ack in acks if ack.accepted]
        batch = pb.ResultAcks(
            ids=[ack.id for ack in accepted],
            leases=[ack.lease for ack in accepted],
            rejected=[ack for ack in acks if not ack.accepted],
        )
        await stream.send_message(pb.NodeMessage(acks=batch))


def _failed(future: asyncio.Future[Any]) -> bool:
    """Whether ``future`` ended with an exception (which this reads, so it counts as seen)."""
    return future.done() and not future.cancelled() and future.exception() is not None


def _check_hello(hello: pb.WorkerHello) -> None:
    """The hello's names by the rules REST applies to the same names."""
    validate.check_worker(hello.worker, "hello.worker")
    validate.check_worker_queues(list(hello.queues), "hello.queues")
    if len(hello.held_leases) != len(hello.held_ids):
        raise CallerError(
            "invalid",
            f"held_leases must have one entry per held id ({len(hello.held_ids)})",
            "hello.held_leases",
        )
    for i, task_id in enumerate(hello.held_ids):
        validate.check_id(task_id, f"hello.held_ids[{i}]")


def _check_message(message: pb.WorkerMessage, max_payload: int) -> None:
    """A message after the hello, by the rules REST applies to the same values; raises
    CallerError (the wire bounds were enforced while decoding)."""
    if message.result is not None:
        r = message.result
        validate.check_id(r.id, "result.id")
        validate.check_result(r.result, "result.result", max_payload)
        validate.check_error_text(r.error, "result.error")
        validate.check_retry_delay(r.retry_delay_seconds, "result.retry_delay_seconds")
    elif message.results is not None:
        batch = message.results
        reports = _reports(batch)  # parallel lists of one length
        for i, report in enumerate(reports):
            validate.check_id(report.task_id, f"results.ids[{i}]")
            validate.check_result(report.result, f"results.results[{i}]", max_payload)
            validate.check_error_text(report.error, f"results.errors[{i}]")
            if report.retry_delay:
                validate.check_retry_delay(report.retry_delay, f"results.retry_delay_seconds[{i}]")
    elif message.heartbeat is not None:
        for i, task_id in enumerate(message.heartbeat.ids):
            validate.check_id(task_id, f"heartbeat.ids[{i}]")
    elif message.hello is not None:
        raise CallerError("invalid", "hello was already sent on this stream", "hello")
    elif message.credit is None:
        raise CallerError("invalid", "empty WorkerMessage: set one of its fields", "kind")


def _reports(batch: pb.TaskResults) -> list[Report]:
    """The parallel lists of a ``TaskResults``, checked to be of one length."""
    count = len(batch.ids)
    for name, may_be_empty in (
        ("leases", False),
        ("success", False),
        ("results", True),
        ("errors", True),
        ("retry_delay_seconds", True),
    ):
        size = len(getattr(batch, name))
        if size != count and not (may_be_empty and size == 0):
            raise CallerError(
                "invalid", f"{name} must have one entry per id ({count})", f"results.{name}"
            )
    results = batch.results or [b""] * count
    errors = batch.errors or [""] * count
    delays = batch.retry_delay_seconds or [0.0] * count
    return [
        Report(task_id, lease, success, result, error, delay)
        for task_id, lease, success, result, error, delay in zip(
            batch.ids, batch.leases, batch.success, results, errors, delays, strict=True
        )
    ]
