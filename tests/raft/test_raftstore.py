"""RaftStore end to end on a real disk, with a behaving append-only state machine."""

from __future__ import annotations

import contextlib
import errno
import random
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from taskd.errors import StorageFault, Unavailable
from taskd.raft.types import Entry
from taskd.store.raft.disklog import DiskLog
from taskd.store.raft.driver import RaftStore
from taskd.store.seam import Store
from tests.raft.fakes import AppendLog


@asynccontextmanager
async def running(store: RaftStore) -> AsyncIterator[RaftStore]:
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        yield store
        nursery.cancel_scope.cancel()


def make(
    tmp_path: Path, snapshot_every: int = 100_000, segment_bytes: int = 64 << 20
) -> tuple[RaftStore, AppendLog]:
    machine = AppendLog()
    store = RaftStore(tmp_path, machine, snapshot_every=snapshot_every, segment_bytes=segment_bytes)
    return store, machine


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


async def test_a_few_large_entries_snapshot_by_bytes_long_before_their_count(
    tmp_path: Path,
) -> None:
    # Given a store that snapshots every 10**9 entries or every 64 KiB of commands
    machine = AppendLog()
    store = RaftStore(tmp_path, machine, snapshot_every=10**9, snapshot_bytes=64 << 10)
    async with running(store):
        # When 5 entries of 16 KiB each are applied (80 KiB: past the byte bound)
        for n in range(5):
            await store.propose(bytes([n]) * (16 << 10))
        # Expect a snapshot, which compacts the log those entries held in memory
        with trio.fail_after(10):
            await store.wait_for_snapshot()
        assert store.snapshots_written == 1
    assert len(list((tmp_path / "raft").glob("snapshot-*"))) == 1


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


async def test_state_machine_is_never_handed_a_noop(tmp_path: Path) -> None:
    seen: list[tuple[int, bytes]] = []

    class Recorder(AppendLog):
        def apply(self, index: int, data: bytes) -> object:
            seen.append((index, data))
            return super().apply(index, data)

    store = RaftStore(tmp_path, Recorder())
    async with running(store):
        await store.propose(b"x")
    assert seen == [(2, b"x")]  # the no-op at index 1 is Raft's own


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


