"""REST task endpoints over a real NodeService + MemoryStore: submit, batch, get, list,
cancel, retry, and every way a request can be wrong (design.md §3: never a 500 for bad input).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from taskd.queue.task import SchedulerConfig
from tests.http.conftest import Api, make_api

RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


# ---- submit ----------------------------------------------------------------------------------


async def test_submit_the_design_example(api: Api) -> None:
    # Given a node
    # When the design's example task is submitted
    reply = await api.post(
        "/api/v1/tasks", {"priority": "high", "payload": {"job": "process-data"}}
    )
    # Expect 201 with the task: priority 7, queued, defaults filled in
    assert reply.status == 201, reply.body
    assert reply.headers["content-type"] == "application/json"
    task = reply.json
    assert task["priority"] == 7
    assert task["state"] == "queued"
    assert task["payload"] == {"job": "process-data"}
    assert task["queue"] == "default"
    assert task["timeout"] == 1800
    assert task["max_retries"] == 3
    assert task["attempt"] == 0 and task["result"] is None and task["lease"] is None
    assert task["depends_on"] == [] and task["labels"] == {}
    assert RFC3339_MS.fullmatch(task["created_at"])
    assert task["started_at"] is None and task["run_at"] is None
    assert "duplicate" not in task
    # and the same task comes back from GET
    got = await api.get(f"/api/v1/tasks/{task['id']}")
    assert got.status == 200 and got.json == task


async def test_submit_with_every_field(api: Api) -> None:
    # Given an existing task to depend on
    first = await api.submit(queue="media")
    # When a task sets every field
    reply = await api.post(
        "/api/v1/tasks",
        {
            "queue": "media",
            "name": "resize",
            "priority": 3,
            "payload": [1, "two", None],
            "timeout": "1h30m",
            "max_retries": 0,
            "delay": 60,
            "depends_on": [first["id"]],
            "idempotency_key": "k-1",
            "labels": {"team": "a"},
        },
    )
    # Expect each one echoed in its canonical form
    assert reply.status == 201, reply.body
    task = reply.json
    assert (task["queue"], task["name"], task["priority"]) == ("media", "resize", 3)
    assert task["payload"] == [1, "two", None]
    assert task["timeout"] == 5400 and task["max_retries"] == 0
    assert task["depends_on"] == [first["id"]] and task["state"] == "blocked"
    assert task["idempotency_key"] == "k-1" and task["labels"] == {"team": "a"}
    assert RFC3339_MS.fullmatch(task["run_at"])


async def test_a_run_at_in_the_future_makes_a_pending_task(api: Api) -> None:
    reply = await api.post("/api/v1/tasks", {"run_at": "2999-01-02T03:04:05.678+00:00"})
    assert reply.status == 201, reply.body
    assert reply.json["state"] == "pending"
    assert reply.json["run_at"] == "2999-01-02T03:04:05.678Z"


async def test_an_idempotent_repeat_answers_200_with_the_first_task(api: Api) -> None:
    # Given a task submitted with an idempotency key
    first = await api.submit(queue="q", idempotency_key="order-17", payload=1)
    # When the same key is submitted again in the same queue
    again = await api.post(
        "/api/v1/tasks", {"queue": "q", "idempotency_key": "order-17", "payload": 2}
    )
    # Expect 200, duplicate, and the first task
    assert again.status == 200
    assert again.json["duplicate"] is True
    assert again.json["id"] == first["id"] and again.json["payload"] == 1
    # but another queue is another key space
    other = await api.post("/api/v1/tasks", {"queue": "r", "idempotency_key": "order-17"})
    assert other.status == 201 and other.json["id"] != first["id"]


# ---- batches ---------------------------------------------------------------------------------


async def test_a_batch_with_refs_is_created_in_order_with_resolved_dependencies(api: Api) -> None:
    # When a batch names its dependencies by ref, out of order
    reply = await api.post(
        "/api/v1/tasks/batch",
        {
            "tasks": [
                {"ref": "c", "depends_on": ["b"]},
                {"ref": "b", "depends_on": ["a"]},
                {"ref": "a", "payload": "root"},
            ]
        },
    )
    # Expect 201 with the tasks in request order, refs replaced by ids
    assert reply.status == 201, reply.body
    c, b, a = reply.json["tasks"]
    assert a["state"] == "queued" and a["payload"] == "root"
    assert b["state"] == "blocked" and b["depends_on"] == [a["id"]]
    assert c["state"] == "blocked" and c["depends_on"] == [b["id"]]


async def test_a_batch_cycle_is_400_naming_the_dependency(api: Api) -> None:
    reply = await api.post(
        "/api/v1/tasks/batch",
        {
            "tasks": [
                {"ref": "a", "depends_on": ["b"]},
                {"ref": "b", "depends_on": ["a"]},
            ]
        },
    )
    assert reply.status == 400
    assert reply.error["code"] == "invalid"
    assert "cycle" in reply.error["message"]
    assert re.fullmatch(r"tasks\[[01]\]\.depends_on\[0\]", reply.error["field"])


async def test_a_bad_task_rejects_the_whole_batch(api: Api) -> None:
    # Given an empty queue
    # When the second task of a batch is bad
    reply = await api.post(
        "/api/v1/tasks/batch",
        {
            "tasks": [
                {"queue": "atomic"},
                {"queue": "atomic", "priority": 99},
            ]
        },
    )
    # Expect 400 naming it, and nothing created
    assert reply.status == 400 and reply.error["field"] == "tasks[1].priority"
    listed = await api.get("/api/v1/tasks?queue=atomic")
    assert listed.json["tasks"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({}, "tasks"),
        ({"tasks": []}, "tasks"),
        ({"tasks": {}}, "tasks"),
        ({"tasks": [{}], "extra": 1}, "extra"),
        ({"tasks": [5]}, "tasks[0]"),
        ({"tasks": [{}, {"depends_on": [1]}]}, "tasks[1].depends_on[0]"),
        ({"tasks": [{"ref": 5}]}, "tasks[0].ref"),
        ({"tasks": [{"ref": "x"}, {"ref": "x"}]}, "tasks[1].ref"),
        ({"tasks": [{"depends_on": ["nope"]}]}, "tasks[0].depends_on[0]"),
        ({"tasks": [{}] * 1001}, "tasks"),
    ],
)
async def test_bad_batches_are_400_naming_the_field(api: Api, body: Any, field: str) -> None:
    reply = await api.post("/api/v1/tasks/batch", body)
    assert reply.status == 400, reply.body
    assert reply.error["code"] == "invalid" and reply.error["field"] == field


# ---- field validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "expect"),
    [
        ({"priority": True}, "priority", "integer 0-9 or one of low, normal, high, critical"),
        ({"priority": 10}, "priority", "0-9"),
        ({"priority": -1}, "priority", "0-9"),
        ({"priority": 7.0}, "priority", "0-9"),
        ({"priority": "urgent"}, "priority", "critical"),
        ({"priority": "HIGH"}, "priority", "critical"),
        ({"timeout": 0}, "timeout", "> 0"),
        ({"timeout": -3}, "timeout", "> 0"),
        ({"timeout": False}, "timeout", "seconds"),
        ({"timeout": "5x"}, "timeout", "duration"),
        ({"timeout": "300"}, "timeout", "duration"),
        ({"timeout": 8 * 86400}, "timeout", "7 days"),
        ({"max_retries": 101}, "max_retries", "0-100"),
        ({"max_retries": -1}, "max_retries", "0-100"),
        ({"max_retries": True}, "max_retries", "integer"),
        ({"max_retries": "3"}, "max_retries", "integer"),
        ({"delay": -1}, "delay", "seconds"),
        ({"delay": "5 minutes"}, "delay", "seconds"),
        ({"delay": 5, "run_at": "2030-01-01T00:00:00Z"}, "run_at", "not both"),
        ({"run_at": "tomorrow"}, "run_at", "RFC 3339"),
        ({"run_at": "2030-01-01T00:00:00"}, "run_at", "zone"),
        ({"run_at": 1893456000}, "run_at", "RFC 3339"),
        ({"depends_on": "abc"}, "depends_on", "list"),
        ({"depends_on": [1]}, "depends_on[0]", "task id"),
        ({"depends_on": [""]}, "depends_on[0]", "task id"),
        ({"depends_on": ["x"] * 1001}, "depends_on", "1000"),
        ({"depends_on": ["no-such-task"]}, "depends_on[0]", "unknown dependency"),
        ({"idempotency_key": "k" * 256}, "idempotency_key", "255"),
        ({"idempotency_key": 7}, "idempotency_key", "string"),
        ({"labels": []}, "labels", "object"),
        ({"labels": {"team": 1}}, "labels.team", "string"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "labels", "64"),
        ({"queue": "bad queue!"}, "queue", "letters, digits"),
        ({"queue": ""}, "queue", "1-128"),
        ({"queue": "q" * 129}, "queue", "1-128"),
        ({"queue": 5}, "queue", "1-128"),
        ({"name": 5}, "name", "string"),
        ({"name": "n" * 256}, "name", "255"),
        ({"ref": "a"}, "ref", "batch"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
async def test_bad_fields_are_400_naming_the_field(
    api: Api, body: dict[str, Any], field: str, expect: str
) -> None:
    # When a task with one bad field is submitted
    reply = await api.post("/api/v1/tasks", body)
    # Expect 400 invalid, the field named, and a message saying what is expected
    assert reply.status == 400, reply.body
    assert reply.error == {"code": "invalid", "field": field, "message": reply.error["message"]}
    assert expect in reply.error["message"]


@pytest.mark.parametrize("priority", [0, 9, "low", "normal", "high", "critical"])
async def test_every_valid_priority_is_accepted(api: Api, priority: Any) -> None:
    reply = await api.post("/api/v1/tasks", {"priority": priority})
    assert reply.status == 201
    assert reply.json["priority"] == {"low": 2, "normal": 5, "high": 7, "critical": 9}.get(
        priority, priority
    )


async def test_null_means_default(api: Api) -> None:
    reply = await api.post("/api/v1/tasks", {"priority": None, "payload": None, "timeout": None})
    assert reply.status == 201
    assert (reply.json["priority"], reply.json["payload"], reply.json["timeout"]) == (5, None, 1800)


# ---- malformed requests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "content_type", "expect"),
    [
        (b'{"payload": ', "application/json", "not valid JSON"),
        (b"{'a': 1}", "application/json", "not valid JSON"),
        (b'{"payload": NaN}', "application/json", "not valid JSON"),
        (b'{"payload": "\xff\xfe"}', "application/json", "UTF-8"),
        (b"[1, 2]", "application/json", "JSON object"),
        (b'"just a string"', "application/json", "JSON object"),
        (b"null", "application/json", "JSON object"),
        (b"   ", "application/json", "body is required"),
        # Non-JSON content types (forms, text/plain) are 415 now: tests/http/test_origin.py.
        (b'{"payload": 1}', "application/json; charset=latin-1", "UTF-8"),
    ],
)
async def test_malformed_bodies_are_400(
    api: Api, raw: bytes, content_type: str, expect: str
) -> None:
    reply = await api.post("/api/v1/tasks", raw=raw, content_type=content_type)
    assert reply.status == 400, reply.body
    assert reply.error["code"] == "invalid" and expect in reply.error["message"]


async def test_an_empty_post_is_400(api: Api) -> None:
    reply = await api.post("/api/v1/tasks")
    assert reply.status == 400 and reply.error["field"] == "body"


async def test_a_charset_utf8_content_type_is_fine(api: Api) -> None:
    reply = await api.post("/api/v1/tasks", {}, content_type="application/json; charset=UTF-8")
    assert reply.status == 201


async def test_an_oversized_payload_is_413_naming_payload(api: Api) -> None:
    # Given the default 1 MiB payload limit
    # When a payload whose compact JSON is one byte over is submitted
    reply = await api.post("/api/v1/tasks", {"payload": "x" * ((1 << 20) - 1)})
    # Expect 413 too_large on the payload field
    assert reply.status == 413
    assert reply.error["code"] == "too_large" and reply.error["field"] == "payload"
    # and exactly at the limit it is accepted
    ok = await api.post("/api/v1/tasks", {"payload": "x" * ((1 << 20) - 2)})
    assert ok.status == 201


async def test_an_oversized_body_is_refused_from_its_content_length() -> None:
    # Given a body limit of 1000 bytes
    api = make_api(max_body=1000)
    # When a 1001-byte body declares its length
    reply = await api.post("/api/v1/tasks", chunks=[b"{" + b" " * 999, b"}"])
    # Expect 413 before a single chunk was read
    assert reply.status == 413 and reply.error["code"] == "too_large"
    assert reply.chunks_read == 0


@pytest.mark.parametrize("declared", [False, "10"])
async def test_an_oversized_streamed_body_is_refused_without_reading_it_all(
    declared: bool | str,
) -> None:
    # Given a body limit of 1000 bytes
    api = make_api(max_body=1000)
    # When the body arrives in 100 chunks of 100 bytes, without or with a lying Content-Length
    chunks = [b" " * 100] * 100
    reply = await api.post("/api/v1/tasks", chunks=chunks, content_length=declared)
    # Expect 413 as soon as the limit is passed
    assert reply.status == 413 and reply.error["code"] == "too_large"
    assert reply.chunks_read == 11


async def test_a_non_numeric_content_length_is_400(api: Api) -> None:
    reply = await api.post("/api/v1/tasks", {}, content_length="lots")
    assert reply.status == 400


# ---- get, list -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/tasks/01HZZZZZZZZZZZZZZZZZZZZZZZ"),
        ("POST", "/api/v1/tasks/nope/cancel"),
        ("POST", "/api/v1/tasks/nope/retry"),
    ],
)
async def test_unknown_ids_are_404(api: Api, method: str, path: str) -> None:
    reply = await (api.get(path) if method == "GET" else api.post(path))
    assert reply.status == 404
    assert reply.error["code"] == "not_found" and reply.error["field"] == "id"


async def test_list_pages_newest_first_with_a_cursor(api: Api) -> None:
    # Given five tasks in queue p and one elsewhere
    ids = [(await api.submit(queue="p"))["id"] for _ in range(5)]
    await api.submit(queue="elsewhere")
    # When listing queue p two at a time, following the cursor
    seen: list[str] = []
    path = "/api/v1/tasks?queue=p&limit=2"
    pages = 0
    while True:
        reply = await api.get(path)
        assert reply.status == 200, reply.body
        seen += [t["id"] for t in reply.json["tasks"]]
        pages += 1
        if reply.json["next"] is None:
            break
        path = f"/api/v1/tasks?queue=p&limit=2&after={reply.json['next']}"
    # Expect every task once, newest first, in three pages
    assert seen == ids[::-1]
    assert pages == 3


async def test_list_filters_by_state(api: Api) -> None:
    a = await api.submit(queue="s")
    b = await api.submit(queue="s")
    assert (await api.post(f"/api/v1/tasks/{a['id']}/cancel")).status == 200
    canceled = await api.get("/api/v1/tasks?state=canceled")
    queued = await api.get("/api/v1/tasks?queue=s&state=queued")
    assert [t["id"] for t in canceled.json["tasks"]] == [a["id"]]
    assert [t["id"] for t in queued.json["tasks"]] == [b["id"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("state=done", "state"),
        ("queue=bad%20queue", "queue"),
        ("sort=asc", "sort"),
        ("limit=1&limit=2", "limit"),
        ("after=", "after"),
        ("after=garbage", "after"),
        ("after=01ARZ3NDEKTSV4RRFFQ69G5FA", "after"),  # 25 digits: not a task id
        ("after=01ARZ3NDEKTSV4RRFFQ69G5FAU", "after"),  # U is not a Crockford digit
    ],
)
async def test_bad_list_parameters_are_400(api: Api, query: str, field: str) -> None:
    reply = await api.get(f"/api/v1/tasks?{query}")
    assert reply.status == 400, reply.body
    assert reply.error["field"] == field


# ---- cancel, retry ---------------------------------------------------------------------------


async def test_cancel_then_retry_then_illegal_transitions_are_409(api: Api) -> None:
    # Given a queued task
    task = await api.submit()
    # When it is retried while queued
    early = await api.post(f"/api/v1/tasks/{task['id']}/retry")
    # Expect 409 conflict
    assert early.status == 409 and early.error["code"] == "conflict"
    # When it is canceled, then canceled again
    canceled = await api.post(f"/api/v1/tasks/{task['id']}/cancel")
    again = await api.post(f"/api/v1/tasks/{task['id']}/cancel")
    # Expect canceled, then 409
    assert canceled.status == 200 and canceled.json["state"] == "canceled"
    assert again.status == 409
    # When the canceled task is retried
    retried = await api.post(f"/api/v1/tasks/{task['id']}/retry")
    # Expect it queued again
    assert retried.status == 200 and retried.json["state"] == "queued"


async def test_a_full_queue_is_429() -> None:
    # Given a queue depth limit of 2
    api = make_api(SchedulerConfig(max_queue_depth=2))
    await api.submit(queue="tiny")
    await api.submit(queue="tiny")
    # When a third task is submitted to that queue
    reply = await api.post("/api/v1/tasks", {"queue": "tiny"})
    # Expect 429 queue_full naming the queue field (and other queues unaffected)
    assert reply.status == 429
    assert reply.error["code"] == "queue_full" and reply.error["field"] == "queue"
    assert (await api.post("/api/v1/tasks", {"queue": "roomy"})).status == 201
