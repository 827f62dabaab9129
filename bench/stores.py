"""Shared-store ratios in one run: W1b and W2 on PostgreSQL and Redis against the Raft store.

    .venv/bin/python -m bench.stores [--tasks 20000] [--runs 3] [--json]

Theory of operation: every figure is a ratio of two measurements taken in the same run on the
same machine, so that what the machine does that day cancels out. A measurement is one
``taskd bench --workload w1b,w2 --tasks N --json`` (a child process, as in ``bench.cluster``)
against fresh nodes on a fresh store, which are stopped and removed afterwards:

- ``raft``: one node on the embedded Raft store (the default; fsync before every answer);
- ``postgres``: one node on a new database ``taskd_bench_<random>`` of the machine's
  PostgreSQL (``--admin-dsn``), dropped afterwards (``bench.databases``);
- ``redis-always``, ``redis-everysec``: one node on a private ``redis-server`` this script
  starts on a free port in a temporary directory (``--appendonly yes --appendfsync
  always|everysec --save ""``) and kills afterwards; never the machine's Redis;
- ``forwarded``: two nodes on one new PostgreSQL database, the bench's clients and stream
  workers pointed at the follower only (the node whose ``GET /api/v1/cluster`` says
  ``role: follower``), so every write is forwarded to the leader. It is reported against
  ``postgres`` (one more hop and the follower's own apply), not against ``raft``.

The configurations take turns within each of ``--runs`` rounds (raft, postgres, ...,
forwarded, then again), so drift over the minutes of a run hits all alike. The report gives
per configuration the median tasks/s of each workload over the runs and the ratio of those
medians to its reference, beside the issue's targets: PostgreSQL ≥ 0.5x, Redis with
``appendfsync always`` ≥ 0.7x (``everysec`` is quoted beside it, with no target). A run
fails (exit 1, naming the node logs, which are kept) if a node does not become ready, the
bench fails, any acknowledged task is lost, or the forwarded run's follower stops being one.

Nodes get ports from the chaos range (23000-23999) and their own temporary data directory; no
``TASKD_*`` variable of this shell reaches them. Progress goes to stderr; the table to stdout
(``--json``: the figures as JSON on stdout, the table on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson

from bench.databases import ADMIN_DSN, PrivateRedis, fresh_database, postgres_settings
from chaos.cluster import HOST, Node, NodeSpec
from chaos.ports import PortPool

TASKD = (sys.executable, "-m", "taskd")
WORKLOADS = ("w1b", "w2")
READY_DEADLINE = 60.0  # seconds for fresh nodes to be ready, one of them leading


@dataclass(frozen=True, slots=True)
class Config:
    name: str
    describe: str
    nodes: int = 1
    against: str | None = "raft"  # the configuration its ratio is to
    target: float | None = None  # the minimum ratio, both workloads


CONFIGS = (
    Config("raft", "embedded Raft store, 1 node", against=None),
    Config("postgres", "PostgreSQL, 1 node", target=0.5),
    Config("redis-always", "private Redis, appendfsync always, 1 node", target=0.7),
    Config("redis-everysec", "private Redis, appendfsync everysec, 1 node"),
    Config("forwarded", "PostgreSQL, 2 nodes, clients on the follower", 2, "postgres"),
)
BY_NAME = {c.name: c for c in CONFIGS}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- nodes


class StoreNodes:
    """``count`` fresh nodes on ``store`` (None: each on its own embedded Raft store)."""

    def __init__(self, count: int, store: str | None, pool: PortPool) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="taskd-bench-stores-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKD_")}
        self.nodes: list[Node] = []
        for i in range(count):
            grpc, http = pool.take_many(2)
            spec = NodeSpec(
                i, f"{HOST}:{grpc}", http, self.root / f"n{i}", self.root / f"node-{i}.log"
            )
            argv = [*TASKD, "--grpc", spec.member, "--http", f"{HOST}:{http}"]
            argv += ["--data-dir", str(spec.data_dir)]
            argv += ["--store", store] if store is not None else []
            self.nodes.append(Node(spec, argv, env))

    def __enter__(self) -> StoreNodes:
        for node in self.nodes:
            node.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for node in self.nodes:
            node.stop()
        for node in self.nodes:
            shutil.rmtree(node.spec.data_dir, ignore_errors=True)
        if exc is not None:
            progress(f"node logs kept in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def roles(self) -> list[str | None]:
        """Each node's role as its ``GET /api/v1/cluster`` says (None: no answer, not ready)."""
        out: list[str | None] = []
        for node in self.nodes:
            try:
                base = node.spec.http_url
                if httpx.get(f"{base}/readyz", timeout=1.0).status_code != 200:
                    out.append(None)
                    continue
                body: Any = httpx.get(f"{base}/api/v1/cluster", timeout=1.0).json()
            except (httpx.HTTPError, ValueError):
                out.append(None)
                continue
            out.append(str(body.get("role")) if isinstance(body, dict) else None)
        return out

    def wait_ready(self) -> list[str | None]:
        """Until every node is ready and exactly one leads; the roles."""
        deadline = time.monotonic() + READY_DEADLINE
        while time.monotonic() < deadline:
            roles = self.roles()
            if None not in roles and roles.count("leader") == 1:
                return roles
            if any(not node.alive for node in self.nodes):
                raise RuntimeError(f"a node exited while starting; see the logs in {self.root}")
            time.sleep(0.1)
        raise RuntimeError(
            f"the nodes were not ready, one leading, within {READY_DEADLINE:g} s "
            f"(roles {self.roles()}); see the logs in {self.root}"
        )

    def target(self) -> Node:
        """The node the bench talks to: the only one, or a follower."""
        roles = self.wait_ready()
        if len(self.nodes) == 1:
            return self.nodes[0]
        return self.nodes[roles.index("follower")]


