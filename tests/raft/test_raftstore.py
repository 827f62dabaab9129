"""RaftStore end to end on a real disk, with a behaving append-only state machine."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from taskd.errors import Unavailable
from taskd.node.disklog import DiskLog
from taskd.node.raftstore import RaftStore
from taskd.node.store import Store
from tests.raft.fakes import AppendLog


@asynccontextmanager
async def running(store: RaftStore) -> AsyncIterator[RaftStore]:
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        yield store
        nursery.cancel_scope.cancel()


def make(tmp_path: Path, snapshot_every: int = 100_000) -> tuple[RaftStore, AppendLog]:
    machine = AppendLog()
    return RaftStore(tmp_path, machine, snapshot_every=snapshot_every), machine


async def test_propose_returns_the_state_machines_result(tmp_path: Path) -> None:
    store, machine = make(tmp_path)
    seam: Store = store  # RaftStore is the node's store seam
    async with running(store):
        result = await seam.propose(b"a")
        assert result == (2, 0)  # index 1 is the term's no-op
        assert await store.propose_many([b"b", b"c"]) == [(3, 1), (4, 2)]
        assert await store.propose_many([]) == []
        status = store.status()
        assert (status.role, status.leader, status.term) == ("leader", "n1", 1)
        assert status.commit_index == status.applied_index == 4
    assert machine.items == [b"a", b"b", b"c"]


async def test_propose_before_serving_is_unavailable(tmp_path: Path) -> None:
    store, _ = make(tmp_path)
    with pytest.raises(Unavailable, match="not serving"):
        await store.propose(b"x")


async def test_concurrent_proposals_apply_once_in_order_and_answer_their_caller(
    tmp_path: Path,
) -> None:
    store, machine = make(tmp_path)
    answers: dict[bytes, object] = {}

    async def proposer(worker: int) -> None:
        for n in range(30):
            data = f"{worker}:{n}".encode()
            if n % 3:
                answers[data] = await store.propose(data)
            else:
                batch = [data + b"/0", data + b"/1"]
                for item, answer in zip(batch, await store.propose_many(batch), strict=True):
                    answers[item] = answer

    async with running(store):
        async with trio.open_nursery() as nursery:
            for worker in range(8):
                nursery.start_soon(proposer, worker)
        # Expect every command applied exactly once, in index order
        assert len(machine.items) == len(set(machine.items)) == len(answers)
        assert machine.indexes == sorted(machine.indexes)
        # and every caller got back its own command's result
        for data, answer in answers.items():
            assert isinstance(answer, tuple)
            index, position = answer
            assert machine.items[position] == data
            assert machine.indexes[position] == index
        # with fewer fsync rounds than proposals: group commit
        assert store.fsync_rounds < len(answers) / 4


async def test_state_and_term_survive_restart(tmp_path: Path) -> None:
    store, _ = make(tmp_path)
    async with running(store):
        await store.propose_many([b"a", b"b"])
    store2, machine2 = make(tmp_path)
    async with running(store2):
        # Expect the replayed commands, a new term, and new commands after them
        assert machine2.items == [b"a", b"b"]
        assert store2.status().term == 2
        assert await store2.propose(b"c") == (5, 2)  # 1 no-op, a, b, 4 no-op, c
    store3, machine3 = make(tmp_path)
    async with running(store3):
        assert machine3.items == [b"a", b"b", b"c"]
        assert store3.status().term == 3


async def test_snapshots_compact_the_log_and_restart_gives_the_same_state(
    tmp_path: Path,
) -> None:
    store, machine = make(tmp_path, snapshot_every=50)
    async with running(store):
        for n in range(20):
            await store.propose_many([f"{n}-{k}".encode() for k in range(10)])
        assert store.status().applied_index == 201
        # a forked child writes each snapshot; wait for the first one to land
        with trio.fail_after(10):
            await store.wait_for_snapshot()
    # (leaving ``running`` kills a snapshot child still in flight; finished ones stay, and
    # one killed between its rename and removing the older one leaves two: recovery keeps
    # the newest, so count after it, with no new snapshot under way)
    store2, machine2 = make(tmp_path, snapshot_every=10**9)
    async with running(store2):
        snapshots = list((tmp_path / "raft").glob("snapshot-*"))
        assert len(snapshots) == 1
        assert machine2.items == machine.items
        assert machine2.indexes == machine.indexes


@pytest.mark.slow
async def test_large_replay_in_chunks(tmp_path: Path) -> None:
    store, _ = make(tmp_path, snapshot_every=10**9)
    async with running(store):
        for _ in range(5):
            await store.propose_many([b"x"] * 10_000)
    store2, machine2 = make(tmp_path, snapshot_every=10**9)
    async with running(store2):
        assert len(machine2.items) == 50_000


async def test_disk_error_fails_proposals_and_stops_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, machine = make(tmp_path)
    async with running(store):
        await store.propose(b"ok")

        def broken_sync(self: DiskLog) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(DiskLog, "sync", broken_sync)
        with pytest.raises(Unavailable, match="Input/output error") as caught:
            await store.propose(b"lost")
        assert str(tmp_path) in str(caught.value)
        with pytest.raises(Unavailable):
            await store.propose(b"after")
    assert machine.items == [b"ok"]


async def test_state_machine_receives_noops_with_empty_data(tmp_path: Path) -> None:
    seen: list[tuple[int, bytes]] = []

    class Recorder(AppendLog):
        def apply(self, index: int, data: bytes) -> object:
            seen.append((index, data))
            return super().apply(index, data)

    store = RaftStore(tmp_path, Recorder())
    async with running(store):
        await store.propose(b"x")
    assert seen == [(1, b""), (2, b"x")]


class _SlowSnapshots(AppendLog):
    """Serializing takes a long time, as it does for millions of tasks."""

    def snapshot(self) -> bytes:
        time.sleep(1.5)  # runs in the forked snapshot child, never on the node's loop
        return super().snapshot()


@pytest.mark.slow
async def test_a_slow_snapshot_does_not_stall_proposals(tmp_path: Path) -> None:
    # Given a store whose snapshots take 1.5 s to serialize
    machine = _SlowSnapshots()
    store = RaftStore(tmp_path, machine, snapshot_every=20)
    async with running(store):
        # When a snapshot starts
        for n in range(25):
            await store.propose(f"{n}".encode())
        assert store._snapshot_in_flight
        # Expect proposals to go on being fsynced and applied meanwhile, in well under 1.5 s
        started = time.monotonic()
        for n in range(50):
            await store.propose(f"more-{n}".encode())
        assert time.monotonic() - started < 1.0
        assert store._snapshot_in_flight
        with trio.fail_after(10):
            await store.wait_for_snapshot()
    # and the snapshot holds the state as of its index, so a restart gives the same state
    store2 = RaftStore(tmp_path, AppendLog(), snapshot_every=10**6)
    async with running(store2):
        assert store2.state_machine.items == machine.items  # type: ignore[attr-defined]
