"""Smoke test of the one-file binary dist/taskd (built by `make build`).

Given a copy of dist/taskd alone in an empty temp dir (so it can need nothing from the repo),
Expect `--help` and `--version` to work, a node started from it to accept a task over REST and
give it back, to report its idle memory, and to exit 0 on SIGTERM.

Skipped when dist/taskd is missing or older than the sources (so `make test` never judges a
stale binary); `make smoke` sets TASKD_SMOKE_REQUIRED=1, which turns those skips into failures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskd
from tests.node.rest import get, post

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "dist" / "taskd"
REQUIRED = os.environ.get("TASKD_SMOKE_REQUIRED") == "1"
IDLE_RSS_LIMIT_MB = 50.0  # of the node's Python process (the one-file bootloader is extra)
IDLE_SETTLE = 1.0  # seconds after readiness before measuring idle RSS


def _newest_source_mtime() -> float:
    sources = [ROOT / "pyproject.toml", *ROOT.glob("build/*.*"), *(ROOT / "taskd").rglob("*")]
    return max(path.stat().st_mtime for path in sources if path.is_file())


def _unusable_reason() -> str | None:
    if not BINARY.exists():
        return f"{BINARY} does not exist; run `make build`"
    if BINARY.stat().st_mtime < _newest_source_mtime():
        return f"{BINARY} is older than the sources; run `make build`"
    return None


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _unusable_reason()
    if reason:
        if REQUIRED:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    copy = tmp_path_factory.mktemp("bin") / "taskd"
    shutil.copy2(BINARY, copy)
    return copy


def _bare_env() -> dict[str, str]:
    """An environment with no trace of the repo or its venv."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
    }


@pytest.fixture
def binary_env(binary: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Make node_factory start the copied binary in a bare environment."""
    for name in list(os.environ):
        if name.startswith(("PYTHON", "VIRTUAL_ENV", "TASKD_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", _bare_env()["PATH"])
    monkeypatch.setenv("TASKD_BINARY", str(binary))
    yield binary


def _run(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *args],
        cwd=binary.parent,
        env=_bare_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_and_version(binary: Path) -> None:
    help_run = _run(binary, "--help")
    assert help_run.returncode == 0, help_run.stderr
    assert "usage: taskd" in help_run.stdout
    for flag in ("--grpc", "--http", "--data-dir", "--exec", "--concurrency"):
        assert flag in help_run.stdout

    version_run = _run(binary, "--version")
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
    binary_env: Path, node_factory
) -> None:
    # Given a node started from the copied binary
    node = node_factory()

    # Expect a small idle footprint: the bootloader parent plus one Python child
    time.sleep(IDLE_SETTLE)  # let start-up garbage settle before measuring "idle"
    children = _children(node.pid)
    assert len(children) == 1, f"expected the one-file bootloader to run one child: {children}"
    parent_mb, child_mb = _rss_kb(node.pid) / 1024, _rss_kb(children[0]) / 1024
    print(
        f"\nidle RSS: node (python) {child_mb:.1f} MB + bootloader {parent_mb:.1f} MB"
        f" = {child_mb + parent_mb:.1f} MB"
    )

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

    assert child_mb <= IDLE_RSS_LIMIT_MB, f"idle RSS of the node process is {child_mb:.1f} MB"
