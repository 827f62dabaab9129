"""Throughput of the Raft log on this machine (not a test; run it by hand).

    .venv/bin/python -m tests.raft.bench_raftstore [DIR]

Measures: record encoding (entries/s); 8 concurrent proposers each doing ``propose_many`` of
100 items; one proposer doing sequential ``propose`` calls, next to the raw fdatasync latency.
Every acknowledged proposal is fsynced. DIR defaults to a temp dir under the current directory
(so it measures the disk the data dir would be on, not a tmpfs).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import trio

from taskd.raft import records
from taskd.raft.types import Entry
from taskd.store.raft.driver import RaftStore


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def apply(self, index: int, data: bytes) -> object:
        self.n += 1
        return self.n

    def snapshot(self) -> bytes:
        return str(self.n).encode()

    def restore(self, data: bytes) -> None:
        self.n = int(data)


def bench_encode() -> None:
    entries = [Entry(1, i, b"x" * 100) for i in range(1, 200_001)]
    start = time.perf_counter()
    buf = records.encode_entries(entries)
    took = time.perf_counter() - start
    print(f"encode_entries: {len(entries) / took:,.0f} entries/s (100-byte payloads)")
    start = time.perf_counter()
    records.scan(buf, 1)
    print(f"scan:           {len(entries) / (time.perf_counter() - start):,.0f} entries/s")


def bench_fsync(directory: Path) -> None:
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    start = time.perf_counter()
    for _ in range(500):
        os.write(fd, b"x" * 128)
        os.fdatasync(fd)
    took = (time.perf_counter() - start) / 500
    os.close(fd)
    path.unlink()
    print(f"raw write+fdatasync: {took * 1e3:.3f} ms ({1 / took:,.0f}/s)")


async def bench_concurrent(directory: Path, proposers: int = 8, batches: int = 300) -> None:
    store = RaftStore(directory / "concurrent", Counter())
    payload = b"p" * 100

    async def proposer() -> None:
        for _ in range(batches):
            await store.propose_many([payload] * 100)

    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        start = time.perf_counter()
        async with trio.open_nursery() as inner:
            for _ in range(proposers):
                inner.start_soon(proposer)
        took = time.perf_counter() - start
        total = proposers * batches * 100
        print(
            f"{proposers} proposers x propose_many(100): {total / took:,.0f} proposals/s "
            f"({total:,} in {took:.2f}s, {store.fsync_rounds:,} fsync rounds, "
            f"{total / store.fsync_rounds:.0f} entries/round)"
        )
        nursery.cancel_scope.cancel()


async def bench_sequential(directory: Path, count: int = 5000) -> None:
    store = RaftStore(directory / "sequential", Counter())
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        start = time.perf_counter()
        for _ in range(count):
            await store.propose(b"p" * 100)
        took = time.perf_counter() - start
        print(
            f"1 proposer, sequential propose: {count / took:,.0f} proposals/s "
            f"({took / count * 1e3:.3f} ms each)"
        )
        nursery.cancel_scope.cancel()


def main() -> None:
    parent = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    with tempfile.TemporaryDirectory(dir=parent, prefix="raftbench-") as tmp:
        directory = Path(tmp)
        bench_encode()
        bench_fsync(directory)
        trio.run(bench_concurrent, directory)
        trio.run(bench_sequential, directory)


if __name__ == "__main__":
    main()
