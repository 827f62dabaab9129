"""``python -m bench.peers``: design.md §4's W1a, W2 and W3 on Celery, RQ and Dramatiq, then on
taskd, in one run on one machine; one table of ratios.

    .venv/bin/python -m bench.peers [--systems LIST] [--workloads w1a,w2,w3] [--tasks 20000]
        [--rate 200] [--duration 10] [--runs 1] [--json [FILE]] [--markdown FILE]
        [--update-readme] [--check-targets]

Theory of operation: this process runs in taskd's venv and never imports a peer. Each peer
measurement is one ``bench.peers.agent`` child in the peers' own venv (``.venv-peers``, made on
first use by ``bench.peers.venv``); taskd's is one ``taskd bench`` child against a fresh node
(``bench.peers.taskd_side``). Every child runs in a process group of its own, killed when it
is done, so no worker outlives its measurement, whether the run ends, fails or is interrupted
(SIGINT or SIGTERM). Systems run one at a time, in a fixed order, taskd last; with ``--runs N``
the whole sequence repeats N times and each figure is the median of its N values.

The peers use the services already running here: Redis (its own DB index, 9 by default, flushed
before and after each measurement; never DB 0, never FLUSHALL) and RabbitMQ (their own queue,
deleted before and after). The table goes to stdout (stderr when ``--json -`` takes stdout);
``--markdown FILE`` writes the generated block and ``--update-readme`` rewrites it between the
``peers-table`` markers of bench/README.md and README.md: the numbers are never typed by hand.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench.peers import jobs, procs, table, taskd_side, venv
from bench.peers.table import Measure

ROOT = Path(__file__).resolve().parents[2]
READMES = (ROOT / "bench" / "README.md", ROOT / "README.md")
PEERS = table.SYSTEMS[:-1]
AGENT_TIMEOUT = 3600.0


def _names(known: Sequence[str], what: str) -> Any:
    def parse(value: str) -> list[str]:
        names = [n.strip().lower() for n in value.split(",") if n.strip()]
        if unknown := [n for n in names if n not in known]:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}"
            )
        if not names:
            raise argparse.ArgumentTypeError(f"no {what} given")
        return [n for n in known if n in names]  # the fixed order, whatever order given

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description="Celery, RQ and Dramatiq side by side with taskd (design.md §4 W1a, W2, "
        "W3); one table of ratios, > 1 meaning taskd is better.",
    )
    p.add_argument(
        "--systems",
        type=_names(table.SYSTEMS, "system"),
        default=list(table.SYSTEMS),
        help=f"comma-separated, run in this order: {','.join(table.SYSTEMS)} (default: all)",
    )
    p.add_argument(
        "--workloads",
        type=_names(table.WORKLOADS, "workload"),
        default=list(table.WORKLOADS),
        help="comma-separated: w1a (enqueue), w2 (end to end), w3 (pickup) (default: all)",
    )
    p.add_argument("--tasks", type=int, default=20_000, help="tasks of W1a and of W2")
    p.add_argument("--rate", type=float, default=200.0, help="W3: tasks/s offered")
    p.add_argument("--duration", type=float, default=10.0, help="W3: seconds")
    p.add_argument("--runs", type=int, default=1, help="repeat everything; report medians")
    p.add_argument("--clients", type=int, default=8, help="concurrent producer clients")
    p.add_argument(
        "--producers",
        choices=("processes", "threads"),
        default="processes",
        help="the peers' producers: forked processes or threads of one process",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=os.cpu_count() or 2,
        help="the peers' worker processes (Celery prefork pool, RQ workers, Dramatiq "
        "processes) (default: the cores, %(default)s)",
    )
    p.add_argument(
        "--rq-worker",
        choices=("simple", "fork"),
        default="simple",
        help="RQ's SimpleWorker (jobs in the worker process, the default here) or its default "
        "Worker (a fork per job)",
    )
    p.add_argument("--redis-url", default=jobs.DEFAULT_REDIS, help="a DB of its own, flushed")
    p.add_argument("--amqp-url", default=jobs.DEFAULT_AMQP)
    p.add_argument("--queue", default=jobs.DEFAULT_QUEUE, help="the peers' queue name")
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write every result (each run, the medians, the targets) as JSON to FILE "
        "(no FILE or -: stdout, and the table goes to stderr)",
    )
    p.add_argument("--markdown", metavar="FILE", help="write the generated Markdown block")
    p.add_argument(
        "--update-readme",
        action="store_true",
        help="rewrite the peers-table block of bench/README.md and README.md",
    )
    p.add_argument(
        "--check-targets",
        action="store_true",
        help="exit 1 unless both targets are measured and met",
    )
    p.add_argument("--peers-venv", type=Path, default=venv.DEFAULT, help=argparse.SUPPRESS)
    return p


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(list(argv))
    if min(args.tasks, args.runs, args.clients, args.concurrency) < 1:
        p.error("--tasks, --runs, --clients and --concurrency must be at least 1")
    if args.rate <= 0 or args.duration <= 0:
        p.error("--rate and --duration must be positive")
    try:
        jobs.Settings(redis_url=args.redis_url).validate()
    except ValueError as exc:
        p.error(f"--redis-url: {exc}")
    return args


def measured_command(args: argparse.Namespace) -> str:
    """The command line that reproduces the numbers (output flags left out)."""
    words = ["python", "-m", "bench.peers"]
    if args.systems != list(table.SYSTEMS):
        words += ["--systems", ",".join(args.systems)]
    if args.workloads != list(table.WORKLOADS):
        words += ["--workloads", ",".join(args.workloads)]
    words += ["--tasks", str(args.tasks), "--rate", f"{args.rate:g}"]
    words += ["--duration", f"{args.duration:g}", "--runs", str(args.runs)]
    if args.clients != 8:
        words += ["--clients", str(args.clients)]
    if args.producers != "processes":
        words += ["--producers", args.producers]
    if args.rq_worker != "simple":
        words += ["--rq-worker", args.rq_worker]
    return shlex.join(words)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def agent_command(python: Path, system: str, workload: str, args: argparse.Namespace) -> list[str]:
    return [
        str(python), "-m", "bench.peers.agent",
        "--system", system, "--workload", workload,
        "--tasks", str(args.tasks), "--clients", str(args.clients),
        "--producers", args.producers, "--rate", f"{args.rate:g}",
        "--duration", f"{args.duration:g}", "--concurrency", str(args.concurrency),
        "--rq-worker", args.rq_worker, "--redis-url", args.redis_url,
        "--amqp-url", args.amqp_url, "--queue", args.queue,
    ]  # fmt: skip


def run_peer(
    python: Path, system: str, workload: str, args: argparse.Namespace, versions: dict[str, str]
) -> Measure:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = agent_command(python, system, workload, args)
    code, stdout = procs.run_child(argv, cwd=ROOT, env=env, timeout=AGENT_TIMEOUT)
    if code != 0 or not stdout.strip():
        return Measure(system, workload, failed=f"the agent exited {code} (its stderr is above)")
    body = orjson.loads(stdout.strip().splitlines()[-1])
    versions.update(body.get("versions") or {})
    return Measure.from_json(body)


def run_all(args: argparse.Namespace, python: Path | None, versions: dict[str, str]) -> Any:
    """Every run of every system; a list of runs, each a list of measures."""
    runs: list[list[Measure]] = []
    for number in range(1, args.runs + 1):
        run: list[Measure] = []
        for system in args.systems:
            say(f"== run {number}/{args.runs}: {system} ({', '.join(args.workloads)})")
            if system == "taskd":
                load = taskd_side.Load(args.tasks, args.clients, args.rate, args.duration)
                run += taskd_side.run(args.workloads, load)
                continue
            assert python is not None  # ensured for any peer
            for workload in args.workloads:
                run.append(run_peer(python, system, workload, args, versions))
        runs.append(run)
    return runs


def meta(args: argparse.Namespace, versions: dict[str, str]) -> table.Meta:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    settings = {
        "tasks": args.tasks,
        "clients": args.clients,
        "producers": args.producers,
        "rate": args.rate,
        "duration": args.duration,
        "concurrency": args.concurrency,
        "rq_worker": args.rq_worker,
    }
    return table.Meta(
        when=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=platform.machine(),
        cores=os.cpu_count() or 0,
        cpu=cpu,
        python=f"{platform.python_implementation()} {platform.python_version()}",
        command=measured_command(args),
        runs=args.runs,
        settings=settings,
        versions=dict(versions),
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every child's cleanup


def write_outputs(
    args: argparse.Namespace, runs: list[list[Measure]], info: table.Meta
) -> list[table.Measure]:
    medians = table.medians(runs)
    out = sys.stderr if args.json == "-" else sys.stdout
    print("\n" + table.text(medians, info.settings), file=out, end="", flush=True)
    block = table.markdown(medians, info)
    if args.markdown:
        Path(args.markdown).write_text(block)
    if args.update_readme:
        for readme in READMES:
            readme.write_text(table.replace_block(readme.read_text(), block))
            say(f"updated {readme.relative_to(ROOT)}")
    if args.json:
        body = {
            "meta": {
                "when": info.when,
                "machine": info.machine,
                "cores": info.cores,
                "cpu": info.cpu,
                "python": info.python,
                "command": info.command,
                "settings": dict(info.settings),
                "versions": dict(info.versions),
            },
            "runs": [[m.to_json() for m in run] for run in runs],
            "medians": [m.to_json() for m in medians],
            "targets": [
                {"target": t.name, "met": t.met, "detail": t.detail} for t in table.targets(medians)
            ],
        }
        data = orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"
        if args.json == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            Path(args.json).write_bytes(data)
    return medians


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    versions: dict[str, str] = {}
    try:
        python = venv.ensure(args.peers_venv) if set(args.systems) & set(PEERS) else None
        runs = run_all(args, python, versions)
    except KeyboardInterrupt:
        say("bench.peers: interrupted; every worker it started is stopped")
        return 130
    medians = write_outputs(args, runs, meta(args, versions))
    if any(m.failed for m in medians):
        return 1
    if args.check_targets and not all(t.met for t in table.targets(medians)):
        return 1
    return 0
