"""``taskd watch`` against real node processes: ``--once`` and the no-terminal default show a
submitted queue, ``--json`` prints the snapshot then the submit's transition, a bad
``--state`` exits 2 naming the field, no node at the address exits 3 saying what to do, the
live view runs on a pseudo-terminal and Ctrl-C ends it with 0, and the shell reconnects after
the node is stopped (bye) or killed, and restarted on the same port."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import queue
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import IO, Any

import pytest
import trio

from taskd.cli.watch.command import stream_url
from taskd.cli.watch.model import LinkState, WatchModel
from taskd.cli.watch.shell import follow
from tests.conftest import NodeFactory, free_ports

pytestmark = pytest.mark.slow

DEADLINE = 15.0


def taskd(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskd", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "160"},  # a rendering as wide as a terminal's
    )


def submit(http_url: str, queue_name: str) -> str:
    body = json.dumps({"queue": queue_name}).encode()
    request = urllib.request.Request(
        f"{http_url}/api/v1/tasks", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        task_id: str = json.load(reply)["id"]
    return task_id


class Lines:
    """The lines of a pipe, read by a thread, each waited for with a deadline."""

    def __init__(self, pipe: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._lines.put(line)
        self._lines.put(None)

    def next(self, deadline: float) -> str:
        line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        assert line is not None, "the process closed its stdout"
        return line


def test_once_and_the_no_terminal_default_show_a_submitted_queue_json_too(
    node_factory: NodeFactory,
) -> None:
    # Given a node with a task in queue "watched-q"
    node = node_factory()
    submit(node.http_url, "watched-q")
    # When watched once, and with stdout a pipe and no flag
    once = taskd("watch", "--once", "--server", node.http_url)
    piped = taskd("--server", node.http_url, "watch")
    # Expect one view each, showing the node and the queue with its one queued task
    for result in (once, piped):
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == f"● live  {node.http_url}"
        [row] = [line for line in lines if line.startswith("watched-q ")]
        assert row.split()[1:3] == ["1", "1"]  # depth 1, queued 1
        assert f"node 127.0.0.1:{node.grpc_port} (leader" in result.stdout
    # and with --json too, the snapshot's line alone
    [line] = taskd("watch", "--once", "--json", "--server", node.http_url).stdout.splitlines()
    snapshot = json.loads(line)
    assert snapshot["type"] == "snapshot"
    assert [q["name"] for q in snapshot["queues"]] == ["watched-q"]


def test_json_prints_the_snapshot_first_then_the_submits_transition(
    node_factory: NodeFactory,
) -> None:
    # Given a node and `taskd watch --json` following it
    node = node_factory()
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskd", "watch", "--json", "--server", node.http_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = Lines(proc.stdout)  # type: ignore[arg-type]
        deadline = time.monotonic() + DEADLINE
        first = json.loads(lines.next(deadline))
        # When a task is submitted
        task_id = submit(node.http_url, "json-q")
        # Expect the snapshot first, then a transitions line naming the task
        seen: list[dict[str, Any]] = []
        while not any(e["id"] == task_id for m in seen for e in m.get("events", [])):
            seen.append(json.loads(lines.next(deadline)))
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(DEADLINE)
    assert first["type"] == "snapshot" and first["node"]["role"] == "leader"
    [event] = [e for m in seen if m["type"] == "transitions" for e in m["events"]]
    assert event["id"] == task_id and event["queue"] == "json-q" and event["to"] == "queued"
    assert code == 0  # Ctrl-C ends it cleanly


def test_a_state_the_node_refuses_exits_2_naming_the_field(node_factory: NodeFactory) -> None:
    node = node_factory()
    for mode in ("--once", "--json"):
        result = taskd("watch", mode, "--state", "done", "--server", node.http_url)
        assert result.returncode == 2, (mode, result.stderr)
        assert result.stderr.startswith("error: the node refused the stream: state must be")
        assert "(field: state)" in result.stderr and "Traceback" not in result.stderr
        assert result.stdout == ""


def test_no_node_at_the_address_exits_3_with_what_to_do() -> None:
    [port] = free_ports(1)
    result = taskd("watch", "--once", "--server", f"127.0.0.1:{port}")
    assert result.returncode == 3, result.stderr
    assert result.stderr == (
        f"error: cannot reach taskd at http://127.0.0.1:{port}: nothing listens there; start a "
        "node (`taskd`) or pass --server URL (or set TASKD_SERVER)\n"
    )


def read_until(fd: int, found: Callable[[bytes], bool], deadline: float) -> bytes:
    """What a pseudo-terminal's program wrote, until ``found`` says it is there."""
    seen = b""
    while not found(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"not seen on the terminal in time; it shows:\n{seen[-3000:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the program exited and closed the terminal
                chunk = b""
            if not chunk:
                break
            seen += chunk
    return seen


def test_the_live_view_on_a_terminal_updates_and_ctrl_c_exits_0(
    node_factory: NodeFactory,
) -> None:
    # Given a node and `taskd watch` on a 140x50 pseudo-terminal
    node = node_factory()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 140, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskd", "watch", "--server", node.http_url],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    try:
        deadline = time.monotonic() + DEADLINE
        read_until(master, lambda seen: b"live" in seen, deadline)
        # When a task is submitted
        task_id = submit(node.http_url, "tty-q")
        # Expect the view to show its queue and its transition
        read_until(master, lambda seen: b"tty-q" in seen and task_id.encode() in seen, deadline)
        # and Ctrl-C to end it with 0, leaving the alternate screen
        proc.send_signal(signal.SIGINT)
        rest = read_until(master, lambda seen: False, deadline)
        assert proc.wait(DEADLINE) == 0
        assert b"\x1b[?1049l" in rest and b"Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


class Statuses:
    """A sink that only follows: writes down every status and never stops."""

    def __init__(self) -> None:
        self.seen: list[tuple[LinkState, str | None]] = []

    def received(self, text: str, message: dict[str, Any]) -> bool:
        return False

    def status(self, model: WatchModel) -> None:
        self.seen.append((model.link.state, model.link.reason))


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = trio.current_time() + DEADLINE
    while not condition():
        assert trio.current_time() < deadline, f"not seen within {DEADLINE} s: {what}"
        await trio.sleep(0.02)


async def test_the_shell_reconnects_after_the_node_stops_or_dies_and_comes_back(
    node_factory: NodeFactory,
) -> None:
    # Given the shell following a node
    node = node_factory()
    model, sink = WatchModel(node.http_url), Statuses()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow, stream_url(node.http_url), model, sink)
        await until(lambda: model.snapshots == 1, "the first snapshot")
        # When the node is stopped (SIGTERM) and started again on the same port
        await trio.to_thread.run_sync(node.restart)
        await until(lambda: model.snapshots == 2, "a snapshot after the restart")
        # and then killed (SIGKILL), and started again
        before_kill = len(sink.seen)
        await trio.to_thread.run_sync(node.kill)
        await until(lambda: model.link.state is not LinkState.LIVE, "the loss")
        await trio.to_thread.run_sync(node.restart)
        await until(lambda: model.snapshots == 3, "a snapshot after the second restart")
        # Expect the new connection live: a submit shows up as a transition
        task_id = await trio.to_thread.run_sync(submit, node.http_url, "after")
        await until(lambda: any(e["id"] == task_id for e in model.recent), "the transition")
        nursery.cancel_scope.cancel()

    def reasons(seen: list[tuple[LinkState, str | None]]) -> list[str | None]:
        return [reason for state, reason in seen if state is LinkState.DISCONNECTED]

    # the stop said bye, the kill was a lost connection; then tries while nobody listened
    stopped, killed = reasons(sink.seen[:before_kill]), reasons(sink.seen[before_kill:])
    assert stopped[0] == "the node is shutting down"
    assert killed[0] == "the connection to the node was lost"
    for reason in stopped[1:] + killed[1:]:
        assert reason is not None and "nothing listens there" in reason, reason
    assert model.link.state is LinkState.LIVE and model.link.attempt == 0
