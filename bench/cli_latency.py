"""CLI latency: how long one `taskd list` takes, from exec to exit, dev venv vs the binary.

    .venv/bin/python -m bench.cli_latency [--binary dist/taskd] [--before OLD_BINARY]
                                          [--runs 20] [--tasks 50] [--json]

Theory of operation: one node from the dev venv (``bench.nodes``) gets ``--tasks`` tasks, so
``list`` prints a full page, the way a person sees it. Then each command below runs ``--runs``
times, the commands taking turns (run 1 of each, then run 2 of each...), so that a load
change on the machine hits every command alike. For each: the median and p90 of the wall time
(fork to reaped exit) and the median CPU time (user + system of the child, from wait4).

- ``python -c pass``: the floor, an interpreter that does nothing (the venv's python);
- the dev venv's ``taskd list``;
- the binary's ``taskd list`` and ``taskd list --json``, its per-build cache warm (its first,
  extracting run is timed on its own, on a fresh cache directory, ``--cold`` times);
- the binary with nowhere to cache (HOME unwritable): extracted to a temp dir, run and
  removed on every call, which is what PyInstaller's one-file mode does;
- ``--before``: a PyInstaller one-file build to compare with (e.g. one built from the
  previous build/taskd.spec).

Target (issue 8): the binary's warm client call, median under 200 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from bench.nodes import BenchCluster

TARGET_MS = 200.0
DESCRIPTION = "time `taskd list` from the dev venv and from the binary against one node"
ROOT = Path(__file__).resolve().parents[1]


@dataclass(slots=True)
class Command:
    name: str
    argv: list[str]
    env: dict[str, str]
    wall: list[float] = field(default_factory=list)  # seconds
    cpu: list[float] = field(default_factory=list)  # seconds

    def run_once(self) -> None:
        start = time.perf_counter()
        proc = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(proc.pid, 0)
        self.wall.append(time.perf_counter() - start)
        self.cpu.append(usage.ru_utime + usage.ru_stime)
        error = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: exit {proc.returncode}: {error.strip()}")

    def summary(self) -> dict[str, float | str | int]:
        ordered = sorted(self.wall)
        return {
            "command": self.name,
            "runs": len(self.wall),
            "median_ms": round(statistics.median(self.wall) * 1000, 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
            "cpu_median_ms": round(statistics.median(self.cpu) * 1000, 1),
        }


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TASKD_", "XDG_CACHE"))}
    return {**base, **extra}


def _cold_start(binary: Path, server: str, scratch: Path, times: int) -> list[float]:
    """Wall seconds of a first run (extraction included), each on a fresh cache directory."""
    results = []
    for i in range(times):
        cache = scratch / f"cold-{i}"
        command = Command(
            "cold", [str(binary), "list", "--server", server], _env(XDG_CACHE_HOME=str(cache))
        )
        command.run_once()
        results.append(command.wall[0])
        shutil.rmtree(cache, ignore_errors=True)
    return results


def _commands(args: argparse.Namespace, server: str, scratch: Path) -> list[Command]:
    listing = ["list", "--server", server]
    venv_taskd = Path(sys.executable).with_name("taskd")
    cache = scratch / "cache"
    unwritable = scratch / "home-is-a-file"
    unwritable.touch()
    tmpdir = scratch / "tmp"
    tmpdir.mkdir()
    commands = [
        Command("python -c pass (floor)", [sys.executable, "-c", "pass"], _env()),
        Command("dev venv: taskd list", [str(venv_taskd), *listing], _env()),
    ]
    if args.binary.exists():
        warm = _env(XDG_CACHE_HOME=str(cache))
        per_run = _env(HOME=str(unwritable), TMPDIR=str(tmpdir))
        commands += [
            Command("binary: taskd list (cache warm)", [str(args.binary), *listing], warm),
            Command("binary: taskd list --json", [str(args.binary), *listing, "--json"], warm),
            Command("binary, per-run extraction (no cache)", [str(args.binary), *listing], per_run),
        ]
        Command("warm-up", [str(args.binary), *listing], warm).run_once()
    else:
        print(f"cli_latency: {args.binary} not found; run `make build` to time the binary")
    if args.before:
        before_tmp = scratch / "before-tmp"
        before_tmp.mkdir()
        commands.append(
            Command(
                f"before: {args.before} list",
                [str(args.before), *listing],
                _env(TMPDIR=str(before_tmp)),
            )
        )
    return commands


def _fill(server: str, tasks: int) -> None:
    with httpx.Client(base_url=server, timeout=10.0) as client:
        for i in range(tasks):
            body = {"name": f"job-{i}", "payload": {"n": i}, "queue": "cli-latency"}
            response = client.post("/api/v1/tasks", json=body)
            response.raise_for_status()


def _print_table(rows: list[dict[str, float | str | int]], cold: list[float]) -> None:
    width = max(len(str(row["command"])) for row in rows)
    print(f"{'command':<{width}}  {'median ms':>9}  {'p90 ms':>7}  {'cpu ms':>7}")
    for row in rows:
        print(
            f"{row['command']!s:<{width}}  {row['median_ms']:>9}  {row['p90_ms']:>7}"
            f"  {row['cpu_median_ms']:>7}"
        )
    if cold:
        shown = ", ".join(f"{s * 1000:.0f}" for s in cold)
        print(f"binary, first run on an empty cache (extracts the build): {shown} ms")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_latency", description=DESCRIPTION)
    parser.add_argument("--binary", type=Path, default=ROOT / "dist" / "taskd")
    parser.add_argument("--before", type=Path, help="a one-file binary to compare with")
    parser.add_argument("--runs", type=int, default=20, help="runs per command (default 20)")
    parser.add_argument("--tasks", type=int, default=50, help="tasks in the node (default 50)")
    parser.add_argument("--cold", type=int, default=3, help="first runs to time (default 3)")
    parser.add_argument("--json", action="store_true", help="results as JSON on stdout")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.tasks < 0 or args.cold < 0:
        parser.error("--runs must be at least 1; --tasks and --cold at least 0")
    if args.before and not args.before.exists():
        parser.error(f"--before {args.before}: no such file")

    scratch = Path(tempfile.mkdtemp(prefix="taskd-cli-latency-"))
    try:
        with BenchCluster(1) as cluster:
            server = cluster.url(cluster.members[0])
            _fill(server, args.tasks)
            commands = _commands(args, server, scratch)
            for _ in range(args.runs):
                for command in commands:
                    command.run_once()
            cold = (
                _cold_start(args.binary, server, scratch, args.cold) if args.binary.exists() else []
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rows = [command.summary() for command in commands]
    warm = next((r for r in rows if str(r["command"]).startswith("binary: taskd list (")), None)
    verdict = None
    if warm is not None:
        met = float(warm["median_ms"]) < TARGET_MS
        verdict = (
            f"target: binary client call median < {TARGET_MS:.0f} ms — {'met' if met else 'missed'}"
        )
    if args.json:
        result = {"rows": rows, "cold_ms": [round(s * 1000, 1) for s in cold], "verdict": verdict}
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_table(rows, cold)
        if verdict:
            print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
