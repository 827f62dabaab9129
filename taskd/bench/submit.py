"""Producers: the client side of W1 (and the submitting half of W2 and W3).

Given a cluster, client k of the role (counted over all its child processes) talks to member
``k % members``: the clients are spread round robin over every member given.

A *caller* submits ``n`` tasks in one call and returns None, or the name of the error (a gRPC
status name; see ``stats``). Two drivers use callers:
- ``closed_loop``: each of a child's clients sends its next call as soon as the last one is
  answered, until the child's share of the tasks is done (throughput).
- ``open_loop``: calls go out on a fixed schedule whatever the answers (``rate`` per second for
  ``duration`` seconds); latency is counted from the scheduled time, so a slow node cannot hide
  its queueing delay behind a slowed-down client (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
import orjson
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError

from taskd.api.taskd import v1 as pb
from taskd.bench.admin import Target
from taskd.bench.fleet import Child
from taskd.bench.stats import ChildReport, http_error_name

Caller = Callable[[int], Awaitable[str | None]]
CALL_TIMEOUT = 30.0
MAX_OUTSTANDING = 20_000  # open loop: beyond this the client, not the node, is the limit
_BACKOFF = 0.05  # after a connection failure, so a dead node does not make a busy loop


@dataclass(frozen=True, slots=True)
class Producer:
    """What one child process submits, and how."""

    targets: tuple[Target, ...]  # the members; client k of this child uses ``target_for(k)``
    queue: str
    api: str  # "unary" | "batch" | "rest"
    clients: int  # connections (and concurrent calls, closed loop) in this child
    payload_size: int = 100
    batch: int = 100
    stamped: bool = False  # W3: the payload carries time.time() of the submit
    seed: int = 0
    first: int = 0  # the role-wide index of this child's first client (round robin)

    def target_for(self, client: int) -> Target:
        return self.targets[(self.first + client) % len(self.targets)]


def payload(size: int, stamped: bool) -> bytes:
    """A JSON object of exactly ``size`` bytes (at least its fixed part)."""
    head = orjson.dumps({"t": time.time()})[:-1] + b',"p":"' if stamped else b'{"p":"'
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


def grpc_error_name(exc: BaseException) -> str:
    if isinstance(exc, GRPCError):
        return str(exc.status.name)
    if isinstance(exc, TimeoutError):
        return "DEADLINE_EXCEEDED"
    if isinstance(exc, OSError | StreamTerminatedError | ConnectionError):
        return "UNAVAILABLE"
    return type(exc).__name__


async def open_callers(stack: AsyncExitStack, plan: Producer) -> list[Caller]:
    """One connection per client, closed by ``stack``."""
    rng = random.Random(plan.seed)
    callers: list[Caller] = []
    for k in range(plan.clients):
        target = plan.target_for(k)
        if plan.api == "rest":
            client = httpx.AsyncClient(
                base_url=target.http_url,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                timeout=CALL_TIMEOUT,
            )
            await stack.enter_async_context(client)
            callers.append(_rest_caller(client, plan, rng))
        else:
            channel = Channel(target.grpc_host, target.grpc_port)
            stack.callback(channel.close)
            stub = pb.TaskServiceStub(channel, timeout=CALL_TIMEOUT)
            callers.append(_grpc_caller(stub, plan, rng))
    return callers


def _grpc_caller(stub: pb.TaskServiceStub, plan: Producer, rng: random.Random) -> Caller:
    def spec() -> pb.TaskSpec:
        return pb.TaskSpec(
            queue=plan.queue,
            priority=rng.randint(0, 9),
            payload=payload(plan.payload_size, plan.stamped),
        )

    async def call(n: int) -> str | None:
        try:
            if plan.api == "batch":
                await stub.submit_batch(pb.SubmitBatchRequest(tasks=[spec() for _ in range(n)]))
            else:
                await stub.submit(pb.SubmitRequest(task=spec()))
        except Exception as exc:  # every failure is counted by name, never fatal
            name = grpc_error_name(exc)
            if name == "UNAVAILABLE":
                await asyncio.sleep(_BACKOFF)
            return name
        return None

    return call


def _rest_caller(client: httpx.AsyncClient, plan: Producer, rng: random.Random) -> Caller:
    headers = {"content-type": "application/json"}
    value = orjson.loads(payload(plan.payload_size, plan.stamped))

    async def call(n: int) -> str | None:
        body = {"queue": plan.queue, "priority": rng.randint(0, 9), "payload": value}
        try:
            response = await client.post(
                "/api/v1/tasks", content=orjson.dumps(body), headers=headers
            )
        except httpx.TimeoutException:
            return "DEADLINE_EXCEEDED"
        except httpx.HTTPError:
            await asyncio.sleep(_BACKOFF)
            return "UNAVAILABLE"
        return None if response.status_code in (200, 201) else http_error_name(response.status_code)

    return call


async def closed_loop(plan: Producer, tasks: int, child: Child) -> ChildReport:
    """Submit ``tasks`` tasks, ``plan.clients`` calls in flight, each after the last answer."""
    report = ChildReport()
    per_call = plan.batch if plan.api == "batch" else 1
    calls = math.ceil(tasks / per_call)
    counter = itertools.count()

    async def client(call: Caller) -> None:
        while (i := next(counter)) < calls:
            n = min(per_call, tasks - i * per_call)
            start = time.monotonic()
            report.first = min(report.first, start)
            error = await call(n)
            end = time.monotonic()
            if error is None:
                report.done += n
                report.latencies_ms.append((end - start) * 1000.0)
                report.last = end
                child.advance(n)
            else:
                report.error(error)
                child.failed()

    async with AsyncExitStack() as stack:
        callers = await open_callers(stack, plan)
        await child.ready_and_wait_for_go()
        await asyncio.gather(*(client(call) for call in callers))
    return report


async def open_loop(plan: Producer, rate: float, duration: float, child: Child) -> ChildReport:
    """Offer ``rate`` single-task calls per second for ``duration`` s, round robin over clients."""
    report = ChildReport()
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    async def one(call: Caller, due: float) -> None:
        error = await call(1)
        end = loop.time()
        if error is None:
            report.done += 1
            report.latencies_ms.append((end - due) * 1000.0)
            report.last = max(report.last, end)
            child.advance(1)
        else:
            report.error(error)
            child.failed()

    async with AsyncExitStack() as stack:
        callers = await open_callers(stack, plan)
        await child.ready_and_wait_for_go()
        start = report.first = loop.time()  # asyncio's clock is time.monotonic()
        for i in range(int(rate * duration)):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - loop.time()))
            if len(pending) >= MAX_OUTSTANDING:
                report.error("CLIENT_BACKLOG")
                child.failed()
                continue
            task = asyncio.create_task(one(callers[i % len(callers)], due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    return report
