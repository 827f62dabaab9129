"""docs/examples/curl-worker.sh is a working HTTP worker.

Given a real node whose leases last 2 s, and tasks in a queue: one whose command runs 3.5 s
(longer than the lease: only heartbeats keep it), one quick, and one whose command exits
non-zero. When the shell worker runs them (with jq, and with python3 for JSON), expect every
task finished after one attempt: results from the command's stdout (JSON, or text), the
failure's error holding the command's stderr, and the command given the task's id and attempt
in its environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import NodeFactory
from tests.docs.mdblocks import ROOT
from tests.node.rest import post, wait_for_task

pytestmark = pytest.mark.slow

WORKER = ROOT / "docs" / "examples" / "curl-worker.sh"

COMMAND = """
import json, os, sys, time
job = json.load(sys.stdin)
if job.get("fail"):
    sys.stderr.write("working...\\nno thumbnail for " + job["image"] + ": unsupported format\\n")
    sys.exit(3)
time.sleep(job.get("seconds", 0))
if job.get("text"):
    print("plain text, not JSON")
else:
    print(json.dumps({"thumb": job["image"] + ".thumb",
                      "task": os.environ["TASKD_TASK_ID"], "attempt": os.environ["TASKD_ATTEMPT"],
                      "queue": os.environ["TASKD_QUEUE"]}))
"""


@pytest.mark.parametrize("json_tool", ["jq", "python3"])
def test_the_shell_worker_completes_and_fails_tasks(
    node_factory: NodeFactory, tmp_path: Path, json_tool: str
) -> None:
    if json_tool == "jq" and shutil.which("jq") is None:
        pytest.skip("jq is not installed here; the python3 variant runs the same script")
    # Given a node with 2 s leases and three tasks of queue "thumbs"
    node = node_factory("--worker-lease", "2")
    url = node.http_url
    jobs = [
        {"image": "slow.png", "seconds": 3.5},
        {"image": "plain.png", "text": True},
        {"image": "bad.tiff", "fail": True},
    ]
    ids = []
    for priority, job in zip((9, 5, 2), jobs, strict=True):
        status, task = post(
            f"{url}/api/v1/tasks",
            {"queue": "thumbs", "payload": job, "priority": priority, "max_retries": 0},
        )
        assert status == 201, task
        ids.append(task["id"])
    command = tmp_path / "thumb.py"
    command.write_text(COMMAND)

    # When the shell worker runs until it has done three tasks
    env = {
        **os.environ,
        "TASKD_URL": url,
        "TASKD_WORKER": "doc-shell-worker",
        "TASKD_MAX_TASKS": "3",
        "TASKD_NO_JQ": "1" if json_tool == "python3" else "0",
    }
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(WORKER), "thumbs", sys.executable, str(command)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Expect it to exit 0 having run each task once, in priority order
    assert done.returncode == 0, done.stderr
    slow, plain, bad = (wait_for_task(url, i, {"succeeded", "failed"}, deadline=10) for i in ids)
    assert slow["state"] == "succeeded", json.dumps([slow, done.stderr], indent=1)
    assert slow["result"] == {
        "thumb": "slow.png.thumb",
        "task": ids[0],
        "attempt": "1",
        "queue": "thumbs",
    }
    assert [a["outcome"] for a in slow["attempts"]] == ["succeeded"]  # heartbeats kept it
    assert slow["worker"] == "doc-shell-worker"
    assert plain["state"] == "succeeded" and plain["result"] == "plain text, not JSON"
    assert bad["state"] == "failed", bad
    assert "no thumbnail for bad.tiff: unsupported format" in bad["error"]
    assert bad["error"].startswith("working...")  # the stderr tail, not only its last line
    assert slow["finished_at"] <= plain["started_at"] <= bad["started_at"]
    assert time.monotonic() - started < 30