# -- one measurement


def bench(node: Node, tasks: int, extra: Sequence[str]) -> dict[str, float]:
    """``taskd bench --json`` with every client and worker on ``node``; tasks/s by workload."""
    argv = [*TASKD, "bench", "--server", node.spec.http_url, "--server-grpc", node.member]
    argv += ["--workload", ",".join(WORKLOADS), "--tasks", str(tasks), "--json", *extra]
    done = subprocess.run(argv, capture_output=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"taskd bench failed ({done.returncode}): {done.stderr.decode()[-2000:]}"
        )
    body = orjson.loads(done.stdout)
    if body["server_grpc"] != node.member:
        raise RuntimeError(f"the bench talked to {body['server_grpc']}, not {node.member}")
    rates = {}
    for w in body["workloads"]:
        if w["lost"]:
            raise RuntimeError(f"{w['workload']}: {w['lost']} acknowledged tasks lost")
        rates[w["workload"]] = float(w["tasks_per_second"])
    return rates


@contextlib.contextmanager
def store_for(
    config: Config, pool: PortPool, admin_dsn: str
) -> Iterator[tuple[str | None, dict[str, str]]]:
    """The ``--store`` URL of a fresh store for ``config`` (None: the embedded default), and
    what its server says it is (version, durability settings)."""
    if config.name == "raft":
        yield None, {}
    elif config.name in ("postgres", "forwarded"):
        with fresh_database(admin_dsn) as url:
            yield url, postgres_settings(admin_dsn)
    else:
        with PrivateRedis(pool.take(), config.name.removeprefix("redis-")) as server:
            yield server.url(), server.settings()


def measure(
    config: Config, pool: PortPool, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, str]]:
    """One fresh store and its nodes, one bench run; tasks/s by workload, the store's settings."""
    with (
        store_for(config, pool, args.admin_dsn) as (store, found),
        StoreNodes(config.nodes, store, pool) as nodes,
    ):
        node = nodes.target()
        rates = bench(node, args.tasks, args.bench_arg)
        if config.nodes > 1 and nodes.roles()[nodes.nodes.index(node)] != "follower":
            raise RuntimeError("the follower the bench used is no longer one; run it again")
    return rates, found


# -- the report


