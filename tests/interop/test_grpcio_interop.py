"""Any gRPC stack must interoperate (design.md §3): here, grpcio with protoc-generated code.

Given the committed ``tasks.proto`` compiled at test time by ``grpc_tools.protoc`` (python_out
and grpc_python_out), and a separate Python process that imports only those modules and
``grpc`` (``grpcio_client.py``; it reports every ``taskd`` module it ended up importing),
when that client drives a real node through TaskService and runs a worker loop over one
WorkerService.Work stream, expect the answers ``expect.check_client_output`` describes — the
same that the Node client (test_node_interop.py) must get.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.expect import check_client_output

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

    # Expect: no taskd code on the client side, and the answers every client gets
    assert out["taskd_imported"] == []
    check_client_output(out, worker="grpcio-interop", by="grpcio")
