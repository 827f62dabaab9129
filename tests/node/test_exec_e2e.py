"""Tasks run as real commands through ``--exec``, on a real node process.

Each test starts a node whose queues run small Python or shell commands, submits over REST,
and checks what the commands saw and what the node recorded.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import pytest

from tests.node.rest import get, post, wait_for_task

pytestmark = pytest.mark.slow

PY = shlex.quote(sys.executable)

RECORDER = """
import json, os, sys, time
payload = json.load(sys.stdin)
with open(os.environ["LOG"], "a") as log:
    log.write(os.environ["TASKD_TASK_ID"] + " " + os.environ["TASKD_QUEUE"] + " "
              + os.environ["TASKD_ATTEMPT"] + "\\n")
print(json.dumps({"echo": payload}))
"""


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(body)
    return f"{PY} {shlex.quote(str(path))}"


def test_payload_on_stdin_result_from_stdout_and_dependencies_run_in_order(
    node_factory, tmp_path, monkeypatch
):
    # Given a node running queue "rec" with a command that logs each run and echoes its payload
    log = tmp_path / "runs.log"
    monkeypatch.setenv("LOG", str(log))
    node = node_factory(
        "--exec", f"rec={_script(tmp_path, 'rec.py', RECORDER)}", "--concurrency", "4"
    )
    # When a batch submits A, and B depending on A, and C depending on B
    status, body = post(
        f"{node.http_url}/api/v1/tasks/batch",
        {
            "tasks": [
                {"ref": "c", "queue": "rec", "payload": {"n": 3}, "depends_on": ["b"]},
                {"ref": "b", "queue": "rec", "payload": {"n": 2}, "depends_on": ["a"]},
                {"ref": "a", "queue": "rec", "payload": {"n": 1}},
            ]
        },
    )
    assert status == 201, body
    c, b, a = (t["id"] for t in body["tasks"])
    # Expect all three to succeed, each after the one it depends on finished
    done = {tid: wait_for_task(node.http_url, tid, {"succeeded"}) for tid in (a, b, c)}
    assert done[a]["result"] == {"echo": {"n": 1}}
    assert done[c]["result"] == {"echo": {"n": 3}}
    assert [line.split()[0] for line in log.read_text().splitlines()] == [a, b, c]
    assert done[b]["started_at"] >= done[a]["finished_at"]
    assert done[c]["started_at"] >= done[b]["finished_at"]
    assert log.read_text().splitlines()[0].split()[1:] == ["rec", "1"]


def test_timeout_kills_the_command_and_retries_then_fails(node_factory, tmp_path):
    # Given a queue whose command sleeps far past the task's timeout, and writes its pid
    pids = tmp_path / "pids"
    cmd = f"sh -c {shlex.quote(f'echo $$ >> {pids}; sleep 60 & wait')}"
    node = node_factory("--exec", f"slow={cmd}")
    # When a task with a 0.5 s timeout and one retry is submitted
    started = time.monotonic()
    status, task = post(
        f"{node.http_url}/api/v1/tasks", {"queue": "slow", "timeout": "500ms", "max_retries": 1}
    )
    assert status == 201, task
    # Expect two attempts, each killed at its timeout, then failed with error "timeout"
    task = wait_for_task(node.http_url, task["id"], {"failed"}, deadline=30)
    assert task["attempt"] == 2
    assert task["error"] == "timeout"
    assert time.monotonic() - started < 20
    for pid in pids.read_text().split():
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )


def test_failure_is_retried_with_backoff_and_succeeds(node_factory, tmp_path):
    # Given a command that fails on its first attempt and succeeds on the second
    body = (
        "import os, sys\n"
        "if os.environ['TASKD_ATTEMPT'] == '1':\n"
        "    sys.stderr.write('first try fails\\n'); sys.exit(3)\n"
        "print('ok on ' + os.environ['TASKD_ATTEMPT'])\n"
    )
    node = node_factory("--exec", f"flaky={_script(tmp_path, 'flaky.py', body)}")
    # When a task with retries is submitted
    status, task = post(f"{node.http_url}/api/v1/tasks", {"queue": "flaky", "max_retries": 2})
    assert status == 201
    # Expect success on attempt 2 with stdout (not JSON) as a string result
    task = wait_for_task(node.http_url, task["id"], {"succeeded"}, deadline=30)
    assert task["attempt"] == 2
    assert task["result"] == "ok on 2"  # the final line break of the output is dropped


def test_a_successful_runs_stderr_tail_is_kept_in_its_attempt(node_factory, tmp_path):
    # Given a node whose executor runs a command that logs to stderr and succeeds
    body = "import sys\nsys.stderr.write('loaded 12 rows\\n')\nprint('ok')\n"
    node = node_factory("--exec", f"chatty={_script(tmp_path, 'chatty.py', body)}")
    # When a task runs
    status, task = post(f"{node.http_url}/api/v1/tasks", {"queue": "chatty"})
    assert status == 201
    task = wait_for_task(node.http_url, task["id"], {"succeeded"}, deadline=30)
    # Expect the attempt history to hold the stderr tail, and the result the stdout
    assert task["result"] == "ok"
    [attempt] = task["attempts"]
    assert attempt["outcome"] == "succeeded" and attempt["error"] is None
    assert attempt["log"] == "loaded 12 rows"


def test_dead_after_last_retry_with_stderr_tail(node_factory, tmp_path):
    body = "import sys\nsys.stderr.write('boom: disk on fire\\n')\nsys.exit(7)\n"
    node = node_factory("--exec", f"bad={_script(tmp_path, 'bad.py', body)}")
    status, task = post(f"{node.http_url}/api/v1/tasks", {"queue": "bad", "max_retries": 1})
    assert status == 201
    task = wait_for_task(node.http_url, task["id"], {"failed"}, deadline=30)
    assert task["attempt"] == 2
    assert "boom: disk on fire" in task["error"]
    assert "7" in task["error"]
    # and the dead-letter list is state=failed
    status, page = get(f"{node.http_url}/api/v1/tasks?queue=bad&state=failed")
    assert status == 200 and [t["id"] for t in page["tasks"]] == [task["id"]]


def test_a_failed_dependency_cancels_its_dependents(node_factory, tmp_path):
    node = node_factory("--exec", "nope=false")
    status, body = post(
        f"{node.http_url}/api/v1/tasks/batch",
        {
            "tasks": [
                {"ref": "a", "queue": "nope", "max_retries": 0},
                {"ref": "b", "queue": "nope", "depends_on": ["a"]},
                {"ref": "c", "queue": "nope", "depends_on": ["b"]},
            ]
        },
    )
    assert status == 201, body
    a, b, c = (t["id"] for t in body["tasks"])
    assert wait_for_task(node.http_url, a, {"failed"})["state"] == "failed"
    for dependent in (b, c):
        task = wait_for_task(node.http_url, dependent, {"canceled"})
        assert "dependency" in task["error"]


def test_cancel_kills_a_running_command(node_factory, tmp_path):
    pidfile = tmp_path / "pid"
    cmd = f"sh -c {shlex.quote(f'echo $$ > {pidfile}; exec sleep 60')}"
    node = node_factory("--exec", f"long={cmd}")
    status, task = post(f"{node.http_url}/api/v1/tasks", {"queue": "long"})
    assert status == 201
    wait_for_task(node.http_url, task["id"], {"running"})
    end = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < end:
        time.sleep(0.02)
    pid = int(pidfile.read_text())
    status, canceled = post(f"{node.http_url}/api/v1/tasks/{task['id']}/cancel")
    assert status == 200 and canceled["state"] == "canceled"
    end = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < end:
        if "zombie" in Path(f"/proc/{pid}/status").read_text().lower():
            break
        time.sleep(0.02)
    assert (
        not Path(f"/proc/{pid}").exists()
        or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    )


def test_priority_order_with_fifo_ties(node_factory, tmp_path, monkeypatch):
    # Given a paused queue with one slot, holding tasks of mixed priorities
    log = tmp_path / "runs.log"
    monkeypatch.setenv("LOG", str(log))
    node = node_factory(
        "--exec", f"prio={_script(tmp_path, 'rec.py', RECORDER)}", "--concurrency", "1"
    )
    assert post(f"{node.http_url}/api/v1/queues/prio/pause")[0] == 200
    submitted = []
    for priority in ["low", 9, "normal", "high", 9, 0]:
        status, task = post(
            f"{node.http_url}/api/v1/tasks", {"queue": "prio", "priority": priority}
        )
        assert status == 201
        submitted.append((task["priority"], task["id"]))
    # When the queue resumes
    assert post(f"{node.http_url}/api/v1/queues/prio/resume")[0] == 200
    for _, tid in submitted:
        wait_for_task(node.http_url, tid, {"succeeded"})
    # Expect highest priority first, submission order among equals
    expected = [tid for _, tid in sorted(submitted, key=lambda pt: -pt[0])]
    assert [line.split()[0] for line in log.read_text().splitlines()] == expected
