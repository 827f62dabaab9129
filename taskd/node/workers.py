"""``WorkerService.Work``: one bidirectional gRPC stream per remote worker.

The stream's logic (capacity, leases, acks, releasing on disconnect) lives transport-free in
``taskd.exec.remote.StreamSession``; this module only moves messages between grpclib (asyncio,
via trio-asyncio) and the session (trio). The first message must be a ``WorkerHello``.
"""

from __future__ import annotations

from typing import Any

import grpclib
import trio
import trio_asyncio
from grpclib.const import Cardinality, Handler, Status

from taskd.api.taskd import v1 as pb
from taskd.errors import CallerError, ClusterError
from taskd.exec.remote import Assignment, Outbound, ResultAck, Revocation, StreamSession
from taskd.exec.work import WorkerRegistry
from taskd.node.grpc import grpc_error
from taskd.node.service import NodeService
from taskd.node.sources import ServiceSource


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
    def __init__(self, service: NodeService, registry: WorkerRegistry, *, lease_ttl: float) -> None:
        self.source = ServiceSource(service, lease_ttl=lease_ttl)
        self.registry = registry
        self.lease_ttl = lease_ttl

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/taskd.v1.WorkerService/Work": Handler(
                self._work, Cardinality.STREAM_STREAM, pb.WorkerMessage, pb.NodeMessage
            )
        }

    async def _work(self, stream: Any) -> None:
        await trio_asyncio.trio_as_aio(self._work_on_trio)(stream)

    async def _work_on_trio(self, stream: Any) -> None:
        receive = trio_asyncio.aio_as_trio(stream.recv_message)
        send_message = trio_asyncio.aio_as_trio(stream.send_message)
        first = await receive()
        if first is None or first.hello is None:
            raise grpclib.GRPCError(
                Status.INVALID_ARGUMENT,
                "hello: the first message on a Work stream must be a WorkerHello",
            )
        session = StreamSession(self.source, self.registry, lease_ttl=self.lease_ttl)
        try:
            session.hello(first.hello.worker, list(first.hello.queues), first.hello.capacity)
        except CallerError as exc:
            raise grpc_error(exc) from None

        async def send(message: Outbound) -> None:
            await send_message(to_pb(message))

        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(session.run, send)
                while True:
                    message = await receive()
                    if message is None:
                        session.close()
                        break
                    await self._dispatch(session, message)
        except (CallerError, ClusterError) as exc:
            raise grpc_error(exc) from None

    @staticmethod
    async def _dispatch(session: StreamSession, message: pb.WorkerMessage) -> None:
        if message.result is not None:
            r = message.result
            await session.on_result(r.id, r.lease, r.success, r.result, r.error)
        elif message.heartbeat is not None:
            await session.on_heartbeat(list(message.heartbeat.ids), list(message.heartbeat.leases))
        elif message.credit is not None:
            session.on_credit(message.credit.capacity)
        elif message.hello is not None:
            raise CallerError("invalid", "hello was already sent on this stream", "hello")
        else:
            raise CallerError("invalid", "empty WorkerMessage: set one of its fields", "kind")
