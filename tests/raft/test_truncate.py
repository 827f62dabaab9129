"""DiskLog.truncate_suffix: a durable cut that the next start accepts as it is.

Each test builds a log of several small segments the way a node does (synced rounds), cuts
its suffix (wholly, or "crashing" part-way by running only the first steps), and reopens it:
no refusal, the entries before the cut intact, the durable mark never past what remains.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from taskd.raft.types import Entry, EntryKind, HardState
from taskd.store.raft import durablemark
from taskd.store.raft.disklog import DiskLog, LogCorrupted, Recovered

SEGMENT_BYTES = 400  # a handful of entries per segment


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, f"t{term}-{i}".encode() * 4) for i in range(first, last + 1)]


def build(data_dir: Path, last: int = 30, commit: int = 10) -> DiskLog:
    disk = DiskLog(data_dir, segment_bytes=SEGMENT_BYTES)
    disk.open()
    disk.save_hard_state(HardState(1, "n1", 0))
    for first in range(1, last + 1, 5):
        disk.append(entries(first, min(first + 4, last)))
        disk.note_commit(min(commit, first + 4))
        disk.sync()
    return disk


def reopen(data_dir: Path) -> Recovered:
    disk = DiskLog(data_dir, segment_bytes=SEGMENT_BYTES)
    try:
        return disk.open()
    finally:
        disk.abandon()


def mark_of(data_dir: Path) -> durablemark.Mark:
    mark, problem = durablemark.read(data_dir / "raft" / "durable")
    assert mark is not None, problem
    return mark


# Cuts at the first entry of a segment (11, 21), inside one (18) and at the very last (30).
@pytest.mark.parametrize("cut", [11, 18, 21, 30])
def test_truncate_then_append_another_term_then_reopen(tmp_path: Path, cut: int) -> None:
    disk = build(tmp_path)
    assert [p.name[:20] for p in disk.segments] == [f"{i:020d}" for i in (1, 11, 21)]
    disk.truncate_suffix(cut)
    assert disk.last_index == cut - 1
    disk.append(entries(cut, cut + 2, term=2))
    disk.sync()
    disk.close()
    recovered = reopen(tmp_path)
    assert recovered.entries == entries(1, cut - 1) + entries(cut, cut + 2, term=2)
    assert recovered.repairs == []
    assert recovered.durable == cut + 2


def test_truncate_everything_above_the_start(tmp_path: Path) -> None:
    disk = build(tmp_path, commit=0)
    disk.truncate_suffix(1)
    assert disk.segments == []
    disk.append(entries(1, 2, term=2))
    disk.sync()
    disk.close()
    assert reopen(tmp_path).entries == entries(1, 2, term=2)


def test_a_crash_right_after_a_truncation_reopens_with_a_truthful_mark(tmp_path: Path) -> None:
    disk = build(tmp_path)
    disk.truncate_suffix(18)
    disk.abandon()  # no close, no flush: what a crash leaves
    recovered = reopen(tmp_path)
    assert recovered.entries == entries(1, 17)
    assert recovered.durable is not None and recovered.durable <= 17


def test_a_crash_after_lowering_the_mark_keeps_the_longer_log(tmp_path: Path) -> None:
    # Given a crash after step one (the mark lowered and synced), before any file was cut
    disk = build(tmp_path)
    disk._lower_mark(17)
    disk.abandon()
    # Expect the log accepted as it is: longer than its mark, which a crash always allows
    assert mark_of(tmp_path).durable == 17
    recovered = reopen(tmp_path)
    assert recovered.entries == entries(1, 30)
    assert recovered.repairs == []


def test_a_crash_between_deleting_segments_keeps_a_contiguous_prefix(tmp_path: Path) -> None:
    # Given a crash in step two: the mark lowered, only the last segment deleted so far
    disk = build(tmp_path)
    segments = disk.segments
    disk._lower_mark(11)
    disk.abandon()
    segments[-1].unlink()
    # Expect a clean start on the entries that remain
    recovered = reopen(tmp_path)
    assert recovered.entries[0].index == 1
    assert recovered.entries == entries(1, recovered.entries[-1].index)
    assert recovered.entries[-1].index >= 11
    assert recovered.repairs == []


def test_cutting_without_lowering_the_mark_first_would_be_refused(tmp_path: Path) -> None:
    # What the order of the steps prevents: a mark that claims entries no longer there.
    disk = build(tmp_path)
    disk._cut_suffix(18)
    disk.abandon()
    with pytest.raises(LogCorrupted, match="durable mark"):
        reopen(tmp_path)


def test_committed_entries_are_never_truncated(tmp_path: Path) -> None:
    disk = build(tmp_path, commit=10)
    with pytest.raises(ValueError, match="committed"):
        disk.truncate_suffix(10)
    disk.truncate_suffix(31)  # past the end: nothing to do
    assert disk.last_index == 30
    disk.close()
    assert reopen(tmp_path).entries == entries(1, 30)


def test_entry_kinds_survive_the_disk(tmp_path: Path) -> None:
    disk = DiskLog(tmp_path, segment_bytes=SEGMENT_BYTES)
    disk.open()
    disk.save_hard_state(HardState(1, "n1", 0))
    written = [
        Entry(1, 1, b"", EntryKind.NOOP),
        Entry(1, 2, b"cmd"),
        Entry(1, 3, b"members", EntryKind.CONF_CHANGE),
    ]
    disk.append(written)
    disk.sync()
    disk.close()
    assert reopen(tmp_path).entries == written
