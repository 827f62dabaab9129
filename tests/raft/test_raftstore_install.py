"""A snapshot received from the leader becomes the durable base of the disk log
(``DiskLog.install_snapshot``), and every crash state on the way there recovers; snapshot
files carry the configuration, and files of the first format (without it) still load."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

from taskd.raft.types import Entry, HardState, SnapshotMeta
from taskd.store.raft.disklog import DiskLog, encode_snapshot, parse_snapshot, snapshot_name

META = SnapshotMeta(50, 3, ("a:1", "b:1", "c:1"), ("d:1",))


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, f"cmd-{i}".encode()) for i in range(first, last + 1)]


def old_log(data_dir: Path, last: int = 10, segment_bytes: int = 200) -> None:
    disk = DiskLog(data_dir, segment_bytes=segment_bytes)
    disk.open()
    disk.save_hard_state(HardState(2, "a:1", 0))
    for entry in entries(1, last, term=2):
        disk.append([entry])
    disk.sync()
    disk.close()


def staged(data_dir: Path, meta: SnapshotMeta = META, data: bytes = b"state") -> Path:
    path = data_dir / "raft" / "incoming.tmp"
    path.write_bytes(encode_snapshot(meta, data))
    return path


def test_the_snapshot_header_carries_the_configuration() -> None:
    parsed = parse_snapshot(encode_snapshot(META, b"xyz"))
    assert parsed == (META, b"xyz")
    damaged = bytearray(encode_snapshot(META, b"xyz"))
    damaged[-1] ^= 1
    assert parse_snapshot(bytes(damaged)) is None


def test_a_snapshot_file_of_the_first_format_still_loads(tmp_path: Path) -> None:
    # Given a snapshot written before the configuration was in the header
    old_log(tmp_path, last=5)
    head = b"TKSN\x01" + struct.pack("<QQQ", 5, 2, 3)
    crc = struct.pack("<I", zlib.crc32(b"old", zlib.crc32(head)))
    (tmp_path / "raft" / snapshot_name(SnapshotMeta(5, 2))).write_bytes(head + crc + b"old")
    # When the log opens, expect its position and data, and no configuration
    disk = DiskLog(tmp_path)
    recovered = disk.open()
    disk.close()
    assert recovered.snapshot == SnapshotMeta(5, 2)
    assert recovered.snapshot_data == b"old"


def test_install_replaces_the_log_and_appending_continues_after_the_snapshot(
    tmp_path: Path,
) -> None:
    old_log(tmp_path)
    disk = DiskLog(tmp_path, segment_bytes=200)
    disk.open()
    data = disk.install_snapshot(META, staged(tmp_path))
    assert data == b"state"
    assert disk.last_index == 50 and disk.segments == []
    disk.append(entries(51, 53, term=3))
    disk.sync()
    disk.close()
    again = DiskLog(tmp_path)
    recovered = again.open()
    again.close()
    assert recovered.snapshot == META
    assert [e.index for e in recovered.entries] == [51, 52, 53]


def test_a_damaged_staged_file_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    old_log(tmp_path)
    disk = DiskLog(tmp_path)
    disk.open()
    path = staged(tmp_path)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="damaged"):
        disk.install_snapshot(META, path)
    disk.close()
    again = DiskLog(tmp_path)
    recovered = again.open()
    again.close()
    assert recovered.snapshot is None and len(recovered.entries) == 10


@pytest.mark.parametrize("crash_after", ["rename", "mark", "first_delete"])
def test_every_crash_state_of_an_install_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_after: str
) -> None:
    # Given a log of several segments and a staged snapshot ahead of it
    old_log(tmp_path, last=12, segment_bytes=120)
    disk = DiskLog(tmp_path, segment_bytes=120)
    disk.open()
    assert len(disk.segments) > 2

    class Crash(Exception):
        pass

    real_replace, real_unlink = os.replace, Path.unlink
    deletes = 0

    def replace(src: object, dst: object) -> None:
        real_replace(src, dst)  # type: ignore[arg-type]
        if crash_after == "rename":
            raise Crash

    def unlink(self: Path, missing_ok: bool = False) -> None:
        nonlocal deletes
        real_unlink(self, missing_ok)
        if self.name.endswith(".log"):
            deletes += 1
            if crash_after == "first_delete":
                raise Crash

    real_sync = disk._mark.sync

    def mark_sync() -> None:
        real_sync()
        if crash_after == "mark" and (tmp_path / "raft" / snapshot_name(META)).exists():
            raise Crash

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(disk._mark, "sync", mark_sync)
    # When the install stops at that point (a crash: nothing more is written)
    with pytest.raises(Crash):
        disk.install_snapshot(META, staged(tmp_path))
    disk.abandon()
    monkeypatch.undo()
    # Expect recovery to accept the directory, start from the snapshot, and append after it
    again = DiskLog(tmp_path, segment_bytes=120)
    recovered = again.open()
    assert recovered.snapshot == META
    assert recovered.entries == []
    again.append(entries(51, 52, term=3))
    again.sync()
    again.close()
    final = DiskLog(tmp_path)
    assert [e.index for e in final.open().entries] == [51, 52]
    final.close()
