"""``taskd worker MODULE`` as a user runs it: finding the Worker, saying what is wrong in one
line (exit 2), an import error's traceback tail and hint, flags that override the module."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_ports, node_command

pytestmark = pytest.mark.slow

APP = {
    "app/__init__.py": "",
    "app/tasks.py": (
        "from taskd.client import Worker\n"
        'worker = Worker(queues=["default"])\n'
        "@worker.task()\n"
        "def handle(task):\n"
        "    return 1\n"
    ),
    "app/empty.py": "x = 1\n",
    "app/two.py": (
        "from taskd.client import Worker\n"
        'images = Worker(queues=["images"])\n'
        'mail = Worker(queues=["mail"])\n'
        "same = mail\n"
        "@mail.task()\n"
        "def send(task):\n"
        "    return 1\n"
    ),
    "app/nohandlers.py": "from taskd.client import Worker\nworker = Worker()\n",
    "app/broken.py": (
        "from taskd.client import Worker\n"
        "def load_settings():\n"
        '    return {}["SECRET"]\n'
        "SETTINGS = load_settings()\n"
    ),
    "app/needs.py": "import surely_not_installed_anywhere\n",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    for name, text in APP.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("TASKD_BINARY", "TASKD_SERVER")}
    return {**base, **extra}


def taskd(cwd: Path, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*node_command(), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env(**extra),
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["app.empty"], "app.empty defines no Worker"),
        (["app.two"], "defines 2 Workers (images, mail); pick one: taskd worker app.two:images"),
        (["app.two:nope"], "app.two:nope is not defined, not a Worker"),
        (["app.nohandlers"], "the Worker has no handlers"),
        (["app/tasks.py"], "is not a module name; write it dotted"),
        (["app.tasks", "--concurrency", "8-2"], "--concurrency: "),
        (["app.tasks", "--server", "http://127.0.0.1:8080"], "--server: "),
        (["app.tasks", "--queues", ""], "--queues: "),
        (["app.tasks", "--drain-timeout", "-1"], "--drain-timeout: "),
    ],
)
def test_what_stops_it_from_starting_is_one_line_and_exit_2(
    project: Path, argv: list[str], says: str
) -> None:
    result = taskd(project, "worker", *argv)
    assert result.returncode == 2, result.stderr
    assert says in one_line(result)


def test_a_missing_module_says_where_it_looked_and_what_to_do(project: Path) -> None:
    result = taskd(project, "worker", "app.nope")
    assert result.returncode == 2
    first, hint = result.stderr.strip().splitlines()
    assert "no module named 'app.nope'" in first and str(project) in first
    assert hint.startswith("hint: run taskd worker from the directory")


def test_an_import_error_shows_the_tail_of_the_users_traceback_and_a_hint(project: Path) -> None:
    # Given a module whose top level raises
    result = taskd(project, "worker", "app.broken")
    # Expect the traceback of the user's code only, then a one-line hint, and exit 2
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):", result.stderr
    assert "app/broken.py" in result.stderr and "load_settings" in result.stderr
    assert "importlib" not in result.stderr and "taskd/cli" not in result.stderr
    assert lines[-2] == "KeyError: 'SECRET'", result.stderr
    assert lines[-1].startswith("hint: importing app.broken failed in your code")


def test_a_missing_dependency_is_named_in_the_hint(project: Path) -> None:
    result = taskd(project, "worker", "app.needs")
    assert result.returncode == 2
    hint = result.stderr.strip().splitlines()[-1]
    assert hint.startswith("hint: app.needs imports 'surely_not_installed_anywhere'"), hint


def test_help_worker_documents_the_command() -> None:
    result = taskd(Path.cwd(), "help", "worker")
    assert result.returncode == 0, result.stderr
    for words in ("MODULE[:NAME]", "--server", "--concurrency", "--queues", "SIGTERM"):
        assert words in result.stdout, words


def test_a_named_worker_runs_with_flags_overriding_the_module_then_sigterm_exits_0(
    project: Path,
) -> None:
    # Given no node at the address (the worker keeps reconnecting), and a TASKD_SERVER that is
    # no gRPC address (the flag wins, so importing the module does not fail on it)
    [closed] = free_ports(1)
    proc = subprocess.Popen(
        [
            *node_command(),
            "--server",  # a global flag before the command is the worker's too
            f"127.0.0.1:{closed}",
            "worker",
            "app.two:mail",
            "--queues",
            "mail,urgent",
            "--concurrency",
            "2-6",
        ],
        cwd=project,
        env=env(TASKD_SERVER="http://127.0.0.1:8080"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        # Expect the settings it runs with, from the flags
        assert "queues mail,urgent, concurrency 2-6" in first, first
        assert f"servers 127.0.0.1:{closed}" in first, first
        assert "reconnecting" in proc.stderr.readline()
        # When it gets SIGTERM while reconnecting, it exits 0 at once
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        assert proc.wait(10) == 0
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
