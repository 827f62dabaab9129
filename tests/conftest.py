"""Shared fixtures: real taskd node processes for integration tests.

``node_factory(*extra_args)`` starts ``python -m taskd`` (or the binary named by the
``TASKD_BINARY`` environment variable, as the smoke test does) on free loopback ports with its
own data dir under ``tmp_path``, waits until ``GET /readyz`` answers 200, and returns a
``NodeProcess``. ``node_factory.cluster(n, *extra_args)`` starts ``n`` nodes that name each other
in ``--peers`` and waits until all are ready. Every process a test started (and anything those
processes left in their session) is killed at teardown. ``node_factory_shared`` is one
default node shared by all the tests of a module.

The fixture is synchronous (plain ``subprocess``); from a trio test, call it directly (it
blocks the loop only while the node starts) or through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

READY_DEADLINE = 15.0  # seconds for a node to answer /readyz with 200
POLL_INTERVAL = 0.05
STOP_DEADLINE = 15.0  # seconds for a node to exit after SIGTERM


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports the kernel just handed out (bound together, then freed)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def node_command() -> list[str]:
    binary = os.environ.get("TASKD_BINARY")
    return [binary] if binary else [sys.executable, "-m", "taskd"]


def _live_pids(*, pgrp: int | None = None, session: int | None = None) -> list[int]:
    """Pids of live (not zombie) processes in process group ``pgrp`` or session ``session``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the fields after "pid (comm)": state ppid pgrp session ...
        state, _ppid, group, sid = stat[stat.rindex(")") + 2 :].split()[:4]
        if state in "ZX":
            continue
        if (pgrp is not None and int(group) == pgrp) or (
            session is not None and int(sid) == session
        ):
            pids.append(int(entry.name))
    return pids


