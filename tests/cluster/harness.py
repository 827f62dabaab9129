"""A cluster of real ``python -m taskd`` processes on loopback, for the tests of this package.

``Cluster(base, size)`` picks ``2 * (size + spare)`` free loopback ports in 22000-22999 (this
area's range), gives each member its own directory under ``base`` (data dir and logs), and
starts every member with ``--peers`` naming all of them, ``--grpc`` its own entry and a short
``--election-timeout``. ``wait_for_leader()`` polls ``GET /api/v1/cluster`` on every running
member until exactly one of them says it leads and every running member names it; it returns
that member. ``add_member()`` starts a spare with ``--join`` (the caller adds it with the API).
``cleanup()`` (the fixture's teardown) SIGKILLs every process the cluster started.

Faults are real signals: ``kill`` (SIGKILL of the process group), ``pause``/``resume``
(SIGSTOP/SIGCONT), ``terminate`` (SIGTERM, waiting for the exit). ``Load`` submits tasks in a
thread, to every running member in turn, and keeps the ids whose submit was acknowledged
(201): those are what must never be lost.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import NodeProcess, node_command
from tests.node import rest

PORT_RANGE = (22000, 23000)  # node area's loopback ports (tests/cluster only)
ELECTION_TIMEOUT = 0.3  # seconds: faster failovers than the default 0.5, still stable on 2 cores
LEADER_DEADLINE = 20.0  # seconds to elect a leader that every member names
POLL = 0.05


def cluster_ports(count: int) -> list[int]:
    """``count`` consecutive ports of ``PORT_RANGE`` that are all free now."""
    low, high = PORT_RANGE
    starts = list(range(low, high - count, count))
    random.shuffle(starts)
    for start in starts:
        sockets: list[socket.socket] = []
        try:
            for port in range(start, start + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return list(range(start, start + count))
    raise RuntimeError(f"no {count} free consecutive ports in {low}-{high}")


class Member(NodeProcess):
    """One member: a ``NodeProcess`` with its address in the cluster and REST helpers."""

    def __init__(
        self,
        args: list[str],
        *,
        workdir: Path,
        grpc_port: int,
        http_port: int,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(args, workdir=workdir, grpc_port=grpc_port, http_port=http_port, env=env)
        self.address = f"127.0.0.1:{grpc_port}"
        self.paused = False
        self.stopped = True  # not started, or stopped on purpose (kill, terminate)

    def start(self) -> None:
        super().start()
        self.stopped = False

    def terminate(self, timeout: float = 15.0) -> int:
        self.stopped = True
        return super().terminate(timeout)

    def crashed(self) -> bool:
        """It exited although nobody stopped it."""
        return not self.stopped and self.proc is not None and self.proc.poll() is not None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self.paused

    def status(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """``GET /api/v1/cluster``, or None when the member does not answer."""
        try:
            code, body = rest.get(f"{self.http_url}/api/v1/cluster", timeout=timeout)
        except (OSError, http.client.HTTPException):  # down, or cut off mid-answer
            return None
        return body if code == 200 and isinstance(body, dict) else None

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        return rest.get(self.http_url + path, timeout=timeout)

    def post(self, path: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
        return rest.post(self.http_url + path, body if body is not None else {}, timeout=timeout)

    def delete(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        return rest.call("DELETE", self.http_url + path, timeout=timeout)

    def signal(self, sig: signal.Signals) -> None:
        proc = self._running_proc()
        os.killpg(proc.pid, sig)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        self.stopped = True
        if self.paused:
            with contextlib.suppress(ProcessLookupError):
                self.resume()
        super().kill()

    def __repr__(self) -> str:
        return f"<Member {self.address} http={self.http_url}>"


class Cluster:
    def __init__(
        self,
        base: Path,
        size: int = 3,
        *,
        extra_args: Sequence[str] = (),
        spare: int = 1,
        election_timeout: float = ELECTION_TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> None:
        self.base = base
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.election_timeout = election_timeout
        ports = cluster_ports(2 * (size + spare))
        self._grpc = ports[: size + spare]
        self._http = ports[size + spare :]
        self.peers = [f"127.0.0.1:{port}" for port in self._grpc[:size]]
        self.members: list[Member] = []
        for index in range(size):
            self.members.append(self._member(index, ["--peers", ",".join(self.peers)]))

    def _member(self, index: int, cluster_args: list[str], extra: Sequence[str] = ()) -> Member:
        workdir = self.base / f"m{index}"
        workdir.mkdir(parents=True, exist_ok=True)
        args = [
            *node_command(),
            *cluster_args,
            "--grpc",
            f"127.0.0.1:{self._grpc[index]}",
            "--http",
            f"127.0.0.1:{self._http[index]}",
            "--data-dir",
            str(workdir / "data"),
            "--election-timeout",
            str(self.election_timeout),
            "--log-format",
            "text",
            *self.extra_args,
            *extra,
        ]
        return Member(
            args, workdir=workdir, grpc_port=self._grpc[index], http_port=self._http[index]
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for member in self.members:
            member.start()

    def add_member(self, *extra: str) -> Member:
        """Start the next spare with ``--join`` (not a member until the leader adds it)."""
        index = len(self.members)
        if index >= len(self._grpc):
            raise RuntimeError("no spare ports left: pass a larger spare= to Cluster")
        member = self._member(index, ["--join", "--peers", ",".join(self.peers)], extra)
        self.members.append(member)
        member.start()
        return member

    def cleanup(self) -> None:
        for member in self.members:
            member.cleanup()

    # -- observing -----------------------------------------------------------------------------

    def running(self) -> list[Member]:
        return [m for m in self.members if m.running]

    def by_address(self, address: str) -> Member:
        return next(m for m in self.members if m.address == address)

    def wait_for_leader(
        self,
        *,
        among: Sequence[Member] | None = None,
        not_: Member | None = None,
        deadline: float = LEADER_DEADLINE,
    ) -> Member:
        """The member every one of ``among`` (default: the running ones) names as leader,
        once it says so itself; not ``not_``."""
        end = time.monotonic() + deadline
        seen: dict[str, Any] = {}
        while time.monotonic() < end:
            for member in self.members:
                if member.crashed():
                    assert member.proc is not None
                    raise AssertionError(
                        f"{member} exited with {member.proc.returncode}\n{member._describe()}"
                    )
            group = list(among) if among is not None else self.running()
            seen = {m.address: m.status() for m in group}
            leaders = {s["leader"] for s in seen.values() if s is not None}
            if len(leaders) == 1 and None not in seen.values():
                [leader] = leaders
                if leader is not None and (not_ is None or leader != not_.address):
                    chosen = self.by_address(leader)
                    if chosen in group and seen[leader]["role"] == "leader":
                        return chosen
            time.sleep(POLL)
        raise AssertionError(f"no single leader within {deadline}s: {seen}")

    def followers(self, leader: Member) -> list[Member]:
        return [m for m in self.running() if m is not leader]

    def wait_caught_up(self, member: Member, deadline: float = 20.0) -> None:
        """Until ``member``'s commit index reaches the leader's (as of the call)."""
        leader = self.wait_for_leader()
        target = (leader.status() or {}).get("commit_index", 0)
        end = time.monotonic() + deadline
        status: dict[str, Any] | None = None
        while time.monotonic() < end:
            status = member.status()
            if status is not None and status["commit_index"] >= target:
                return
            time.sleep(POLL)
        raise AssertionError(f"{member} did not catch up to {target}: {status}")


@dataclass
class Load:
    """Submits tasks from a thread to every running member in turn; keeps what was acked."""

    cluster: Cluster
    queue: str = "load"
    interval: float = 0.01
    acknowledged: list[str] = field(default_factory=list)
    refused: int = 0
    errors: list[str] = field(default_factory=list)  # connection errors and HTTP refusals
    http_errors: list[str] = field(default_factory=list)  # answers other than 201 and 503
    ack_times: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            targets = self.cluster.running()
            if not targets:
                time.sleep(self.interval)
                continue
            member = targets[n % len(targets)]
            n += 1
            try:
                code, body = member.post(
                    "/api/v1/tasks", {"queue": self.queue, "payload": n}, timeout=3.0
                )
            # Refused, reset, timed out, or cut off mid-answer by a SIGKILL (IncompleteRead,
            # an HTTPException): not acknowledged.
            except (OSError, http.client.HTTPException) as exc:
                self.refused += 1
                self.errors.append(repr(exc))
            else:
                if code == 201:
                    self.acknowledged.append(body["id"])
                    self.ack_times.append(time.monotonic())
                else:
                    self.refused += 1
                    self.errors.append(f"{code} {body}")
                    if code != 503:
                        self.http_errors.append(f"{code} {body}")
            time.sleep(self.interval)

    def first_ack_after(self, moment: float) -> float | None:
        later = [t for t in self.ack_times if t > moment]
        return later[0] - moment if later else None


@contextlib.contextmanager
def loading(cluster: Cluster, **kw: Any) -> Iterator[Load]:
    load = Load(cluster, **kw)
    load.start()
    try:
        yield load
    finally:
        load.stop()


def task_ids(member: Member, queue: str, *, stale: bool = False) -> set[str]:
    """Every task id of ``queue`` that ``member`` knows, page by page (linearizable reads
    unless ``stale``)."""
    ids: set[str] = set()
    after = ""
    while True:
        query = f"/api/v1/tasks?queue={queue}&limit=1000" + (f"&after={after}" if after else "")
        code, page = member.get(query + ("&stale=true" if stale else ""), timeout=10.0)
        assert code == 200, (member, page)
        ids.update(task["id"] for task in page["tasks"])
        if not page["next"]:
            return ids
        after = page["next"]


def missing(member: Member, ids: Sequence[str], queue: str = "load") -> list[str]:
    """The acknowledged ``ids`` that ``member`` does not know."""
    known = task_ids(member, queue)
    return [task_id for task_id in ids if task_id not in known]


class TcpProxy:
    """A loopback TCP forwarder (threads): what ``--peer-route`` is for. Counts connections."""

    def __init__(self, port: int, target: int) -> None:
        self.port = port
        self.target = target
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", port))
        self._open: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            self.connections += 1
            self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.close()