# ---- a full or failing disk -----------------------------------------------------------------
# A real tmpfs of a few hundred KiB is the data dir (CI runs as root, as these tests need);
# "full" is a filler file that takes what is left. A failing fsync cannot be had from tmpfs:
# those tests make DiskLog.sync raise (the disk log is not something users touch), and
# tests/node/test_disk_faults.py gets a real one from ext4 on a loop device.


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path, leave: int = 0) -> Path:
    """Take every byte of ``disk`` but about ``leave`` (a real ENOSPC ends the filling)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as out:
        for chunk in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(bytes(chunk))
    if leave:
        with open(filler, "r+b") as out:
            out.truncate(max(0, filler.stat().st_size - leave))
    return filler


async def eventually(condition: Callable[[], bool], within: float = 30) -> None:
    """Wait for ``condition``; the disk, a thread or a forked child changes it, not trio."""
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110 -- nothing here to set an event
            await trio.sleep(0.02)


async def until_writable(store: RaftStore) -> None:
    await eventually(lambda: store.fault is None)


def recovered_cleanly(data_dir: Path) -> bool:
    """True when the log opens without cutting anything: no torn tail was left behind."""
    disk = DiskLog(data_dir)
    try:
        return disk.open().repairs == []
    finally:
        disk.close()


@pytest.mark.slow
@pytest.mark.parametrize("leave", [0, 300, 5000, 40_000])
@pytest.mark.parametrize("size", [100, 7000, 90_000])
async def test_disk_full_refuses_writes_loses_nothing_and_resumes_when_space_returns(
    small_disk: Path, leave: int, size: int
) -> None:
    # Given a store on a small disk with some acknowledged commands
    store, machine = make(small_disk)
    acked: list[bytes] = []
    refused: list[bytes] = []
    async with running(store):
        for n in range(3):
            acked.append(await_data(await store.propose(b"a%d" % n), b"a%d" % n, machine))
        # When the disk fills up (ENOSPC at some offset inside a write of this size)
        filler = fill(small_disk, leave)
        for n in range(10_000):
            data = b"%d:" % n + bytes(size)
            try:
                await store.propose(data)
            except StorageFault as exc:
                refused.append(data)
                fault = exc
                break
            acked.append(data)
        else:
            raise AssertionError("the disk never filled up")
        # Expect a refusal that names the problem, the place, the remedy, and the outcome
        message = str(fault)
        assert f"disk full at {small_disk}" in message
        assert "free space on the filesystem" in message
        assert "not applied" in message
        assert "retry shortly" not in message
        assert fault.resumes_by_itself
        assert store.fault is not None and "disk full" in str(store.fault)
        # and further writes are refused at once, without being applied
        for n in range(3):
            with pytest.raises(StorageFault, match="not applied"):
                await store.propose_many([b"late%d" % n, b"later%d" % n])
        assert machine.items == acked
        # When space returns, writes resume by themselves
        filler.unlink()
        await until_writable(store)
        for n in range(3):
            await store.propose(b"b%d" % n)
            acked.append(b"b%d" % n)
        assert machine.items == acked
    # and after a restart exactly the acknowledged commands are there, with no torn tail
    assert recovered_cleanly(small_disk)
    store2, machine2 = make(small_disk)
    async with running(store2):
        assert machine2.items == acked


def await_data(result: object, data: bytes, machine: AppendLog) -> bytes:
    assert isinstance(result, tuple) and machine.items[result[1]] == data
    return data


@pytest.mark.slow
@pytest.mark.parametrize("segment_bytes", [4096, 64 << 20])
async def test_concurrent_writers_on_a_filling_disk_get_the_truth(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch, segment_bytes: int
) -> None:
    """Every caller told "applied" finds its command after a restart; no caller told "not
    applied" ever does — whether the disk fills mid-batch, mid-record or at a segment switch."""
    store, machine = make(small_disk, segment_bytes=segment_bytes)
    acked: set[bytes] = set()
    refused: set[bytes] = set()
    stop = trio.Event()
    freed = trio.Event()

    async def writer(worker: int) -> None:
        rng = random.Random(worker)
        n = 0
        while not stop.is_set():
            n += 1
            most = 50 if freed.is_set() else 3000  # once space is back, do not fill it again
            batch = [b"%d-%d-%d:" % (worker, n, k) + bytes(rng.randrange(1, most)) for k in (0, 1)]
            try:
                await (store.propose_many(batch) if n % 2 else store.propose(batch[0]))
            except StorageFault as exc:
                assert "not applied" in str(exc), exc
                refused.update(batch if n % 2 else batch[:1])
                await trio.sleep(0.01)
                continue
            acked.update(batch if n % 2 else batch[:1])

    async with running(store):
        filler = fill(small_disk, leave=150_000)  # writers fill the rest
        async with trio.open_nursery() as nursery:
            for worker in range(6):
                nursery.start_soon(writer, worker)
            await eventually(lambda: len(refused) >= 20)
            freed.set()
            filler.unlink()
            await until_writable(store)
            ok_before = len(acked)
            await eventually(lambda: len(acked) >= ok_before + 20)
            stop.set()
        assert set(machine.items) == acked
    assert refused and not refused & acked
    assert recovered_cleanly(small_disk)
    store2, machine2 = make(small_disk)
    async with running(store2):
        assert set(machine2.items) == acked
        assert not set(machine2.items) & refused


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (OSError(errno.EIO, "Input/output error"), "fsync of the Raft log failed"),
        (OSError(errno.ENOSPC, "No space left on device"), "fsync of the Raft log failed"),
    ],
)
async def test_a_failed_fsync_stops_writes_until_restart_with_the_outcome_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, words: str
) -> None:
    store, machine = make(tmp_path)
    async with running(store):
        await store.propose(b"ok")

        def broken_sync(self: DiskLog) -> None:
            raise error

        monkeypatch.setattr(DiskLog, "sync", broken_sync)
        # Expect the caller whose batch failed to be told the outcome is unknown
        with pytest.raises(StorageFault) as caught:
            await store.propose(b"maybe")
        message = str(caught.value)
        assert words in message and "restart" in message and str(tmp_path) in message
        assert "outcome of this request is unknown" in message
        assert not caught.value.resumes_by_itself
        monkeypatch.undo()  # the disk "works" again: the node still must not trust it
        await trio.sleep(1.5)  # longer than the probe interval: no probe may clear it
        with pytest.raises(StorageFault, match="not applied"):
            await store.propose(b"after")
        assert store.fault is not None and words in str(store.fault)
    assert machine.items == [b"ok"]


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (OSError(errno.EROFS, "Read-only file system"), "read-only filesystem at"),
        (OSError(errno.EIO, "Input/output error"), "write error at"),
    ],
)
async def test_other_write_errors_stop_writes_until_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, words: str
) -> None:
    store, machine = make(tmp_path)
    async with running(store):
        await store.propose(b"ok")

        def broken_append(self: DiskLog, entries: object) -> None:
            raise error

        monkeypatch.setattr(DiskLog, "append", broken_append)
        with pytest.raises(StorageFault, match=words) as caught:
            await store.propose(b"lost")
        assert "restart" in str(caught.value) and not caught.value.resumes_by_itself
        monkeypatch.undo()
        with pytest.raises(StorageFault, match="not applied"):
            await store.propose(b"after")
    assert machine.items == [b"ok"]
    store2, machine2 = make(tmp_path)  # a restart takes writes again
    async with running(store2):
        await store2.propose(b"again")
        assert machine2.items == [b"ok", b"again"]


