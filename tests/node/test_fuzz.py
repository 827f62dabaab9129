"""Fuzzing every API of a real node with hypothesis: REST bodies and query strings on every
route, raw and mutated protobuf bytes into every gRPC method and the worker stream.

The invariant after each example: the answer is a 2xx/4xx (gRPC: OK or a caller status —
never 500, UNKNOWN or INTERNAL), the node is alive with ``/healthz`` answering, and a refused
request changed nothing (task ids, queues and their pause flags, the task gauges of
/metrics). Example counts are bounded so the module runs in well under a minute.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from grpclib.const import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskd.api.taskd import v1 as pb
from tests.conftest import NodeFactory
from tests.node import wireclient
from tests.node.rest import get, post

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A node of its own, seeded with a few tasks (one of them leased) to aim at."""
    factory = NodeFactory(tmp_path_factory.mktemp("fuzz-node"))
    try:
        node = factory()
        for queue in ("fuzz", "fuzz", "other"):
            assert post(f"{node.http_url}/api/v1/tasks", {"queue": queue})[0] == 201
        status, leased = post(f"{node.http_url}/api/v1/queues/fuzz/lease", {"worker": "w"})
        assert status == 200 and leased["tasks"]
        yield node
    finally:
        factory.cleanup()


def state(node: Any) -> dict[str, Any]:
    """What a refused request must not change. States are left out: a task accepted by an
    earlier example may move on by itself (a delay running out)."""
    snap = wireclient.snapshot(node)
    return {
        "ids": sorted(t[0] for t in snap["tasks"]),
        "queues": [(name, paused) for name, paused, _ in snap["queues"]],
        "paused": [m for m in snap["metrics"] if m.startswith("taskd_queue_paused")],
    }


def task_ids(node: Any) -> list[str]:
    return [t["id"] for t in get(f"{node.http_url}/api/v1/tasks?limit=20")[1]["tasks"]]


def assert_alive(node: Any) -> None:
    started = time.perf_counter()
    status, body = get(f"{node.http_url}/healthz", timeout=30)
    assert status == 200 and body == {"status": "ok"}
    assert time.perf_counter() - started < 5.0  # generous: a loaded 2-core machine


def http_request(
    node: Any, method: str, path: str, body: bytes | None, content_type: str | None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=30)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        conn.request(method, path, body=body, headers=headers)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


# ---- strategies -------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "q", "default", "é\x00", "a b/../\n", "x" * 300, "5m", "critical"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
SPEC_FIELDS = [
    "queue",
    "name",
    "priority",
    "payload",
    "timeout",
    "max_retries",
    "delay",
    "run_at",
    "depends_on",
    "idempotency_key",
    "labels",
    "ref",
    "lease",
    "result",
    "error",
    "retryable",
    "worker",
    "max",
    "wait",
    "tasks",
]
NASTY_VALUES = st.sampled_from(
    [
        None,
        -1,
        0,
        10,
        1 << 63,
        1e308,
        -0.0,
        "",
        "x" * 70_000,
        "\u202e",
        "2030-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        [],
        ["a"] * 3,
        {},
        {"k": "v"},
        True,
    ]
)


