"""``taskd`` client commands as a user runs them: real processes against a real node process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from taskd.node import config as node_config
from tests.conftest import NodeFactory, NodeProcess, free_ports

pytestmark = pytest.mark.slow


def taskd(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskd", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def node(node_factory_shared: NodeProcess) -> NodeProcess:
    return node_factory_shared


def test_global_flags_go_before_or_after_the_command(node: NodeProcess) -> None:
    # Given a task
    submitted = taskd("--server", node.http_url, "submit", "--queue", "flags")
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    # When the global flags come first, last, or mixed with the command's own
    first = taskd("--server", node.http_url, "list", "--queue", "flags")
    last = taskd("list", "--server", node.http_url, "--json")
    mixed = taskd("--json", "get", task_id, f"--server={node.http_url}")
    # Expect each to work as the help shows
    assert first.returncode == 0 and task_id in first.stdout, first.stderr
    assert last.returncode == 0 and task_id in [t["id"] for t in json.loads(last.stdout)["tasks"]]
    assert mixed.returncode == 0 and json.loads(mixed.stdout)["id"] == task_id


def test_an_unknown_command_is_named_with_the_nearest_one() -> None:
    for argv in (["lst"], ["--server", "http://127.0.0.1:1", "lsit"], ["help", "submti"]):
        result = taskd(*argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert "did you mean 'list'" in one_line_error(result) or "'submit'" in result.stderr


def test_help_lists_every_command_and_every_taskd_variable() -> None:
    result = taskd("--help")
    assert result.returncode == 0, result.stderr
    for command in ("submit", "get", "list", "queues", "pause", "cluster", "bench", "worker"):
        assert f"\n  {command} " in result.stdout, command
    variables = [name for name, _ in node_config.environment()] + ["TASKD_SERVER"]
    assert "TASKD_EXEC" in variables and "TASKD_LOG_FORMAT" in variables
    for name in variables:
        assert f"\n  {name} " in result.stdout, name
    # and `taskd help COMMAND` is that command's help
    helped = taskd("help", "submit")
    assert helped.returncode == 0 and "--delay" in helped.stdout


def test_a_wrong_address_is_one_line_with_a_distinct_exit_code(node: NodeProcess) -> None:
    [closed] = free_ports(1)
    cases = [
        (["--server", node.grpc_address, "list"], 3, "gRPC port"),  # HTTP/2 answers HTTP/1.1
        (["--server", f"http://{node.grpc_address}", "get", "X"], 3, "gRPC port"),
        (["--server", f"grpc://{node.grpc_address}", "list"], 2, "grpc://"),
        (["--server", "ftp://example.com", "list"], 2, "ftp://"),
        (["--server", f"127.0.0.1:{closed}", "queues"], 3, "is a node running"),
        (["--server", "http://", "list"], 2, "no host"),
    ]
    for argv, code, words in cases:
        result = taskd(*argv)
        line = one_line_error(result)
        assert result.returncode == code, (argv, result.stderr)
        assert words in line, (argv, line)


def test_something_that_is_not_taskd_says_so() -> None:
    # Given a TCP server that answers every connection with garbage, then closes
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        proc = subprocess.Popen(  # the CLI in the background; this test serves one answer
            [sys.executable, "-m", "taskd", "--server", f"127.0.0.1:{port}", "list"],
            stderr=subprocess.PIPE,
            text=True,
        )
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00garbage")
        conn.close()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3 and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_more_hint_keeps_the_filters_and_delay_takes_a_duration(node: NodeProcess) -> None:
    for _ in range(3):
        done = taskd("submit", "--server", node.http_url, "--queue", "pages", "--delay", "5m")
        assert done.returncode == 0, done.stderr
    listed = taskd("list", "--server", node.http_url, "--queue", "pages", "--limit", "2")
    [hint] = [line for line in listed.stdout.splitlines() if line.startswith("more: ")]
    argv = hint.removeprefix("more: ").split()
    assert argv[:2] == ["taskd", "list"] and "--queue" in argv and "--limit" in argv
    # When the hint is run, expect the rest of the same queue's tasks
    more = taskd(*argv[1:], "--json")
    assert more.returncode == 0, (argv, more.stderr)
    page = json.loads(more.stdout)
    assert [t["queue"] for t in page["tasks"]] == ["pages"] and page["next"] is None
    assert page["tasks"][0]["state"] == "pending"


def test_refusals_name_the_field(node: NodeProcess) -> None:
    after = taskd("list", "--server", node.http_url, "--after", "garbage")
    assert after.returncode == 1 and "(field: after)" in one_line_error(after)
    delay = taskd("submit", "--server", node.http_url, "--delay", "5 minutes")
    assert delay.returncode == 1 and "(field: delay)" in one_line_error(delay)
    pause = taskd("pause", "--server", node.http_url, "never-seen-queue")
    assert pause.returncode == 1 and "no queue 'never-seen-queue'" in one_line_error(pause)


@pytest.fixture
def exec_node(node_factory: NodeFactory) -> Iterator[NodeProcess]:
    yield node_factory("--exec", "broken=false")


def test_consumers_attempts_and_failure_logs(exec_node: NodeProcess) -> None:
    url = exec_node.http_url
    # Given a queue an --exec serves (its command always fails) and one nobody serves
    failing = taskd("submit", "--server", url, "--queue", "broken", "--max-retries", "1")
    taskd("submit", "--server", url, "--queue", "orphan")
    task_id = failing.stdout.strip()
    # Expect both attempts in the task's history once it failed
    while True:
        task = json.loads(taskd("get", task_id, "--server", url, "--json").stdout)
        if task["state"] == "failed":
            break
    assert [(a["attempt"], a["outcome"]) for a in task["attempts"]] == [
        (1, "failed"),
        (2, "failed"),
    ]
    assert all(a["error"] and a["worker"] for a in task["attempts"])
    # and the consumers of each queue
    queues = json.loads(taskd("queues", "--server", url, "--json").stdout)["queues"]
    consumers = {q["name"]: q["consumers"] for q in queues}
    assert consumers["broken"] == 1 and consumers["orphan"] == 0
    # and the node's log (JSON: not a terminal) has each failure and the unserved queue
    entries = [
        json.loads(line)
        for line in (exec_node.workdir / "stderr.log").read_text().splitlines()
        if line.startswith("{")
    ]
    failures = [e for e in entries if e["msg"].startswith(f"task {task_id} failed")]
    assert [e["attempt"] for e in failures] == [1, 2] and failures[0]["queue"] == "broken"
    assert any(e.get("queue") == "orphan" and e["level"] == "warning" for e in entries)
