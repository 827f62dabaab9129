"""Real SDK Worker processes for the tests of this package: ``taskd worker`` on a temp module.

``WorkerProcess(workdir, source, *args)`` writes ``source`` as ``tasks.py`` in ``workdir`` and
runs ``taskd worker tasks ARGS`` there (its own process group, stdout/stderr to files), as a
user would. The module gets ``PRELUDE``: ``note(event, task)`` appends one line ``event id
attempt pid time`` to the journal file (``$TASKD_TEST_JOURNAL``) in a single ``O_APPEND``
write, so lines of concurrent handlers, threads or processes never interleave. ``journal``
reads it back: the side effects each task's handler really had, which is what "completed
twice" would show.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import node_command
from tests.node.rest import get

POLL = 0.05

PRELUDE = """\
import asyncio, os, threading, time
from taskd.client import Retry, Worker

_JOURNAL = os.environ["TASKD_TEST_JOURNAL"]


def note(event, task):
    line = f"{event} {task.id} {task.attempt} {os.getpid()} {time.time():.3f}\\n"
    fd = os.open(_JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)

"""


@dataclass(frozen=True, slots=True)
class Entry:
    event: str
    task_id: str
    attempt: int
    pid: int
    at: float


class WorkerProcess:
    def __init__(
        self,
        workdir: Path,
        source: str,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.journal_path = workdir / "journal.txt"
        (workdir / "tasks.py").write_text(PRELUDE + textwrap.dedent(source))
        self.args = [*node_command(), "worker", "tasks", *args]
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr = workdir / "worker.stderr"

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("TASKD_BINARY", "TASKD_SERVER")}
        env.update(PYTHONUNBUFFERED="1", TASKD_TEST_JOURNAL=str(self.journal_path), **self.env)
        with open(self._stderr, "ab") as err:
            self.proc = subprocess.Popen(
                self.args,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit code; fails the test (with the worker's log) if it does not exit in time."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the worker did not exit within {timeout} s\n{self.describe()}"
            ) from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stderr_text(self) -> str:
        return self._stderr.read_text(errors="replace") if self._stderr.exists() else ""

    def describe(self) -> str:
        tail = "\n".join(self.stderr_text().splitlines()[-40:])
        return f"worker: {' '.join(self.args)}\n--- worker stderr (last 40 lines) ---\n{tail}"

    def journal(self) -> list[Entry]:
        if not self.journal_path.exists():
            return []
        entries = []
        for line in self.journal_path.read_text().splitlines():
            event, task_id, attempt, pid, at = line.split()
            entries.append(Entry(event, task_id, int(attempt), int(pid), float(at)))
        return entries

    def count(self, event: str) -> Counter[str]:
        """How many times each task id logged ``event``."""
        return Counter(e.task_id for e in self.journal() if e.event == event)


def wait_until(
    condition: Callable[[], Any], deadline: float, what: str, describe: Callable[[], str] = str
) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); fail naming ``what``."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(POLL)
    raise AssertionError(f"{what} not within {deadline} s\n{describe()}")


def task(base: str, task_id: str) -> dict[str, Any]:
    status, body = get(f"{base}/api/v1/tasks/{task_id}", timeout=5.0)
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def tasks_in(base: str, queue: str, state: str | None = None) -> dict[str, dict[str, Any]]:
    """Every task of ``queue`` (in ``state``) that the node at ``base`` knows, by id."""
    found: dict[str, dict[str, Any]] = {}
    after = ""
    while True:
        query = f"{base}/api/v1/tasks?queue={queue}&limit=1000"
        query += (f"&state={state}" if state else "") + (f"&after={after}" if after else "")
        status, page = get(query, timeout=10.0)
        assert status == 200, page
        found.update((t["id"], t) for t in page["tasks"])
        if not page["next"]:
            return found
        after = page["next"]


def all_succeeded(base: str, queue: str, ids: Iterable[str]) -> bool:
    done = tasks_in(base, queue, "succeeded")
    return all(task_id in done for task_id in ids)


def unfinished(base: str, queue: str, ids: Iterable[str]) -> str:
    """What the tasks of ``ids`` that did not succeed look like (for a failure message)."""
    known = tasks_in(base, queue)
    left = [known.get(i, {"id": i, "state": "missing"}) for i in ids]
    left = [t for t in left if t["state"] != "succeeded"]
    return f"{len(left)} not succeeded, e.g. {left[:3]}"
