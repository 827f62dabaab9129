"""Child process of the crash test: proposes forever, printing each acknowledged command.

Usage: python -m tests.raft.crash_child DATA_DIR. Prints ``ready`` once serving, then one line
``<n>`` per acknowledged command ``item-<n>``, flushed before the next proposal is made by
that proposer. The parent SIGKILLs it at some point.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from taskd.node.raftstore import RaftStore
from tests.raft.fakes import AppendLog


async def main(data_dir: Path) -> None:
    store = RaftStore(data_dir, AppendLog(), snapshot_every=700)
    counter = iter(range(10**9))

    async def proposer() -> None:
        while True:
            batch = [next(counter) for _ in range(7)]
            await store.propose_many([f"item-{n}".encode() for n in batch])
            sys.stdout.write("".join(f"{n}\n" for n in batch))
            sys.stdout.flush()

    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        print("ready", flush=True)
        for _ in range(4):
            nursery.start_soon(proposer)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]))
