"""``taskd`` node processes on loopback, started, killed, frozen and restarted by signal.

Theory of operation: ``layout`` decides every port and path of a cluster up front — per node a
gRPC port (its member id ``127.0.0.1:<port>``), an HTTP port, a data dir and a log file; per
directed pair (a, b) a proxy port that node a dials instead of b (``--peer-route``). On a
shared database (``Database``: ``--store postgres://`` or ``redis://``) there are no
``--peers`` and no links between nodes (they only forward writes, to whichever leads): instead
each node a has one link a→``DATABASE``, a proxy port its ``--store`` URL names. A
``Node`` is one member's process slot: ``start`` spawns ``python -m taskd`` (or ``--taskd``'s
command) with the same flags every time, appending to the same log, so a restart is the same
member on the same data dir; ``kill`` is SIGKILL, ``pause``/``resume`` SIGSTOP/SIGCONT,
``stop`` SIGTERM then SIGKILL after a grace period. Each child runs in its own session so a
signal reaches that node only, and the harness never leaves one running: ``Cluster.close``
kills whatever is left, and each node gets ``PR_SET_PDEATHSIG`` so that even a SIGKILLed
harness takes its nodes with it.

The proxies themselves are ``chaos.proxy``; this module only knows their ports.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from chaos.databases import Database
from chaos.ports import PortPool

HOST = "127.0.0.1"
DATABASE = "database"  # the destination of a node's link to a shared store


@dataclass(frozen=True, slots=True)
class LinkSpec:
    source: str  # member dialing
    destination: str  # member dialed, or DATABASE
    port: int  # where the proxy listens
    target_port: int  # the destination's gRPC port (the database server's port)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    index: int
    member: str  # 127.0.0.1:<grpc port>: the member's identity and gRPC address
    http_port: int
    data_dir: Path
    log_path: Path
    routes: dict[str, str] = field(default_factory=dict)  # member -> address to dial
    store_port: int | None = None  # a shared store: the port to dial it on (its proxy's)

    @property
    def grpc_port(self) -> int:
        return int(self.member.rpartition(":")[2])

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"


@dataclass(frozen=True, slots=True)
class Layout:
    nodes: list[NodeSpec]
    links: list[LinkSpec]

    @property
    def members(self) -> list[str]:
        return [n.member for n in self.nodes]


def layout(
    count: int,
    pool: PortPool,
    data_root: Path,
    log_root: Path,
    *,
    proxied: bool,
    database: Database | None = None,
) -> Layout:
    grpc = pool.take_many(count)
    http = pool.take_many(count)
    members = [f"{HOST}:{p}" for p in grpc]
    links: list[LinkSpec] = []
    if database is not None:
        if proxied:
            links = [LinkSpec(m, DATABASE, pool.take(), database.port) for m in members]
    elif proxied and count > 1:
        for a in range(count):
            for b in range(count):
                if a != b:
                    links.append(LinkSpec(members[a], members[b], pool.take(), grpc[b]))
    nodes = []
    for i, member in enumerate(members):
        mine = [link for link in links if link.source == member]
        routes = {x.destination: f"{HOST}:{x.port}" for x in mine if x.destination != DATABASE}
        store_port = next((x.port for x in mine if x.destination == DATABASE), None)
        nodes.append(
            NodeSpec(
                i,
                member,
                http[i],
                data_root / f"n{i}",
                log_root / f"node-{i}.log",
                routes,
                store_port,
            )
        )
    return Layout(nodes, links)


class Node:
    def __init__(self, spec: NodeSpec, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.spec = spec
        self.argv = argv
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0
        self._log: IO[bytes] | None = None

    @property
    def member(self) -> str:
        return self.spec.member

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.alive and self.proc is not None else None

    def start(self) -> None:
        if self.alive:
            return
        self.spec.data_dir.mkdir(parents=True, exist_ok=True)
        self.close_log()
        self._log = self.spec.log_path.open("ab")
        self.starts += 1
        self._log.write(f"==== chaos: start #{self.starts} at {time.time():.3f}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # a harness killed by SIGKILL leaves no node behind
        )
        self.paused = False

    def _signal(self, sig: signal.Signals) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        if self._signal(signal.SIGKILL) and self.proc is not None:
            self.proc.wait()
        self.paused = False

    def pause(self) -> None:
        if self._signal(signal.SIGSTOP):
            self.paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self.paused = False

    def terminate(self) -> bool:
        """SIGCONT (so a frozen node can act on it), then SIGTERM; False if it was not running."""
        self.resume()
        return self._signal(signal.SIGTERM)

    def stop(self, grace: float = 5.0) -> None:
        """``terminate``, then SIGKILL if it has not exited within ``grace`` seconds."""
        if self.terminate() and self.proc is not None:
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self.close_log()

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def cpu_seconds(self) -> float:
        """utime + stime of the running process, from /proc/<pid>/stat."""
        if self.pid is None:
            raise RuntimeError(f"node {self.member} is not running")
        return process_cpu_seconds(self.pid)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL me when the harness thread that spawned me exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def process_cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def node_argv(
    spec: NodeSpec,
    members: Sequence[str],
    taskd: Sequence[str],
    extra: Sequence[str],
    database: Database | None = None,
) -> list[str]:
    """The node's command: a Raft member (``--peers``), or on ``database`` through its proxy
    (``--store URL``; the lease and the rest come in ``extra``)."""
    if database is not None:
        where = ["--store", database.url(spec.store_port)]
    else:
        where = ["--peers", ",".join(members)]
    argv = [
        *taskd,
        *where,
        "--grpc",
        spec.member,
        "--http",
        f"{HOST}:{spec.http_port}",
        "--data-dir",
        str(spec.data_dir),
    ]
    for member, address in sorted(spec.routes.items()):
        argv += ["--peer-route", f"{member}={address}"]
    return [*argv, *extra]


DEFAULT_TASKD = (sys.executable, "-m", "taskd")


class Cluster:
    def __init__(
        self,
        lay: Layout,
        *,
        taskd: Sequence[str] = DEFAULT_TASKD,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
        database: Database | None = None,
    ) -> None:
        self.layout = lay
        self.nodes = {
            spec.member: Node(spec, node_argv(spec, lay.members, taskd, extra, database), env)
            for spec in lay.nodes
        }

    @property
    def members(self) -> list[str]:
        return self.layout.members

    def node(self, member: str) -> Node:
        return self.nodes[member]

    def http_url(self, member: str) -> str:
        return self.nodes[member].spec.http_url

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()

    def close(self, grace: float = 5.0) -> None:
        for node in self.nodes.values():
            node.terminate()
        deadline = time.monotonic() + grace
        for node in self.nodes.values():
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    node.kill()
            node.close_log()
