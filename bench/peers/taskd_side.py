"""taskd's side of the comparison: ``taskd bench --json``, one workload on one fresh node.

Each node is ``bench.nodes.BenchCluster(1)``: loopback ports from the chaos range, a temporary
data dir, the default durable store (fsync before every acknowledgement), stopped and removed
afterwards. Each workload is one ``python -m taskd bench`` child (``procs.run_child``: its own
process group, killed afterwards):

- W1a: ``--workload w1a-closed`` (unary Submit, ``--clients`` clients, closed loop, one
  process each like the peers' producers);
- W2: ``--workload w2`` (SubmitBatch of 100, drained by 4 stream workers); then the node's RSS
  (the node and any child of it, e.g. a snapshot writer), holding only W2's tasks;
- W3: ``--workload w3 --rate R --duration D`` (pickup: submit to the stream worker receiving it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.nodes import BenchCluster
from bench.peers import procs
from bench.peers.table import Measure

ROOT = Path(__file__).resolve().parents[2]
BENCH_NAMES = {"w1a": "w1a-closed", "w2": "w2", "w3": "w3"}
TIMEOUT = 3600.0


@dataclass(frozen=True, slots=True)
class Load:
    tasks: int
    clients: int
    rate: float
    duration: float


def command(http_url: str, grpc: str, workload: str, load: Load) -> list[str]:
    return [
        sys.executable, "-m", "taskd", "bench",
        "--server-http", http_url, "--server-grpc", grpc,
        "--workload", BENCH_NAMES[workload],
        "--tasks", str(load.tasks), "--clients", str(load.clients),
        "--rate", f"{load.rate:g}", "--duration", f"{load.duration:g}",
        # W1a: one process per client, as the peers' producers are (forked, one each)
        *(["--procs", str(load.clients)] if workload == "w1a" else []),
        "--json",
    ]  # fmt: skip


def measure(body: dict[str, Any], workload: str) -> Measure:
    """The one workload of a ``taskd bench --json`` answer."""
    [result] = body["workloads"]
    errors = result.get("errors") or {}
    return Measure(
        "taskd",
        workload,
        tasks=int(result["tasks"]),
        tasks_per_second=float(result["tasks_per_second"]),
        p50_ms=result.get("p50_ms"),
        p95_ms=result.get("p95_ms"),
        p99_ms=result.get("p99_ms"),
        errors=sum(int(v) for v in errors.values()),
        lost=int(result.get("lost", 0)),
    )


def run(workloads: Sequence[str], load: Load) -> list[Measure]:
    """Each workload on a fresh node, as each peer's starts from an empty broker; a failed one
    is a failed measure."""
    return [run_one(workload, load) for workload in workloads]


def run_one(workload: str, load: Load) -> Measure:
    print(f"taskd {workload}: a fresh node (temp data dir, durable store)", file=sys.stderr)
    with BenchCluster(1) as node:
        [member] = node.members
        argv = command(node.url(member), member, workload, load)
        code, stdout = procs.run_child(argv, cwd=ROOT, timeout=TIMEOUT)
        if code != 0:
            return Measure("taskd", workload, failed=f"taskd bench exited {code}")
        result = measure(orjson.loads(stdout), workload)
        if workload != "w2":
            return result
        pid = node.cluster.node(member).pid
        rss = procs.tree_rss_mb([pid]) if pid is not None else None
        return Measure(**{**result.to_json(), "rss_mb": rss and round(rss, 1)})
