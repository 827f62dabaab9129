"""Test clients that send what no well-behaved client would: raw bytes into any gRPC method or
the worker stream, and a probe that measures how fast ``/healthz`` answers meanwhile.

Also ``snapshot(node)``: the state a refused request must not change (tasks, queues, the
state gauges and transition counters of /metrics), read over REST.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import h2.exceptions
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from tests.node.rest import get

# ---- hand-made protobuf wire bytes -----------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def ld(number: int, data: bytes) -> bytes:
    """A length-delimited field: ``number``, wire type 2, ``data``."""
    return tag(number, 2) + varint(len(data)) + data


UNARY_METHODS = [
    "/taskd.v1.TaskService/Submit",
    "/taskd.v1.TaskService/SubmitBatch",
    "/taskd.v1.TaskService/Get",
    "/taskd.v1.TaskService/List",
    "/taskd.v1.TaskService/Cancel",
    "/taskd.v1.TaskService/Retry",
    "/taskd.v1.ClusterService/Status",
    "/taskd.v1.ClusterService/ListQueues",
    "/taskd.v1.ClusterService/PauseQueue",
    "/taskd.v1.ClusterService/ResumeQueue",
    "/taskd.v1.ClusterService/ListWorkers",
    "/taskd.v1.ClusterService/AddMember",
    "/taskd.v1.ClusterService/RemoveMember",
    "/taskd.v1.ClusterService/TransferLeadership",
]
WATCH = "/taskd.v1.TaskService/Watch"
WORK = "/taskd.v1.WorkerService/Work"
# What a refused request may answer: never UNKNOWN or INTERNAL (a crash in a handler).
REFUSALS = {Status.INVALID_ARGUMENT, Status.NOT_FOUND, Status.FAILED_PRECONDITION}


class Raw:
    """A message type that sends and receives raw bytes (grpclib's codec calls these)."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data

    @classmethod
    def FromString(cls, data: bytes) -> Raw:
        return cls(data)

    def __bytes__(self) -> bytes:
        return self.data


@dataclass
class Answer:
    status: Status
    message: str
    replies: list[bytes] = field(default_factory=list)


async def _unary(channel: Channel, method: str, data: bytes) -> Answer:
    async with channel.request(
        method, cardinality=Cardinality.UNARY_UNARY, request_type=Raw, reply_type=Raw
    ) as stream:
        await stream.send_message(Raw(data), end=True)
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
        return Answer(Status.OK, "", [reply.data] if reply else [])


async def _streaming(
    channel: Channel, method: str, messages: Sequence[bytes], cardinality: Cardinality, wait: float
) -> Answer:
    """Send ``messages``, then read replies until the node ends the call or ``wait`` passes
    (a stream the node accepted stays open: OK then means "still serving")."""
    replies: list[bytes] = []
    async with channel.request(
        method, cardinality=cardinality, request_type=Raw, reply_type=Raw
    ) as stream:
        try:
            if cardinality is Cardinality.UNARY_STREAM:
                await stream.send_message(Raw(messages[0]), end=True)
            else:
                for data in messages:
                    await stream.send_message(Raw(data))
        except (StreamTerminatedError, ConnectionError, h2.exceptions.StreamClosedError):
            pass  # the node ended the call early (refused a message): read its status
        try:
            async with asyncio.timeout(wait):
                while (reply := await stream.recv_message()) is not None:
                    replies.append(reply.data)
                await stream.recv_trailing_metadata()
        except TimeoutError:
            await stream.cancel()
    return Answer(Status.OK, "", replies)


def call(
    port: int,
    method: str,
    data: bytes | Sequence[bytes],
    *,
    wait: float = 0.5,
    timeout: float = 30.0,
) -> Answer:
    """One call with raw request bytes; the answer's status (OK, or the error's)."""

    async def session() -> Answer:
        channel = Channel("127.0.0.1", port)
        try:
            async with asyncio.timeout(timeout):
                if method == WORK:
                    assert not isinstance(data, bytes)
                    return await _streaming(channel, method, data, Cardinality.STREAM_STREAM, wait)
                assert isinstance(data, bytes)
                if method == WATCH:
                    return await _streaming(channel, method, [data], Cardinality.UNARY_STREAM, wait)
                return await _unary(channel, method, data)
        except GRPCError as exc:
            return Answer(exc.status, str(exc.message or ""))
        finally:
            channel.close()

    try:
        return asyncio.run(session())
    except StreamTerminatedError as exc:  # the node reset the stream
        return Answer(Status.UNAVAILABLE, f"stream terminated: {exc}")


class HealthProbe:
    """Polls ``/healthz`` from a thread; ``worst`` is the slowest answer seen (seconds)."""

    def __init__(self, url: str) -> None:
        self.url = f"{url}/healthz"
        self.worst = 0.0
        self.count = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as reply:
                    reply.read()
            except OSError as exc:
                self.failures.append(repr(exc))
            self.worst = max(self.worst, time.perf_counter() - started)
            self.count += 1
            time.sleep(0.02)

    @contextmanager
    def running(self) -> Iterator[HealthProbe]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=60)


def snapshot(node: Any) -> dict[str, Any]:
    """What a refused request must leave as it was."""
    tasks: list[Any] = []
    after = ""
    while True:
        status, page = get(f"{node.http_url}/api/v1/tasks?limit=1000{after}")
        assert status == 200, page
        tasks += [(t["id"], t["state"], t["queue"]) for t in page["tasks"]]
        if page["next"] is None:
            break
        after = f"&after={page['next']}"
    status, queues = get(f"{node.http_url}/api/v1/queues")
    assert status == 200, queues
    status, metrics = get(f"{node.http_url}/metrics")
    assert status == 200
    state_lines = sorted(
        line
        for line in str(metrics).splitlines()
        if line.startswith(("taskd_queue_", "taskd_tasks_held", "taskd_task_transitions_total"))
    )
    names = [(q["name"], q["paused"], q["by_state"]) for q in queues["queues"]]
    return {"tasks": tasks, "queues": names, "metrics": state_lines}
