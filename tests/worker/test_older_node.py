"""A worker meeting a node built before ``WorkerHello.holds_all`` (which refuses unknown fields,
as every taskd node does) speaks that node's dialect instead of giving up."""

from __future__ import annotations

import asyncio
from typing import Any

import grpclib
from grpclib.const import Cardinality, Handler, Status
from grpclib.server import Server

from taskd.api.taskd import v1 as pb
from taskd.client.targets import Target
from taskd.client.worker.handlers import Handlers
from taskd.client.worker.runtime import Runtime, Settings
from taskd.client.worker.scaling import Concurrency
from tests.conftest import free_ports

REFUSAL = (
    "WorkerMessage.hello: unknown field number 6 in WorkerHello; "
    "check the client uses taskd.v1's .proto"
)  # what taskd/node/api/grpc/wire.py says


class OlderNode:
    def __init__(self) -> None:
        self.hellos: list[pb.WorkerHello] = []
        self.greeted = asyncio.Event()

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/taskd.v1.WorkerService/Work": Handler(
                self._work, Cardinality.STREAM_STREAM, pb.WorkerMessage, pb.NodeMessage
            )
        }

    async def _work(self, stream: Any) -> None:
        first = await stream.recv_message()
        self.hellos.append(first.hello)
        if first.hello.holds_all:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, REFUSAL)
        self.greeted.set()
        while await stream.recv_message() is not None:
            pass


def test_a_worker_leaves_out_the_fields_an_older_node_refuses() -> None:
    async def main() -> list[pb.WorkerHello]:
        node = OlderNode()
        server = Server([node])
        [port] = free_ports(1)
        await server.start("127.0.0.1", port)
        handlers = Handlers()
        handlers.add("", lambda task: None)
        settings = Settings(
            queues=("q",),
            concurrency=Concurrency(1, 1),
            targets=(Target("127.0.0.1", port),),
            name="w",
            max_result=1 << 20,
            drain_timeout=1.0,
        )
        runtime = Runtime(settings, handlers)
        running = asyncio.ensure_future(runtime.run())
        try:
            await asyncio.wait_for(node.greeted.wait(), 10)
        finally:
            runtime.stop()
            await asyncio.wait_for(running, 10)
            server.close()
            await server.wait_closed()
        return node.hellos

    # Given a node that refuses the new hello fields
    # When a worker connects
    hellos = asyncio.run(main())
    # Expect one refused hello with them, then one without, which the node takes
    assert [h.holds_all for h in hellos] == [True, False]
    assert hellos[1].worker == "w" and list(hellos[1].queues) == ["q"]
