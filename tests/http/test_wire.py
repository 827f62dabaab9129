"""The strict protobuf pre-check (``taskd.node.api.grpc.wire``) over every taskd.v1 request.

Each rule is tried on every field of every message a client can send, not on one sample:
truncation at every offset, every forbidden wire type, the wrong wire type and invalid UTF-8
for each field, each string one past its limit, each list one past its count.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import grpclib
import pytest
from betterproto2 import TYPE_MAP, TYPE_MESSAGE, TYPE_STRING

from taskd.api.taskd import v1 as pb
from taskd.node import limits
from taskd.node.api.grpc import wire
from taskd.node.api.grpc.handlers import StrictCodec
from tests.node.wireclient import ld, tag, varint

# Every message a client sends (unary requests and the worker stream's messages).
REQUESTS: list[type] = [
    pb.SubmitRequest,
    pb.SubmitBatchRequest,
    pb.GetRequest,
    pb.ListRequest,
    pb.CancelRequest,
    pb.RetryRequest,
    pb.WatchRequest,
    pb.WorkerMessage,
    pb.ClusterStatusRequest,
    pb.ListQueuesRequest,
    pb.QueueRequest,
    pb.ListWorkersRequest,
]
MAX_BYTES = 1 << 20


def check(data: bytes, message_type: type = pb.SubmitRequest, **totals: int) -> None:
    wire.check(data, message_type, max_bytes=MAX_BYTES, totals=totals or None)


def refused(data: bytes, message_type: type = pb.SubmitRequest) -> wire.WireError:
    with pytest.raises(wire.WireError) as info:
        check(data, message_type)
    return info.value


def fields_of(message_type: type) -> Iterator[tuple[str, Any]]:
    yield from message_type._betterproto.meta_by_field_name.items()  # type: ignore[attr-defined]


def all_request_fields() -> Iterator[tuple[type, str, Any]]:
    """(owner type, name, metadata) of every field reachable from a request message."""
    seen: set[type] = set()
    todo = list(REQUESTS)
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        for name, meta in fields_of(t):
            yield t, name, meta
            if meta.proto_type == TYPE_MESSAGE:
                todo.append(t._betterproto.cls_by_field[name])  # type: ignore[attr-defined]


FULL_SPEC = pb.TaskSpec(
    queue="q",
    name="n",
    priority=3,
    payload=b"\x00\xff",
    timeout_seconds=2.5,
    max_retries=0,
    delay_seconds=1.5,
    run_at_ms=0,
    depends_on=["a", "b"],
    idempotency_key="k",
    labels={"b": "1", "a": "é"},
    ref="r",
)
VALID = [
    pb.SubmitRequest(task=FULL_SPEC),
    pb.SubmitRequest(task=pb.TaskSpec(priority=-1, max_retries=-(1 << 31))),
    pb.SubmitBatchRequest(tasks=[FULL_SPEC, pb.TaskSpec(), FULL_SPEC]),
    pb.GetRequest(id="x" * limits.MAX_ID),
    pb.ListRequest(queue="q", state=pb.TaskState.RUNNING, limit=10, after="c"),
    pb.WatchRequest(queue="q", ids=["a", "b"]),
    pb.QueueRequest(name="é" * limits.MAX_QUEUE),  # 4x bytes allowed; characters are counted
    pb.WorkerMessage(hello=pb.WorkerHello(worker="w", queues=["a", "b"], capacity=3)),
    pb.WorkerMessage(heartbeat=pb.WorkerHeartbeat(ids=["a", "b"], leases=[1, (1 << 64) - 1])),
    pb.WorkerMessage(result=pb.TaskResult(id="a", lease=1, success=True, result=b"r")),
    pb.WorkerMessage(credit=pb.WorkerCredit(capacity=2)),
    pb.WorkerMessage(
        results=pb.TaskResults(
            ids=["a", "b"],
            leases=[1, 2],
            success=[True, False],
            results=[b"", b"x"],
            errors=["", "e"],
        )
    ),
    pb.ClusterStatusRequest(),
]


@pytest.mark.parametrize("message", VALID, ids=lambda m: type(m).__name__)
def test_well_formed_messages_pass_and_decode_the_same(message: Any) -> None:
    data = bytes(message)
    check(data, type(message))
    assert StrictCodec().decode(data, type(message)) == message


def test_unpacked_repeated_numbers_are_accepted_too() -> None:
    # leases 1 and 2 as two separate varint fields (proto2 style) instead of one packed field
    heartbeat = ld(1, b"a") + ld(1, b"b") + tag(2, 0) + b"\x01" + tag(2, 0) + b"\x02"
    data = ld(2, heartbeat)
    check(data, pb.WorkerMessage)
    decoded = pb.WorkerMessage.FromString(data)
    assert decoded.heartbeat is not None and list(decoded.heartbeat.leases) == [1, 2]


def test_the_issue_reproductions_are_refused() -> None:
    assert "127 bytes follow" in str(refused(bytes.fromhex("0a7f0a01")))
    assert "varint" in str(refused(bytes.fromhex("ffffffffff")))
    assert "group" in str(refused(bytes.fromhex("0a00") + tag(9, 3) + tag(9, 4)))


@pytest.mark.parametrize("message", VALID, ids=lambda m: type(m).__name__)
def test_every_truncation_inside_the_last_field_is_refused(message: Any) -> None:
    # A cut at a top-level field boundary leaves a shorter valid message; a cut anywhere
    # else (inside a tag, a varint, a length, a nested message) must be noticed.
    data = bytes(message)
    boundaries = _top_level_boundaries(data)
    for cut in range(len(data)):
        prefix = data[:cut]
        if cut in boundaries:
            check(prefix, type(message))
        else:
            with pytest.raises(wire.WireError):
                check(prefix, type(message))


def _top_level_boundaries(data: bytes) -> set[int]:
    """Offsets where a top-level field ends (independently of the checker under test)."""
    ends, pos = {0}, 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        kind = key & 7
        if kind == 0:
            _, pos = _read_varint(data, pos)
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        else:
            length, pos = _read_varint(data, pos)
            pos += length
        ends.add(pos)
    return ends


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


@pytest.mark.parametrize("message_type", REQUESTS, ids=lambda t: t.__name__)
@pytest.mark.parametrize("wire_type", [3, 4, 6, 7])
def test_groups_and_reserved_wire_types_are_refused_for_every_field_number(
    message_type: type, wire_type: int
) -> None:
    numbers = [meta.number for _, meta in fields_of(message_type)] + [9, 99, 536870911]
    for number in numbers:
        refused(tag(number, wire_type) + b"\x00" * 8, message_type)


@pytest.mark.parametrize("message_type", REQUESTS, ids=lambda t: t.__name__)
def test_field_number_zero_and_unknown_numbers_are_refused(message_type: type) -> None:
    known = {meta.number for _, meta in fields_of(message_type)}
    assert "number 0" in str(refused(tag(0, 0) + b"\x01", message_type))
    for number in (n for n in range(1, 30) if n not in known):
        for data in (tag(number, 0) + b"\x01", ld(number, b"xy"), tag(number, 5) + b"abcd"):
            assert "unknown field" in str(refused(data, message_type))


@pytest.mark.parametrize(
    "varint_bytes", [b"\x80", b"\xff" * 5, b"\xff" * 10 + b"\x01", b"\xff" * 9 + b"\x02"]
)
def test_bad_varints_are_refused_as_tags_lengths_and_values(varint_bytes: bytes) -> None:
    refused(varint_bytes)  # as a tag
    refused(tag(1, 2) + varint_bytes)  # as a length
    refused(tag(3, 0) + varint_bytes, pb.ListRequest)  # as ListRequest.limit's value


def _wrong_wire_types(meta: Any) -> list[bytes]:
    """A value of each wire type this field does not use (repeated numbers may be packed)."""
    proper = wire._wire_of(meta.proto_type)
    samples = {0: b"\x01", 1: b"\x00" * 8, 2: b"\x01a", 5: b"\x00" * 4}
    packable = meta.repeated and proper != 2
    return [
        tag(meta.number, kind) + sample
        for kind, sample in samples.items()
        if kind != proper and not (packable and kind == 2)
    ]


@pytest.mark.parametrize(
    ("owner", "name", "meta"),
    list(all_request_fields()),
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", ""),
)
def test_each_field_refuses_the_wrong_wire_type_and_bad_utf8(
    owner: type, name: str, meta: Any
) -> None:
    for data in _wrong_wire_types(meta):
        error = refused(data, owner)
        assert error.field.startswith(name), error
    if meta.proto_type == TYPE_STRING:
        error = refused(ld(meta.number, b"\xff\xfe"), owner)
        assert "UTF-8" in error.message and error.field.startswith(name)
    if meta.proto_type == TYPE_MAP:
        key_is_string = meta.map_meta[0].proto_type == TYPE_STRING
        if key_is_string:
            error = refused(ld(meta.number, ld(1, b"\xc3")), owner)
            assert "UTF-8" in error.message


@pytest.mark.parametrize(
    ("owner", "name", "meta"),
    [f for f in all_request_fields() if f[2].proto_type == TYPE_STRING],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", ""),
)
def test_every_string_field_has_an_explicit_limit_and_it_holds(
    owner: type, name: str, meta: Any
) -> None:
    key = f"{owner.__name__}.{name}"
    assert key in wire.STRING_LIMITS or name in wire.STRING_LIMITS, f"{key} has no limit"
    limit = wire.STRING_LIMITS.get(key, wire.STRING_LIMITS.get(name))
    assert limit is not None
    check(ld(meta.number, b"a" * limit), owner)
    error = refused(ld(meta.number, b"a" * (limit + 1)), owner)
    assert f"limit is {limit}" in error.message
    # a huge value is refused from its length, without decoding it
    started = time.perf_counter()
    refused(ld(meta.number, b"a" * (10 << 20)), owner)
    assert time.perf_counter() - started < 1.0


def test_label_keys_and_values_are_bounded_inside_the_map() -> None:
    entry = ld(1, b"k" * (limits.MAX_LABEL_KEY + 1)) + ld(2, b"v")
    assert refused(ld(1, ld(11, entry))).field == "task.labels.key"
    entry = ld(1, b"k") + ld(2, b"v" * (limits.MAX_LABEL_VALUE + 1))
    assert refused(ld(1, ld(11, entry))).field == "task.labels.value"


@pytest.mark.parametrize(
    ("message_type", "field", "limit", "make"),
    [
        (
            pb.SubmitBatchRequest,
            "tasks",
            limits.MAX_BATCH,
            lambda n: pb.SubmitBatchRequest(tasks=[pb.TaskSpec()] * n),
        ),
        (
            pb.SubmitRequest,
            "task.depends_on",
            limits.MAX_DEPENDENCIES,
            lambda n: pb.SubmitRequest(task=pb.TaskSpec(depends_on=["a"] * n)),
        ),
        (
            pb.SubmitRequest,
            "task.labels",
            limits.MAX_LABELS,
            lambda n: pb.SubmitRequest(task=pb.TaskSpec(labels={str(i): "" for i in range(n)})),
        ),
        (pb.WatchRequest, "ids", limits.MAX_WATCH_IDS, lambda n: pb.WatchRequest(ids=["a"] * n)),
        (
            pb.WorkerMessage,
            "hello.queues",
            limits.MAX_WORKER_QUEUES,
            lambda n: pb.WorkerMessage(hello=pb.WorkerHello(worker="w", queues=["q"] * n)),
        ),
        (
            pb.WorkerMessage,
            "heartbeat.leases",
            limits.MAX_REPORTS,
            lambda n: pb.WorkerMessage(heartbeat=pb.WorkerHeartbeat(leases=[1] * n)),
        ),
        (
            pb.WorkerMessage,
            "results.ids",
            limits.MAX_REPORTS,
            lambda n: pb.WorkerMessage(results=pb.TaskResults(ids=["a"] * n)),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_lists_are_bounded_while_scanning(
    message_type: type, field: str, limit: int, make: Any
) -> None:
    check(bytes(make(limit)), message_type)
    error = refused(bytes(make(limit + 1)), message_type)
    assert error.field.startswith(field) and f"more than {limit}" in error.message


def test_singular_fields_and_oneof_members_may_be_given_once() -> None:
    assert "more than once" in refused(ld(1, b"a") + ld(1, b"b"), pb.GetRequest).message
    hello = bytes(pb.WorkerMessage(hello=pb.WorkerHello(worker="w", queues=["q"])))
    credit = bytes(pb.WorkerMessage(credit=pb.WorkerCredit(capacity=1)))
    assert "only one of kind" in refused(hello + credit, pb.WorkerMessage).message


@pytest.mark.parametrize("value", [1 << 31, (1 << 32) - 1, 1 << 40, (1 << 64) - (1 << 31) - 1])
def test_int32_fields_refuse_values_outside_int32(value: int) -> None:
    spec = tag(3, 0) + varint(value)  # TaskSpec.priority
    assert "int32" in refused(ld(1, spec)).message
    assert "int32" in refused(tag(2, 0) + varint(value), pb.ListRequest).message  # an enum


def test_a_malformed_task_deep_in_a_batch_is_named() -> None:
    good = bytes(pb.TaskSpec(queue="q"))
    data = ld(1, good) * 5 + ld(1, ld(9, b"\xff")) + ld(1, good)
    error = refused(data, pb.SubmitBatchRequest)
    assert error.field == "tasks[5].depends_on[0]" and "UTF-8" in error.message


def test_bytes_fields_take_max_bytes() -> None:
    check(ld(1, ld(4, b"x" * MAX_BYTES)))
    assert refused(ld(1, ld(4, b"x" * (MAX_BYTES + 1)))).field == "task.payload"


def test_request_totals_bound_a_whole_batch() -> None:
    # 1,000 tasks of 1,000 dependencies: each task within its own limit, the batch not
    spec = bytes(pb.TaskSpec(depends_on=[f"{j:026d}" for j in range(1000)]))
    data = ld(1, spec) * 1000  # 28 MB
    started = time.perf_counter()
    with pytest.raises(wire.WireError) as info:
        check(data, pb.SubmitBatchRequest, **{"TaskSpec.depends_on": limits.MAX_BATCH_EDGES})
    elapsed = time.perf_counter() - started
    assert "in total" in info.value.message and info.value.field.startswith("tasks[10]")
    assert elapsed < 1.0  # it stops at the budget instead of walking 28 MB
    with pytest.raises(wire.WireError) as info:
        check(
            bytes(pb.SubmitBatchRequest(tasks=[pb.TaskSpec(payload=b"x" * 100)] * 3)),
            pb.SubmitBatchRequest,
            **{"TaskSpec.payload": 250},
        )
    assert "250 bytes of payload" in info.value.message


def test_the_codec_answers_invalid_argument_naming_the_message_and_field() -> None:
    with pytest.raises(grpclib.GRPCError) as info:
        StrictCodec().decode(bytes.fromhex("0a7f0a01"), pb.SubmitRequest)
    assert info.value.status == grpclib.const.Status.INVALID_ARGUMENT
    assert str(info.value.message).startswith("SubmitRequest.task:")
    with pytest.raises(grpclib.GRPCError) as info:
        StrictCodec().decode(ld(1, b"x" * 300_000), pb.GetRequest)
    assert len(str(info.value.message)) < 200  # the id is never echoed


def test_the_codec_imports_what_decoding_needs_before_serving() -> None:
    # Given a fresh interpreter that has imported the handlers but built no codec
    probe = (
        "import sys\n"
        "from taskd.node.api.grpc.handlers import StrictCodec\n"
        "before = 'pydantic.dataclasses' in sys.modules\n"
        "StrictCodec()\n"
        "print(before, 'pydantic.dataclasses' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    # Expect the module betterproto2 reaches lazily on its first decode to be loaded by the
    # codec's construction, not by the first request (which a node out of file descriptors
    # could not import: the request failed as "cannot decode")
    assert done.stdout.split() == ["False", "True"], done.stdout + done.stderr


def test_a_decode_that_fails_for_the_nodes_own_resources_is_unavailable_not_the_callers_fault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codec = StrictCodec()
    data = bytes(pb.GetRequest(id="01ARZ3NDEKTSV4RRFFQ69G5FAV"))

    def out_of_descriptors(cls: type, data: bytes) -> Any:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(pb.GetRequest, "FromString", classmethod(out_of_descriptors))
    with pytest.raises(grpclib.GRPCError) as refused:
        codec.decode(data, pb.GetRequest)
    assert refused.value.status is grpclib.const.Status.UNAVAILABLE
    assert "Too many open files" in str(refused.value.message)
