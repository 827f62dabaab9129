"""The gRPC API (design.md §3): grpclib servers running inside the trio loop via trio-asyncio.

grpclib is asyncio code; trio-asyncio runs an asyncio loop on top of trio. Each handler here is
a thin asyncio shim that hops into trio (``trio_as_aio``) to call ``NodeService``, so the
scheduler and store only ever run as trio code. Errors become gRPC statuses with a message
that names the field: invalid input → INVALID_ARGUMENT, unknown id → NOT_FOUND, illegal
transition or stale lease → FAILED_PRECONDITION, full queue or node → RESOURCE_EXHAUSTED, no
leader or store down → UNAVAILABLE. An UNAVAILABLE from the cluster names the leader when
another member leads, in its message ("retry, or send it to the leader at ADDR") and in the
trailing metadata ``x-taskd-leader`` (``LeaderHint`` rides in the error's details, which
``add_leader_trailer`` turns into that header; the node's codec has no details encoding).

Reads (Get, List, ListQueues) wait for the store's read barrier first (linearizable); a
request with ``stale: true`` is served from this replica at once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import grpclib
import trio
import trio_asyncio
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.events import SendTrailingMetadata

from taskd.api.taskd import v1 as pb
from taskd.errors import CallerError, ClusterError, StorageFault
from taskd.node import limits
from taskd.node.api import validate
from taskd.node.api.codes import cluster_hint, cluster_message, grpc_status
from taskd.node.api.grpc import wire
from taskd.node.api.grpc.bridge import TrioBridge
from taskd.node.api.present import PB_TO_STATE, STATE_TO_PB, stats_to_proto, task_to_proto
from taskd.node.api.validate import spec_from_proto
from taskd.node.app.cluster import ClusterAdmin
from taskd.node.app.service import NodeService

log = logging.getLogger("taskd.grpc")

P = ParamSpec("P")
R = TypeVar("R")


class _HasBridge(Protocol):
    bridge: TrioBridge
    leader: Callable[[], str | None]


S = TypeVar("S", bound=_HasBridge)


MAX_BATCH = limits.MAX_BATCH  # the same limit as REST's batch endpoint
_CHECK_EVERY = 100  # specs validated between two trio checkpoints in a large batch
LEADER_KEY = "x-taskd-leader"


@dataclass(frozen=True, slots=True)
class LeaderHint:
    """The details of an UNAVAILABLE: where the leader is (its gRPC address)."""

    address: str


def grpc_error(exc: Exception, leader: str | None = None) -> grpclib.GRPCError:
    """``exc`` as a gRPC status; ``leader``: the leader this member knows of, if another."""
    if isinstance(exc, CallerError):
        message = f"{exc.field}: {exc.message}" if exc.field else exc.message
        # the message travels in a header: never as long as what a client may have sent
        message = validate.clip(message, limits.MAX_MESSAGE)
        return grpclib.GRPCError(grpc_status(exc.code), message)
    if isinstance(exc, StorageFault):  # an operator must act: no "retry shortly" here
        return grpclib.GRPCError(Status.UNAVAILABLE, str(exc))
    if isinstance(exc, ClusterError):
        hint = cluster_hint(exc, leader)
        return grpclib.GRPCError(
            Status.UNAVAILABLE,
            validate.clip(cluster_message(exc, hint), limits.MAX_MESSAGE),
            LeaderHint(hint) if hint else None,
        )
    raise exc


async def add_leader_trailer(event: SendTrailingMetadata) -> None:
    """A ``SendTrailingMetadata`` listener: an error that names the leader says it in
    ``x-taskd-leader`` too, where a client library can read it without parsing text."""
    details = event.status_details
    if isinstance(details, LeaderHint):
        event.metadata[LEADER_KEY] = details.address


def on_trio(
    fn: Callable[Concatenate[S, P], Awaitable[R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Run a handler's body as trio code (via the service's bridge), translating taskd errors
    into gRPC statuses."""

    async def body(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(self, *args, **kwargs)
        except (CallerError, ClusterError) as exc:
            raise grpc_error(exc, self.leader()) from None

    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = await self.bridge.call(body, self, *args, **kwargs)
        return result

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


_INTERNAL_MODULE = "taskd.api.taskd.internal"


class StrictCodec(ProtoCodec):
    """Decoding that refuses anything but a well-formed message within the limits.

    ``wire.check`` walks the bytes first (malformed or truncated data, groups, unknown or
    repeated fields, over-long strings and lists, per-request totals → INVALID_ARGUMENT
    naming the field); only then does betterproto2 build the message. ``max_payload`` bounds
    every bytes field (payloads, results).
    """

    def __init__(self, max_payload: int = limits.DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self.totals = {
            "TaskSpec.depends_on": limits.MAX_BATCH_EDGES,
            "TaskSpec.labels": limits.MAX_BATCH_LABELS,
            "TaskSpec.payload": validate.batch_bytes(max_payload),
        }
        # betterproto2 imports part of pydantic on its first decode and encode: do both now,
        # not in the middle of a request, which a node out of file descriptors would fail
        warm = pb.SubmitRequest(task=pb.TaskSpec(queue="warm", payload=b"x"))
        self.decode(self.encode(warm, pb.SubmitRequest), pb.SubmitRequest)

    def decode(self, data: bytes, message_type: Any) -> Any:
        name = message_type.__name__
        # The internal Raft service's fields are blobs (message batches, snapshot chunks,
        # forwarded commands) that carry one command of any size the API admitted: they are
        # bounded by the message limit (``server.internal_limit``), not by --max-payload,
        # and the Raft codec checks its own records.
        internal = message_type.__module__.startswith(_INTERNAL_MODULE)
        max_bytes = len(data) if internal else self.max_payload
        try:
            wire.check(data, message_type, max_bytes=max_bytes, totals=self.totals)
        except wire.WireError as exc:
            where = f"{name}.{exc.field}" if exc.field else name
            raise grpclib.GRPCError(
                Status.INVALID_ARGUMENT,
                validate.clip(f"{where}: {exc.message}", limits.MAX_MESSAGE),
            ) from None
        try:
            return message_type.FromString(data)
        except OSError as exc:  # the node's fault, not the caller's (out of descriptors)
            raise grpclib.GRPCError(
                Status.UNAVAILABLE,
                validate.clip(f"cannot decode {name} now: {exc}; retry", limits.MAX_MESSAGE),
            ) from None
        except Exception as exc:  # the check should have caught it; never UNKNOWN
            raise grpclib.GRPCError(
                Status.INVALID_ARGUMENT,
                validate.clip(f"cannot decode {name}: {exc}", limits.MAX_MESSAGE),
            ) from None


class TaskService(pb.TaskServiceBase):
    def __init__(
        self,
        service: NodeService,
        bridge: TrioBridge,
        *,
        max_payload: int,
        leader: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.service = service
        self.bridge = bridge
        self.max_payload = max_payload
        self.leader = leader

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
        specs = []
        for i, m in enumerate(message.tasks):
            if i and i % _CHECK_EVERY == 0:
                await trio.lowlevel.checkpoint()  # other requests run while a batch is checked
            specs.append(
                spec_from_proto(
                    m, now=now, max_payload=self.max_payload, field_prefix=f"tasks[{i}]."
                )
            )
        validate.check_batch(specs, max_payload=self.max_payload)
        reply = await self.service.submit_ids(specs)
        return pb.SubmitBatchResponse(
            ids=[task_id for task_id, _ in reply], duplicate=[dup for _, dup in reply]
        )

    @on_trio
    async def get(self, message: pb.GetRequest) -> pb.Task:
        task_id = validate.check_id(message.id, "id")
        await self.service.fresh(message.stale)
        return task_to_proto(self.service.get(task_id))

    @on_trio
    async def list(self, message: pb.ListRequest) -> pb.ListResponse:
        max_limit = self.service.config.max_list_limit
        limit = validate.check_list_limit(
            message.limit or limits.DEFAULT_LIST_LIMIT, "limit", max_limit
        )
        state = None
        if message.state:
            state = PB_TO_STATE.get(message.state)
            if state is None:
                raise CallerError("invalid", "state must be one of taskd.v1.TaskState", "state")
        queue = validate.check_queue(message.queue, "queue") if message.queue else None
        after = validate.check_cursor(message.after, "after") if message.after else None
        await self.service.fresh(message.stale)
        tasks, cursor = self.service.list(queue, state, limit, after)
        return pb.ListResponse(tasks=[task_to_proto(t) for t in tasks], next=cursor or "")

    @on_trio
    async def cancel(self, message: pb.CancelRequest) -> pb.Task:
        return task_to_proto(await self.service.cancel(validate.check_id(message.id, "id")))

    @on_trio
    async def retry(self, message: pb.RetryRequest) -> pb.Task:
        return task_to_proto(await self.service.retry(validate.check_id(message.id, "id")))

    async def watch(self, message: pb.WatchRequest) -> AsyncIterator[pb.TaskEvent]:
        try:
            queue = validate.check_queue(message.queue, "queue") if message.queue else None
            if len(message.ids) > limits.MAX_WATCH_IDS:
                raise validate.invalid(f"watch at most {limits.MAX_WATCH_IDS} ids", "ids")
            ids = [validate.check_id(i, f"ids[{n}]") for n, i in enumerate(message.ids)]
        except CallerError as exc:
            raise grpc_error(exc) from None
        sub = self.service.events.subscribe(queue, ids)
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
        *,
        admin: ClusterAdmin | None = None,
        leader: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.service = service
        self.bridge = bridge
        self._status = status
        self._workers = workers
        self._admin = admin
        self.leader = leader

    @on_trio
    async def status(self, message: pb.ClusterStatusRequest) -> pb.ClusterStatus:
        return _status_to_proto(self._status())

    def _membership(self) -> ClusterAdmin:
        if self._admin is None:
            raise CallerError("not_found", "this node offers no membership changes", "")
        return self._admin

    @on_trio
    async def add_member(self, message: pb.MemberRequest) -> pb.ClusterStatus:
        return _status_to_proto(await self._membership().add(_member(message.address)))

    @on_trio
    async def remove_member(self, message: pb.MemberRequest) -> pb.ClusterStatus:
        return _status_to_proto(await self._membership().remove(_member(message.address)))

    @on_trio
    async def transfer_leadership(self, message: pb.TransferRequest) -> pb.ClusterStatus:
        return _status_to_proto(await self._membership().transfer(message.address or None))

    @on_trio
    async def list_queues(self, message: pb.ListQueuesRequest) -> pb.ListQueuesResponse:
        await self.service.fresh(message.stale)
        stats, rates = self.service.queues(), self.service.rates.of
        consumers = self.service.consumers()
        return pb.ListQueuesResponse(
            queues=[stats_to_proto(s, rates(s.name), consumers.get(s.name, 0)) for s in stats]
        )

    @on_trio
    async def pause_queue(self, message: pb.QueueRequest) -> pb.QueueStats:
        name = _queue_name(message.name)
        stats = await self.service.pause(name)
        consumers = self.service.consumers().get(name, 0)
        return stats_to_proto(stats, self.service.rates.of(name), consumers)

    @on_trio
    async def resume_queue(self, message: pb.QueueRequest) -> pb.QueueStats:
        name = _queue_name(message.name)
        stats = await self.service.resume(name)
        consumers = self.service.consumers().get(name, 0)
        return stats_to_proto(stats, self.service.rates.of(name), consumers)

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
                    last_heartbeat_ms=_epoch_ms(w.get("last_heartbeat")),
                )
                for w in self._workers()
            ]
        )


def _status_to_proto(s: dict[str, Any]) -> pb.ClusterStatus:
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


def _epoch_ms(stamp: str | None) -> int:
    """An RFC 3339 time of the JSON views → epoch milliseconds (0: none)."""
    if not stamp:
        return 0
    return round(datetime.fromisoformat(stamp).timestamp() * 1000)


def _member(address: str) -> str:
    if not address:
        raise CallerError("invalid", "an address host[:port] is required", "address")
    return address


def _queue_name(name: str) -> str:
    if not name:
        raise CallerError("invalid", "a queue name is required", "name")
    return validate.check_queue(name, "name")
