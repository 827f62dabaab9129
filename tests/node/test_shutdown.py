"""Graceful shutdown: SIGTERM lets a running command finish, then the node exits 0."""

from __future__ import annotations

import shlex
import sys
import time

import pytest

from tests.node.rest import get, post, wait_for_task

pytestmark = pytest.mark.slow


def test_sigterm_lets_running_tasks_finish_and_exits_zero(node_factory, tmp_path):
    # Given a node running a command that takes about a second
    script = tmp_path / "slow.py"
    script.write_text("import time\ntime.sleep(1.0)\nprint('done')\n")
    node = node_factory(
        "--exec", f"slow={shlex.quote(sys.executable)} {script}", "--shutdown-grace", "20"
    )
    status, task = post(f"{node.http_url}/api/v1/tasks", {"queue": "slow"})
    assert status == 201
    wait_for_task(node.http_url, task["id"], {"running"})
    # When the node gets SIGTERM while the task runs
    started = time.monotonic()
    node.terminate()
    # Expect a clean exit after the task finished, and the success durable across a restart
    assert node.proc.returncode == 0, node.stderr_text()
    assert time.monotonic() - started < 15
    node.restart()
    status, done = get(f"{node.http_url}/api/v1/tasks/{task['id']}")
    assert status == 200 and done["state"] == "succeeded" and done["result"] == "done"
