"""Child process of the crash test: proposes forever, printing each acknowledged command.

Usage: python -m tests.raft.crash_child DATA_DIR [SEGMENT_BYTES [FIRST_ITEM]]. Prints
``ready`` once serving, then one line ``<n>`` per acknowledged command ``item-<n>`` (counting
from FIRST_ITEM), flushed before the next proposal is made by that proposer. The parent
SIGKILLs it at some point.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from taskd.store.raft.driver import RaftStore
from tests.raft.fakes import AppendLog


async def main(data_dir: Path, segment_bytes: int, first_item: int) -> None:
    store = RaftStore(data_dir, AppendLog(), snapshot_every=700, segment_bytes=segment_bytes)
    counter = iter(range(first_item, 10**9))

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
    args = sys.argv[1:]
    trio.run(
        main,
        Path(args[0]),
        int(args[1]) if len(args) > 1 else 64 << 20,
        int(args[2]) if len(args) > 2 else 0,
    )
