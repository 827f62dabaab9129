"""``python -m chaos [--duration S] [--nodes N] [--seed N] [--runs K] [--store raft|postgres|redis]
...``; ``check FILE``; ``timeline FILE`` (the run's faults, leader changes and writes per second,
in time order). ``--store postgres|redis``: the nodes on a fresh shared database, made and
removed by ``chaos.databases`` (README.md).

Exit status: 0 when the account has no violation, 1 when it has, 2 when the run itself could
not happen (bad flags, a cluster that never came up).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import sys
import time
from pathlib import Path

import orjson
import trio
from rich.console import Console

from chaos import checker, databases, report
from chaos.cluster import DEFAULT_TASKD
from chaos.history import History
from chaos.load import LoadConfig
from chaos.run import ChaosRun, RunError, Settings
from chaos.timeline import timeline


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Run a taskd cluster under load and faults, then check what it did.",
    )
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load and faults")
    p.add_argument("--nodes", type=int, default=3, help="cluster members (default 3)")
    p.add_argument("--seed", type=int, default=None, help="nemesis and load seed (default: time)")
    p.add_argument(
        "--runs", type=int, default=1, help="runs with seeds SEED, SEED+1, ... (exit: the worst)"
    )
    p.add_argument("--clients", type=int, default=4, help="concurrent submitting clients")
    p.add_argument("--workers", type=int, default=3, help="HTTP workers")
    p.add_argument(
        "--exec",
        action="store_true",
        help="also run --exec executors on every node (queue chaos-exec, command `cat`)",
    )
    p.add_argument("--out", type=Path, help="run dir (default chaos-runs/<time>-seed<seed>)")
    p.add_argument(
        "--taskd",
        default=None,
        help="the node command (default: this Python's `-m taskd`; e.g. dist/taskd)",
    )
    p.add_argument("--election-timeout", type=float, default=None, help="nodes' flag")
    p.add_argument("--node-arg", action="append", default=[], help="extra node flag (repeat)")
    p.add_argument(
        "--no-proxies",
        action="store_true",
        help="nodes dial each other directly (no partitions or slow links; kills and pauses only)",
    )
    p.add_argument("--keep-data", action="store_true", help="keep the nodes' data dirs")
    p.add_argument(
        "--store",
        choices=("raft", *databases.KINDS),
        default="raft",
        help="raft (default: --peers), or nodes on a fresh database of the machine's PostgreSQL "
        "(127.0.0.1:5432) or Redis (127.0.0.1:6379), each behind its own proxy to it",
    )
    p.add_argument(
        "--store-lease",
        type=float,
        default=1.0,
        help="the nodes' --store-lease on postgres or redis (default 1 s)",
    )
    return p


def _console() -> Console:
    console = Console()
    if not console.is_terminal:  # CI, a pipe: wide enough for the table's counts on one line
        console.width = max(console.width, 120)
    return console


def check_file(path: Path) -> int:
    history = History.from_json(path.read_bytes())
    account = checker.account(history)
    report.show(_console(), history, account)
    return 0 if account.ok else 1


def main(argv: list[str]) -> int:
    if argv[:1] in (["check"], ["timeline"]):
        if len(argv) != 2:
            print(f"usage: python -m chaos {argv[0]} RUN_DIR/history.json", file=sys.stderr)
            return 2
        if argv[0] == "timeline":
            lines = timeline(History.from_json(Path(argv[1]).read_bytes()))
            with contextlib.suppress(BrokenPipeError):  # `| head` is a fine way to read it
                sys.stdout.write("\n".join(lines) + "\n")
            return 0
        return check_file(Path(argv[1]))
    args = parser().parse_args(argv)
    if args.nodes < 1 or args.duration <= 0 or args.clients < 1 or args.workers < 1:
        print("chaos: --nodes, --clients, --workers >= 1 and --duration > 0", file=sys.stderr)
        return 2
    first = args.seed if args.seed is not None else int(time.time()) % 100_000
    if args.runs < 1:
        print("chaos: --runs must be at least 1", file=sys.stderr)
        return 2
    if args.runs == 1:
        return run_one(args, first, args.out)
    console = _console()
    verdicts: list[tuple[int, int]] = []
    for seed in range(first, first + args.runs):  # each its own dir: chaos-runs/<time>-seed<n>
        verdicts.append((seed, run_one(args, seed, args.out / f"seed{seed}" if args.out else None)))
    for seed, code in verdicts:
        console.print(f"chaos: seed {seed}: {('PASS', 'FAIL', 'NO RUN')[min(code, 2)]}")
    return max(code for _, code in verdicts)


def run_one(args: argparse.Namespace, seed: int, out: Path | None) -> int:
    """One run with ``seed``: 0 clean, 1 violations, 2 no run."""
    if args.store == "raft":
        return _run_on(args, seed, out, None)
    try:
        with databases.fresh(args.store) as database:
            return _run_on(args, seed, out, database)
    except databases.DatabaseError as exc:
        print(f"chaos: the run could not happen: {exc}", file=sys.stderr)
        return 2


def _run_on(
    args: argparse.Namespace, seed: int, out: Path | None, database: databases.Database | None
) -> int:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = out or Path("chaos-runs") / f"{stamp}-seed{seed}"
    load = LoadConfig(
        clients=args.clients,
        workers=args.workers,
        exec_queue="chaos-exec" if args.exec else None,
        seed=seed,
    )
    settings = Settings(
        duration=args.duration,
        nodes=args.nodes,
        seed=seed,
        out=out,
        load=load,
        election_timeout=args.election_timeout,
        node_args=tuple(args.node_arg),
        keep_data=args.keep_data,
        proxied=not args.no_proxies,
        taskd=tuple(shlex.split(args.taskd)) if args.taskd else DEFAULT_TASKD,
        database=database,
        store_lease=args.store_lease,
    )
    console = _console()
    console.print(f"chaos: run dir {out} (seed {seed}; replay the schedule with --seed {seed})")
    if database is not None:
        console.print(f"chaos: nodes on {database.kind} {database.name} (removed afterwards)")
    run = ChaosRun(settings, say=lambda line: console.print(line, soft_wrap=True))
    try:
        history = trio.run(run.run)
    except RunError as exc:
        console.print(f"chaos: the run could not happen: {exc}", style="bold red")
        return 2
    (out / "history.json").write_bytes(history.to_json())
    account = checker.account(history)
    (out / "account.json").write_bytes(
        orjson.dumps(account.to_json(), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    text = Console(file=io.StringIO(), width=120, record=True)  # the table, for account.txt
    report.show(text, history, account)
    (out / "account.txt").write_text(text.export_text())
    report.show(console, history, account)
    console.print(f"chaos: history and account in {out}")
    return 0 if account.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
