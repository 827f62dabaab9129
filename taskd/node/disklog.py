"""The Raft log on local disk: segments, the hard state and snapshots. Blocking I/O.

Theory of operation: everything lives under ``<data_dir>/raft/``::

    LOCK                                   flock'ed while a process has the log open
    00000000000000000001.log               a segment: records (taskd.raft.records), named by
    00000000000000065613.log                 the index of its first entry; rotated at ~64 MiB
    hardstate                              term, vote, commit; replaced atomically
    snapshot-<index:020>-<term:020>        the latest snapshot; replaced atomically

"Atomically" is: write a temp file, fsync it, rename it over the old one, fsync the directory.
``append`` writes records to the active segment; ``sync`` makes them durable (fdatasync, plus
a directory fsync when a segment was created). The driver calls these from a worker thread,
once per batch; ``save_snapshot``/``compact`` may run in another thread at the same time, so
the segment list is guarded by a lock.

Recovery (``open``) reads the snapshot, the hard state and every segment with
``records.scan``. A bad record that nothing valid follows is a torn tail — the last write, cut
short by a crash, never acknowledged because its fsync never returned: the segment is
truncated there (later segments deleted) with a warning naming file and offset. A bad record
followed by valid ones is damage to acknowledged data: ``open`` refuses with ``LogCorrupted``
naming the file and offset rather than drop it. The same holds for a snapshot or hard state
file that fails its checksum, and for a gap between the snapshot and the first segment.

Not here yet: overwriting a log suffix (a follower told so by a new leader); ``append`` only
extends the log.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from taskd.errors import TaskdError
from taskd.raft import records
from taskd.raft.types import Entry, HardState, SnapshotMeta

log = logging.getLogger("taskd.raft.disk")

SEGMENT_BYTES = 64 * 1024 * 1024
_SEGMENT = re.compile(r"^(\d{20})\.log$")
_SNAPSHOT = re.compile(r"^snapshot-(\d{20})-(\d{20})$")
_HARDSTATE = "hardstate"
_HS_MAGIC = b"TKHS\x01"
_HS = struct.Struct("<QQH")  # term, commit, vote length; then vote (utf-8), then crc u32
_SNAP_MAGIC = b"TKSN\x01"
_SNAP = struct.Struct("<QQQ")  # index, term, data length; then crc u32, then data
_CRC = struct.Struct("<I")


class LogCorrupted(TaskdError):
    """The log on disk is damaged in a way recovery must not paper over."""


class LogInUse(TaskdError):
    """Another process has this data directory's Raft log open."""


@dataclass
class Recovered:
    """What ``open`` found. ``entries`` are those after the snapshot, in index order."""

    snapshot: SnapshotMeta | None
    snapshot_data: bytes | None
    hard_state: HardState
    entries: list[Entry]
    repairs: list[str] = field(default_factory=list)


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}.log"


def snapshot_name(meta: SnapshotMeta) -> str:
    return f"snapshot-{meta.index:020d}-{meta.term:020d}"


