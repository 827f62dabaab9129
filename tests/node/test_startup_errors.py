"""A node that cannot start says why in one line and exits non-zero, without a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import free_ports

pytestmark = pytest.mark.slow


def _start(*args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskd", "--log-format", "text", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_taken_port_and_a_locked_data_dir(node_factory_shared, tmp_path):
    node = node_factory_shared
    grpc_port, http_port = free_ports(2)
    taken_grpc = _start(
        "--grpc",
        node.grpc_address,
        "--http",
        f"127.0.0.1:{http_port}",
        "--data-dir",
        str(tmp_path / "a"),
        cwd=str(tmp_path),
    )
    taken_http = _start(
        "--grpc",
        f"127.0.0.1:{grpc_port}",
        "--http",
        node.http_url[7:],
        "--data-dir",
        str(tmp_path / "b"),
        cwd=str(tmp_path),
    )
    for result, flag in ((taken_grpc, "--grpc"), (taken_http, "--http")):
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("taskd: cannot listen") and flag in last, last
    # the running node's data dir is locked against a second process
    data_dir = node.args[node.args.index("--data-dir") + 1]
    locked = _start(
        "--grpc",
        f"127.0.0.1:{grpc_port}",
        "--http",
        f"127.0.0.1:{http_port}",
        "--data-dir",
        data_dir,
        cwd=str(tmp_path),
    )
    assert locked.returncode == 1 and "Traceback" not in locked.stderr
    assert "in use by another process" in locked.stderr and "--data-dir" in locked.stderr


def test_bad_flags_exit_2_with_the_fix_in_the_message(tmp_path):
    (tmp_path / "notes.txt").write_text("not a program\n")  # a file, not executable
    for args, words in (
        (["--peers", "a:1,b:2,c:3", "--grpc", "d:4"], "--grpc d:4 is not one of --peers"),
        (["--peers", "a:1,b:2,c:3"], "pass --grpc with this node's entry"),
        (["--store", "mysql://root:pw@db/taskd"], "--store takes raft"),
        (["--store", "postgres://db/t", "--peers", "a:1,b:2", "--grpc", "a:1"], "same --store URL"),
        (["--store", "redis://r:6379/0", "--store-lease", "0.1"], "--store-lease"),
        (["--store", "redis://r:6379/0", "--grpc", "0.0.0.0:7000"], "must name this machine"),
        (["--exec", "resize"], "QUEUE=COMMAND"),
        (["--exec", "ghost=/nonexistent/bin/resize --fast"], "'/nonexistent/bin/resize'"),
        (["--exec", "ghost=no-such-program-anywhere -x"], "not found on PATH"),
        (["--exec", "ok=true", "--exec", "txt=./notes.txt"], "--exec txt: cannot run"),
        (["--concurrency", "8-2"], "--concurrency"),
    ):
        result = _start(*args, cwd=str(tmp_path))
        assert result.returncode == 2, (args, result.stderr)
        assert words in result.stderr and "Traceback" not in result.stderr, result.stderr
