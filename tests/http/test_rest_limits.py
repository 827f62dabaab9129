"""REST's side of "every input checked the same way": exact JSON numbers, bounded path and
query parameters, bounded echoes, bounded batches, and reads that stored values cannot break.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from taskd.node import limits
from taskd.queue.commands import TaskSpec
from tests.http.conftest import Api

BIG_PATHS = [
    ("GET", "/api/v1/tasks/{x}"),
    ("POST", "/api/v1/tasks/{x}/cancel"),
    ("POST", "/api/v1/tasks/{x}/retry"),
    ("POST", "/api/v1/tasks/{x}/heartbeat"),
    ("POST", "/api/v1/tasks/{x}/complete"),
    ("POST", "/api/v1/tasks/{x}/fail"),
    ("POST", "/api/v1/queues/{x}/pause"),
    ("POST", "/api/v1/queues/{x}/resume"),
    ("POST", "/api/v1/queues/{x}/lease"),
]


@pytest.mark.parametrize("literal", ["18446744073709551616", "0.1e-400", "1e400", "-1" + "0" * 30])
@pytest.mark.parametrize(
    ("path", "wrap", "field"),
    [
        ("/api/v1/tasks", lambda n: f'{{"payload": {{"n": [{n}]}}}}', "payload.n[0]"),
        (
            "/api/v1/tasks/batch",
            lambda n: f'{{"tasks": [{{}}, {{"payload": {n}}}]}}',
            "tasks[1].payload",
        ),
        ("/api/v1/tasks", lambda n: f'{{"priority": {n}}}', "priority"),
        ("/api/v1/tasks", lambda n: f'{{"timeout": {n}}}', "timeout"),
    ],
)
async def test_numbers_that_cannot_be_stored_exactly_are_400_naming_the_field(
    api: Api, literal: str, path: str, wrap: Any, field: str
) -> None:
    reply = await api.post(path, raw=wrap(literal).encode())
    assert reply.status == 400, reply.body
    if literal != "1e400":  # orjson itself refuses infinity, as a syntax error of the body
        assert reply.error["field"] == field
        assert "cannot be stored exactly; send it as a string" in reply.error["message"]
    assert (await api.get("/api/v1/tasks")).json["tasks"] == []


async def test_a_number_in_a_result_is_checked_too(api: Api) -> None:
    task = await api.submit(queue="r")
    lease = await api.post("/api/v1/queues/r/lease", {"worker": "w"})
    epoch = lease.json["tasks"][0]["lease"]
    raw = f'{{"lease": {epoch}, "result": 18446744073709551616}}'.encode()
    reply = await api.post(f"/api/v1/tasks/{task['id']}/complete", raw=raw)
    assert reply.status == 400 and reply.error["field"] == "result"
    assert (await api.get(f"/api/v1/tasks/{task['id']}")).json["state"] == "running"


@pytest.mark.parametrize(
    "literal",
    ["18446744073709551615", "-9223372036854775808", "0.1", "1e2", "2.5e-300", "-0.0", "123"],
)
async def test_numbers_that_fit_round_trip_exactly(api: Api, literal: str) -> None:
    body = f'{{"payload": {{"n": {literal}}}}}'.encode()
    reply = await api.post("/api/v1/tasks", raw=body)
    assert reply.status == 201, reply.body
    stored = (await api.get(f"/api/v1/tasks/{reply.json['id']}")).json["payload"]["n"]
    assert stored == orjson.loads(literal) and type(stored) is type(orjson.loads(literal))


@pytest.mark.parametrize(("method", "template"), BIG_PATHS)
@pytest.mark.parametrize("size", [limits.MAX_ID + 1, 16_000])
async def test_long_path_parameters_are_400_and_never_echoed(
    api: Api, method: str, template: str, size: int
) -> None:
    path = template.format(x="x" * size)
    body = {"lease": 1} if path.endswith(("heartbeat", "complete")) else None
    if path.endswith("fail"):
        body = {"lease": 1, "error": "e"}
    if path.endswith("lease"):
        body = {"worker": "w"}
    reply = await (api.get(path) if method == "GET" else api.post(path, body))
    assert reply.status == 400, reply.body
    assert len(reply.body) < 600 and reply.error["field"] in ("id", "name")


@pytest.mark.parametrize(
    "query",
    [
        "queue=" + "q" * 129,
        "queue=" + "q" * 100_000,
        "after=" + "a" * 256,
        "limit=" + "9" * 5000,
        "limit=%C2%B2",  # "²" is a digit to str.isdigit(), not to int()
        "x" * 10_000 + "=1",
        "state=" + "s" * 10_000,
    ],
)
async def test_long_query_parameters_are_400_and_never_echoed(api: Api, query: str) -> None:
    reply = await api.get(f"/api/v1/tasks?{query}")
    assert reply.status == 400, reply.body
    assert len(reply.body) < 600


@pytest.mark.parametrize(
    "body",
    [
        {"x" * 300_000: 1},
        {"labels": {"k" * 300_000: "v"}},
        {"queue": "q" * 300_000},
        {"depends_on": ["d" * 300_000]},
    ],
)
async def test_long_values_in_bodies_are_never_echoed(api: Api, body: dict[str, Any]) -> None:
    reply = await api.post("/api/v1/tasks", body)
    assert reply.status == 400, reply.body
    assert len(reply.body) < 600


@pytest.mark.parametrize(
    "worker", ["w" * (limits.MAX_WORKER_NAME + 1), "a\x00b", "line\nbreak", "", 5]
)
async def test_lease_refuses_the_worker_names_grpc_refuses(api: Api, worker: Any) -> None:
    reply = await api.post("/api/v1/queues/q/lease", {"worker": worker})
    assert reply.status == 400 and reply.error["field"] == "worker"


@pytest.mark.parametrize(
    "spec",
    [
        {"run_at": "10000-01-01T00:00:00Z"},
        {"delay": 1e300},
        {"timeout": "9999999999h"},
    ],
)
async def test_times_out_of_range_are_400(api: Api, spec: dict[str, Any]) -> None:
    reply = await api.post("/api/v1/tasks", spec)
    assert reply.status == 400, reply.body
    assert reply.error["field"] in spec


async def test_a_batch_of_many_edges_is_refused_quickly(api: Api) -> None:
    # 1,000 tasks each naming 1,000 dependencies fit no body limit; the same shape with
    # one-letter refs does (about 1.5 MB) and must still be refused from its totals, fast.
    body = {"tasks": [{"ref": f"r{i}", "depends_on": ["a"] * 500} for i in range(1000)]}
    started = time.perf_counter()
    reply = await api.post("/api/v1/tasks/batch", body)
    assert time.perf_counter() - started < 2.0
    assert reply.status == 400 and reply.error["field"] == "tasks"
    assert "depends_on entries in total" in reply.error["message"]


async def test_stored_values_out_of_any_range_still_read(api: Api) -> None:
    # Given tasks stored with times and numbers no API accepts today (an older version, a bug)
    hostile = [
        TaskSpec(queue="h", run_at=((1 << 63) - 1) / 1000),
        TaskSpec(queue="h", run_at=1e300),
        TaskSpec(queue="h", payload=b"18446744073709551616"),
        TaskSpec(queue="h", payload=b'{"a": 1e-400}'),
    ]
    await api.service.submit(hostile)
    # Expect every read that shows them to answer 200
    for path in (
        "/api/v1/tasks",
        "/api/v1/tasks?state=pending",
        "/api/v1/tasks?queue=h",
        "/api/v1/queues",
    ):
        reply = await api.get(path)
        assert reply.status == 200, (path, reply.body)
    for task in (await api.get("/api/v1/tasks?queue=h")).json["tasks"]:
        one = await api.get(f"/api/v1/tasks/{task['id']}")
        assert one.status == 200
        assert task["run_at"] is None or task["run_at"] <= "9999-12-31T23:59:59.999Z"
