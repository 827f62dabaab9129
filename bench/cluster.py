"""W6 cluster ratios in one run: W1b and W2 on one node vs a 3-node cluster, and leader CPU.

    .venv/bin/python -m bench.cluster [--tasks 30000] [--cpu-tasks 5000] [--nodes 3] [--json]

Theory of operation: every figure is a ratio measured in the same run on the same machine.

1. A single node (a one-member cluster): ``taskd bench --workload w1b,w2``.
2. A fresh ``--nodes`` cluster: the same workloads with ``--server`` naming every member, so
   the clients and worker streams are spread over all of them. Ratio = cluster / single
   (issue 7's target: ≥ 0.6).
3. On that cluster, the leader's CPU per task: read ``/proc/<leader pid>/stat`` (utime +
   stime) before and after ``taskd bench --workload w1a-closed`` (one task per unary Submit)
   sent (a) to the leader only and (b) to the followers only; CPU seconds / acknowledged
   tasks. Ratio = (b) / (a) (target: ≤ 0.3 — a follower coalesces what it receives into
   batched forwards, so the leader pays a fraction of a unary call per task). It is measured
   at each ``--cpu-clients`` concurrency (default 64 clients in 2 processes, where intake is
   at its peak and forwards coalesce, the case the target is about; and 8, the default
   ``taskd bench`` load, where a follower holds only a few writes at a time to coalesce).

Each ``taskd bench`` runs as a child process (``python -m taskd bench --json``) and its JSON
is parsed; the table goes to stdout (``--json``: the figures as JSON instead).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

import orjson

from bench.nodes import BenchCluster
from chaos.cluster import process_cpu_seconds

TASKD = (sys.executable, "-m", "taskd")
DESCRIPTION = "W1b and W2 on one node and on a cluster, and the leader's CPU per task."


def bench(urls: list[str], workloads: str, tasks: int, extra: list[str]) -> dict[str, Any]:
    """``taskd bench --json`` against ``urls``; its workloads by name."""
    argv = [*TASKD, "bench", "--server", ",".join(urls), "--workload", workloads]
    argv += ["--tasks", str(tasks), "--json", *extra]
    done = subprocess.run(argv, capture_output=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(
            f"taskd bench failed ({done.returncode}): {done.stderr.decode()[-2000:]}"
        )
    body = orjson.loads(done.stdout)
    return {w["workload"]: w for w in body["workloads"]}


def leader_cpu_per_task(
    cluster: BenchCluster, leader: str, urls: list[str], tasks: int, extra: list[str]
) -> tuple[float, int]:
    """Leader CPU seconds per acknowledged task while ``urls`` take unary submits."""
    pid = cluster.cluster.node(leader).pid
    if pid is None:
        raise RuntimeError(f"the leader {leader} is not running")
    before = process_cpu_seconds(pid)
    result = bench(urls, "w1a-closed", tasks, extra)["w1a"]
    spent = process_cpu_seconds(pid) - before
    acked = int(result["tasks"])
    if cluster.leader() != leader:
        raise RuntimeError("the leader changed during the CPU measurement; run it again")
    return spent / max(1, acked), acked


def run(args: argparse.Namespace) -> dict[str, Any]:
    extra = [*args.bench_arg]
    workloads = "w1b,w2"
    print(f"1/3 single node: taskd bench --workload {workloads} --tasks {args.tasks}")
    with BenchCluster(1) as single:
        alone = bench([single.url(m) for m in single.members], workloads, args.tasks, extra)
    print(f"2/3 {args.nodes}-node cluster: the same, clients spread over every member")
    with BenchCluster(args.nodes) as cluster:
        urls = [cluster.url(m) for m in cluster.members]
        together = bench(urls, workloads, args.tasks, extra)
        leader = cluster.wait_ready()
        followers = [cluster.url(m) for m in cluster.members if m != leader]
        print(f"3/3 leader CPU per unary submit: direct to {leader}, then through followers")
        cpu = []
        for clients in args.cpu_clients:
            load = [*extra, "--clients", str(clients), "--procs", "2" if clients >= 16 else "1"]
            direct, n_direct = leader_cpu_per_task(
                cluster, leader, [cluster.url(leader)], args.cpu_tasks, load
            )
            forwarded, n_forwarded = leader_cpu_per_task(
                cluster, leader, followers, args.cpu_tasks, load
            )
            cpu.append(
                {
                    "clients": clients,
                    "direct_unary": round(direct * 1e6, 1),
                    "through_followers": round(forwarded * 1e6, 1),
                    "ratio": round(forwarded / direct, 3) if direct else None,
                    "tasks": {"direct": n_direct, "through_followers": n_forwarded},
                }
            )
    rows = []
    for name in ("w1b", "w2"):
        a, b = alone[name]["tasks_per_second"], together[name]["tasks_per_second"]
        rows.append(
            {"workload": name, "single": a, "cluster": b, "ratio": round(b / a, 3) if a else None}
        )
    return {
        "nodes": args.nodes,
        "tasks": args.tasks,
        "throughput": rows,
        "leader_cpu_us_per_task": cpu,
    }


def show(figures: dict[str, Any]) -> None:
    print(f"\nW6 cluster ratios ({figures['nodes']} nodes, {figures['tasks']:,} tasks per run)")
    print(f"{'workload':<10}{'single /s':>12}{'cluster /s':>12}{'ratio':>8}   target")
    for row in figures["throughput"]:
        print(
            f"{row['workload']:<10}{row['single']:>12,.0f}{row['cluster']:>12,.0f}"
            f"{row['ratio']:>8}   >= 0.6"
        )
    for cpu in figures["leader_cpu_us_per_task"]:
        print(
            f"leader CPU per task, {cpu['clients']} clients: direct unary "
            f"{cpu['direct_unary']} us, through followers {cpu['through_followers']} us, "
            f"ratio {cpu['ratio']} (target <= 0.3)"
        )


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.cluster", description=__doc__.split("\n\n")[1]
    )
    p.add_argument("--tasks", type=int, default=30_000, help="tasks per W1b/W2 run")
    p.add_argument("--cpu-tasks", type=int, default=5_000, help="unary submits per CPU sample")
    p.add_argument(
        "--cpu-clients",
        type=lambda v: [int(c) for c in v.split(",")],
        default=[64, 8],
        help="comma-separated unary client counts for the CPU samples (default 64,8)",
    )
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--bench-arg", action="append", default=[], help="extra `taskd bench` flag")
    p.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = p.parse_args(argv)
    if args.nodes < 2:
        p.error("--nodes must be at least 2: the CPU ratio needs followers")
    figures = run(args)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        show(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
