"""The one-file binary as a client: `taskd submit|get|list` against a real node.

Given a node (run from the dev venv, which makes it quick to start; the node from the binary
is tests/build/test_binary_smoke.py's) and a copy of dist/taskd alone in a temp dir, Expect
the binary's client commands to submit a task and read it back, as JSON and as a table, both
from the per-build cache and from a per-run extraction (no writable HOME), leaving no process
and no temporary directory behind; and a wrong port to give one line, not a traceback.
Latency is not asserted here: bench/cli_latency.py measures it against its targets.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def node(node_factory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TASKD_BINARY", raising=False)  # this node runs from the dev venv
    return node_factory()


def _client(
    binary: Path, *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(binary), *args],
        cwd=binary.parent,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check:
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stderr}"
    return done


def _submit_get_list(binary: Path, server: str, env: dict[str, str]) -> None:
    # When a task is submitted with the binary
    submitted = _client(
        binary,
        "submit",
        "--payload",
        '{"job": 7}',
        "--priority",
        "high",
        "--json",
        "--server",
        server,
        env=env,
    )
    task = json.loads(submitted.stdout)

    # Expect it to read back with get, and to be listed, as JSON and as a table
    got = json.loads(
        _client(binary, "get", task["id"], "--json", "--server", server, env=env).stdout
    )
    assert got["id"] == task["id"]
    assert got["payload"] == {"job": 7}
    assert got["state"] == "queued"
    page = json.loads(_client(binary, "--server", server, "list", "--json", env=env).stdout)
    assert task["id"] in [t["id"] for t in page["tasks"]]
    table = _client(binary, "list", "--server", server, env=env).stdout
    assert task["id"] in table and "queued" in table


def test_the_binarys_client_commands_work_against_a_node(
    binary: Path, cache_home: Path, node, tmp_path: Path
) -> None:
    # Given the binary with its own cache directory and TMPDIR
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(cache_home), "TMPDIR": str(tmpdir)}

    _submit_get_list(binary, node.http_url, env)

    # And the calls to have run from one cached copy, leaving nothing in TMPDIR
    assert len(list((cache_home / "taskd").glob("*.lock"))) == 1
    assert list(tmpdir.iterdir()) == []


def test_the_binarys_client_commands_work_with_an_unwritable_home(
    binary: Path, node, tmp_path: Path
) -> None:
    # Given a HOME where nothing can be created and no XDG_CACHE_HOME
    home = tmp_path / "home-is-a-file"
    home.touch()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"HOME": str(home), "TMPDIR": str(tmpdir)}

    _submit_get_list(binary, node.http_url, env)

    # And each call to have removed its temporary copy
    assert list(tmpdir.iterdir()) == []


def test_pointing_the_binary_at_the_grpc_port_says_what_to_do(
    binary: Path, cache_home: Path, node, tmp_path: Path
) -> None:
    # When the client is pointed at the node's gRPC port
    done = _client(
        binary,
        "list",
        "--server",
        f"http://{node.grpc_address}",
        env={"HOME": str(tmp_path), "XDG_CACHE_HOME": str(cache_home)},
        check=False,
    )

    # Expect exit 3 and one line on stderr, no traceback
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
