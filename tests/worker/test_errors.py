"""A handler's exception under a real ``taskd worker``: its traceback is the attempt's error on
the task (every attempt's, in the history), and the node retries while retries remain."""

from __future__ import annotations

import pytest

from tests.conftest import NodeFactory
from tests.node.rest import post
from tests.worker.conftest import SpawnWorker
from tests.worker.procs import task, wait_until

pytestmark = pytest.mark.slow

WORKER = """
worker = Worker(queues=["errors"], concurrency=2)


def parse_row(row):
    return int(row["n"])


@worker.task("parse")
def parse(task):
    note("start", task)
    return parse_row(task.json())
"""


def test_an_exception_traceback_is_the_error_of_each_attempt(
    node_factory: NodeFactory, spawn_worker: SpawnWorker
) -> None:
    # Given a handler that raises deep inside the user's code, and one retry
    node = node_factory("--log-format", "text")
    worker = spawn_worker(WORKER, "--server", node.grpc_address)
    code, body = post(
        f"{node.http_url}/api/v1/tasks",
        {"queue": "errors", "name": "parse", "payload": {"n": "seven"}, "max_retries": 1},
    )
    assert code == 201, body
    # When it has run out of attempts
    failed = wait_until(
        lambda: (t := task(node.http_url, body["id"]))["state"] == "failed" and t,
        15,
        "the task failed",
        worker.describe,
    )
    # Expect the traceback, naming the user's function and the exception, as its error
    error = failed["error"]
    assert error.startswith("Traceback (most recent call last):"), error
    assert "in parse_row" in error and "tasks.py" in error, error
    assert error.rstrip().endswith("ValueError: invalid literal for int() with base 10: 'seven'"), (
        error
    )
    # on both attempts, which ran once each
    assert [a["outcome"] for a in failed["attempts"]] == ["failed", "failed"]
    assert all("in parse_row" in a["error"] for a in failed["attempts"]), failed["attempts"]
    assert worker.count("start")[body["id"]] == 2
    # and the node logged the failure
    wait_until(lambda: body["id"] in node.stderr_text(), 5, "the node's log of the failure")
