"""Recovery of the on-disk log: torn tails are repaired, damage in the middle is refused."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskd.raft import records
from taskd.raft.types import Entry, HardState, SnapshotMeta
from taskd.store.raft.disklog import (
    SEGMENT_HEADER_SIZE,
    DiskLog,
    LogCorrupted,
    LogInUse,
    segment_name,
)


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, f"cmd-{i}".encode()) for i in range(first, last + 1)]


def write_log(
    data_dir: Path, items: list[Entry], segment_bytes: int = 1 << 20, *, crash: bool = False
) -> DiskLog:
    """Write ``items`` in one round, as a node does (hard state first). With ``crash``, the
    process "dies" right after the sync, so the durable mark never covers this round: what a
    crash mid-write leaves, and the only state in which recovery may cut a damaged tail."""
    disk = DiskLog(data_dir, segment_bytes=segment_bytes)
    disk.open()
    disk.save_hard_state(HardState(1, "n1", 0))
    for entry in items:
        disk.append([entry])
    disk.sync()
    if crash:
        disk.abandon()
    else:
        disk.close()
    return disk


def reopen(data_dir: Path) -> tuple[DiskLog, list[Entry]]:
    """Open the log (the caller closes it) and return what it recovered."""
    disk = DiskLog(data_dir)
    recovered = disk.open()
    return disk, recovered.entries


def recovered_entries(data_dir: Path) -> list[Entry]:
    disk, found = reopen(data_dir)
    disk.close()
    return found


def test_fresh_directory_is_empty(tmp_path: Path) -> None:
    disk = DiskLog(tmp_path)
    recovered = disk.open()
    assert (recovered.snapshot, recovered.entries, recovered.hard_state) == (None, [], HardState())
    disk.close()


def test_append_and_reopen(tmp_path: Path) -> None:
    write_log(tmp_path, entries(1, 50))
    disk, found = reopen(tmp_path)
    assert found == entries(1, 50)
    disk.append(entries(51, 52))  # the reopened log takes appends where it ended
    disk.sync()
    disk.close()
    assert recovered_entries(tmp_path) == entries(1, 52)


def test_hard_state_round_trip(tmp_path: Path) -> None:
    disk = DiskLog(tmp_path)
    disk.open()
    disk.save_hard_state(HardState(7, "n1", 42))
    disk.close()
    reopened = DiskLog(tmp_path)
    assert reopened.open().hard_state == HardState(7, "n1", 42)
    reopened.close()


def test_segments_rotate_and_continue(tmp_path: Path) -> None:
    disk = write_log(tmp_path, entries(1, 100), segment_bytes=400)
    names = sorted(p.name for p in disk.dir.glob("*.log"))
    assert len(names) > 5 and names[0] == segment_name(1)
    assert recovered_entries(tmp_path) == entries(1, 100)


def test_truncated_tail_is_repaired_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = write_log(tmp_path, entries(1, 10), crash=True)
    segment = disk.dir / segment_name(1)
    size = segment.stat().st_size
    with segment.open("r+b") as f:
        f.truncate(size - 3)  # the last record is cut short
    with caplog.at_level(logging.WARNING):
        disk2, found = reopen(tmp_path)
    assert found == entries(1, 9)
    assert str(segment) in caplog.text and "torn write" in caplog.text
    assert segment.stat().st_size == size - records.HEADER_SIZE - len(b"cmd-10")
    disk2.append(entries(10, 11))  # and it appends right after the repair
    disk2.sync()
    disk2.close()
    assert recovered_entries(tmp_path) == entries(1, 11)


def test_corrupted_tail_record_is_dropped(tmp_path: Path) -> None:
    disk = write_log(tmp_path, entries(1, 10), crash=True)
    segment = disk.dir / segment_name(1)
    buf = bytearray(segment.read_bytes())
    buf[-2] ^= 0xFF
    segment.write_bytes(bytes(buf))
    assert recovered_entries(tmp_path) == entries(1, 9)


def test_garbage_appended_is_cut_off(tmp_path: Path) -> None:
    disk = write_log(tmp_path, entries(1, 10))
    segment = disk.dir / segment_name(1)
    with segment.open("ab") as f:
        f.write(b"\x00" * 100 + b"garbage" * 50)
    disk2, found = reopen(tmp_path)
    assert found == entries(1, 10)
    disk2.close()
    assert recovered_entries(tmp_path) == entries(1, 10)


def test_corruption_in_the_middle_refuses_to_start(tmp_path: Path) -> None:
    disk = write_log(tmp_path, entries(1, 10))
    segment = disk.dir / segment_name(1)
    buf = bytearray(segment.read_bytes())
    buf[records.HEADER_SIZE * 3 + 2] ^= 0x01  # inside the third record
    segment.write_bytes(bytes(buf))
    with pytest.raises(LogCorrupted, match="corrupt in the middle") as caught:
        DiskLog(tmp_path).open()
    assert str(segment) in str(caught.value)
    assert segment.read_bytes() == bytes(buf)  # nothing was truncated


def test_damaged_segment_before_a_valid_one_refuses_to_start(tmp_path: Path) -> None:
    disk = write_log(tmp_path, entries(1, 40), segment_bytes=300)
    first = disk.dir / segment_name(1)
    with first.open("r+b") as f:
        f.truncate(first.stat().st_size - 1)
    with pytest.raises(LogCorrupted, match="later segments hold valid records"):
        DiskLog(tmp_path).open()


def test_torn_first_record_of_a_new_segment_removes_it(tmp_path: Path) -> None:
    disk = write_log(tmp_path, entries(1, 5))
    stray = disk.dir / segment_name(6)
    stray.write_bytes(records.encode_entries(entries(6, 6))[:-1])
    disk2, found = reopen(tmp_path)
    assert found == entries(1, 5) and not stray.exists()
    disk2.close()


def test_snapshot_compaction_and_restart(tmp_path: Path) -> None:
    disk = DiskLog(tmp_path, segment_bytes=300)
    disk.open()
    disk.save_hard_state(HardState(1, "n1", 0))
    disk.append(entries(1, 60))  # one batch lands in one segment
    disk.append(entries(61, 80))
    disk.append(entries(81, 90))
    disk.sync()
    disk.save_snapshot(SnapshotMeta(80, 1), b"state@80")
    disk.compact(80)
    assert [p.name for p in disk.segments] == [segment_name(81)]
    disk.save_snapshot(SnapshotMeta(85, 1), b"state@85")
    assert [p.name for p in disk.dir.glob("snapshot-*")] == [
        "snapshot-00000000000000000085-00000000000000000001"
    ]
    disk.close()
    reopened = DiskLog(tmp_path)
    recovered = reopened.open()
    reopened.close()
    assert recovered.snapshot == SnapshotMeta(85, 1)
    assert recovered.snapshot_data == b"state@85"
    assert recovered.entries == entries(86, 90)


def test_damaged_snapshot_refuses_to_start(tmp_path: Path) -> None:
    disk = DiskLog(tmp_path)
    disk.open()
    disk.save_snapshot(SnapshotMeta(3, 1), b"state")
    disk.close()
    (snap,) = disk.dir.glob("snapshot-*")
    snap.write_bytes(snap.read_bytes()[:-1] + b"X")
    with pytest.raises(LogCorrupted, match="snapshot"):
        DiskLog(tmp_path).open()


def test_gap_between_snapshot_and_log_refuses_to_start(tmp_path: Path) -> None:
    disk = DiskLog(tmp_path)
    disk.open()
    disk.close()
    (disk.dir / segment_name(10)).write_bytes(records.encode_entries(entries(10, 12)))
    with pytest.raises(LogCorrupted, match="missing"):
        DiskLog(tmp_path).open()


@pytest.mark.slow  # open() gives a dying holder a moment before it reports LogInUse
def test_second_process_is_locked_out(tmp_path: Path) -> None:
    disk = DiskLog(tmp_path)
    disk.open()
    with pytest.raises(LogInUse, match="in use"):
        DiskLog(tmp_path).open()
    disk.close()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.data())
def test_any_cut_of_the_log_file_recovers_the_whole_records_before_it(
    count: int, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Given a log of `count` entries cut at any byte (a crash mid-write)
        disk = write_log(Path(tmp), entries(1, count), crash=True)
        segment = disk.dir / segment_name(1)
        buf = segment.read_bytes()
        cut = data.draw(st.integers(0, len(buf)))
        segment.write_bytes(buf[:cut])
        # When it is reopened
        found = recovered_entries(Path(tmp))
        # Expect exactly the entries wholly before the cut, and a file cut back to them
        whole = [
            e
            for e in entries(1, count)
            if SEGMENT_HEADER_SIZE + len(records.encode_entries(entries(1, e.index))) <= cut
        ]
        assert found == whole
        assert recovered_entries(Path(tmp)) == whole