class NodeProcess:
    """One node process; ``restart()`` starts it again with the same ports, flags and data dir."""

    def __init__(
        self,
        args: list[str],
        *,
        workdir: Path,
        grpc_port: int,
        http_port: int,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = args
        self.workdir = workdir
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.grpc_address = f"127.0.0.1:{grpc_port}"
        self.http_url = f"http://127.0.0.1:{http_port}"
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self._stdout_path = workdir / "stdout.log"
        self._stderr_path = workdir / "stderr.log"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "node is still running"
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if k != "TASKD_BINARY"}
        env.update(PYTHONUNBUFFERED="1", **self.extra_env)
        # Each run appends to the same logs, under a header, so a restart keeps the history.
        header = f"[conftest] run {self.runs}: {' '.join(self.args)}\n".encode()
        with open(self._stdout_path, "ab") as out, open(self._stderr_path, "ab") as err:
            out.write(header)
            err.write(header)
            out.flush()
            err.flush()
            self.proc = subprocess.Popen(
                self.args,
                cwd=self.workdir,  # a default ./taskd-data can never land in the repo
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # own process group: kill() reaches the whole node
            )

    def wait_ready(self, deadline: float = READY_DEADLINE) -> None:
        """Poll ``GET /readyz`` until 200; fail with the node's stderr if it exits or times out."""
        proc = self._running_proc()
        end = time.monotonic() + deadline
        last = "no answer"
        while time.monotonic() < end:
            if proc.poll() is not None:
                pytest.fail(
                    f"node exited with {proc.returncode} before it was ready\n{self._describe()}",
                    pytrace=False,
                )
            try:
                with urllib.request.urlopen(f"{self.http_url}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(POLL_INTERVAL)
        self.kill()
        pytest.fail(
            f"node not ready within {deadline} s (last /readyz: {last})\n{self._describe()}",
            pytrace=False,
        )

    def kill(self) -> None:
        """SIGKILL the node's whole process group (for a one-file binary: bootloader and child)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # A one-file binary's Python child is reaped by init, not by us: wait until it is gone
        # too, so that its ports and data dir are free when kill() returns.
        end = time.monotonic() + STOP_DEADLINE
        while _live_pids(pgrp=proc.pid) and time.monotonic() < end:
            time.sleep(0.01)

    def terminate(self, timeout: float = STOP_DEADLINE) -> int:
        """SIGTERM the node and wait for it; return its exit code (fail if it does not stop)."""
        proc = self._running_proc()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(
                    f"node did not exit within {timeout} s of SIGTERM\n{self._describe()}",
                    pytrace=False,
                )
        return proc.returncode

    def restart(self, *, wait: bool = True) -> None:
        """Start again (stopping it with SIGTERM first if it still runs): same flags, same data."""
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
        self.start()
        if wait:
            self.wait_ready()

    def cleanup(self) -> None:
        """Kill the node and anything left in its session (teardown; idempotent)."""
        if self.proc is None:
            return
        self.kill()
        for pid in _live_pids(session=self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- inspection ------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self._running_proc().pid

    def stderr_text(self) -> str:
        return self._stderr_path.read_text(errors="replace") if self._stderr_path.exists() else ""

    def stdout_text(self) -> str:
        return self._stdout_path.read_text(errors="replace") if self._stdout_path.exists() else ""

    def _running_proc(self) -> subprocess.Popen[bytes]:
        assert self.proc is not None, "node was never started"
        return self.proc

    def _describe(self) -> str:
        tail = "\n".join(self.stderr_text().splitlines()[-60:])
        return f"command: {' '.join(self.args)}\n--- stderr (last 60 lines) ---\n{tail}"

    def __repr__(self) -> str:
        return f"<NodeProcess http={self.http_url} grpc={self.grpc_address}>"


class NodeFactory:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.nodes: list[NodeProcess] = []

    def __call__(
        self,
        *extra_args: str,
        wait: bool = True,
        env: dict[str, str] | None = None,
        grpc_port: int | None = None,
        http_port: int | None = None,
        data_dir: Path | None = None,
    ) -> NodeProcess:
        """Start one node with ``extra_args`` after the port and data-dir flags."""
        if grpc_port is None or http_port is None:
            picked = free_ports(2)
            grpc_port = grpc_port or picked[0]
            http_port = http_port or picked[1]
        index = len(self.nodes)
        workdir = self.base / f"node{index}"
        workdir.mkdir(parents=True, exist_ok=True)
        data_dir = data_dir or workdir / "data"
        args = [
            *node_command(),
            "--grpc",
            f"127.0.0.1:{grpc_port}",
            "--http",
            f"127.0.0.1:{http_port}",
            "--data-dir",
            str(data_dir),
            *extra_args,
        ]
        node = NodeProcess(args, workdir=workdir, grpc_port=grpc_port, http_port=http_port, env=env)
        self.nodes.append(node)
        node.start()
        if wait:
            node.wait_ready()
        return node

    def cluster(
        self, size: int, *extra_args: str, env: dict[str, str] | None = None
    ) -> list[NodeProcess]:
        """Start ``size`` nodes that list each other in ``--peers``; wait until all are ready."""
        ports = free_ports(2 * size)
        grpc_ports, http_ports = ports[:size], ports[size:]
        peers = ",".join(f"127.0.0.1:{port}" for port in grpc_ports)
        nodes = [
            self(
                "--peers",
                peers,
                *extra_args,
                wait=False,
                env=env,
                grpc_port=grpc_ports[i],
                http_port=http_ports[i],
            )
            for i in range(size)
        ]
        for node in nodes:
            node.wait_ready()
        return nodes

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[NodeFactory]:
    factory = NodeFactory(tmp_path / "nodes")
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture(scope="module")
def node_factory_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node with default flags, shared by every test of a module (despite the name, it is
    the node itself). For tests that only add independent tasks and read them back; a test
    that needs its own flags, a restart or a kill takes ``node_factory``."""
    factory = NodeFactory(tmp_path_factory.mktemp("shared-node"))
    try:
        yield factory()
    finally:
        factory.cleanup()
