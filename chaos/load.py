"""The load's clients: tasks submitted to random members, and the outcome rules of every call.

Theory of operation. A ``Submitter`` loops until stopped: it picks a member and an API (REST
one task, REST batch, gRPC ``Submit``, gRPC ``SubmitBatch``) at random, builds tasks whose
payload names a fresh op id, and records one ``Submit`` per task with the call's outcome. Some
tasks depend on tasks acknowledged earlier, some carry an idempotency key (and are retried
with the same key after an indeterminate outcome — the node must then answer with the same
task), some are delayed, and ``max_retries`` varies from 0 to 3.

A third of the acknowledged calls are read back at once (linearizably, the default) from
another member: the task must be there. The workers that run the tasks are ``chaos.workers``.

Outcome rules (``chaos.history``): 2xx is ok; 4xx and a refused connection certainly changed
nothing (fail); a 5xx, a timeout or a broken connection is unknown (info). gRPC calls go
through grpclib on the harness's trio-asyncio loop, one channel per member.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import trio
import trio_asyncio
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from chaos.history import FAIL, INFO, OK, History, Outcome, Read, Submit
from taskd.api.taskd import v1 as pb

JSON_HEADERS = {"content-type": "application/json"}
_DEFINITE_GRPC = frozenset(
    {
        Status.INVALID_ARGUMENT,
        Status.NOT_FOUND,
        Status.ALREADY_EXISTS,
        Status.FAILED_PRECONDITION,
        Status.RESOURCE_EXHAUSTED,
        Status.PERMISSION_DENIED,
        Status.UNAUTHENTICATED,
        Status.OUT_OF_RANGE,
        Status.UNIMPLEMENTED,
    }
)
_APIS = ("rest", "grpc", "rest-batch", "grpc-batch")
_API_WEIGHTS = (4.0, 3.0, 1.5, 1.5)
_KEY_RETRIES = 2  # extra tries of an idempotent submit whose outcome was unknown


@dataclass(frozen=True, slots=True)
class LoadConfig:
    clients: int = 4
    workers: int = 3
    queue: str = "chaos"  # run by the HTTP workers
    exec_queue: str | None = None  # run by --exec executors on every node, when set
    timeout: float = 3.0  # per call
    think: tuple[float, float] = (0.02, 0.1)  # seconds between a client's calls
    fail_rate: float = 0.2  # share of attempts a worker fails (retryable)
    read_rate: float = 0.3  # share of acknowledged calls read back from another member
    seed: int = 0


def http_outcome(status: int) -> Outcome:
    if 200 <= status < 300:
        return OK
    return FAIL if 400 <= status < 500 else INFO


def http_error_outcome(exc: httpx.HTTPError) -> Outcome:
    """A refused or timed-out connect sent nothing; anything later may have been received."""
    return FAIL if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) else INFO


def grpc_error_outcome(exc: BaseException) -> Outcome:
    if isinstance(exc, GRPCError):
        return FAIL if exc.status in _DEFINITE_GRPC else INFO
    return FAIL if isinstance(exc, ConnectionRefusedError) else INFO


def describe(exc: BaseException) -> str:
    if isinstance(exc, GRPCError):
        return f"{exc.status.name}: {exc.message}"[:200]
    return f"{type(exc).__name__}: {exc}"[:200]


class GrpcPool:
    """One grpclib channel per member, called from trio through trio-asyncio."""

    def __init__(self, members: list[str]) -> None:
        self.members = members
        self._channels: dict[str, Channel] = {}

    def _stub(self, member: str) -> pb.TaskServiceStub:
        channel = self._channels.get(member)
        if channel is None:
            host, _, port = member.rpartition(":")
            channel = self._channels[member] = Channel(host, int(port))
        return pb.TaskServiceStub(channel)

    async def _submit(
        self, member: str, specs: list[pb.TaskSpec], seconds: float
    ) -> list[tuple[str, bool]]:
        stub = self._stub(member)
        # grpclib's own deadline, and asyncio's around it: a frozen peer must not hang a client
        if len(specs) == 1:
            one = await asyncio.wait_for(
                stub.submit(pb.SubmitRequest(task=specs[0]), timeout=seconds), seconds + 0.5
            )
            return [(one.task.id if one.task else "", one.duplicate)]
        many = await asyncio.wait_for(
            stub.submit_batch(pb.SubmitBatchRequest(tasks=specs), timeout=seconds), seconds + 0.5
        )
        return list(zip(many.ids, many.duplicate or [False] * len(many.ids), strict=True))

    async def submit(
        self, member: str, specs: list[pb.TaskSpec], seconds: float
    ) -> list[tuple[str, bool]]:
        """Submit ``specs`` (one: ``Submit``; more: ``SubmitBatch``) with a deadline."""
        result: list[tuple[str, bool]] = await trio_asyncio.aio_as_trio(self._submit)(
            member, specs, seconds
        )
        return result

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


@dataclass(frozen=True, slots=True)
class TaskPlan:
    op: str
    queue: str
    max_retries: int
    key: str | None
    deps: tuple[str, ...]
    delay: float

    def rest(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "queue": self.queue,
            "payload": {"op": self.op},
            "max_retries": self.max_retries,
        }
        if self.key:
            body["idempotency_key"] = self.key
        if self.deps:
            body["depends_on"] = list(self.deps)
        if self.delay:
            body["delay"] = self.delay
        return body

    def grpc(self) -> pb.TaskSpec:
        return pb.TaskSpec(
            queue=self.queue,
            payload=orjson.dumps({"op": self.op}),
            max_retries=self.max_retries,
            idempotency_key=self.key or "",
            depends_on=list(self.deps),
            delay_seconds=self.delay,
        )


class Acknowledged:
    """Recently acknowledged task ids of the worker queue: what new tasks may depend on."""

    def __init__(self, keep: int = 200) -> None:
        self.ids: deque[str] = deque(maxlen=keep)

    def add(self, task_id: str) -> None:
        self.ids.append(task_id)

    def pick(self, rng: random.Random, n: int) -> tuple[str, ...]:
        if not self.ids:
            return ()
        return tuple(dict.fromkeys(rng.choice(self.ids) for _ in range(n)))


class Submitter:
    def __init__(
        self,
        name: str,
        cfg: LoadConfig,
        urls: dict[str, str],
        history: History,
        client: httpx.AsyncClient,
        grpc: GrpcPool,
        acked: Acknowledged,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.urls = urls
        self.history = history
        self.client = client
        self.grpc = grpc
        self.acked = acked
        self.rng = random.Random(f"{cfg.seed}-{name}")
        self._ops = itertools.count(1)
        self.last: Submit | None = None  # this client's latest record

    def plan(self) -> TaskPlan:
        rng = self.rng
        queue = self.cfg.queue
        if self.cfg.exec_queue and rng.random() < 0.3:
            queue = self.cfg.exec_queue
        deps: tuple[str, ...] = ()
        delay = 0.0
        if queue == self.cfg.queue and rng.random() < 0.25:
            deps = self.acked.pick(rng, rng.randint(1, 2))
        elif rng.random() < 0.1:
            delay = round(rng.uniform(0.2, 1.5), 3)
        op = f"{self.name}-{next(self._ops)}"
        key = f"k-{op}" if rng.random() < 0.3 else None
        return TaskPlan(op, queue, rng.randint(0, 3), key, deps, delay)

    async def run(self) -> None:
        while True:
            api = self.rng.choices(["rest", "grpc", "rest-batch", "grpc-batch"], [4, 3, 1.5, 1.5])[
                0
            ]
            count = self.rng.randint(2, 5) if api.endswith("batch") else 1
            plans = [self.plan() for _ in range(count)]
            tries = 1 + (_KEY_RETRIES if all(p.key for p in plans) else 0)
            outcome = INFO
            for _ in range(tries):
                member = self.rng.choice(list(self.urls))
                if (outcome := await self.call(member, api, plans)) != INFO:
                    break
                await trio.sleep(0.2)
            if outcome != OK:  # that member is down or busy: do not spin on it
                await trio.sleep(self.rng.uniform(0.1, 0.3))
            elif self.rng.random() < self.cfg.read_rate and self.last is not None:
                await self.read_back(member, self.last)
            await trio.sleep(self.rng.uniform(*self.cfg.think))

    async def call(self, member: str, api: str, plans: list[TaskPlan]) -> Outcome:
        invoked = time.time()
        answers: list[tuple[str, bool]] = []
        error = ""
        try:
            if api.startswith("grpc"):
                answers = await self.grpc.submit(
                    member, [p.grpc() for p in plans], self.cfg.timeout
                )
                outcome = OK
            else:
                outcome, answers, error = await self._rest(member, api, plans)
        except trio.Cancelled:  # the run ended with this call in flight: it may still land
            self._record(member, api, plans, invoked, INFO, [], "cancelled: the run ended")
            raise
        except Exception as exc:  # every failure is an outcome in the history
            outcome = grpc_error_outcome(exc) if api.startswith("grpc") else INFO
            if isinstance(exc, httpx.HTTPError):
                outcome = http_error_outcome(exc)
            error = describe(exc)
        self._record(member, api, plans, invoked, outcome, answers, error)
        return outcome

    def _record(
        self,
        member: str,
        api: str,
        plans: list[TaskPlan],
        invoked: float,
        outcome: Outcome,
        answers: list[tuple[str, bool]],
        error: str,
    ) -> None:
        completed = time.time()
        for i, p in enumerate(plans):
            task_id, duplicate = answers[i] if outcome == OK else (None, False)
            self.last = Submit(
                op=p.op,
                client=self.name,
                node=member,
                api=api,
                queue=p.queue,
                invoked=invoked,
                completed=completed,
                outcome=outcome,
                task_id=task_id,
                duplicate=duplicate,
                key=p.key,
                deps=p.deps,
                max_retries=p.max_retries,
                delay=p.delay,
                error=error,
            )
            self.history.submits.append(self.last)
            if task_id and p.queue == self.cfg.queue and not p.delay:
                self.acked.add(task_id)

    async def read_back(self, wrote_to: str, submit: Submit) -> None:
        """Read the task just acknowledged from another member: it must be there."""
        if submit.task_id is None:
            return
        others = [m for m in self.urls if m != wrote_to] or [wrote_to]
        member = self.rng.choice(others)
        invoked = time.time()
        status, error = 0, ""
        try:
            response = await self.client.get(
                f"{self.urls[member]}/api/v1/tasks/{submit.task_id}", timeout=self.cfg.timeout
            )
            status = response.status_code
            if status != 200:
                error = response.text[:200]
        except httpx.HTTPError as exc:
            error = describe(exc)
        self.history.reads.append(
            Read(
                self.name,
                member,
                submit.task_id,
                submit.completed,
                invoked,
                time.time(),
                status,
                error,
            )
        )

    async def _rest(
        self, member: str, api: str, plans: list[TaskPlan]
    ) -> tuple[Outcome, list[tuple[str, bool]], str]:
        url = self.urls[member]
        if api == "rest":
            body: dict[str, Any] = plans[0].rest()
            path = "/api/v1/tasks"
        else:
            body = {"tasks": [p.rest() for p in plans]}
            path = "/api/v1/tasks/batch"
        response = await self.client.post(
            f"{url}{path}",
            content=orjson.dumps(body),
            headers=JSON_HEADERS,
            timeout=self.cfg.timeout,
        )
        outcome = http_outcome(response.status_code)
        if outcome != OK:
            return outcome, [], f"HTTP {response.status_code}: {response.text[:200]}"
        data = response.json()
        tasks = [data] if api == "rest" else data["tasks"]
        return OK, [(t["id"], bool(t.get("duplicate"))) for t in tasks], ""
