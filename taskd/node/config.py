"""The node's configuration: one frozen dataclass, built once from flags and ``TASKD_*`` env.

Every flag ``--some-flag`` also reads ``TASKD_SOME_FLAG`` (a flag given on the command line
wins). ``--exec`` repeats; its environment form ``TASKD_EXEC`` holds several ``QUEUE=COMMAND``
entries separated by newlines or ``;;``. ``--peer-route`` repeats too; ``TASKD_PEER_ROUTE``
holds several ``MEMBER=HOST:PORT`` entries separated by commas. How ``--peers``, ``--grpc`` and
``--join`` decide which member this node is: ``taskd.node.members``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from taskd import __version__
from taskd.exec.concurrency import Concurrency
from taskd.node import limits, members
from taskd.node.api.http.origin import normalize_origin
from taskd.node.app.memory import parse_size
from taskd.store.shared import redisurl

DEFAULT_GRPC = "127.0.0.1:50051"
DEFAULT_HTTP = "127.0.0.1:8080"
SHARED_SCHEMES = frozenset({"postgres", "postgresql", "redis", "rediss"})  # --store URLs
_QUEUE_NAME = limits.QUEUE_NAME_RE  # the one queue-name rule of both APIs


class ConfigError(ValueError):
    """A flag or variable is wrong; the message says which and what to write instead."""


@dataclass(frozen=True, slots=True)
class ExecSpec:
    queue: str
    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeConfig:
    grpc: str = DEFAULT_GRPC  # also this node's member id (``node_id``)
    http: str = DEFAULT_HTTP
    peers: tuple[str, ...] = ()  # normalised host:port of every member, this one included
    join: bool = False  # being added to a running cluster: start empty and wait
    cluster_secret: str | None = None  # required on Raft traffic between members when set
    peer_routes: tuple[tuple[str, str], ...] = ()  # (member id, address to dial instead)
    election_timeout: float = 0.5  # seconds; each term draws its timeout from [T, 2T)
    data_dir: Path = Path("taskd-data")
    store: str = "raft"  # or a postgres:// / redis:// URL: a database the nodes share
    store_lease: float = 10.0  # seconds a shared-database leader's lease lasts
    execs: tuple[ExecSpec, ...] = ()
    concurrency: Concurrency = field(default_factory=lambda: Concurrency.parse("1-8"))
    max_payload: int = limits.DEFAULT_MAX_PAYLOAD
    max_queue_depth: int = 1_000_000
    max_tasks: int | None = None  # node-wide; None: derived from the machine's memory
    max_memory: int | None = None  # bytes of payloads, results, errors, labels; None: derived
    retention: float = 7 * 24 * 3600.0
    allow_origins: tuple[str, ...] = ()  # normalized web origins allowed to call, or "*"
    allow_hosts: tuple[str, ...] = ()  # Host names served besides loopback ones, or "*"
    shutdown_grace: float = 30.0
    worker_lease: float = 30.0
    snapshot_every: int = 100_000  # entries between snapshots at most
    snapshot_bytes: int = 64 << 20  # bytes of commands between snapshots at most
    accept_data_loss: bool = False
    log_level: str = "info"
    log_format: str = "auto"  # json | text | auto (text on a terminal); see observe.logs
    # transport limits (taskd/node/api/transport.py); 0 connections = derived from RLIMIT_NOFILE
    max_connections: int = 0
    idle_timeout: float = 60.0
    grpc_keepalive: float = 60.0

    @property
    def node_id(self) -> str:
        return self.grpc

    @property
    def shared_store(self) -> bool:
        """On a database the nodes share (PostgreSQL, Redis), not the embedded Raft log."""
        return self.store.split("://", 1)[0].lower() in SHARED_SCHEMES

    @property
    def store_kind(self) -> str:
        """``raft``, ``postgres`` or ``redis``: which store ``--store`` names."""
        if not self.shared_store:
            return "raft"
        return "redis" if self.store.lower().startswith("redis") else "postgres"

    @property
    def clustered(self) -> bool:
        """Started with ``--peers`` (even naming only itself) or ``--join``: a cluster member,
        with the Raft transport on its gRPC port, so it can grow (``taskd cluster add``).
        Without either it is a single node for good, and skips what only a cluster needs."""
        return bool(self.peers) or self.join

    @property
    def max_body(self) -> int:
        """The largest REST body and the largest gRPC message: a batch of payloads with room
        for the fields around them."""
        return self.max_payload * 2 + (64 << 10)

    def validate(self) -> None:
        for name in ("grpc", "http"):
            split_host_port(getattr(self, name), f"--{name}")
        if self.peers and self.grpc not in self.peers and not self.join:
            raise ConfigError(
                f"--grpc {self.grpc} must be one of --peers ({', '.join(self.peers)})"
            )
        if not 0.1 <= self.election_timeout <= 60:
            raise ConfigError(
                f"--election-timeout must be 0.1-60 seconds (default 0.5), got "
                f"{self.election_timeout:g}"
            )
        if self.cluster_secret is not None and len(self.cluster_secret) < 16:
            raise ConfigError(
                "--cluster-secret (or TASKD_CLUSTER_SECRET) must be at least 16 characters; "
                "generate one with `openssl rand -hex 32`"
            )
        routed = [member for member, _ in self.peer_routes]
        for member in routed:
            if routed.count(member) > 1:
                raise ConfigError(f"--peer-route names member {member} twice; give one route")
        if self.store != "raft" and not self.shared_store:
            raise ConfigError(
                "--store takes raft (the embedded default), postgres://USER@HOST/DB or "
                "redis://HOST:PORT/N; got something else (its text is not shown: it may hold "
                "a password)"
            )
        if self.store_kind == "redis":
            try:
                redisurl.split(self.store)
            except ValueError as exc:
                raise ConfigError(f"--store: {exc}") from None
        if self.shared_store and (self.peers or self.join):
            raise ConfigError(
                "--peers and --join are for the embedded Raft store; nodes on a shared "
                "database find each other through it: give every node the same --store URL"
            )
        if self.shared_store:
            host, _ = split_host_port(self.grpc, "--grpc")
            if host in ("", "0.0.0.0", "::"):
                raise ConfigError(
                    f"--grpc {self.grpc}: on a shared --store, --grpc is also the address the "
                    "other nodes forward writes to when this one leads, so it must name this "
                    "machine (e.g. --grpc 10.0.0.1:50051), not every interface"
                )
        if not 0.5 <= self.store_lease <= 300:
            raise ConfigError("--store-lease must be between 0.5 and 300 seconds")
        if self.max_payload < 1:
            raise ConfigError("--max-payload must be at least 1 byte")
        if self.max_queue_depth < 1:
            raise ConfigError("--max-queue-depth must be at least 1")
        if self.max_tasks is not None and self.max_tasks < 1:
            raise ConfigError("--max-tasks must be at least 1 (or leave it out for the default)")
        if self.max_memory is not None and self.max_memory < 1:
            raise ConfigError("--max-memory must be at least 1 byte (e.g. 512M, 2G)")
        if self.snapshot_every < 1:
            raise ConfigError("--snapshot-every must be at least 1 entry")
        if self.snapshot_bytes < 1:
            raise ConfigError("--snapshot-bytes must be at least 1 byte (e.g. 64M)")
        if self.shutdown_grace < 0:
            raise ConfigError("--shutdown-grace must be >= 0 seconds")
        if self.worker_lease <= 0:
            raise ConfigError("--worker-lease must be > 0 seconds")
        if self.max_connections < 0:
            raise ConfigError("--max-connections must be >= 0 (0 derives it from ulimit -n)")
        if self.idle_timeout <= 0:
            raise ConfigError("--idle-timeout must be > 0 seconds")
        if self.grpc_keepalive <= 0:
            raise ConfigError("--grpc-keepalive must be > 0 seconds")
        seen: set[str] = set()
        for spec in self.execs:
            if spec.queue in seen:
                raise ConfigError(f"--exec names queue {spec.queue!r} twice; give one command")
            seen.add(spec.queue)


def split_host_port(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{flag} must be HOST:PORT (e.g. 127.0.0.1:8080), got {text!r}")
    return host.strip("[]"), int(port)


def parse_exec(text: str) -> ExecSpec:
    queue, sep, command = text.partition("=")
    queue = queue.strip()
    if not sep or not command.strip():
        raise ConfigError(
            f"--exec must be QUEUE=COMMAND (e.g. thumbnails='python3 resize.py'), got {text!r}"
        )
    if not _QUEUE_NAME.fullmatch(queue):
        raise ConfigError(f"--exec queue name {queue!r} must be 1-128 of A-Z a-z 0-9 _ . : -")
    try:
        argv = tuple(shlex.split(command))
    except ValueError as exc:
        raise ConfigError(f"--exec {queue}: cannot split the command {command!r}: {exc}") from exc
    return ExecSpec(queue, argv)


def _duration(text: str) -> float:
    try:
        value = float(text.rstrip("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="taskd",
        description="Run a taskd node (with no subcommand), or talk to one (see `taskd help`).",
    )
    p.add_argument("--version", action="version", version=f"taskd {__version__}")
    p.add_argument(
        "--peers",
        help="gRPC addresses host[:port] of every member, this one included, comma-separated "
        "(e.g. 10.0.0.1,10.0.0.2,10.0.0.3; port 50051 when omitted)",
    )
    p.add_argument(
        "--grpc",
        help=f"gRPC listen address, also this node's identity: its entry in --peers (default: "
        f"the entry of --peers that is an address of this machine, else {DEFAULT_GRPC})",
    )
    p.add_argument(
        "--join",
        action="store_true",
        default=None,
        help="this node is being added to a running cluster (`taskd cluster add ADDRESS` on a "
        "member): start empty and wait for the leader",
    )
    p.add_argument(
        "--cluster-secret",
        help="shared secret every member must present on Raft traffic (at least 16 "
        "characters); better given as TASKD_CLUSTER_SECRET than on the command line",
    )
    p.add_argument(
        "--peer-route",
        action="append",
        metavar="MEMBER=HOST:PORT",
        help="dial MEMBER at another address (a proxy, NAT) without changing its identity; "
        "repeatable",
    )
    p.add_argument(
        "--election-timeout",
        type=_duration,
        help="seconds without a leader before a member campaigns (default 0.5)",
    )
    p.add_argument(
        "--http", help=f"HTTP listen address for REST and the monitor (default {DEFAULT_HTTP})"
    )
    p.add_argument("--data-dir", help="where the log and snapshots live (default ./taskd-data)")
    p.add_argument(
        "--store",
        metavar="STORE",
        help="raft (default: the embedded log in --data-dir), postgres://USER@HOST/DB or "
        "redis://HOST:PORT/N (every node given the same URL shares that database; "
        "see docs/stores.md)",
    )
    p.add_argument(
        "--store-lease",
        type=_duration,
        help="seconds a shared-database leader's lease lasts; another node takes over "
        "within it after a crash (default 10)",
    )
    p.add_argument(
        "--exec",
        action="append",
        metavar="QUEUE=COMMAND",
        help="run tasks of QUEUE as COMMAND (payload on stdin); repeatable",
    )
    p.add_argument(
        "--concurrency", help="local executor slots per queue: N or MIN-MAX (default 1-8)"
    )
    p.add_argument("--max-payload", type=int, help="largest payload in bytes (default 1 MiB)")
    p.add_argument(
        "--max-queue-depth",
        type=int,
        help="unfinished tasks a queue may hold before submits get 429 (default 1,000,000)",
    )
    p.add_argument(
        "--max-tasks",
        type=int,
        help="tasks the node holds, finished ones included, across all queues; at the limit "
        "the oldest finished are evicted early, then submits get 429 (default: from memory)",
    )
    p.add_argument(
        "--max-memory",
        help="bytes of payloads, results, errors and labels the node holds, e.g. 2G or 512M; "
        "same rule as --max-tasks (default: a quarter of the machine's memory)",
    )
    p.add_argument(
        "--retention", type=_duration, help="seconds to keep finished tasks (default 7 days)"
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        metavar="URL",
        help="a web origin (scheme://host[:port]) whose pages may call this node, or '*'; "
        "repeatable (default: none besides the node's own)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="a Host name to serve besides localhost/127.0.0.1/[::1], or '*'; repeatable "
        "(default: loopback names on a loopback listener, any name otherwise)",
    )
    p.add_argument(
        "--shutdown-grace",
        type=_duration,
        help="seconds running tasks get to finish on SIGTERM (default 30)",
    )
    p.add_argument(
        "--worker-lease",
        type=_duration,
        help="seconds a remote worker's lease lasts between heartbeats (default 30)",
    )
    p.add_argument(
        "--snapshot-every", type=int, help="log entries between snapshots (default 100,000)"
    )
    p.add_argument(
        "--snapshot-bytes",
        metavar="SIZE",
        help="bytes of commands between snapshots, whatever their count; bounds the memory the "
        "log holds (default 64M)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        help="connections per listener (gRPC, HTTP); beyond it the longest-idle one is closed "
        "or the new one refused (default 0: derived from the open-files limit)",
    )
    p.add_argument(
        "--idle-timeout",
        type=_duration,
        help="seconds a connection may stay silent: gRPC with no open call, HTTP between or "
        "inside requests (default 60)",
    )
    p.add_argument(
        "--grpc-keepalive",
        type=_duration,
        help="seconds between HTTP/2 pings on gRPC connections with open calls; an unanswered "
        "ping closes the connection after as long again (default 60)",
    )
    p.add_argument(
        "--accept-data-loss",
        action="store_true",
        default=None,
        help="start even if the log is damaged: cut at the first damage, log what was dropped",
    )
    p.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="(default info)"
    )
    p.add_argument(
        "--log-format",
        choices=["auto", "json", "text"],
        help="json: one object per line; text: for people; auto (default): text when stderr "
        "is a terminal, else json",
    )
    return p


def environment() -> list[tuple[str, str]]:
    """Every ``TASKD_*`` variable a node reads, with its help: one per flag of
    ``build_parser`` (``load`` reads each flag's variable), so the list cannot go stale."""
    found: list[tuple[str, str]] = []
    for action in build_parser()._actions:  # argparse has no public list of its actions
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs or longs[0] in ("--help", "--version"):
            continue
        name = "TASKD_" + longs[0][2:].upper().replace("-", "_")
        found.append((name, action.help or ""))
    return found


def load(
    argv: Sequence[str],
    env: Mapping[str, str] = os.environ,
    *,
    is_local: Callable[[str], bool] = members.is_local,
) -> NodeConfig:
    """Flags, then ``TASKD_*`` variables, then defaults. Raises ``ConfigError``.

    ``is_local`` tells whether a host is an address of this machine (which entry of
    ``--peers`` is this node when ``--grpc`` is not given)."""
    args = build_parser().parse_args(list(argv))

    def pick(name: str) -> str | None:
        value = getattr(args, name.replace("-", "_"))
        if value is not None:
            return str(value)
        return env.get("TASKD_" + name.upper().replace("-", "_"))

    join = _flag(pick("join"), "join")
    try:
        peers = members.parse_peers(pick("peers") or "")
        grpc = members.pick_self(
            peers, pick("grpc"), join=join, default=DEFAULT_GRPC, is_local=is_local
        )
        route_texts: list[str] = list(args.peer_route or [])
        if not route_texts:
            route_texts = [t for t in env.get("TASKD_PEER_ROUTE", "").split(",") if t.strip()]
        routes = tuple(members.parse_route(t) for t in route_texts)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    exec_texts: list[str] = list(args.exec or [])
    if not exec_texts and env.get("TASKD_EXEC"):
        exec_texts = [t for t in re.split(r"\n|;;", env["TASKD_EXEC"]) if t.strip()]
    values: dict[str, object] = {
        "grpc": grpc,
        "peers": peers,
        "join": join,
        "cluster_secret": pick("cluster-secret") or None,
        "peer_routes": routes,
        "execs": tuple(parse_exec(t) for t in exec_texts),
    }
    for name, convert in (
        ("http", str),
        ("data-dir", Path),
        ("store", str),
        ("max-payload", int),
        ("max-queue-depth", int),
        ("max-tasks", int),
        ("max-memory", parse_size),
        ("retention", float),
        ("shutdown-grace", float),
        ("worker-lease", float),
        ("store-lease", float),
        ("snapshot-every", int),
        ("snapshot-bytes", parse_size),
        ("log-level", str),
        ("log-format", str),
        ("max-connections", int),
        ("idle-timeout", float),
        ("grpc-keepalive", float),
        ("election-timeout", float),
    ):
        raw = pick(name)
        if raw is not None:
            try:
                values[name.replace("-", "_")] = convert(raw)
            except ValueError as exc:
                detail = f": {exc}" if name in ("max-memory", "snapshot-bytes") else ""
                raise ConfigError(
                    f"--{name} (or TASKD_{name.upper().replace('-', '_')}): bad value {raw!r}"
                    + detail
                ) from None
    values["accept_data_loss"] = _flag(
        pick("accept-data-loss"), "accept-data-loss", on="accept", off="refuse"
    )
    raw = pick("concurrency")
    if raw is not None:
        try:
            values["concurrency"] = Concurrency.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"--concurrency: {exc}") from None
    values["allow_origins"] = _allow_origins(args.allow_origin or _env_list(env, "ALLOW_ORIGIN"))
    values["allow_hosts"] = _allow_hosts(args.allow_host or _env_list(env, "ALLOW_HOST"))
    config = NodeConfig(**values)  # type: ignore[arg-type]  # keys checked above
    config.validate()
    check_programs(config.execs, env.get("PATH", os.defpath))
    return config


