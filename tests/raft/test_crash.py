"""A real process, a real SIGKILL: nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from taskd.store.raft.driver import RaftStore
from tests.raft.fakes import AppendLog

ROOT = Path(__file__).resolve().parents[2]


async def read_acknowledged(stream: trio.abc.ReceiveStream, count: int) -> list[int]:
    """Read ``ready`` and then ``count`` acknowledged numbers, one per line."""
    buffer = b""
    lines: list[bytes] = []
    while len(lines) < count + 1:
        chunk = await stream.receive_some()
        assert chunk, f"child exited early after {len(lines)} lines"
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        lines.extend(complete)
    assert lines[0] == b"ready"
    return [int(line) for line in lines[1:]]


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [300, 3000])
async def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, kill_after: int) -> None:
    await crash_and_check(tmp_path, kill_after)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [20, 170, 777, 2500])
async def test_sigkill_with_small_segments_never_refuses_and_loses_nothing(
    tmp_path: Path, kill_after: int
) -> None:
    # rotation, compaction behind snapshots and the durable mark all in the crash window
    first = await crash_and_check(tmp_path, kill_after, segment_bytes=2048)
    # and a second crash on the recovered log, then a clean start with both runs' entries
    second = await crash_and_check(tmp_path, kill_after, segment_bytes=2048, first_item=10**8)
    assert not (first - second), "the second crash lost entries of the first run"


async def crash_and_check(
    tmp_path: Path, kill_after: int, segment_bytes: int = 64 << 20, first_item: int = 0
) -> set[int]:
    """Run the crash child, SIGKILL it after ``kill_after`` acknowledgements, reopen the log
    (which must not refuse) and check every acknowledged item is there once; return them."""
    child = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "tests.raft.crash_child",
            str(tmp_path),
            str(segment_bytes),
            str(first_item),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    try:
        with trio.fail_after(30):
            acknowledged = await read_acknowledged(child.stdout, kill_after)
        # When it is killed mid-stream
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        await child.wait()
    # Expect every acknowledged command in the reopened log, each applied once
    machine = AppendLog()
    async with trio.open_nursery() as nursery:
        await nursery.start(RaftStore(tmp_path, machine).serve)
        nursery.cancel_scope.cancel()
    recovered = {int(item.removeprefix(b"item-")) for item in machine.items}
    missing = set(acknowledged) - recovered
    assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
    assert len(machine.items) == len(recovered)
    return recovered