class DiskLog:
    def __init__(self, data_dir: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.dir = Path(data_dir) / "raft"
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._segments: list[tuple[int, Path]] = []  # (first index, path), ascending
        self._fd: int | None = None  # the active (last) segment, open for appending
        self._active_size = 0
        self._last_index = 0
        self._dir_dirty = False
        self._lock_fd: int | None = None

    # -- recovery -------------------------------------------------------------------------

    def open(self) -> Recovered:
        """Recover the log (repairing a torn tail), and make it ready for ``append``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            return self._recover()
        except BaseException:
            self.close()
            raise

    def _recover(self) -> Recovered:
        for leftover in self.dir.glob("*.tmp"):
            leftover.unlink()
        snapshot, snapshot_data = self._read_snapshot()
        hard_state = self._read_hard_state()
        entries, repairs = self._read_segments(snapshot)
        self._last_index = max(
            entries[-1].index if entries else 0, snapshot.index if snapshot else 0
        )
        if snapshot is not None:
            entries = [e for e in entries if e.index > snapshot.index]
            self.compact(snapshot.index)
        if self._segments:
            _, path = self._segments[-1]
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._active_size = os.fstat(self._fd).st_size
        return Recovered(snapshot, snapshot_data, hard_state, entries, repairs)

    def _take_lock(self) -> None:
        fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogInUse(
                f"the Raft log in {self.dir} is in use by another process: is another node "
                "running on this --data-dir? Stop it, or give this node its own --data-dir"
            ) from None
        self._lock_fd = fd

    def _read_snapshot(self) -> tuple[SnapshotMeta | None, bytes | None]:
        found = sorted(
            (int(m[1]), int(m[2]), p) for p in self.dir.iterdir() if (m := _SNAPSHOT.match(p.name))
        )
        if not found:
            return None, None
        index, term, path = found[-1]
        for _, _, older in found[:-1]:  # a crash may have come before their removal
            older.unlink()
        buf = path.read_bytes()
        head = len(_SNAP_MAGIC) + _SNAP.size
        ok = len(buf) >= head + _CRC.size and buf.startswith(_SNAP_MAGIC)
        if ok:
            s_index, s_term, length = _SNAP.unpack_from(buf, len(_SNAP_MAGIC))
            (crc,) = _CRC.unpack_from(buf, head)
            data = buf[head + _CRC.size :]
            ok = (s_index, s_term, length) == (index, term, len(data)) and crc == zlib.crc32(
                data, zlib.crc32(buf[:head])
            )
        if not ok:
            raise LogCorrupted(
                f"snapshot {path} is damaged (bad header or checksum); the log before index "
                f"{index} was compacted away, so starting would lose data. Restore it from a "
                f"backup or another member."
            )
        return SnapshotMeta(index, term), data

    def _read_hard_state(self) -> HardState:
        path = self.dir / _HARDSTATE
        try:
            buf = path.read_bytes()
        except FileNotFoundError:
            return HardState()
        head = len(_HS_MAGIC) + _HS.size
        if len(buf) >= head + _CRC.size and buf.startswith(_HS_MAGIC):
            term, commit, vote_len = _HS.unpack_from(buf, len(_HS_MAGIC))
            body = buf[: head + vote_len]
            intact = len(buf) == len(body) + _CRC.size
            if intact and _CRC.unpack_from(buf, len(body))[0] == zlib.crc32(body):
                vote = body[head:].decode() if vote_len else None
                return HardState(term, vote, commit)
        raise LogCorrupted(f"hard state file {path} is damaged (bad header or checksum)")

    def _read_segments(self, snapshot: SnapshotMeta | None) -> tuple[list[Entry], list[str]]:
        segments = sorted(
            (int(m[1]), p) for p in self.dir.iterdir() if (m := _SEGMENT.match(p.name))
        )
        after = snapshot.index if snapshot else 0
        entries: list[Entry] = []
        repairs: list[str] = []
        kept: list[tuple[int, Path]] = []
        for position, (first, path) in enumerate(segments):
            expected = entries[-1].index + 1 if entries else None
            if expected is None and first > after + 1:
                raise LogCorrupted(
                    f"log segment {path} starts at index {first} but the snapshot ends at "
                    f"{after}: entries {after + 1}..{first - 1} are missing"
                )
            if expected is not None and first != expected:
                raise LogCorrupted(
                    f"log segment {path} starts at index {first} but the previous segment "
                    f"ends at {expected - 1}"
                )
            buf = path.read_bytes()
            result = records.scan(buf, first)
            entries.extend(result.entries)
            if result.problem is None:
                kept.append((first, path))
                continue
            later = segments[position + 1 :]
            next_index = first + len(result.entries)
            damaged_at = records.valid_record_after(buf, result.valid_length, next_index)
            if damaged_at is not None or any(self._has_records(p, f) for f, p in later):
                where = (
                    f"valid records follow at offset {damaged_at}"
                    if damaged_at is not None
                    else "later segments hold valid records"
                )
                raise LogCorrupted(
                    f"log segment {path} is corrupt in the middle: {result.problem}, and "
                    f"{where}. Refusing to start: truncating would lose acknowledged entries "
                    f"from index {next_index}. Restore the data directory from a backup or "
                    f"another member, or move the damaged file away to accept the loss."
                )
            repairs.append(self._truncate_tail(path, result, later))
            if result.valid_length > 0:
                kept.append((first, path))
            else:
                path.unlink()
                self._dir_dirty = True
            break
        if self._dir_dirty:
            self._fsync_dir()
            self._dir_dirty = False
        self._segments = kept
        return entries, repairs

    def _has_records(self, path: Path, first: int) -> bool:
        buf = path.read_bytes()
        return bool(buf) and records.valid_record_after(buf, 0, first) is not None

    def _truncate_tail(
        self, path: Path, result: records.ScanResult, later: list[tuple[int, Path]]
    ) -> str:
        size = path.stat().st_size
        message = (
            f"torn write at the tail of the Raft log: {path}: {result.problem}; truncating "
            f"from {size} to {result.valid_length} bytes (the unacknowledged last write)"
        )
        if later:
            message += f" and deleting {len(later)} later empty segment(s)"
        log.warning(message)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, result.valid_length)
            os.fsync(fd)
        finally:
            os.close(fd)
        for _, stale in later:
            stale.unlink()
            self._dir_dirty = True
        return message

    # -- writing --------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Write ``entries`` (which must continue the log) to the active segment."""
        if not entries:
            return
        first = entries[0].index
        if first != self._last_index + 1:
            raise ValueError(
                f"append at index {first} does not continue the log ending at "
                f"{self._last_index} (overwriting a suffix is not implemented yet)"
            )
        data = records.encode_entries(entries)
        with self._lock:
            if self._fd is None or self._active_size >= self.segment_bytes:
                self._rotate(first)
            assert self._fd is not None
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self._active_size += len(data)
        self._last_index = entries[-1].index

    def sync(self) -> None:
        """Make everything appended so far durable."""
        if self._fd is not None:
            os.fdatasync(self._fd)
        if self._dir_dirty:
            self._fsync_dir()
            self._dir_dirty = False

    def discard_unsynced(self) -> None:
        """Undo a failed ``append``/``save_hard_state`` (a full disk): cut the active segment
        back to the bytes of the appends that completed — the driver fsyncs each batch before
        the next, so that is exactly what the last sync made durable — and delete a
        half-written hard state temp file, so that a retry starts from a clean tail."""
        with self._lock:
            if self._fd is not None and os.fstat(self._fd).st_size > self._active_size:
                os.ftruncate(self._fd, self._active_size)
        (self.dir / (_HARDSTATE + ".tmp")).unlink(missing_ok=True)

    def _rotate(self, first: int) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        path = self.dir / segment_name(first)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        self._active_size = 0
        self._segments.append((first, path))
        self._dir_dirty = True

    def save_hard_state(self, hs: HardState) -> None:
        vote = (hs.vote or "").encode()
        body = _HS_MAGIC + _HS.pack(hs.term, hs.commit, len(vote)) + vote
        self._write_atomic(self.dir / _HARDSTATE, body + _CRC.pack(zlib.crc32(body)))

    def save_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Durably store a snapshot, then remove older ones."""
        head = _SNAP_MAGIC + _SNAP.pack(meta.index, meta.term, len(data))
        crc = _CRC.pack(zlib.crc32(data, zlib.crc32(head)))
        path = self.dir / snapshot_name(meta)
        self._write_atomic(path, head + crc + data)
        for other in self.dir.iterdir():
            if _SNAPSHOT.match(other.name) and other != path:
                other.unlink()

    def compact(self, index: int) -> None:
        """Delete segments whose every entry is at or below ``index`` (a durable snapshot
        covers them). The active segment is always kept."""
        with self._lock:
            while len(self._segments) > 1 and self._segments[1][0] - 1 <= index:
                _, path = self._segments.pop(0)
                path.unlink()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def segments(self) -> list[Path]:
        with self._lock:
            return [path for _, path in self._segments]

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
