"""The gRPC API of a real node process, driven with the project's grpclib stubs.

Bad input must come back as INVALID_ARGUMENT naming the field, unknown ids as NOT_FOUND,
stale leases as FAILED_PRECONDITION; never a crash, a hang or a half-applied batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from taskd.api.taskd import v1 as pb
from tests.node.rest import get, post

pytestmark = pytest.mark.slow
T = TypeVar("T")


def run(node: Any, body: Callable[[Channel], Awaitable[T]]) -> T:
    """Run one asyncio client session against the node (grpclib is asyncio code)."""

    async def session() -> T:
        channel = Channel("127.0.0.1", node.grpc_port)
        try:
            return await body(channel)
        finally:
            channel.close()

    return asyncio.run(session())


def expect_error(node: Any, body: Callable[[Channel], Awaitable[Any]], status: Status) -> str:
    with pytest.raises(GRPCError) as info:
        run(node, body)
    assert info.value.status == status, info.value
    return str(info.value.message)


def test_submit_get_list_cancel_over_grpc(node_factory):
    node = node_factory()

    async def body(channel: Channel) -> tuple[Any, ...]:
        stub = pb.TaskServiceStub(channel)
        submitted = await stub.submit(
            pb.SubmitRequest(
                task=pb.TaskSpec(
                    queue="grpc",
                    priority=8,
                    payload=b'{"x": 1}',
                    labels={"team": "a"},
                    timeout_seconds=60,
                )
            )
        )
        batch = await stub.submit_batch(
            pb.SubmitBatchRequest(
                tasks=[
                    pb.TaskSpec(queue="grpc", ref="first"),
                    pb.TaskSpec(queue="grpc", depends_on=["first"]),
                ]
            )
        )
        got = await stub.get(pb.GetRequest(id=submitted.task.id))
        page = await stub.list(pb.ListRequest(queue="grpc", limit=10))
        canceled = await stub.cancel(pb.CancelRequest(id=batch.ids[0]))
        dependent = await stub.get(pb.GetRequest(id=batch.ids[1]))
        return submitted, batch, got, page, canceled, dependent

    submitted, batch, got, page, canceled, dependent = run(node, body)
    assert submitted.task.priority == 8 and submitted.task.state == pb.TaskState.QUEUED
    assert not submitted.duplicate
    assert got.payload == b'{"x": 1}' and got.labels == {"team": "a"} and got.timeout_seconds == 60
    assert len(batch.ids) == 2
    assert [t.id for t in page.tasks] == [batch.ids[1], batch.ids[0], submitted.task.id]
    assert canceled.state == pb.TaskState.CANCELED
    assert dependent.state == pb.TaskState.CANCELED  # cascade
    # the same task through REST shows the payload as JSON
    status, task = get(f"{node.http_url}/api/v1/tasks/{submitted.task.id}")
    assert status == 200 and task["payload"] == {"x": 1} and task["priority"] == 8


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (pb.TaskSpec(priority=10), "priority"),
        (pb.TaskSpec(priority=-1), "priority"),
        (pb.TaskSpec(max_retries=101), "max_retries"),
        (pb.TaskSpec(timeout_seconds=-5), "timeout"),
        (pb.TaskSpec(queue="bad queue name!"), "queue"),
        (pb.TaskSpec(idempotency_key="k" * 256), "idempotency_key"),
        (pb.TaskSpec(depends_on=["no-such-task"]), "depends_on"),
        (pb.TaskSpec(payload=b"x" * ((1 << 20) + 1)), "payload"),
    ],
)
def test_bad_task_specs_are_invalid_argument_naming_the_field(node_factory_shared, spec, field):
    node = node_factory_shared
    message = expect_error(
        node,
        lambda ch: pb.TaskServiceStub(ch).submit(pb.SubmitRequest(task=spec)),
        Status.INVALID_ARGUMENT,
    )
    assert field in message


def test_a_bad_task_in_a_batch_rejects_the_whole_batch(node_factory_shared):
    node = node_factory_shared
    before = get(f"{node.http_url}/api/v1/tasks?queue=atomic")[1]["tasks"]
    message = expect_error(
        node,
        lambda ch: pb.TaskServiceStub(ch).submit_batch(
            pb.SubmitBatchRequest(
                tasks=[
                    pb.TaskSpec(queue="atomic"),
                    pb.TaskSpec(queue="atomic", priority=99),
                ]
            )
        ),
        Status.INVALID_ARGUMENT,
    )
    assert "tasks[1].priority" in message
    assert get(f"{node.http_url}/api/v1/tasks?queue=atomic")[1]["tasks"] == before


def test_cycles_in_a_batch_are_invalid(node_factory_shared):
    message = expect_error(
        node_factory_shared,
        lambda ch: pb.TaskServiceStub(ch).submit_batch(
            pb.SubmitBatchRequest(
                tasks=[
                    pb.TaskSpec(ref="a", depends_on=["b"]),
                    pb.TaskSpec(ref="b", depends_on=["a"]),
                ]
            )
        ),
        Status.INVALID_ARGUMENT,
    )
    assert "depends_on" in message


def test_unknown_ids_are_not_found(node_factory_shared):
    for call in (
        lambda ch: pb.TaskServiceStub(ch).get(pb.GetRequest(id="01HZZZZZZZZZZZZZZZZZZZZZZZ")),
        lambda ch: pb.TaskServiceStub(ch).cancel(pb.CancelRequest(id="nope")),
        lambda ch: pb.TaskServiceStub(ch).retry(pb.RetryRequest(id="nope")),
    ):
        expect_error(node_factory_shared, call, Status.NOT_FOUND)


def test_illegal_transitions_are_failed_precondition(node_factory_shared):
    node = node_factory_shared
    status, task = post(f"{node.http_url}/api/v1/tasks", {"queue": "trans"})
    assert status == 201
    expect_error(
        node,
        lambda ch: pb.TaskServiceStub(ch).retry(pb.RetryRequest(id=task["id"])),
        Status.FAILED_PRECONDITION,
    )


def test_invalid_utf8_and_unknown_fields_are_invalid_argument(node_factory_shared):
    node = node_factory_shared
    # GetRequest field 1 (string id) carrying bytes that are not UTF-8
    bad_utf8 = bytes([0x0A, 0x02, 0xFF, 0xFE])
    # GetRequest with an extra field number 9 the contract does not have
    unknown_field = bytes([0x0A, 0x01, 0x61, 0x48, 0x01])

    for raw in (bad_utf8, unknown_field):

        async def body(channel: Channel, raw: bytes = raw) -> Any:
            async with channel.request(
                "/taskd.v1.TaskService/Get",
                cardinality=_unary(),
                request_type=_Raw,
                reply_type=_Raw,
            ) as stream:
                await stream.send_message(_Raw(raw), end=True)
                return await stream.recv_message()

        expect_error(node, body, Status.INVALID_ARGUMENT)


def test_stale_lease_epochs_are_rejected_over_the_worker_stream(node_factory_shared):
    node = node_factory_shared
    status, task = post(f"{node.http_url}/api/v1/tasks", {"queue": "stale"})
    assert status == 201

    async def body(channel: Channel) -> list[Any]:
        stub = pb.WorkerServiceStub(channel)
        out: asyncio.Queue[pb.WorkerMessage | None] = asyncio.Queue()
        await out.put(
            pb.WorkerMessage(hello=pb.WorkerHello(worker="w-stale", queues=["stale"], capacity=1))
        )

        async def outgoing():  # type: ignore[no-untyped-def]
            while (msg := await out.get()) is not None:
                yield msg

        seen: list[Any] = []
        async for reply in stub.work(outgoing()):
            seen.append(reply)
            if reply.assignment is not None and reply.assignment.items:
                item = reply.assignment.items[0]
                await out.put(
                    pb.WorkerMessage(
                        result=pb.TaskResult(
                            id=item.id, lease=item.lease + 1000, success=True, result=b"1"
                        )
                    )
                )
                await out.put(
                    pb.WorkerMessage(
                        result=pb.TaskResult(
                            id=item.id, lease=item.lease, success=True, result=b"2"
                        )
                    )
                )
            if len(_acks(seen)) == 2:
                await out.put(None)
                break
        return seen

    seen = asyncio.run(asyncio.wait_for(_with_channel(node, body), 20))
    acks = _acks(seen)
    assert sorted(a.accepted for a in acks) == [False, True]
    assert "lease" in next(a for a in acks if not a.accepted).error
    assert get(f"{node.http_url}/api/v1/tasks/{task['id']}")[1]["result"] == 2


async def _with_channel(node: Any, body: Callable[[Channel], Awaitable[T]]) -> T:
    channel = Channel("127.0.0.1", node.grpc_port)
    try:
        return await body(channel)
    finally:
        channel.close()


class _Raw:
    """A message type that sends and receives raw bytes, to hand-craft wire input."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # grpclib's codec protocol
        return self.data

    @classmethod
    def FromString(cls, data: bytes) -> _Raw:
        return cls(data)

    def __bytes__(self) -> bytes:
        return self.data