@pytest.mark.slow
async def test_a_snapshot_that_does_not_fit_is_logged_and_retried_never_fatal(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a log of ~200 KiB on a disk with room for more log but not for a snapshot of it
    store, machine = make(small_disk, snapshot_every=60)
    async with running(store):
        for n in range(55):
            await store.propose(b"%d:" % n + bytes(3000))
        filler = fill(small_disk, leave=60_000)
        # When the snapshot is due
        for n in range(10):
            await store.propose(b"small%d" % n)
        await eventually(lambda: "snapshot at index" in caplog.text)
        # Expect it logged with the reason, its partial file gone, and writes going on
        assert "No space left on device" in caplog.text
        assert not list((small_disk / "raft").glob("*.tmp"))
        assert store.snapshots_written == 0 and store.fault is None
        await store.propose(b"still writable")
        # and once space returns, the next interval's snapshot is written
        filler.unlink()
        for n in range(70):
            await store.propose(b"later%d" % n)
        with trio.fail_after(30):
            await store.wait_for_snapshot()
    store2, machine2 = make(small_disk)
    async with running(store2):
        assert machine2.items == machine.items


async def test_a_round_never_splits_one_proposal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So a disk failure can never leave one ``propose_many`` half applied, half refused."""
    batches: list[list[bytes]] = []
    real_append = DiskLog.append

    def recording_append(self: DiskLog, entries: Sequence[Entry]) -> None:
        batches.append([e.data for e in entries])
        real_append(self, entries)

    monkeypatch.setattr(DiskLog, "append", recording_append)
    machine = AppendLog()
    store = RaftStore(tmp_path, machine, max_batch=10)
    async with running(store):
        batches.clear()
        async with trio.open_nursery() as nursery:
            for p in range(4):
                nursery.start_soon(store.propose_many, [b"%d/%d" % (p, i) for i in range(7)])
            nursery.start_soon(store.propose_many, [b"big/%d" % i for i in range(25)])
            for p in range(6):
                nursery.start_soon(store.propose, b"one/%d" % p)
    proposals = [b.split(b"/")[0] for b in machine.items]
    for batch in batches:
        owners = [data.split(b"/")[0] for data in batch]
        # every proposal's entries sit in one batch, and batches stay within max_batch
        # unless one proposal alone is larger
        for owner in set(owners):
            assert owners.count(owner) == proposals.count(owner) or owner == b"one"
        assert len(batch) <= 10 or set(owners) == {b"big"}


@pytest.mark.slow
async def test_quota_exceeded_is_a_full_disk_that_clears_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a disk whose next append is refused with EDQUOT (a quota, not the whole disk)
    store, machine = make(tmp_path)
    async with running(store):
        await store.propose(b"ok")
        real_append = DiskLog.append
        refusals = [1]

        def over_quota(self: DiskLog, entries: Sequence[Entry]) -> None:
            if refusals and entries:
                refusals.pop()
                raise OSError(errno.EDQUOT, "Disk quota exceeded")
            real_append(self, entries)

        monkeypatch.setattr(DiskLog, "append", over_quota)
        with pytest.raises(StorageFault) as caught:
            await store.propose(b"refused")
        message = str(caught.value)
        assert f"disk quota exceeded at {tmp_path}" in message and "raise the quota" in message
        assert caught.value.resumes_by_itself and "not applied" in message
        # Expect writes back as soon as the probe finds room (tmp_path has plenty)
        await until_writable(store)
        await store.propose(b"after")
    assert machine.items == [b"ok", b"after"]


def test_waiters_stay_in_index_order_when_an_old_leader_placed_one_further_on(
    tmp_path: Path,
) -> None:
    # Given a forwarded proposal that an old leader (whose log was longer) placed at 995
    store = RaftStore(tmp_path, AppendLog())
    forwarded = store._wait_for(4, 995, 995)
    # When this node, now leading, proposes its own entry at 991
    own = store._wait_for(5, 991, 991)
    # Expect the apply to meet its own waiter first (it answers waiters from the head: out of
    # order, the entry at 991 found no waiter, and its proposer was told "not applied" at 995
    # although it was, so a re-proposal applied a worker's complete twice — make chaos)
    assert list(store._waiters) == [own, forwarded]
