"""Damage to every file of the Raft data dir is refused, not cut; only a torn tail is cut.

The log under test is built the way a node builds it: hard state first, then rounds of
entries, each round synced (the durable mark rides along), closed cleanly, so every entry is
covered by the mark. Each test then damages it the way a disk, an operator or a crash would,
and checks what ``DiskLog.open`` makes of it: a ``LogCorrupted`` naming the file (and the
offset), with nothing on disk changed; or, for a genuine torn write past the mark, a clean
start with every synced entry; and with ``accept_data_loss``, a start that drops exactly the
log from the first damage on, says so, and leaves a directory the next start accepts as is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from taskd.errors import first_of
from taskd.raft import records
from taskd.raft.types import Entry, HardState, SnapshotMeta
from taskd.store.raft import durablemark
from taskd.store.raft.disklog import (
    SEGMENT_HEADER_SIZE,
    DiskLog,
    LogCorrupted,
    Recovered,
    segment_header,
    segment_name,
)
from taskd.store.raft.driver import RaftStore
from tests.raft.fakes import AppendLog

ROUNDS = 12
PER_ROUND = 7
SEGMENT_BYTES = 700  # many small segments: first, middle and last ones to damage


def payload(index: int) -> bytes:
    return f"task-{index}:".encode() + bytes(range(index % 50, index % 50 + index % 37))


def round_entries(number: int, term: int = 1) -> list[Entry]:
    first = number * PER_ROUND + 1
    return [Entry(term, i, payload(i)) for i in range(first, first + PER_ROUND)]


ALL = [entry for number in range(ROUNDS) for entry in round_entries(number)]


def build(data_dir: Path, *, rounds: int = ROUNDS, crash_after: int | None = None) -> DiskLog:
    """A log of ``rounds`` synced rounds. With ``crash_after``, the process "dies" after
    that many rounds: the files are left as they are, the mark trailing the last round."""
    disk = DiskLog(data_dir, segment_bytes=SEGMENT_BYTES)
    disk.open()
    disk.save_hard_state(HardState(1, "n1", 0))
    for number in range(rounds):
        disk.append(round_entries(number))
        disk.sync()
        if crash_after is not None and number + 1 == crash_after:
            disk.abandon()
            return disk
    disk.close()
    return disk


def open_log(data_dir: Path, *, accept: bool = False) -> Recovered:
    disk = DiskLog(data_dir, accept_data_loss=accept)
    try:
        return disk.open()
    finally:
        disk.close()


def snapshot_files(data_dir: Path) -> dict[str, bytes]:
    raft = data_dir / "raft"
    return {p.name: p.read_bytes() for p in sorted(raft.iterdir()) if p.is_file()}


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "raft").glob("*.log"))


def refusal(data_dir: Path) -> str:
    """Open must refuse; return its message, after checking that it changed no file."""
    before = snapshot_files(data_dir)
    with pytest.raises(LogCorrupted) as caught:
        open_log(data_dir)
    message = str(caught.value)
    assert "\n" not in message
    assert "Restore the data directory" in message and "--accept-data-loss" in message
    assert snapshot_files(data_dir) == before, "a refused start changed the data dir"
    return message


def accept_and_check(data_dir: Path, caplog: pytest.LogCaptureFixture) -> list[Entry]:
    """Start with the flag: it drops a suffix only, logs it at ERROR; the next start is clean."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="taskd.raft.disk"):
        accepted = open_log(data_dir, accept=True)
    assert any(r.levelno == logging.ERROR and "Dropped" in r.message for r in caplog.records)
    assert accepted.entries == ALL[: len(accepted.entries)], "kept entries are not a prefix"
    again = open_log(data_dir)  # no flag: nothing left to complain about
    assert again.entries == accepted.entries and again.repairs == []
    return accepted.entries


@pytest.fixture(scope="module")
def golden() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        yield Path(tmp)


@pytest.fixture
def data_dir(golden: Path, tmp_path: Path) -> Path:
    shutil.copytree(golden, tmp_path / "d")
    return tmp_path / "d"


def fresh_copy(golden: Path) -> Path:
    target = Path(tempfile.mkdtemp())
    shutil.copytree(golden, target / "d")
    return target / "d"


def test_the_built_log_has_many_segments_and_opens_clean(data_dir: Path) -> None:
    assert len(segments(data_dir)) >= 5
    recovered = open_log(data_dir)
    assert recovered.entries == ALL and recovered.durable == len(ALL)
    assert recovered.repairs == []