def _unary() -> Any:
    return Cardinality.UNARY_UNARY


def test_watch_streams_state_changes_of_a_queue(node_factory_shared):
    node = node_factory_shared

    async def body(channel: Channel) -> list[Any]:
        stub = pb.TaskServiceStub(channel)
        seen: list[Any] = []
        got_one = asyncio.Event()

        async def watch() -> None:
            async for event in stub.watch(pb.WatchRequest(queue="watched")):
                seen.append(event)
                got_one.set()

        watcher = asyncio.ensure_future(watch())
        # The watch is live once it reports a marker task; until then, submit markers.
        while not got_one.is_set():
            await stub.submit(pb.SubmitRequest(task=pb.TaskSpec(queue="watched", name="marker")))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(got_one.wait(), 0.2)
        seen.clear()
        submitted = await stub.submit(pb.SubmitRequest(task=pb.TaskSpec(queue="watched")))
        await stub.submit(pb.SubmitRequest(task=pb.TaskSpec(queue="elsewhere")))
        await stub.cancel(pb.CancelRequest(id=submitted.task.id))
        async with asyncio.timeout(10):
            while sum(e.task.id == submitted.task.id for e in seen) < 2:
                got_one.clear()
                await got_one.wait()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        return [e for e in seen if e.task.id == submitted.task.id]

    seen = asyncio.run(_with_channel(node, body))
    assert [(e.previous, e.task.state) for e in seen] == [
        (pb.TaskState.UNSPECIFIED, pb.TaskState.QUEUED),
        (pb.TaskState.QUEUED, pb.TaskState.CANCELED),
    ]


