"""Any gRPC stack must interoperate (design.md §3): here, grpcio with protoc-generated code.

Given the committed ``tasks.proto`` compiled at test time by ``grpc_tools.protoc`` (python_out
and grpc_python_out), and a separate Python process that imports only those modules and
``grpc`` (``grpcio_client.py``; it reports every ``taskd`` module it ended up importing),
when that client drives a real node through TaskService and one WorkerService.Work stream,
expect the same answers the project's own betterproto2 client gets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PROTO = REPO / "taskd" / "api" / "taskd" / "v1" / "tasks.proto"
CLIENT = Path(__file__).with_name("grpcio_client.py")


def compile_proto(out: Path) -> None:
    """protoc into ``out``: tasks_pb2.py and tasks_pb2_grpc.py, importable as top-level modules."""
    out.mkdir()
    shutil.copy(PROTO, out / "tasks.proto")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{out}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(out / "tasks.proto"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert (out / "tasks_pb2.py").exists() and (out / "tasks_pb2_grpc.py").exists()


def run_client(workdir: Path, target: str) -> dict:
    shutil.copy(CLIENT, workdir / "client.py")
    # sys.path[0] is the generated modules' directory (the script's); not the repo, no PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    done = subprocess.run(
        [sys.executable, "client.py", target],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"grpcio client failed:\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_grpcio_client_speaks_taskd_v1(node_factory, tmp_path):
    # Given
    node = node_factory()
    generated = tmp_path / "generated"
    compile_proto(generated)

    # When
    out = run_client(generated, node.grpc_address)

    # Expect: no taskd code on the client side
    assert out["taskd_imported"] == []
    submitted = out["submit"]
    assert submitted["id"] and not submitted["duplicate"]
    assert submitted["priority"] == 7
    assert submitted["payload"] == '{"hello": "grpcio"}'
    assert submitted["labels"] == {"client": "grpcio"}
    assert submitted["state"] == "TASK_STATE_QUEUED"
    assert out["get"] == {k: v for k, v in submitted.items() if k != "duplicate"}

    batch = out["batch"]
    assert len(batch["ids"]) == 3 and len(set(batch["ids"])) == 3
    assert batch["duplicate"] == [False, False, False]

    listed = out["list"]["ids"]
    assert set(listed) == {submitted["id"], *batch["ids"]}
    assert listed[0] == batch["ids"][-1]  # newest first

    assert out["cancel"]["id"] == batch["ids"][0]
    assert out["cancel"]["state"] == "TASK_STATE_CANCELED"

    assert out["bad_priority"]["code"] == "INVALID_ARGUMENT"
    assert "priority" in out["bad_priority"]["details"]
    assert out["unknown_id"]["code"] == "NOT_FOUND"

    work = out["work"]
    assert work["assigned"]["id"] == work["submitted"]
    assert work["assigned"]["payload"] == '{"n": 1}'
    assert work["assigned"]["attempt"] == 1 and work["assigned"]["lease"] > 0
    assert work["ack"] == {"id": work["submitted"], "accepted": True}
    assert out["worked"]["state"] == "TASK_STATE_SUCCEEDED"
