"""The ``taskd`` client subcommands against the REST app served by hypercorn on a real socket.

The app runs in this test's trio loop; the client (blocking urllib) runs in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from taskd.cli.commands import run_client
from tests.conftest import free_ports
from tests.http.conftest import Api, make_api

pytestmark = pytest.mark.slow


@pytest.fixture
async def served(nursery: trio.Nursery) -> AsyncIterator[tuple[Api, str]]:
    api = make_api()
    [port] = free_ports(1)
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # not stderr: tests read it
    stop = trio.Event()
    await nursery.start(
        lambda task_status: serve(
            api.app, config, shutdown_trigger=stop.wait, task_status=task_status
        )
    )
    yield api, f"http://127.0.0.1:{port}"
    stop.set()


async def taskd(*argv: str) -> int:
    code: int = await trio.to_thread.run_sync(run_client, list(argv))
    return code


async def test_submit_get_list_cancel_retry(served: tuple[Api, str], capsys: Any) -> None:
    api, url = served
    # When a task is submitted with every flag
    code = await taskd(
        "submit",
        "--server",
        url,
        "--queue",
        "cli",
        "--priority",
        "high",
        "--payload",
        '{"n": 1}',
        "--timeout",
        "5m",
        "--max-retries",
        "0",
        "--label",
        "team=a",
        "--name",
        "resize",
        "--idempotency-key",
        "k1",
    )
    # Expect its id on stdout, and the task as asked
    assert code == 0
    task_id = capsys.readouterr().out.strip()
    task = api.service.get(task_id)
    assert (task.queue, task.priority, task.payload, task.timeout) == ("cli", 7, b'{"n":1}', 300)
    assert task.labels == {"team": "a"} and task.name == "resize" and task.max_retries == 0
    # When it is read back as JSON, listed, canceled and retried
    assert await taskd("get", task_id, "--server", url, "--json") == 0
    assert orjson.loads(capsys.readouterr().out)["id"] == task_id
    assert await taskd("list", "--server", url, "--queue", "cli") == 0
    assert task_id in capsys.readouterr().out
    assert await taskd("cancel", task_id, "--server", url) == 0
    assert "canceled" in capsys.readouterr().out
    assert await taskd("retry", task_id, "--server", url) == 0
    assert "queued" in capsys.readouterr().out
    # and human output for the rest works
    for command in ("queues", "workers", "cluster"):
        assert await taskd(command, "--server", url) == 0
    assert await taskd("pause", "cli", "--server", url) == 0
    assert "paused" in capsys.readouterr().out
    assert await taskd("resume", "cli", "--server", url, "--json") == 0
    assert orjson.loads(capsys.readouterr().out)["paused"] is False


async def test_server_errors_print_the_message_and_field(
    served: tuple[Api, str], capsys: Any
) -> None:
    _, url = served
    code = await taskd("submit", "--server", url, "--priority", "urgent")
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == (
        "error: priority must be an integer 0-9 or one of low, normal, "
        "high, critical (field: priority)"
    )
    assert await taskd("get", "nope", "--server", url) == 1
    assert "(field: id)" in capsys.readouterr().err


async def test_the_server_comes_from_taskd_server(
    served: tuple[Api, str], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = served
    monkeypatch.setenv("TASKD_SERVER", url)
    assert await taskd("queues", "--json") == 0
    assert orjson.loads(capsys.readouterr().out) == {"queues": []}


async def test_a_refused_connection_says_how_to_start_a_node(capsys: Any) -> None:
    [port] = free_ports(1)
    code = await taskd("list", "--server", f"http://127.0.0.1:{port}")
    assert code == 3  # no taskd answered: distinct from a refusal (1) and a usage error (2)
    assert capsys.readouterr().err.strip() == (
        f"error: cannot reach taskd at http://127.0.0.1:{port}: nothing listens there; is a "
        "node running? start one with `taskd`"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "--payload", "{not json"],
        ["submit", "--label", "novalue"],
        ["get"],
        ["list", "--state", "done"],
        ["submit", "--max-retries", "x"],
    ],
)
async def test_usage_errors_exit_2(argv: list[str], capsys: Any) -> None:
    [port] = free_ports(1)
    assert await taskd(*argv, "--server", f"http://127.0.0.1:{port}") == 2
    assert capsys.readouterr().err


async def test_payload_from_a_file_and_stdin(
    served: tuple[Api, str], capsys: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, url = served
    path = tmp_path / "p.json"
    path.write_bytes(b"[1, 2]")
    assert await taskd("submit", "--server", url, "--payload", f"@{path}") == 0
    assert api.service.get(capsys.readouterr().out.strip()).payload == b"[1,2]"
    import io  # noqa: PLC0415  # only this test fakes stdin

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'"from stdin"')))
    assert await taskd("submit", "--server", url, "--payload", "-") == 0
    assert api.service.get(capsys.readouterr().out.strip()).payload == b'"from stdin"'