def _acks(messages: list[Any]) -> list[Any]:
    """Every ack in node messages, whether sent alone or in a ``ResultAcks`` batch."""
    acks = []
    for m in messages:
        if m.ack is not None:
            acks.append(m.ack)
        elif m.acks is not None:
            acks.extend(
                pb.ResultAck(id=i, lease=lease, accepted=True)
                for i, lease in zip(m.acks.ids, m.acks.leases, strict=True)
            )
            acks.extend(m.acks.rejected)
    return acks


def test_batched_results_are_acked_per_task_and_checked(node_factory_shared):
    # Given three tasks leased to one stream worker
    node = node_factory_shared
    ids = [post(f"{node.http_url}/api/v1/tasks", {"queue": "batched"})[1]["id"] for _ in range(3)]

    async def body(channel: Channel) -> list[Any]:
        stub = pb.WorkerServiceStub(channel)
        out: asyncio.Queue[pb.WorkerMessage | None] = asyncio.Queue()
        await out.put(
            pb.WorkerMessage(hello=pb.WorkerHello(worker="w-batch", queues=["batched"], capacity=3))
        )

        async def outgoing():  # type: ignore[no-untyped-def]
            while (msg := await out.get()) is not None:
                yield msg

        seen: list[Any] = []
        items: list[Any] = []
        async for reply in stub.work(outgoing()):
            seen.append(reply)
            if reply.assignment is not None:
                items.extend(reply.assignment.items)
                if len(items) == 3:
                    # When it reports all three in one message, one of them with a stale lease
                    leases = [it.lease for it in items]
                    leases[2] += 1000
                    await out.put(
                        pb.WorkerMessage(
                            results=pb.TaskResults(
                                ids=[it.id for it in items],
                                leases=leases,
                                success=[True, False, True],
                                results=[b"1", b"", b"3"],
                                errors=["", "boom", ""],
                            )
                        )
                    )
            if len(_acks(seen)) == 3:
                await out.put(None)
                break
        return seen

    seen = asyncio.run(asyncio.wait_for(_with_channel(node, body), 20))
    # Expect one ack per task: two accepted, the stale one rejected
    acks = {a.id: a for a in _acks(seen)}
    assert set(acks) == set(ids)
    states = {i: get(f"{node.http_url}/api/v1/tasks/{i}")[1] for i in ids}
    accepted = [i for i in ids if acks[i].accepted]
    assert len(accepted) == 2
    assert sorted(states[i]["state"] for i in accepted) == ["pending", "succeeded"]
    [stale] = [i for i in ids if not acks[i].accepted]
    assert "lease" in acks[stale].error
    # the worker then closed its stream still holding that lease: it was released as lost
    assert states[stale]["state"] == "pending" and states[stale]["error"] == "worker lost"


def test_batched_results_with_lists_of_different_lengths_are_invalid(node_factory_shared):
    node = node_factory_shared

    async def body(channel: Channel) -> None:
        stub = pb.WorkerServiceStub(channel)

        async def outgoing():  # type: ignore[no-untyped-def]
            yield pb.WorkerMessage(
                hello=pb.WorkerHello(worker="w-bad", queues=["nope"], capacity=1)
            )
            yield pb.WorkerMessage(
                results=pb.TaskResults(ids=["a", "b"], leases=[1], success=[True, True])
            )

        async for _ in stub.work(outgoing()):
            pass

    message = expect_error(node, body, Status.INVALID_ARGUMENT)
    assert "results.leases" in message