# -- damage anywhere in any segment -------------------------------------------------------

KINDS = ("zeros", "garbage", "flip")


def damage(buf: bytearray, offset: int, size: int, kind: str, seed: int) -> None:
    end = min(len(buf), offset + size)
    if kind == "zeros":
        buf[offset:end] = bytes(end - offset)
    elif kind == "garbage":
        buf[offset:end] = random.Random(seed).randbytes(end - offset)
    else:
        buf[offset] ^= 1 << (seed % 8)


@pytest.mark.slow
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.integers(0, 10**6),
    where=st.floats(0, 1, exclude_max=True),
    size=st.sampled_from([1, 3, 25, 100, 1024, 4096]) | st.integers(1, 2000),
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 2**32),
)
def test_damage_to_any_synced_segment_byte_is_refused_then_accepted_with_the_flag(
    golden: Path,
    caplog: pytest.LogCaptureFixture,
    which: int,
    where: float,
    size: int,
    kind: str,
    seed: int,
) -> None:
    data_dir = fresh_copy(golden)
    try:
        files = segments(data_dir)
        target = files[which % len(files)]
        buf = bytearray(target.read_bytes())
        damage(buf, int(where * len(buf)), size, kind, seed)
        assume(bytes(buf) != target.read_bytes())  # zeros over zeros changes nothing
        target.write_bytes(bytes(buf))
        message = refusal(data_dir)
        assert f"{target} at offset " in message, message
        kept = accept_and_check(data_dir, caplog)
        first_in_target = int(target.name.removesuffix(".log"))
        assert len(kept) < len(ALL) and len(kept) >= first_in_target - 1
    finally:
        shutil.rmtree(data_dir.parent)


