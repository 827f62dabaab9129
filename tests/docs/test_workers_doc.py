"""docs/workers.md describes the worker protocols as they are.

- Every field of every message of the worker stream in ``tasks.proto``, and every body field of
  the HTTP worker calls in the OpenAPI document, is named in the page (a field added to the
  protocol without a word in the docs fails here).
- The page's stream worker (grpcio and protoc's code only) runs against a real node whose leases
  last 1 s: a task that runs 2.5 s succeeds on its first attempt (its heartbeats work), a quick
  one succeeds, and one whose work raises fails with the exception as its error.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from taskd.node.api.http import openapi
from tests.conftest import NodeFactory
from tests.docs import mdblocks
from tests.interop.test_grpcio_interop import PROTO, compile_proto
from tests.node.rest import get, post, wait_for_task

PAGE = mdblocks.DOCS / "workers.md"
STREAM_MESSAGES = (
    "WorkerHello",
    "TaskResult",
    "WorkerHeartbeat",
    "WorkerCredit",
    "TaskResults",
    "WorkerMessage",
    "WorkItem",
    "Assignment",
    "Revocation",
    "ResultAck",
    "ResultAcks",
    "NodeMessage",
)
HTTP_CALLS = (
    "/api/v1/queues/{name}/lease",
    "/api/v1/tasks/{id}/heartbeat",
    "/api/v1/tasks/{id}/complete",
    "/api/v1/tasks/{id}/fail",
)


def proto_fields(message: str) -> list[str]:
    """The field names of ``message`` in tasks.proto (a flat message, or one with a oneof)."""
    text = PROTO.read_text()
    found = re.search(rf"^message {message} \{{(.*?)^\}}", text, re.MULTILINE | re.DOTALL)
    if found is None:  # a one-line message: message X { int32 capacity = 1; }
        found = re.search(rf"^message {message} \{{(.*?)\}}", text, re.MULTILINE)
    assert found is not None, f"no message {message} in {PROTO}"
    body = re.sub(r"//[^\n]*", "", found.group(1))
    return re.findall(r"(\w+)\s*=\s*\d+\s*;", body)


def test_every_field_of_the_worker_stream_is_documented() -> None:
    # Given the page / Expect each message and each of its fields named in backticks
    text = PAGE.read_text()
    for message in STREAM_MESSAGES:
        assert f"`{message}`" in text, f"docs/workers.md does not name {message}"
        fields = proto_fields(message)
        assert fields, message
        for name in fields:
            assert f"`{name}`" in text, f"docs/workers.md does not describe {message}.{name}"


def test_every_field_of_the_http_worker_calls_is_documented() -> None:
    # Given the OpenAPI document's request bodies and the lease answer's items
    document = openapi.document("0")
    schemas = document["components"]["schemas"]

    def props(schema: dict) -> dict:
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        return schema.get("properties", {})

    names: set[str] = set()
    for path in HTTP_CALLS:
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        names |= set(props(body["schema"]))
    lease = document["paths"][HTTP_CALLS[0]]["post"]["responses"]["200"]["content"]
    answer = props(lease["application/json"]["schema"])
    names |= set(answer) | set(props(answer["tasks"]["items"]))

    # Expect each named in the page
    text = PAGE.read_text()
    missing = sorted(n for n in names if f"`{n}`" not in text and f'"{n}"' not in text)
    assert not missing, f"docs/workers.md does not describe these HTTP worker fields: {missing}"


@pytest.mark.slow
def test_the_stream_worker_of_the_page_runs_tasks(
    node_factory: NodeFactory, tmp_path: Path
) -> None:
    # Given a node with 1 s leases, the page's worker and protoc's code in one directory
    node = node_factory("--worker-lease", "1")
    generated = tmp_path / "generated"
    compile_proto(generated)
    [block] = [b for b in mdblocks.tagged(PAGE, "file") if b.tag and b.tag.args]
    assert block.tag is not None and block.tag.args == ("stream_worker.py",)
    (generated / "stream_worker.py").write_text(block.text)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    worker = subprocess.Popen(
        [sys.executable, "stream_worker.py", node.grpc_address, "rectangles"],
        cwd=generated,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # When three tasks are submitted to its queue
        jobs = [{"width": 3, "height": 4, "seconds": 2.5}, {"width": 2, "height": 5}, {"width": 3}]
        ids = []
        for job in jobs:
            status, task = post(
                f"{node.http_url}/api/v1/tasks",
                {"queue": "rectangles", "payload": job, "max_retries": 0},
            )
            assert status == 201, task
            ids.append(task["id"])

        # Expect the long one kept by heartbeats, the quick one done, the bad one failed
        slow, quick, bad = (
            wait_for_task(node.http_url, i, {"succeeded", "failed"}, deadline=30) for i in ids
        )
        assert worker.poll() is None, worker.communicate()
        assert slow["state"] == "succeeded", slow
        assert slow["result"] == {"area": 12}
        assert [a["outcome"] for a in slow["attempts"]] == ["succeeded"]
        assert quick["state"] == "succeeded" and quick["result"] == {"area": 10}
        assert bad["state"] == "failed" and bad["error"] == "KeyError('height')"
        status, workers = get(f"{node.http_url}/api/v1/workers")
        [listed] = workers["workers"]
        assert listed["kind"] == "stream" and listed["queues"] == ["rectangles"]
        assert listed["capacity"] == 4
    finally:
        worker.kill()
        _, errors = worker.communicate(timeout=10)
    assert "refused" not in errors, errors