def summarize(
    samples: Mapping[str, Sequence[Mapping[str, float]]], configs: Sequence[Config] = CONFIGS
) -> list[dict[str, Any]]:
    """Per configuration: each run's tasks/s, their medians, and the ratios of those medians
    to the reference configuration's (None when the reference was not measured)."""
    medians = {
        name: {w: statistics.median(run[w] for run in runs) for w in WORKLOADS}
        for name, runs in samples.items()
        if runs
    }
    rows = []
    for c in configs:
        if c.name not in medians:
            continue
        ref = medians.get(c.against) if c.against else None
        ratio = {
            w: round(medians[c.name][w] / ref[w], 3) if ref and ref[w] else None for w in WORKLOADS
        }
        met = None
        if c.target is not None and None not in ratio.values():
            met = all(r is not None and r >= c.target for r in ratio.values())
        rows.append(
            {
                "config": c.name,
                "describe": c.describe,
                "median": {w: round(medians[c.name][w], 1) for w in WORKLOADS},
                "runs": {w: [run[w] for run in samples[c.name]] for w in WORKLOADS},
                "against": c.against,
                "ratio": ratio,
                "target": c.target,
                "met": met,
            }
        )
    return rows


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    lines = [
        f"{'config':<16}{'W1b /s':>10}{'W2 /s':>10}{'W1b ratio':>11}{'W2 ratio':>10}"
        f"  {'against':<10}target",
    ]
    for row in rows:
        target = "-"
        if row["target"] is not None:
            verdict = {True: "met", False: "missed", None: "not measured"}[row["met"]]
            target = f">= {row['target']}x: {verdict}"
        lines.append(
            f"{row['config']:<16}{row['median']['w1b']:>10,.0f}{row['median']['w2']:>10,.0f}"
            f"{fmt(row['ratio']['w1b']):>11}{fmt(row['ratio']['w2']):>10}"
            f"  {row['against'] or '-':<10}{target}"
        )
    return "\n".join(lines)


def config_list(text: str) -> list[Config]:
    """``--configs``: names in the order given; an unknown one is refused, naming the rest."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        named = ", ".join(unknown) or "(none)"
        raise argparse.ArgumentTypeError(
            f"unknown configuration {named}; choose from {', '.join(BY_NAME)}"
        )
    return [BY_NAME[n] for n in names]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stores", description=__doc__.split("\n\n")[1])
    p.add_argument("--tasks", type=int, default=20_000, help="tasks per W1b/W2 run")
    p.add_argument("--runs", type=int, default=3, help="rounds over every configuration")
    p.add_argument(
        "--configs",
        type=config_list,
        default=list(CONFIGS),
        help=f"comma-separated subset of {','.join(BY_NAME)} (default: all)",
    )
    p.add_argument("--admin-dsn", default=ADMIN_DSN, help="PostgreSQL server to make databases on")
    p.add_argument("--bench-arg", action="append", default=[], help="extra `taskd bench` flag")
    p.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = p.parse_args(argv)
    if args.runs < 1 or args.tasks < 1:
        p.error("--runs and --tasks must be at least 1")
    pool = PortPool()
    configs: list[Config] = args.configs
    started = time.time()
    stores: dict[str, dict[str, str]] = {}
    samples: dict[str, list[dict[str, float]]] = {c.name: [] for c in configs}
    try:
        for run in range(1, args.runs + 1):
            for c in configs:
                progress(f"run {run}/{args.runs} {c.name}: {c.describe}, {args.tasks:,} tasks")
                rates, found = measure(c, pool, args)
                if c.name not in stores and found:
                    stores[c.name] = found
                    progress(f"  {c.name} server: {orjson.dumps(found).decode()}")
                samples[c.name].append(rates)
                shown = ", ".join(f"{w} {rates[w]:,.0f}/s" for w in WORKLOADS)
                progress(f"run {run}/{args.runs} {c.name}: {shown}")
    except RuntimeError as exc:
        progress(f"bench.stores failed: {exc}")
        return 1
    rows = summarize(samples, configs)
    heading = (
        f"Stores against the embedded Raft store: medians of {args.runs} run(s), "
        f"taskd bench --workload w1b,w2 --tasks {args.tasks}, {os.cpu_count()} CPUs"
    )
    out = sys.stderr if args.json else sys.stdout
    print(f"\n{heading}\n{table(rows)}", file=out)
    if args.json:
        figures = {
            "tasks": args.tasks,
            "runs": args.runs,
            "cpus": os.cpu_count(),
            "started": started,
            "seconds": round(time.time() - started, 1),
            "stores": stores,
            "configs": rows,
        }
        sys.stdout.buffer.write(orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
