"""The stack check: one trio.run() hosts the grpclib server (via trio-asyncio) and trio code.

Given a grpclib server started inside trio-asyncio's loop, whose handler hops back into trio,
When a grpclib client (asyncio code, same loop) and a trio task run side by side,
Expect the call to round-trip through trio code while the trio task keeps making progress.
"""

from __future__ import annotations

import socket

import trio
import trio.lowlevel
import trio_asyncio
from grpclib.client import Channel
from grpclib.server import Server

from taskd.api.taskd import v1 as pb


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Echo(pb.TaskServiceBase):
    def __init__(self, trio_calls: list[str]) -> None:
        self.trio_calls = trio_calls

    async def get(self, message: pb.GetRequest) -> pb.Task:
        async def on_trio(task_id: str) -> str:
            await trio.lowlevel.checkpoint()
            self.trio_calls.append(task_id)
            return task_id.upper()

        upper = await trio_asyncio.trio_as_aio(on_trio)(message.id)
        return pb.Task(id=upper, state=pb.TaskState.QUEUED)


async def test_grpclib_server_and_trio_code_share_one_trio_run() -> None:
    trio_calls: list[str] = []
    ticks = 0

    async def trio_side_task() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    port = _free_port()
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        nursery.start_soon(trio_side_task)
        server = Server([_Echo(trio_calls)])
        await trio_asyncio.aio_as_trio(server.start)("127.0.0.1", port)

        async def call(n: int) -> list[str]:
            channel = Channel("127.0.0.1", port)
            try:
                stub = pb.TaskServiceStub(channel)
                return [(await stub.get(pb.GetRequest(id=f"t{i}"))).id for i in range(n)]
            finally:
                channel.close()

        answers = await trio_asyncio.aio_as_trio(call)(20)
        server.close()
        await trio_asyncio.aio_as_trio(server.wait_closed)()
        nursery.cancel_scope.cancel()

    assert answers == [f"T{i}" for i in range(20)]
    assert trio_calls == [f"t{i}" for i in range(20)]
    assert ticks > 20  # the trio task ran while calls were in flight
