"""W7: `true` through LocalExecutor with a fake source; prints tasks/s.

Run: .venv/bin/python tests/exec/bench_w7.py [--tasks 2000] [--concurrency 8] [--no-pdeathsig]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from conftest import FakeSource

from taskd.exec.concurrency import Concurrency
from taskd.exec.local import LocalExecutor


async def main(tasks: int, concurrency: str, die_with_node: bool, argv: list[str]) -> None:
    source = FakeSource()
    ids = [source.submit() for _ in range(tasks)]
    executor = LocalExecutor(
        "q",
        argv,
        source,
        worker="bench",
        concurrency=Concurrency.parse(concurrency),
        die_with_node=die_with_node,
    )
    async with trio.open_nursery() as nursery:
        start = time.perf_counter()
        await nursery.start(executor.serve)
        await source.settled(*ids)
        elapsed = time.perf_counter() - start
        await executor.drain(0)
    ok = sum(source.tasks[t].result == b"" for t in ids)
    print(
        f"{tasks} tasks ({ok} succeeded) in {elapsed:.2f} s: {tasks / elapsed:.0f} tasks/s "
        f"(concurrency {concurrency}, pdeathsig {'on' if die_with_node else 'off'})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", default="8")
    parser.add_argument("--no-pdeathsig", action="store_true")
    parser.add_argument("--command", default="true")
    args = parser.parse_args()
    trio.run(main, args.tasks, args.concurrency, not args.no_pdeathsig, args.command.split())
