"""``taskd bench``: parse the flags, find the node, run the chosen workloads, show the results."""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable

from rich.console import Console

from taskd.bench import admin, members, report
from taskd.bench.stats import WorkloadResult
from taskd.bench.workloads import WORKLOADS, Settings, w1, w1_open, w1_sdk, w2, w3

DEFAULT_GRPC = "127.0.0.1:50051"
DEFAULT_HTTP = "http://127.0.0.1:8080"
REST_DESCRIPTION = "REST POST /api/v1/tasks, one task per request"
ORDER = (
    "w1a", "w1a-closed", "w1a-open", "sdk-submit", "w1b", "w1c", "w2", "w2-sdk", "w3", "w3-sdk",
)  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="taskd bench",
        description="Run the benchmark workloads of design.md §4 against a running node.",
    )
    p.add_argument(
        "--server-grpc",
        metavar="HOST:PORT[,...]",
        help="each member's gRPC address, in --server's order (default: what each member's "
        f"GET /api/v1/cluster says, else {DEFAULT_GRPC})",
    )
    p.add_argument(
        "--server-http",
        "--server",
        dest="server_http",
        metavar="URL[,URL...]",
        default=os.environ.get("TASKD_SERVER_HTTP", DEFAULT_HTTP),
        help=f"REST base URL of each member to spread the clients over, round robin "
        f"(default {DEFAULT_HTTP})",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="spread the gRPC clients over every member that --server's GET /api/v1/cluster "
        "lists (REST calls go to the URLs given)",
    )
    p.add_argument(
        "--workload",
        default=",".join(WORKLOADS),
        help="comma-separated: w1a (also runs w1a@RATE, open loop; w1a-closed and "
        "w1a-open run one half), w1b, w1c, w2, w3 (default: all); the SDK's: sdk-submit "
        "(submit_task from --clients threads sharing one client), w2-sdk and w3-sdk (W2 and "
        "W3 drained by the SDK Worker)",
    )
    p.add_argument("--tasks", type=int, default=100_000, help="tasks per W1 and W2 workload")
    p.add_argument("--clients", type=int, default=8, help="concurrent client connections")
    p.add_argument(
        "--procs",
        type=int,
        default=default_procs(),
        help="client processes per role (producers; workers) (default %(default)s)",
    )
    p.add_argument("--duration", type=float, default=30.0, help="seconds of W3 and w1a@RATE")
    p.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="tasks/s offered by W3 and w1a@RATE (0: skip w1a@RATE)",
    )
    p.add_argument("--batch", type=int, default=100, help="tasks per SubmitBatch (W1b, W2)")
    p.add_argument("--workers", type=int, default=4, help="stream worker connections (W2, W3)")
    p.add_argument("--capacity", type=int, default=256, help="capacity of each stream worker")
    p.add_argument("--queue", help="queue name prefix (default: a fresh bench-XXXXXXXX per run)")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    return p


def default_procs() -> int:
    """One core is the node's; the client processes get the rest (at least one)."""
    return max(1, (os.cpu_count() or 2) - 1)