@st.composite
def task_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A valid task object with some fields replaced, removed or added."""
    obj: dict[str, Any] = {"queue": "fuzz", "priority": 5, "payload": {"n": 1}, "timeout": "5m"}
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(SPEC_FIELDS) | st.text(max_size=8))
        action = draw(st.sampled_from(["set", "nasty", "drop"]))
        if action == "drop":
            obj.pop(key, None)
        else:
            obj[key] = draw(JSON_VALUES if action == "set" else NASTY_VALUES)
    return obj


@st.composite
def rest_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["task", "batch", "json", "bytes", "numbers"]))
    if kind == "task":
        return json.dumps(draw(task_objects())).encode()
    if kind == "batch":
        tasks = draw(st.lists(task_objects(), min_size=0, max_size=4))
        return json.dumps({"tasks": tasks}).encode()
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    if kind == "numbers":
        literal = draw(
            st.sampled_from(["18446744073709551616", "0.1e-400", "1e400", "-0", "1E+2", "1" * 40])
        )
        return f'{{"queue": "fuzz", "payload": [{literal}]}}'.encode()
    return draw(st.binary(max_size=200))


POST_ROUTES = [
    "/api/v1/tasks",
    "/api/v1/tasks/batch",
    "/api/v1/tasks/{id}/cancel",
    "/api/v1/tasks/{id}/retry",
    "/api/v1/tasks/{id}/heartbeat",
    "/api/v1/tasks/{id}/complete",
    "/api/v1/tasks/{id}/fail",
    "/api/v1/queues/{name}/pause",
    "/api/v1/queues/{name}/resume",
    "/api/v1/queues/{name}/lease",
]
GET_ROUTES = [
    "/api/v1/tasks",
    "/api/v1/tasks/{id}",
    "/api/v1/queues",
    "/api/v1/workers",
    "/api/v1/cluster",
    "/healthz",
    "/readyz",
    "/metrics",
    "/",
]
SEGMENTS = st.one_of(
    st.sampled_from(
        ["fuzz", "other", "01HZZZZZZZZZZZZZZZZZZZZZZZ", "x" * 300, "..", "%00", "%C3%A9%00"]
    ),
    st.text(min_size=1, max_size=30).map(lambda t: urllib.parse.quote(t, safe="")),
)


def _fill(route: str, segment: str, real_id: str | None) -> str:
    return route.replace("{id}", real_id or segment).replace("{name}", segment)


# ---- REST ---------------------------------------------------------------------------------------


@FUZZ
@given(
    route=st.sampled_from(POST_ROUTES),
    segment=SEGMENTS,
    aim_at_real_task=st.booleans(),
    body=rest_bodies(),
    content_type=st.sampled_from(["application/json", None, "text/plain", "application/x+json"]),
)
def test_rest_bodies_on_every_route(
    node: Any,
    route: str,
    segment: str,
    aim_at_real_task: bool,
    body: bytes,
    content_type: str | None,
) -> None:
    if route.endswith("/lease"):  # a lease may wait for work: keep it from waiting long
        try:
            obj = json.loads(body)
            if isinstance(obj, dict) and "wait" in obj:
                obj["wait"] = 0
                body = json.dumps(obj).encode()
        except ValueError:
            pass
    real = random.choice(task_ids(node)) if aim_at_real_task else None
    before = state(node)
    status, reply = http_request(node, "POST", _fill(route, segment, real), body, content_type)
    assert status < 500, (route, body[:200], reply[:300])
    assert len(reply) < 4096 or status < 400, "an error echoes too much of the request"
    if status >= 400:
        assert json.loads(reply)["error"]["code"]
        assert state(node) == before, (route, body[:200], reply[:300])
    assert_alive(node)


@FUZZ
@given(
    route=st.sampled_from(GET_ROUTES),
    segment=SEGMENTS,
    query=st.lists(
        st.tuples(
            st.sampled_from(["queue", "state", "limit", "after", "x", ""]) | st.text(max_size=8),
            st.sampled_from(["fuzz", "queued", "pending", "1", "1000", "1001", "-1", "", "²"])
            | st.text(max_size=40),
        ),
        max_size=5,
    ),
)
def test_rest_query_strings_on_every_route(
    node: Any, route: str, segment: str, query: list[tuple[str, str]]
) -> None:
    before = state(node)
    path = _fill(route, segment, None) + "?" + urllib.parse.urlencode(query)
    status, reply = http_request(node, "GET", path, None, None)
    assert status < 500, (path, reply[:300])
    if status >= 400:
        assert json.loads(reply)["error"]["code"]
    assert state(node) == before
    assert_alive(node)


# ---- gRPC ---------------------------------------------------------------------------------------

SEEDS: dict[str, list[bytes]] = {
    "/taskd.v1.TaskService/Submit": [
        bytes(pb.SubmitRequest(task=pb.TaskSpec(queue="fuzz", priority=3, payload=b"{}"))),
        bytes(pb.SubmitRequest(task=pb.TaskSpec(labels={"a": "b"}, depends_on=["x"], ref="r"))),
    ],
    "/taskd.v1.TaskService/SubmitBatch": [
        bytes(pb.SubmitBatchRequest(tasks=[pb.TaskSpec(ref="a"), pb.TaskSpec(depends_on=["a"])]))
    ],
    "/taskd.v1.TaskService/Get": [bytes(pb.GetRequest(id="01HZZZZZZZZZZZZZZZZZZZZZZZ"))],
    "/taskd.v1.TaskService/List": [bytes(pb.ListRequest(queue="fuzz", limit=5, after="x"))],
    "/taskd.v1.TaskService/Cancel": [bytes(pb.CancelRequest(id="nope"))],
    "/taskd.v1.TaskService/Retry": [bytes(pb.RetryRequest(id="nope"))],
    "/taskd.v1.TaskService/Watch": [bytes(pb.WatchRequest(queue="fuzz", ids=["a"]))],
    "/taskd.v1.ClusterService/Status": [b""],
    "/taskd.v1.ClusterService/ListQueues": [b""],
    "/taskd.v1.ClusterService/PauseQueue": [bytes(pb.QueueRequest(name="fuzz-paused"))],
    "/taskd.v1.ClusterService/ResumeQueue": [bytes(pb.QueueRequest(name="fuzz-paused"))],
    "/taskd.v1.ClusterService/ListWorkers": [b""],
}
WORKER_SEEDS = [
    bytes(pb.WorkerMessage(hello=pb.WorkerHello(worker="fz", queues=["fuzz-w"], capacity=2))),
    bytes(pb.WorkerMessage(heartbeat=pb.WorkerHeartbeat(ids=["a"], leases=[1]))),
    bytes(pb.WorkerMessage(result=pb.TaskResult(id="a", lease=1, success=True, result=b"1"))),
    bytes(pb.WorkerMessage(credit=pb.WorkerCredit(capacity=3))),
    bytes(
        pb.WorkerMessage(
            results=pb.TaskResults(ids=["a"], leases=[1], success=[False], errors=["e"])
        )
    ),
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid message with bytes flipped, cut, inserted or repeated — or random bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=64))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "set"]))
        at = draw(st.integers(0, len(data))) if data else 0
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and at < len(data):
            data[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, 0x0B, 0x0C, 0x0F]))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "repeat":
            data += data[at:]
    return bytes(data)


ALLOWED = {Status.OK, *wireclient.REFUSALS}


@FUZZ
@given(
    method=st.sampled_from(sorted(SEEDS)),
    data=st.data(),
)
def test_raw_bytes_into_every_grpc_method(node: Any, method: str, data: st.DataObject) -> None:
    raw = data.draw(mutated(SEEDS[method]))
    before = state(node)
    answer = wireclient.call(node.grpc_port, method, raw, wait=0.1)
    assert answer.status in ALLOWED, (method, raw.hex(), answer)
    assert len(answer.message) < 1200
    if answer.status is not Status.OK:
        assert state(node) == before, (method, raw.hex(), answer)
    assert_alive(node)


@FUZZ
@given(
    first=st.sampled_from([WORKER_SEEDS[0]]) | mutated(WORKER_SEEDS),
    rest=st.lists(mutated(WORKER_SEEDS), max_size=3),
)
def test_raw_bytes_into_the_worker_stream(node: Any, first: bytes, rest: list[bytes]) -> None:
    before = state(node)
    answer = wireclient.call(node.grpc_port, wireclient.WORK, [first, *rest], wait=0.1)
    assert answer.status in ALLOWED, ([first.hex(), *(r.hex() for r in rest)], answer)
    assert len(answer.message) < 1200
    assert state(node) == before  # a worker stream never adds, removes or pauses anything
    assert_alive(node)


# ---- costly but valid ---------------------------------------------------------------------------


def test_a_body_full_of_numbers_to_recheck_keeps_health_fast(node: Any) -> None:
    # ~1.9 MB of exponent literals: each one needs the exact re-check, off the event loop
    numbers = ",".join(["1.5e-120"] * 110_000)
    first = f'{{"queue": "nums", "payload": [{numbers}]}}'
    second = f'{{"queue": "nums", "payload": [{numbers}, 18446744073709551616]}}'
    body = f'{{"tasks": [{first}, {second}]}}'
    probe = wireclient.HealthProbe(node.http_url)
    with probe.running():
        status, reply = http_request(
            node, "POST", "/api/v1/tasks/batch", body.encode(), "application/json"
        )
    assert status == 400, reply[:300]
    assert json.loads(reply)["error"]["field"] == "tasks[1].payload[110000]"
    assert probe.worst < 2.0 and not probe.failures, probe.worst
