"""A real process, a real SIGKILL: nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from taskd.node.raftstore import RaftStore
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
    # Given a child process proposing and printing what was acknowledged
    child = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.raft.crash_child", str(tmp_path)],
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
