"""A real node refuses a damaged data dir in one line, and starts with the flag saying what
it dropped.

Given a node that acknowledged some submitted tasks over REST and was stopped,
When a file of its data dir is damaged (zeros, a cut, a deletion, a flipped bit),
Expect the next start to exit 1 with one line naming the file and the remedy; a start with
``--accept-data-loss`` (or ``TASKD_ACCEPT_DATA_LOSS=1``) to come up, log at ERROR what it
dropped, and keep a prefix of the tasks; and the start after that to be clean. Bytes
appended after the last synced write (a torn write) are cut without a word of refusal.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import NodeProcess
from tests.node.rest import get, post

pytestmark = pytest.mark.slow

BATCHES = 12
PER_BATCH = 50


def submit_tasks(node: NodeProcess) -> list[str]:
    ids: list[str] = []
    for b in range(BATCHES):
        status, body = post(
            f"{node.http_url}/api/v1/tasks/batch",
            {
                "tasks": [
                    {"queue": "damage", "payload": {"b": b, "i": i, "pad": "x" * 40}}
                    for i in range(PER_BATCH)
                ]
            },
        )
        assert status == 201, body
        ids.extend(t["id"] for t in body["tasks"])
    return ids


def present(node: NodeProcess, ids: list[str]) -> list[str]:
    found = []
    for task_id in ids:
        status, _ = get(f"{node.http_url}/api/v1/tasks/{task_id}")
        assert status in (200, 404)
        if status == 200:
            found.append(task_id)
    return found


def raft_dir(node: NodeProcess) -> Path:
    return Path(node.args[node.args.index("--data-dir") + 1]) / "raft"


def only_segment(node: NodeProcess) -> Path:
    (segment,) = sorted(raft_dir(node).glob("*.log"))
    return segment


def zero(length: int, where: Callable[[int], int]) -> Callable[[NodeProcess], Path]:
    def act(node: NodeProcess) -> Path:
        segment = only_segment(node)
        buf = bytearray(segment.read_bytes())
        at = where(len(buf))
        buf[at : at + length] = bytes(len(buf[at : at + length]))
        segment.write_bytes(bytes(buf))
        return segment

    return act


def cut_to(fraction: float) -> Callable[[NodeProcess], Path]:
    def act(node: NodeProcess) -> Path:
        segment = only_segment(node)
        with segment.open("r+b") as f:
            f.truncate(int(segment.stat().st_size * fraction))
        return segment

    return act


def delete(name: str) -> Callable[[NodeProcess], Path]:
    def act(node: NodeProcess) -> Path:
        path = only_segment(node) if name == "segment" else raft_dir(node) / name
        path.unlink()
        return path

    return act


def flip_snapshot(node: NodeProcess) -> Path:
    # the newest: a snapshot child stopped between its rename and removing the older one
    # may have left two, and recovery uses the newest (a child cut short by the stop may have
    # left a .tmp file, which recovery ignores)
    done = [p for p in raft_dir(node).glob("snapshot-*") if not p.name.endswith(".tmp")]
    snapshot = sorted(done)[-1]
    buf = bytearray(snapshot.read_bytes())
    buf[len(buf) // 2] ^= 0x04
    snapshot.write_bytes(bytes(buf))
    return snapshot


DAMAGE = {
    "4 KiB of zeros at offset 0": zero(4096, lambda size: 0),
    "1 KiB of zeros in the middle": zero(1024, lambda size: size // 2),
    "1 byte of zeros just before the end": zero(1, lambda size: size - 3),
    "cut to 0 bytes": cut_to(0.0),
    "cut to 60%": cut_to(0.6),
    "segment deleted": delete("segment"),
    "hard state deleted": delete("hardstate"),
    "durable mark deleted": delete("durable"),
    "snapshot damaged": flip_snapshot,
}


def expect_refusal(node: NodeProcess, path: Path) -> str:
    node.start()
    proc = node.proc
    assert proc is not None
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        node.kill()
        pytest.fail("a node on a damaged data dir started instead of refusing")
    text = node.stderr_text()
    this_run = text[text.rindex("[conftest] run") :]
    last = this_run.strip().splitlines()[-1]
    assert code == 1, this_run
    assert "Traceback" not in this_run
    assert last.startswith("taskd: the Raft log is damaged: "), last
    assert path.name in last and "--accept-data-loss" in last and "Restore" in last, last
    return last


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_damage_is_refused_in_one_line_then_accepted_with_the_flag(node_factory, damage):
    # Given a node with acknowledged tasks (and a snapshot, for the snapshot case)
    snapshots = damage == "snapshot damaged"
    node = node_factory(*(["--snapshot-every", "5"] if snapshots else []))  # 1 batch, 1 entry
    ids = submit_tasks(node)
    deadline = time.monotonic() + 20
    while snapshots and not [
        p for p in raft_dir(node).glob("snapshot-*") if not p.name.endswith(".tmp")
    ]:
        assert time.monotonic() < deadline, "no snapshot was written"
        time.sleep(0.05)  # snapshots are written in the background
    assert node.terminate() == 0
    # When a file of its data dir is damaged
    path = DAMAGE[damage](node)
    # Expect one line naming the file and the remedy, exit 1
    expect_refusal(node, path)
    # and with the flag (the env form for one case), a start that says what it dropped
    if damage == "cut to 60%":
        node.extra_env["TASKD_ACCEPT_DATA_LOSS"] = "1"
    else:
        node.args.append("--accept-data-loss")
    node.restart()
    this_run = node.stderr_text()[node.stderr_text().rindex("[conftest] run") :]
    assert "accepting data loss" in this_run and "Dropped" in this_run, this_run
    kept = present(node, ids)
    assert kept == ids[: len(kept)], "the node kept tasks that are not a prefix of the log"
    assert node.terminate() == 0
    # and the start after it is clean, without the flag
    node.extra_env.pop("TASKD_ACCEPT_DATA_LOSS", None)
    if "--accept-data-loss" in node.args:
        node.args.remove("--accept-data-loss")
    node.restart()
    assert present(node, ids) == kept


def test_a_torn_write_after_the_last_sync_is_cut_and_every_task_kept(node_factory):
    node = node_factory()
    ids = submit_tasks(node)
    assert node.terminate() == 0
    segment = only_segment(node)
    with segment.open("ab") as f:
        f.write(b"\x31\x00\x00\x00\x01" + b"\x00" * 3000)  # a record header, then nothing
    node.restart()
    assert present(node, ids) == ids
    assert "torn write" in node.stderr_text()