@pytest.mark.parametrize("position", ["first", "middle", "last"])
@pytest.mark.parametrize(
    ("spot", "size"),
    [
        ("offset 0", 4096),  # the whole file, header included
        ("inside the header", 3),
        ("inside a record header", 5),
        ("inside a body", 1),
        ("across a record boundary", 30),
        ("just before the end", 1),
        ("middle", 1024),
    ],
)
def test_zeros_at_named_spots_are_refused(
    data_dir: Path, position: str, spot: str, size: int
) -> None:
    files = segments(data_dir)
    target = {"first": files[0], "middle": files[len(files) // 2], "last": files[-1]}[position]
    buf = bytearray(target.read_bytes())
    first = int(target.name.removesuffix(".log"))
    body = records.scan(bytes(buf), first, SEGMENT_HEADER_SIZE).entries
    second_record = SEGMENT_HEADER_SIZE + records.HEADER_SIZE + len(body[0].data)
    offset = {
        "offset 0": 0,
        "inside the header": 8,
        "inside a record header": second_record + 6,
        "inside a body": second_record + records.HEADER_SIZE + 2,
        "across a record boundary": second_record - 15,
        "just before the end": len(buf) - 1,
        "middle": len(buf) // 2 - size // 2,
    }[spot]
    buf[offset : offset + size] = bytes(len(buf[offset : offset + size]))
    buf[offset] ^= 0x5A  # never a no-op, even over zero bytes
    target.write_bytes(bytes(buf))
    message = refusal(data_dir)
    assert f"{target} at offset " in message


def test_a_long_zero_run_in_a_big_segment_is_found_past_any_lookahead(tmp_path: Path) -> None:
    # Given one segment of 20,000 entries, a run of zeros covering ~300 records mid-way
    disk = DiskLog(tmp_path, segment_bytes=1 << 30)
    disk.open()
    disk.save_hard_state(HardState(3, "n1", 0))
    disk.append([Entry(3, i, b"x" * 40) for i in range(1, 20_001)])
    disk.sync()
    disk.close()
    (target,) = segments(tmp_path)
    buf = bytearray(target.read_bytes())
    mid = len(buf) // 2
    buf[mid : mid + 20_000] = bytes(20_000)
    target.write_bytes(bytes(buf))
    # Expect a refusal that says which index is intact after the damage
    message = refusal(tmp_path)
    assert "corrupt in the middle" in message and "valid record" in message


# -- truncation, deletion, empty files ------------------------------------------------------


@pytest.mark.slow
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(which=st.integers(0, 10**6), where=st.floats(0, 1, exclude_max=True))
def test_a_segment_cut_to_any_length_is_refused(golden: Path, which: int, where: float) -> None:
    data_dir = fresh_copy(golden)
    try:
        files = segments(data_dir)
        target = files[which % len(files)]
        size = target.stat().st_size
        with target.open("r+b") as f:
            f.truncate(int(where * size))
        message = refusal(data_dir)
        assert target.name in message, message
    finally:
        shutil.rmtree(data_dir.parent)


@pytest.mark.parametrize("position", [0, 1, 2, -2, -1])
@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_deleted_or_empty_segment_is_refused(
    data_dir: Path, caplog: pytest.LogCaptureFixture, position: int, how: str
) -> None:
    target = segments(data_dir)[position]
    if how == "deleted":
        target.unlink()
    else:
        target.write_bytes(b"")
    message = refusal(data_dir)
    assert "missing" in message or f"{target} at offset 0" in message, message
    kept = accept_and_check(data_dir, caplog)
    assert len(kept) < int(target.name.removesuffix(".log"))


def test_every_segment_deleted_is_refused(data_dir: Path) -> None:
    for path in segments(data_dir):
        path.unlink()
    message = refusal(data_dir)
    assert f"Entries 1..{len(ALL)} ({len(ALL)} entries) are missing" in message


# -- the snapshot, the hard state, the mark ------------------------------------------------


def build_with_snapshot(data_dir: Path) -> DiskLog:
    disk = DiskLog(data_dir, segment_bytes=SEGMENT_BYTES)
    disk.open()
    disk.save_hard_state(HardState(1, "n1", 0))
    for number in range(ROUNDS):
        disk.append(round_entries(number))
        disk.sync()
    disk.save_snapshot(SnapshotMeta(40, 1), b"state@40")
    disk.compact(40)
    disk.close()
    return disk


def test_a_deleted_snapshot_is_refused_once_the_log_was_compacted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build_with_snapshot(tmp_path)
    assert int(segments(tmp_path)[0].name.removesuffix(".log")) > 1
    (snap,) = (tmp_path / "raft").glob("snapshot-*")
    snap.unlink()
    message = refusal(tmp_path)
    assert "no snapshot" in message and "missing" in message
    assert accept_and_check(tmp_path, caplog) == []


def test_a_deleted_snapshot_loses_nothing_while_the_log_starts_at_1(tmp_path: Path) -> None:
    build(tmp_path)
    disk2 = DiskLog(tmp_path)
    disk2.open()
    disk2.save_snapshot(SnapshotMeta(10, 1), b"state@10")  # written, not yet compacted
    disk2.close()
    for snap in (tmp_path / "raft").glob("snapshot-*"):
        snap.unlink()
    assert open_log(tmp_path).entries == ALL


@pytest.mark.parametrize("offset", [0, 3, 8, 20, 29, -1])
def test_a_damaged_snapshot_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, offset: int
) -> None:
    build_with_snapshot(tmp_path)
    (snap,) = (tmp_path / "raft").glob("snapshot-*")
    buf = bytearray(snap.read_bytes())
    buf[offset] ^= 0x10
    snap.write_bytes(bytes(buf))
    message = refusal(tmp_path)
    assert str(snap) in message
    recovered = open_log(tmp_path, accept=True)
    assert recovered.snapshot is None and recovered.entries == []


@pytest.mark.parametrize("how", ["deleted", "emptied", "flipped", "cut"])
@pytest.mark.parametrize("name", ["hardstate", "durable"])
def test_a_deleted_or_damaged_hard_state_or_mark_is_refused(
    data_dir: Path, caplog: pytest.LogCaptureFixture, name: str, how: str
) -> None:
    path = data_dir / "raft" / name
    buf = bytearray(path.read_bytes())
    if how == "deleted":
        path.unlink()
    elif how == "emptied":
        path.write_bytes(b"")
    elif how == "flipped":
        for slot in range(0, len(buf), 4096):  # both slots of the mark
            buf[slot + 6] ^= 0x01
        path.write_bytes(bytes(buf))
    else:
        path.write_bytes(bytes(buf[:10]))
    message = refusal(data_dir)
    assert str(path) in message
    assert accept_and_check(data_dir, caplog) == ALL  # rebuilt: the log itself was intact


def test_one_torn_slot_of_the_mark_falls_back_to_the_other(data_dir: Path) -> None:
    mark = data_dir / "raft" / "durable"
    buf = bytearray(mark.read_bytes())
    newer = max((0, 4096), key=lambda at: int.from_bytes(buf[at + 4 : at + 12], "little"))
    buf[newer : newer + 16] = bytes(16)
    mark.write_bytes(bytes(buf))
    recovered = open_log(data_dir)
    assert recovered.entries == ALL and recovered.repairs == []


def test_a_segment_renamed_over_another_is_refused(data_dir: Path) -> None:
    files = segments(data_dir)
    imposter = data_dir / "raft" / segment_name(int(files[-1].name[:20]) + 1000)
    files[-1].rename(imposter)
    files[-2].unlink()
    message = refusal(data_dir)
    assert "missing" in message


def test_a_header_naming_another_index_is_refused_even_at_the_tail(data_dir: Path) -> None:
    last = segments(data_dir)[-1]
    buf = bytearray(last.read_bytes())
    buf[:SEGMENT_HEADER_SIZE] = segment_header(int(last.name[:20]) + 1)
    last.write_bytes(bytes(buf))
    assert "header says" in refusal(data_dir)


# -- what a crash leaves: torn writes past the mark ------------------------------------------


def test_the_mark_trails_by_one_round_and_catches_up_when_flushed(tmp_path: Path) -> None:
    disk = DiskLog(tmp_path, segment_bytes=SEGMENT_BYTES)
    disk.open()
    disk.save_hard_state(HardState(1, "n1", 0))
    for number in range(3):
        disk.append(round_entries(number))
        disk.sync()
        # the mark says the previous round: never more than what was synced
        assert mark_of(tmp_path) == number * PER_ROUND
        assert disk.mark_behind
    disk.flush_mark()
    assert mark_of(tmp_path) == 3 * PER_ROUND and not disk.mark_behind
    disk.close()


def mark_of(data_dir: Path) -> int:
    mark, problem = durablemark.read(data_dir / "raft" / "durable")
    assert mark is not None, problem
    return mark.durable


@pytest.mark.parametrize(
    "tail",
    [
        b"\x00" * 7,
        b"\x00" * 5000,
        bytes(range(256)) * 3,
        records.encode_entries([Entry(1, 10**6, b"x" * 50)])[:-4],  # a torn record
    ],
    ids=["zeros", "many-zeros", "garbage", "torn-record"],
)
def test_garbage_after_the_last_synced_write_is_cut(tmp_path: Path, tail: bytes) -> None:
    build(tmp_path, crash_after=ROUNDS)
    last = segments(tmp_path)[-1]
    with last.open("ab") as f:
        f.write(tail)
    recovered = open_log(tmp_path)
    assert recovered.entries == ALL and "torn write" in recovered.repairs[0]
    assert open_log(tmp_path).repairs == []


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(["cut", "zeros"]))
def test_a_crash_anywhere_in_the_last_round_recovers_every_entry_of_earlier_rounds(
    at: int, how: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        # Given a crash after the last round's write, before its mark was written
        build(data_dir, crash_after=ROUNDS)
        last_round = len(records.encode_entries(round_entries(ROUNDS - 1)))
        last = segments(data_dir)[-1]
        buf = last.read_bytes()
        start = len(buf) - last_round  # the last round's bytes begin here
        assume(start >= SEGMENT_HEADER_SIZE)
        cut = start + at % (last_round + 1)
        # When the write was cut short there (or its end never reached the disk: zeros)
        kept = buf[:cut] if how == "cut" else buf[:cut] + bytes(len(buf) - cut)
        last.write_bytes(kept)
        # Expect every earlier round, and the whole records of the last one before the cut
        recovered = open_log(data_dir)
        scanned = records.scan(kept, int(last.name[:20]), SEGMENT_HEADER_SIZE).entries
        whole = [e for e in scanned if e.index > len(ALL) - PER_ROUND]
        assert recovered.entries[: len(ALL) - PER_ROUND] == ALL[: len(ALL) - PER_ROUND]
        if whole:
            assert recovered.entries[-len(whole) :] == whole
        assert len(recovered.entries) == len(ALL) - PER_ROUND + len(whole)
        assert open_log(data_dir).repairs == []


def test_a_torn_new_segment_after_rotation_is_removed(tmp_path: Path) -> None:
    build(tmp_path, crash_after=ROUNDS)
    # the next round went to a segment of its own: it is torn inside its header
    nxt = tmp_path / "raft" / segment_name(len(ALL) + 1)
    nxt.write_bytes(b"TKSEG")
    recovered = open_log(tmp_path)
    assert recovered.entries == ALL and not nxt.exists()


def test_damage_past_the_mark_with_valid_records_after_it_is_refused(tmp_path: Path) -> None:
    build(tmp_path, crash_after=ROUNDS)
    last = segments(tmp_path)[-1]
    buf = bytearray(last.read_bytes())
    last_round = len(records.encode_entries(round_entries(ROUNDS - 1)))
    start = len(buf) - last_round
    buf[start + 5 : start + 25] = bytes(20)  # the first record of the last round only
    last.write_bytes(bytes(buf))
    message = refusal(tmp_path)
    assert "corrupt in the middle" in message and "past the durable mark" in message


def test_a_new_directory_and_a_crash_before_the_first_round_start_clean(tmp_path: Path) -> None:
    assert open_log(tmp_path).entries == []  # creates the mark
    assert open_log(tmp_path).entries == []  # a mark alone: crashed before any round
    disk = DiskLog(tmp_path)
    disk.open()
    disk.save_hard_state(HardState(1, "n1", 0))
    disk.abandon()  # crashed after the hard state, before the first entry
    assert open_log(tmp_path).hard_state.term == 1


def test_the_commit_index_is_persisted(tmp_path: Path) -> None:
    disk = DiskLog(tmp_path)
    disk.open()
    disk.save_hard_state(HardState(1, "n1", 0))
    disk.append(round_entries(0))
    disk.sync()
    disk.note_commit(PER_ROUND)
    disk.close()
    assert open_log(tmp_path).hard_state.commit == PER_ROUND


def test_lost_and_found_keeps_what_the_flag_cut(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = segments(data_dir)[2]
    original = {p.name: p.read_bytes() for p in segments(data_dir)}
    buf = bytearray(target.read_bytes())
    buf[40] ^= 0xFF
    target.write_bytes(bytes(buf))
    accept_and_check(data_dir, caplog)
    lost = data_dir / "raft" / "lost+found"
    names = sorted(os.listdir(lost))
    assert any(n.startswith(target.name + ".from-") for n in names)
    later = [n for n in original if n > target.name]
    assert all(any(k.startswith(n + ".") for k in names) for n in later)


def test_damage_only_to_entries_the_snapshot_holds_loses_nothing(tmp_path: Path) -> None:
    # Given a snapshot at the last index, written before the segments were compacted
    build(tmp_path)
    disk = DiskLog(tmp_path)
    disk.open()
    disk.save_snapshot(SnapshotMeta(len(ALL), 1), b"state")
    disk.abandon()
    # When the log's end is cut off (entries the snapshot holds)
    last = segments(tmp_path)[-1]
    with last.open("r+b") as f:
        f.truncate(last.stat().st_size // 2)
    # Expect a start from the snapshot, with a warning, and appends that continue after it
    recovered = open_log(tmp_path)
    assert recovered.snapshot == SnapshotMeta(len(ALL), 1) and recovered.entries == []
    assert "nothing is lost" in recovered.repairs[0]
    disk = DiskLog(tmp_path)
    disk.open()
    disk.append([Entry(2, len(ALL) + 1, b"next")])
    disk.sync()
    disk.close()
    assert open_log(tmp_path).entries == [Entry(2, len(ALL) + 1, b"next")]


# -- through the driver ---------------------------------------------------------------------


async def test_the_store_flushes_the_mark_when_the_log_goes_idle(tmp_path: Path) -> None:
    store = RaftStore(tmp_path, AppendLog())
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        for n in range(5):
            await store.propose_many([f"item-{n}-{k}".encode() for k in range(3)])
        last = store.status().commit_index
        # the mark trails by a round while rounds go on; once idle it catches up
        with trio.fail_after(10):
            while mark_of(tmp_path) != last:  # noqa: ASYNC110  # polling a file, no event
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def test_the_store_refuses_a_damaged_log_and_starts_with_the_flag(tmp_path: Path) -> None:
    store = RaftStore(tmp_path, AppendLog())
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        for n in range(5):
            await store.propose(f"item-{n}".encode())
        nursery.cancel_scope.cancel()
    (segment,) = segments(tmp_path)
    buf = bytearray(segment.read_bytes())
    buf[60] ^= 0x01  # inside the second entry (the first is the no-op)
    segment.write_bytes(bytes(buf))
    with pytest.raises(BaseException) as caught:  # the nursery wraps it
        async with trio.open_nursery() as nursery:
            await nursery.start(RaftStore(tmp_path, AppendLog()).serve)
    refused = first_of(caught.value, LogCorrupted)
    assert refused is not None and "--accept-data-loss" in str(refused)
    machine = AppendLog()
    async with trio.open_nursery() as nursery:
        await nursery.start(RaftStore(tmp_path, machine, accept_data_loss=True).serve)
        nursery.cancel_scope.cancel()
    assert machine.items == []  # everything from the damaged entry on was dropped


@pytest.mark.parametrize("name", ["durable", "hardstate"])
def test_a_refusal_cuts_nothing_even_with_a_torn_looking_tail(data_dir: Path, name: str) -> None:
    # Given a missing mark or hard state, and garbage at the end of the log
    (data_dir / "raft" / name).unlink()
    with segments(data_dir)[-1].open("ab") as f:
        f.write(b"\x00garbage" * 10)
    # Expect the refusal to come before any repair (refusal() checks no file changed)
    refusal(data_dir)


def test_a_lost_mark_with_no_entries_is_simply_rewritten(tmp_path: Path) -> None:
    disk = DiskLog(tmp_path)
    disk.open()
    disk.save_hard_state(HardState(4, "n1", 0))
    disk.close()
    (tmp_path / "raft" / "durable").unlink()
    recovered = open_log(tmp_path)
    assert recovered.hard_state.term == 4 and recovered.repairs == []
    assert (tmp_path / "raft" / "durable").exists()


def test_files_that_hold_no_data_may_go_or_come(data_dir: Path) -> None:
    # the lock file is recreated, stray files and leftovers of an atomic write are ignored
    raft = data_dir / "raft"
    (raft / "LOCK").unlink()
    (raft / "notes.txt").write_text("an operator's file")
    (raft / "hardstate.tmp").write_bytes(b"half a hard state")
    recovered = open_log(data_dir)
    assert recovered.entries == ALL and recovered.repairs == []
    assert not (raft / "hardstate.tmp").exists() and (raft / "notes.txt").exists()


# -- a full disk must not leave damage behind ------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB tmpfs (needs mount rights; skipped without them)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.parametrize("segment_bytes", [1 << 20, 8192], ids=["one-segment", "rotating"])
def test_appends_that_fail_on_a_full_disk_leave_a_log_that_opens_clean(
    small_tmpfs: Path, segment_bytes: int
) -> None:
    disk = DiskLog(small_tmpfs, segment_bytes=segment_bytes)
    disk.open()
    disk.save_hard_state(HardState(1, "n1", 0))
    index = 0
    kept: list[Entry] = []
    failures = 0
    filler = small_tmpfs / "filler"
    with filler.open("wb") as f:  # leave the log little room
        with contextlib.suppress(OSError):
            f.write(bytes(400 * 1024))
    for _ in range(200):
        batch = [Entry(1, index + k + 1, bytes([k % 251]) * 300) for k in range(10)]
        try:
            disk.append(batch)
        except OSError:
            failures += 1
            if failures == 3:
                filler.unlink()  # space comes back
            continue
        disk.sync()
        kept.extend(batch)
        index += len(batch)
    disk.close()
    assert failures >= 3, "the disk never filled up"
    recovered = open_log(small_tmpfs)
    assert recovered.entries == kept and recovered.repairs == []


async def test_the_store_persists_its_commit_index_with_the_mark(tmp_path: Path) -> None:
    store = RaftStore(tmp_path, AppendLog())
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        for n in range(3):
            await store.propose(f"item-{n}".encode())
        committed = store.status().commit_index
        nursery.cancel_scope.cancel()
    assert committed == 4 and open_log(tmp_path).hard_state.commit == committed


def test_a_damaged_newest_snapshot_is_refused_without_touching_an_older_one(
    tmp_path: Path,
) -> None:
    build_with_snapshot(tmp_path)
    disk = DiskLog(tmp_path)
    disk.open()
    newest = disk.dir / "snapshot-00000000000000000070-00000000000000000001"
    newest.write_bytes(b"TKSN\x01 not a whole snapshot")  # as if written, never removed older
    disk.abandon()
    message = refusal(tmp_path)  # (checks that no file changed)
    assert str(newest) in message