def run_bench(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    console = report.console(stderr=args.json)
    errors = Console(stderr=True, soft_wrap=True)
    names = [n.strip().lower() for n in args.workload.split(",") if n.strip()]
    known = set(ORDER)
    if unknown := [n for n in names if n not in known]:
        errors.print(f"taskd bench: unknown workload(s) {', '.join(unknown)}; known: {known}")
        return 2
    if min(args.tasks, args.clients, args.procs, args.workers, args.capacity, args.batch) < 1:
        errors.print(
            "taskd bench: --tasks, --clients, --procs, --workers, --capacity and --batch "
            "must be at least 1"
        )
        return 2
    if args.duration <= 0 or args.rate < 0:
        errors.print("taskd bench: --duration must be positive and --rate not negative")
        return 2

    urls = members.split_list(args.server_http) or [DEFAULT_HTTP]
    try:
        if args.cluster:
            targets = members.discover(urls)
        else:
            targets = members.resolve(urls, members.split_list(args.server_grpc))
    except ValueError as exc:
        errors.print(f"taskd bench: {exc}")
        return 2
    target = targets[0]
    try:
        statuses = [admin.probe_grpc(t) for t in targets]
    except admin.Unreachable as exc:
        errors.print(
            f"cannot reach taskd at {exc}: start a node with `taskd` or pass --server-grpc"
        )
        return 1
    status = "; ".join(statuses)
    if "w1c" in names:
        try:
            for url in dict.fromkeys(t.http_url for t in targets):
                admin.probe_http(url)
        except admin.Unreachable as exc:
            errors.print(
                f"cannot reach taskd at {exc}: start a node with `taskd` or pass --server-http"
            )
            return 1
    http_url = ", ".join(dict.fromkeys(t.http_url for t in targets))

    settings = Settings(
        target=target,
        queue=args.queue or f"bench-{uuid.uuid4().hex[:8]}",
        tasks=args.tasks,
        clients=args.clients,
        procs=args.procs,
        duration=args.duration,
        rate=args.rate,
        batch=args.batch,
        workers=args.workers,
        capacity=args.capacity,
        members=tuple(targets),
    )
    nodes = ", ".join(t.grpc_address for t in targets)
    console.print(
        f"taskd bench: {'members' if len(targets) > 1 else 'node'} {nodes} ({status}), "
        f"{http_url}; queue prefix {settings.queue}; {settings.clients} clients in up to "
        f"{settings.procs} client process(es) per role; {os.cpu_count()} CPUs",
        soft_wrap=True,
    )
    results: list[WorkloadResult] = []
    started = time.time()
    try:
        for step in plan(names, settings):
            results.append(step(console))
    except KeyboardInterrupt:
        console.print("taskd bench: interrupted")
        return 130
    finally:
        show(console, results, settings, args.json, started)
    return 0


def plan(names: list[str], s: Settings) -> list[Callable[[Console], WorkloadResult]]:
    steps: list[Callable[[Console], WorkloadResult]] = []
    for name in ORDER:  # a fixed order, whatever order they were asked in
        if name not in names:
            continue
        if name in ("w1a", "w1a-closed"):
            steps.append(lambda c: w1(s, c, "w1a", "unary", "one task per unary gRPC Submit"))
        if name == "w1a-open" or (name == "w1a" and s.rate > 0):
            steps.append(lambda c: w1_open(s, c))
        if name == "sdk-submit":
            steps.append(lambda c: w1_sdk(s, c))
        if name == "w1b":
            steps.append(lambda c: w1(s, c, "w1b", "batch", f"SubmitBatch of {s.batch} tasks"))
        if name == "w1c":
            steps.append(lambda c: w1(s, c, "w1c", "rest", REST_DESCRIPTION))
        if name == "w2":
            steps.append(lambda c: w2(s, c))
        if name == "w2-sdk":
            steps.append(lambda c: w2(s, c, sdk=True))
        if name == "w3":
            steps.append(lambda c: w3(s, c))
        if name == "w3-sdk":
            steps.append(lambda c: w3(s, c, sdk=True))
    return steps


def show(
    console: Console, results: list[WorkloadResult], s: Settings, as_json: bool, started: float
) -> None:
    if not results:
        return
    console.print(report.table(results))
    console.print(report.legend(results))
    if as_json:
        header = {
            "server_grpc": s.target.grpc_address,
            "server_http": s.target.http_url,
            "members": [{"grpc": t.grpc_address, "http": t.http_url} for t in s.targets],
            "queue_prefix": s.queue,
            "clients": s.clients,
            "client_processes_per_role": s.procs,
            "cpus": os.cpu_count(),
            "started": started,
        }
        sys.stdout.buffer.write(report.as_json(results, header) + b"\n")
        sys.stdout.flush()
