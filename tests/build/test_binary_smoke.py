"""Smoke test of the one-file binary dist/taskd (built by `make build`).

Given a copy of dist/taskd alone in an empty temp dir (so it can need nothing from the repo),
Expect `--help` and `--version` to work, a node started from it to accept a task over REST and
give it back, to be the very process that was started (the launcher exec()s the cached
one-folder build: no launcher process in between), to report its idle memory, and to exit 0
on SIGTERM. Every test here points XDG_CACHE_HOME at one temp dir of the module, so the first
run extracts the build there and the others reuse it.

Skipped when dist/taskd is missing or older than the sources (so `make test` never judges a
stale binary); `make smoke` sets TASKD_SMOKE_REQUIRED=1, which turns those skips into failures
(the ``binary`` fixture, tests/build/conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskd
from tests.node.rest import get, post
from tests.store.shared import pgserver, redisserver
from tests.store.shared.nodes import two_nodes

pytestmark = pytest.mark.slow

IDLE_RSS_LIMIT_MB = 50.0  # of the node's process
IDLE_SETTLE = 1.0  # seconds after readiness before measuring idle RSS


def _bare_env(cache_home: Path) -> dict[str, str]:
    """An environment with no trace of the repo or its venv."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "XDG_CACHE_HOME": str(cache_home),
        "LANG": "C.UTF-8",
    }


@pytest.fixture
def binary_env(binary: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Make node_factory start the copied binary in a bare environment."""
    for name in list(os.environ):
        if name.startswith(("PYTHON", "VIRTUAL_ENV", "TASKD_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", _bare_env(cache_home)["PATH"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    monkeypatch.setenv("TASKD_BINARY", str(binary))
    yield binary


def _run(binary: Path, cache_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *args],
        cwd=binary.parent,
        env=_bare_env(cache_home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_and_version(binary: Path, cache_home: Path) -> None:
    help_run = _run(binary, cache_home, "--help")
    assert help_run.returncode == 0, help_run.stderr
    assert "usage: taskd" in help_run.stdout
    for flag in ("--grpc", "--http", "--data-dir", "--exec", "--concurrency"):
        assert flag in help_run.stdout
    assert "\n  TASKD_LAUNCHER_DEBUG " in help_run.stdout  # the launcher's one variable

    version_run = _run(binary, cache_home, "--version")
    assert version_run.returncode == 0, version_run.stderr
    assert version_run.stdout.strip() == f"taskd {taskd.__version__}"


def test_the_binary_serves_the_monitor_page(binary_env: Path, node_factory) -> None:
    # Given a node started from the copied binary (its files unpacked from the binary itself)
    node = node_factory()

    # Expect the page and the files it loads, from inside the binary
    status, page = get(f"{node.http_url}/")
    assert status == 200 and 'src="/static/app.js"' in page
    for path in (
        "app.js",
        "app.css",
        "js/views/task.js",
        "vendor/uPlot.esm.js",
        "vendor/dagre.esm.js",
    ):
        status, body = get(f"{node.http_url}/static/{path}")
        assert status == 200 and body, path


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


def test_node_from_the_binary_takes_a_task_and_stops_cleanly(
    binary_env: Path, cache_home: Path, node_factory
) -> None:
    # Given a node started from the copied binary
    node = node_factory()

    # Expect the started pid to be the node itself, run from the cache (the launcher exec()d
    # it), so a supervisor's signals reach the node and no launcher process sits in between
    time.sleep(IDLE_SETTLE)  # let start-up garbage settle before measuring "idle"
    assert _children(node.pid) == [], "expected the node alone, without a launcher or a child"
    program = Path(f"/proc/{node.pid}/exe").resolve()
    assert program.is_relative_to(cache_home / "taskd"), program
    node_mb = _rss_kb(node.pid) / 1024
    print(f"\nidle RSS: node {node_mb:.1f} MB (one process)")

    # When a task is submitted over REST, as in the README's curl example
    status, task = post(
        f"{node.http_url}/api/v1/tasks", {"priority": "high", "payload": {"job": "process-data"}}
    )
    assert status == 201, task
    # Expect it to read back with what was submitted
    status, again = get(f"{node.http_url}/api/v1/tasks/{task['id']}")
    assert status == 200, again
    assert again["id"] == task["id"]
    assert again["priority"] in (7, "high")
    assert again["payload"] == {"job": "process-data"}
    assert again["state"] == "queued"

    # And a SIGTERM to stop the node with exit code 0
    assert node.terminate() == 0, node.stderr_text()

    assert node_mb <= IDLE_RSS_LIMIT_MB, f"idle RSS of the node process is {node_mb:.1f} MB"


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_nodes_from_the_binary_share_a_database_and_forward_writes(
    binary_env: Path, node_factory, kind: str
) -> None:
    # Given two nodes from the copied binary on one shared database (its client library,
    # psycopg or redis-py, packed inside the binary)
    with pgserver.fresh_database() if kind == "postgres" else redisserver.fresh_prefix() as where:
        url = where if kind == "postgres" else f"{redisserver.URL}?prefix={where}"
        leader, follower = two_nodes(node_factory, url)
        # When a task is submitted to the follower
        status, task = post(f"{follower.http_url}/api/v1/tasks", {"queue": "packed"})
        # Expect it forwarded to the leader and readable on both
        assert status == 201, task
        for node in (leader, follower):
            status, again = get(f"{node.http_url}/api/v1/tasks/{task['id']}")
            assert status == 200 and again["state"] == "queued", again
        for node in (leader, follower):
            assert node.terminate() == 0, node.stderr_text()


def _fallback_env(tmp_path: Path) -> dict[str, str]:
    """HOME under which nothing can be created, no XDG_CACHE_HOME: the per-run extraction."""
    home = tmp_path / "home-is-a-file"
    home.touch()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    return {"HOME": str(home), "XDG_CACHE_HOME": "", "TMPDIR": str(tmpdir)}


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def test_a_node_from_a_per_run_extraction_stops_on_sigterm_and_cleans_up(
    binary_env: Path, node_factory, tmp_path: Path
) -> None:
    # Given a node started from the binary where no cache can be written (read-only HOME)
    env = _fallback_env(tmp_path)
    node = node_factory(env=env)
    tmpdir = Path(env["TMPDIR"])

    # Expect it to run from a temporary copy, as the launcher's one child
    (copy,) = tmpdir.iterdir()
    (child,) = _children(node.pid)
    assert Path(f"/proc/{child}/exe").resolve().is_relative_to(copy)
    status, task = post(f"{node.http_url}/api/v1/tasks", {"payload": {"n": 1}})
    assert status == 201, task

    # When the supervisor sends SIGTERM to the pid it started
    # Expect the node to get it and exit 0, the launcher with it, and the copy to be removed
    assert node.terminate() == 0, node.stderr_text()
    assert _gone(child)
    assert list(tmpdir.iterdir()) == []


def test_sigkill_of_a_per_run_launcher_leaves_no_orphan_node(
    binary_env: Path, node_factory, tmp_path: Path
) -> None:
    # Given a node started from a per-run extraction (the launcher's child)
    node = node_factory(env=_fallback_env(tmp_path))
    (child,) = _children(node.pid)

    # When the supervisor SIGKILLs the pid it started, and only that pid
    os.kill(node.pid, signal.SIGKILL)
    node.proc.wait(timeout=10)

    # Expect the node to die with it rather than live on holding its ports
    end = time.monotonic() + 10
    while not _gone(child):
        assert time.monotonic() < end, f"node {child} outlived its launcher"
        time.sleep(0.02)
