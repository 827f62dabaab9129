"""Any gRPC stack must interoperate (design.md §3): here, Node.js with @grpc/grpc-js.

Given the committed ``tasks.proto`` loaded at run time by @grpc/proto-loader in a Node process
(``node/client.js``, no generated code, no taskd code), when that client drives a real node
through TaskService and runs a worker loop over one WorkerService.Work stream (results sent
as TaskResults batches), expect what ``expect.check_client_output`` describes — the same the
grpcio client gets.

The Node modules come from ``npm ci`` in tests/interop/node (package-lock.json pins them).
Without them (or without ``node``) the test is skipped, unless TASKD_INTEROP_REQUIRED is set —
as .ci/run does once its ``npm ci`` succeeded — and then it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.interop.expect import check_client_output

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PROTO = REPO / "taskd" / "api" / "taskd" / "v1" / "tasks.proto"
NODE_DIR = Path(__file__).with_name("node")


def node_client() -> list[str]:
    """``node client.js``; else a skip (a failure under TASKD_INTEROP_REQUIRED) naming the gap."""
    node = shutil.which("node")
    missing = [] if node else ["the `node` command"]
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        if not (NODE_DIR / "node_modules" / package).is_dir():
            missing.append(f"{package} (run `npm ci` in {NODE_DIR})")
    if missing or node is None:
        why = "Node interop needs " + "; ".join(missing)
        if os.environ.get("TASKD_INTEROP_REQUIRED"):
            pytest.fail(f"{why}; TASKD_INTEROP_REQUIRED is set")
        pytest.skip(why)
    return [node, "client.js"]


def test_grpc_js_client_speaks_taskd_v1(node_factory):
    # Given
    command = node_client()
    node = node_factory()

    # When
    done = subprocess.run(
        [*command, node.grpc_address, str(PROTO)],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Expect
    assert done.returncode == 0, f"node client failed:\n{done.stderr}"
    out = json.loads(done.stdout.strip().splitlines()[-1])
    check_client_output(out, worker="grpcjs-interop", by="grpc-js")