def check_programs(execs: Sequence[ExecSpec], path: str) -> None:
    """Refuse to start with an ``--exec`` whose program cannot run: every task of its queue
    would fail, one retry after another, long after the typo could have been fixed."""
    for spec in execs:
        program = spec.argv[0]
        if shutil.which(program, path=path) is not None:
            continue
        where = (
            "no such executable file"
            if os.sep in program
            else "not found on PATH (give its full path, or fix PATH)"
        )
        if os.sep in program and os.path.isfile(program):
            where = "the file is not executable (chmod +x it, or run it through its interpreter)"
        raise ConfigError(f"--exec {spec.queue}: cannot run {program!r}: {where}")


def _flag(raw: str | None, name: str, on: str = "on", off: str = "off") -> bool:
    """A switch: ``--name`` on the command line, or ``TASKD_NAME=1|0`` in the environment."""
    if raw is None:
        return False
    if raw.lower() not in ("1", "true", "yes", "0", "false", "no", ""):
        variable = "TASKD_" + name.upper().replace("-", "_")
        raise ConfigError(f"{variable}: bad value {raw!r}; use 1 ({on}) or 0 ({off})")
    return raw.lower() in ("1", "true", "yes")


def _env_list(env: Mapping[str, str], name: str) -> list[str]:
    """``TASKD_ALLOW_ORIGIN=a,b`` → [a, b] (commas or whitespace separate entries)."""
    return [t for t in re.split(r"[,\s]+", env.get("TASKD_" + name, "")) if t]


def _allow_origins(texts: Sequence[str]) -> tuple[str, ...]:
    origins: list[str] = []
    for text in texts:
        if text.strip() == "*":
            origins.append("*")
            continue
        try:
            origins.append(normalize_origin(text))
        except ValueError as exc:
            raise ConfigError(f"--allow-origin: {exc} (e.g. https://app.example.com)") from None
    return tuple(origins)


def _allow_hosts(texts: Sequence[str]) -> tuple[str, ...]:
    hosts: list[str] = []
    for text in texts:
        name = text.strip().lower().rstrip(".")
        if not name or any(c in name for c in "/@ \t") or (":" in name and "[" not in name):
            raise ConfigError(
                f"--allow-host takes a host name without port or scheme (e.g. taskd.internal), "
                f"got {text!r}"
            )
        hosts.append(name)
    return tuple(hosts)
