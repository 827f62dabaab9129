"""The gRPC API (design.md §3): grpclib servers running inside the trio loop via trio-asyncio.

grpclib is asyncio code; trio-asyncio runs an asyncio loop on top of trio. Each handler here is
a thin asyncio shim that hops into trio (``trio_as_aio``) to call ``NodeService``, so the
scheduler and store only ever run as trio code. Errors become gRPC statuses with a message
that names the field: invalid input → INVALID_ARGUMENT, unknown id → NOT_FOUND, illegal
transition or stale lease → FAILED_PRECONDITION, full queue or node → RESOURCE_EXHAUSTED, no
leader or store down → UNAVAILABLE.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import grpclib
import trio
import trio_asyncio
from betterproto2 import TYPE_MESSAGE
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec

from taskd.api import speedups
from taskd.api.taskd import v1 as pb
from taskd.errors import CallerError, ClusterError
from taskd.node.bridge import TrioBridge
from taskd.node.present import stats_to_proto, task_to_proto
from taskd.node.service import NodeService
from taskd.node.validate import spec_from_proto
from taskd.queue.commands import State

log = logging.getLogger("taskd.grpc")
speedups.install()

P = ParamSpec("P")
R = TypeVar("R")


class _HasBridge(Protocol):
    bridge: TrioBridge


S = TypeVar("S", bound=_HasBridge)

_STATUS = {
    "invalid": Status.INVALID_ARGUMENT,
    "too_large": Status.INVALID_ARGUMENT,
    "not_found": Status.NOT_FOUND,
    "conflict": Status.FAILED_PRECONDITION,
    "queue_full": Status.RESOURCE_EXHAUSTED,
    "node_full": Status.RESOURCE_EXHAUSTED,
}

MAX_BATCH = 1000  # the same limit as REST's batch endpoint
STATE_TO_PB = {state: pb.TaskState[state.name] for state in State}
PB_TO_STATE = {v: k for k, v in STATE_TO_PB.items()}


def grpc_error(exc: Exception) -> grpclib.GRPCError:
    if isinstance(exc, CallerError):
        message = f"{exc.field}: {exc.message}" if exc.field else exc.message
        return grpclib.GRPCError(_STATUS.get(exc.code, Status.INVALID_ARGUMENT), message)
    if isinstance(exc, ClusterError):
        return grpclib.GRPCError(Status.UNAVAILABLE, f"{exc}; retry shortly")
    raise exc


def on_trio(
    fn: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Run a handler's body as trio code (via the service's bridge), translating taskd errors
    into gRPC statuses."""

    async def body(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(self, *args, **kwargs)
        except (CallerError, ClusterError) as exc:
            raise grpc_error(exc) from None

    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = await self.bridge.call(body, self, *args, **kwargs)
        return result

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


class StrictCodec(ProtoCodec):
    """Decode errors (invalid UTF-8, truncated messages) and unknown fields → INVALID_ARGUMENT."""

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            message = message_type.FromString(data)
        except Exception as exc:
            raise grpclib.GRPCError(
                Status.INVALID_ARGUMENT, f"cannot decode {message_type.__name__}: {exc}"
            ) from None
        _reject_unknown(message, message_type.__name__)
        return message


def _reject_unknown(message: Any, path: str) -> None:
    where = _unknown_field_path(message)
    if where is not None:
        raise grpclib.GRPCError(
            Status.INVALID_ARGUMENT,
            f"{path}{where}: unknown field(s) in the message; "
            "check the client uses taskd.v1's .proto",
        )


def _unknown_field_path(message: Any) -> str | None:
    """Where (``""``, ``.tasks[3]``, ...) the first unknown field sits, or None. Hot path:
    a SubmitBatch walks 1,000 specs, so only message-typed fields are visited."""
    if message._unknown_fields:
        return ""
    for name in _message_fields(type(message)):
        value = getattr(message, name)
        if isinstance(value, list):
            for i, item in enumerate(value):
                inner = _unknown_field_path(item)
                if inner is not None:
                    return f".{name}[{i}]{inner}"
        elif value is not None:
            inner = _unknown_field_path(value)
            if inner is not None:
                return f".{name}{inner}"
    return None


_MESSAGE_FIELDS: dict[type, tuple[str, ...]] = {}


def _message_fields(message_type: type) -> tuple[str, ...]:
    """The names of a message type's message-typed fields (cached per type)."""
    names = _MESSAGE_FIELDS.get(message_type)
    if names is None:
        metas = message_type._betterproto.meta_by_field_name  # type: ignore[attr-defined]
        names = tuple(name for name, meta in metas.items() if meta.proto_type == TYPE_MESSAGE)
        _MESSAGE_FIELDS[message_type] = names
    return names


class TaskService(pb.TaskServiceBase):
    def __init__(self, service: NodeService, bridge: TrioBridge, *, max_payload: int) -> None:
        self.service = service
        self.bridge = bridge
        self.max_payload = max_payload

    @on_trio
    async def submit(self, message: pb.SubmitRequest) -> pb.SubmitResponse:
        if message.task is None:
            raise CallerError("invalid", "a task is required", "task")
        spec = spec_from_proto(
            message.task,
            now=self.service.clock(),
            max_payload=self.max_payload,
            field_prefix="task.",
        )
        [(task, duplicate)] = await self.service.submit([spec])
        return pb.SubmitResponse(task=task_to_proto(task), duplicate=duplicate)

    @on_trio
    async def submit_batch(self, message: pb.SubmitBatchRequest) -> pb.SubmitBatchResponse:
        if not message.tasks:
            raise CallerError("invalid", "a batch needs at least one task", "tasks")
        if len(message.tasks) > MAX_BATCH:
            raise CallerError("invalid", f"at most {MAX_BATCH} tasks per batch", "tasks")
        now = self.service.clock()
        specs = [
            spec_from_proto(m, now=now, max_payload=self.max_payload, field_prefix=f"tasks[{i}].")
            for i, m in enumerate(message.tasks)
        ]
        reply = await self.service.submit_ids(specs)
        return pb.SubmitBatchResponse(
            ids=[task_id for task_id, _ in reply], duplicate=[dup for _, dup in reply]
        )

    @on_trio
    async def get(self, message: pb.GetRequest) -> pb.Task:
        return task_to_proto(self.service.get(message.id))

    @on_trio
    async def list(self, message: pb.ListRequest) -> pb.ListResponse:
        limit = message.limit or 100
        if not 1 <= limit <= 1000:
            raise CallerError("invalid", "limit must be 1-1000", "limit")
        state = None
        if message.state:
            state = PB_TO_STATE.get(message.state)
            if state is None:
                raise CallerError("invalid", "unknown state", "state")
        tasks, cursor = self.service.list(
            message.queue or None, state, limit, message.after or None
        )
        return pb.ListResponse(tasks=[task_to_proto(t) for t in tasks], next=cursor or "")

    @on_trio
    async def cancel(self, message: pb.CancelRequest) -> pb.Task:
        return task_to_proto(await self.service.cancel(message.id))

    @on_trio
    async def retry(self, message: pb.RetryRequest) -> pb.Task:
        return task_to_proto(await self.service.retry(message.id))

    async def watch(self, message: pb.WatchRequest) -> AsyncIterator[pb.TaskEvent]:
        sub = self.service.events.subscribe(message.queue or None, message.ids)
        receive = trio_asyncio.trio_as_aio(sub.receive.receive)
        try:
            while True:
                try:
                    event = await receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    if sub.overflowed:
                        raise grpclib.GRPCError(
                            Status.RESOURCE_EXHAUSTED,
                            "watcher fell too far behind; reconnect and re-read state with List",
                        ) from None
                    return
                task = self.service.scheduler.get(event.task_id)
                if task is None:
                    continue
                view = task_to_proto(task)
                # The task as it is now, but the state this event moved it to: a watcher
                # sees every transition in order even when it reads them late.
                view.state = STATE_TO_PB[event.current]
                yield pb.TaskEvent(
                    task=view,
                    previous=STATE_TO_PB[event.previous] if event.previous else pb.TaskState(0),
                )
        finally:
            sub.close()


class ClusterService(pb.ClusterServiceBase):
    def __init__(
        self,
        service: NodeService,
        bridge: TrioBridge,
        status: Callable[[], dict[str, Any]],
        workers: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self.service = service
        self.bridge = bridge
        self._status = status
        self._workers = workers

    @on_trio
    async def status(self, message: pb.ClusterStatusRequest) -> pb.ClusterStatus:
        s = self._status()
        return pb.ClusterStatus(
            id=s["id"],
            role=s["role"],
            term=s["term"],
            leader=s["leader"] or "",
            commit_index=s["commit_index"],
            members=[
                pb.Member(
                    address=m["address"],
                    role=m["role"],
                    match_index=m["match_index"],
                    reachable=m["reachable"],
                )
                for m in s["members"]
            ],
        )

    @on_trio
    async def list_queues(self, message: pb.ListQueuesRequest) -> pb.ListQueuesResponse:
        stats, rates = self.service.queues(), self.service.rates.of
        return pb.ListQueuesResponse(queues=[stats_to_proto(s, rates(s.name)) for s in stats])

    @on_trio
    async def pause_queue(self, message: pb.QueueRequest) -> pb.QueueStats:
        name = _queue_name(message.name)
        return stats_to_proto(await self.service.pause(name), self.service.rates.of(name))

    @on_trio
    async def resume_queue(self, message: pb.QueueRequest) -> pb.QueueStats:
        name = _queue_name(message.name)
        return stats_to_proto(await self.service.resume(name), self.service.rates.of(name))

    @on_trio
    async def list_workers(self, message: pb.ListWorkersRequest) -> pb.ListWorkersResponse:
        return pb.ListWorkersResponse(
            workers=[
                pb.WorkerInfo(
                    worker=w["worker"],
                    queues=w["queues"],
                    capacity=w["capacity"],
                    running=w["running"],
                    kind=w["kind"],
                )
                for w in self._workers()
            ]
        )


def _queue_name(name: str) -> str:
    if not name:
        raise CallerError("invalid", "a queue name is required", "name")
    return name
