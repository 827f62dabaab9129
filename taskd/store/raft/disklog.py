"""The Raft log on local disk: segments, the hard state, the durable mark and snapshots.

Blocking I/O. Theory of operation: everything lives under ``<data_dir>/raft/``::

    LOCK                                   flock'ed while a process has the log open
    00000000000000000001.log               a segment: a 20-byte header (magic, first index,
    00000000000000065613.log                 crc), then records (taskd.raft.records); named by
                                             the index of its first entry; rotated at ~64 MiB
    durable                                the durable mark: how far the synced log reaches
    hardstate                              term, vote, commit; replaced atomically
    snapshot-<index:020>-<term:020>        the latest snapshot (with its configuration);
                                             replaced atomically
    incoming-<index>-<term>.tmp            a leader's snapshot being received (deleted at start)
    lost+found/                            what ``--accept-data-loss`` cut away, kept

"Atomically" is: write a temp file, fsync it, rename it over the old one, fsync the directory.
``append`` writes records to the active segment; ``sync`` makes them durable (fdatasync, plus
a directory fsync when a segment was created). The driver calls these from a worker thread,
once per batch; ``save_snapshot``/``compact`` may run in another thread at the same time, so
the segment list is guarded by a lock.

The durable mark (``taskd.store.raft.durablemark``: two checksummed slots overwritten in place, in
turn) holds the highest index whose fsync returned and the highest commit index the driver
reported. Each ``sync`` first writes (to the page cache) the mark of the PREVIOUS
sync, entries already durable, so whenever that page reaches the disk it tells the truth: the
mark never claims an entry whose fsync had not returned. At most every ``_MARK_SYNC_EVERY``
(50 ms) the mark is also fdatasync'ed, on a helper thread while the segment's own fdatasync
runs, so no fsync is added to the path of a round. When the log goes idle the driver calls
``flush_mark`` (write and fdatasync), and ``close`` does the same. So after a process crash
the mark trails the log by the last round; after a power cut, by at most ~50 ms more.

Recovery (``open``) reads the snapshot, the hard state, the mark and every segment, and
accepts exactly what a crash can leave: a bad record (short, bad checksum, zeros, garbage, a
damaged segment header) in the LAST segment, past the durable mark, with no checksum-valid
record of that index or later anywhere after it (``records.find_valid_after``). That is a
torn final write, whose fsync never returned: the segment is cut there with a warning. Any
other finding is damage to synced data, and ``open`` raises ``LogCorrupted`` with one line
naming the file, the offset, what would be lost and the remedy: a bad record in a segment
that is not the last; a bad record at or below the mark; a valid record after a bad one; a
log that ends below the mark (cut short, last segment deleted); a gap between the snapshot
and the first segment or between segments (deleted snapshot, deleted segment); a segment
header naming another index; a damaged snapshot, hard state or mark; a missing hard state
or mark while the log has entries. A brand-new directory (none of these files) is fine. So
is damage only to entries a durable snapshot holds (segments not compacted yet): cut, with a
warning to check the disk, since nothing is lost. Every refusal is decided before anything is
cut, so a refused start changes no file. Why "no valid record after it" and not just "past
the mark": the mark trails by a round, and a bad record followed by intact later ones is not
what a crash of an append-only writer leaves (in the rare case of a power cut during the
final fsync on a disk that reorders writes, it can be: then the node refuses rather than
guess, and the message says the entries lie past the mark).

Why this is complete and fast: ``scan`` reads records in one pass (~1 s per 64 MiB); only on
a bad record does ``find_valid_after`` search the rest of the segment, for each term the log
may hold past that point (usually a handful), with ``bytes.find``.

With ``accept_data_loss`` (``--accept-data-loss``), ``open`` cuts at the first damage
instead: the rest of the damaged segment and every later segment go to ``lost+found/``, a
damaged snapshot too (then the log is kept only if it still starts at index 1), a missing or
damaged hard state is rebuilt from the log (term of its last entry, no vote), and the mark is
rewritten to what is left, so the next start is clean; every cut is logged at ERROR.

Format note: segment headers and the mark are new in this version. A data directory written
before them has no mark and headerless segments and is refused (there are no production
users yet; ``--accept-data-loss`` will not convert it either, it would drop the segments).

Truncation (``truncate_suffix(index)``: a follower told by a new leader that its uncommitted
tail conflicts) removes every entry from ``index`` on, durably, in an order that keeps each
crash state acceptable to recovery: first the mark is lowered to ``index - 1`` and fsynced
(so it never claims an entry about to go: a log longer than its mark is what a crash after
a round leaves anyway); then the segments that start at or after ``index`` are deleted,
last first, and the directory fsynced (a crash leaves a shorter, still contiguous log); then
the segment holding ``index - 1`` is cut at that record's end and fsynced. A crash anywhere
in between leaves a log that reaches at least the mark and has no gap, so recovery accepts
it as it is; the driver's core then replaces the tail again. A committed entry is never
truncated (``ValueError``): the mark's commit index stays below the cut.

Installing a leader's snapshot (``install_snapshot(meta, staged)``: a follower far behind a
compacted log; the staged file was written and fsynced in this directory by the driver) drops
EVERY entry and makes the snapshot the base of the log, in this order: (1) the staged file is
checked (header, checksum, position) and renamed to its snapshot name, and the directory
fsynced: from now on recovery starts from it, keeps old entries above it (uncommitted; the
leader replaces them) and deletes the segments it covers whole; (2) the mark is set to
``meta.index`` and fsynced, so it never claims entries about to be deleted; (3) every segment
is deleted, last first, and the directory fsynced: a crash leaves a contiguous prefix of the
old segments, which (1) already handles; (4) older snapshots are removed. Appending then
starts a new segment at ``meta.index + 1``. Snapshot files carry the configuration (voters,
learners) as of their index in their header (format 2); files of format 1, without it, load
with an empty configuration. ``save_snapshot`` never removes a NEWER snapshot: a forked
child's snapshot may finish after an installed one that went further.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from taskd.errors import TaskdError
from taskd.raft import records
from taskd.raft.types import Entry, HardState, SnapshotMeta
from taskd.store.raft import durablemark
from taskd.store.raft.durablemark import MarkFile

log = logging.getLogger("taskd.raft.disk")

SEGMENT_BYTES = 64 * 1024 * 1024
ACCEPT_FLAG = "--accept-data-loss (or TASKD_ACCEPT_DATA_LOSS=1)"
_SEGMENT = re.compile(r"^(\d{20})\.log$")
_SNAPSHOT = re.compile(r"^snapshot-(\d{20})-(\d{20})$")
_HARDSTATE = "hardstate"
_MARK = "durable"
_LOST = "lost+found"
_HS_MAGIC = b"TKHS\x01"
_HS = struct.Struct("<QQH")  # term, commit, vote length; then vote (utf-8), then crc u32
_SNAP_MAGIC_V1 = b"TKSN\x01"
_SNAP = struct.Struct("<QQQ")  # v1: index, term, data length; then crc u32, then data
_SNAP_MAGIC = b"TKSN\x02"
# v2: index, term, conf length, data length; then the conf (msgpack [voters, learners]),
# then crc u32 (of everything before it and the data), then data
_SNAP2 = struct.Struct("<QQQQ")
_CRC = struct.Struct("<I")
_SEG_MAGIC = b"TKSEG\x01\x00\x00"
_SEG_HEAD = struct.Struct("<8sQ")  # magic, first index; then crc u32 of these 16 bytes
SEGMENT_HEADER_SIZE = _SEG_HEAD.size + _CRC.size
_MARK_SYNC_EVERY = 0.05  # seconds between the mark's fdatasyncs while rounds go on
_LOCK_PATIENCE = 1.0  # seconds open() waits for the lock before reporting LogInUse


class LogCorrupted(TaskdError):
    """The log on disk is damaged in a way recovery must not paper over."""


class LogInUse(TaskdError):
    """Another process has this data directory's Raft log open."""


@dataclass
class Recovered:
    """What ``open`` found. ``entries`` are those after the snapshot, in index order.
    ``durable`` is the durable mark as found (None in a new directory); ``repairs`` the
    warnings and errors recovery logged (torn tails cut, data dropped by the flag)."""

    snapshot: SnapshotMeta | None
    snapshot_data: bytes | None
    hard_state: HardState
    entries: list[Entry]
    repairs: list[str] = field(default_factory=list)
    durable: int | None = None


def segment_name(first_index: int) -> str:
    return f"{first_index:020d}.log"


def snapshot_name(meta: SnapshotMeta) -> str:
    return f"snapshot-{meta.index:020d}-{meta.term:020d}"


def segment_header(first_index: int) -> bytes:
    head = _SEG_HEAD.pack(_SEG_MAGIC, first_index)
    return head + _CRC.pack(zlib.crc32(head))


def encode_snapshot(meta: SnapshotMeta, data: bytes) -> bytes:
    """The bytes of a snapshot file: header (position, configuration), checksum, data."""
    conf: bytes = msgpack.packb([list(meta.voters), list(meta.learners)], use_bin_type=True)
    head = _SNAP_MAGIC + _SNAP2.pack(meta.index, meta.term, len(conf), len(data)) + conf
    return head + _CRC.pack(zlib.crc32(data, zlib.crc32(head))) + data


def parse_snapshot(buf: bytes) -> tuple[SnapshotMeta, bytes] | None:
    """(meta, data) of a snapshot file's bytes, or None when damaged. Reads the current
    format (with the configuration) and the first one (without: empty voters)."""
    if buf.startswith(_SNAP_MAGIC_V1):
        head = len(_SNAP_MAGIC_V1) + _SNAP.size
        if len(buf) < head + _CRC.size:
            return None
        index, term, length = _SNAP.unpack_from(buf, len(_SNAP_MAGIC_V1))
        (crc,) = _CRC.unpack_from(buf, head)
        data = buf[head + _CRC.size :]
        if length != len(data) or crc != zlib.crc32(data, zlib.crc32(buf[:head])):
            return None
        return SnapshotMeta(index, term), data
    if not buf.startswith(_SNAP_MAGIC):
        return None
    fixed = len(_SNAP_MAGIC) + _SNAP2.size
    if len(buf) < fixed + _CRC.size:
        return None
    index, term, conf_len, length = _SNAP2.unpack_from(buf, len(_SNAP_MAGIC))
    head = fixed + conf_len
    if len(buf) != head + _CRC.size + length:
        return None
    (crc,) = _CRC.unpack_from(buf, head)
    data = buf[head + _CRC.size :]
    if crc != zlib.crc32(data, zlib.crc32(buf[:head])):
        return None
    try:
        voters, learners = msgpack.unpackb(buf[fixed:head], raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    return SnapshotMeta(index, term, tuple(voters), tuple(learners)), data


def _header_problem(buf: bytes, first: int) -> tuple[str, bool] | None:
    """None if ``buf`` starts with the header of segment ``first``; else (problem, whether
    it could be a torn write: a header cut short or not yet written, rather than one that is
    whole and checks out but names another segment)."""
    if len(buf) < SEGMENT_HEADER_SIZE:
        return f"short segment header ({len(buf)} of {SEGMENT_HEADER_SIZE} bytes)", True
    magic, index = _SEG_HEAD.unpack_from(buf)
    (crc,) = _CRC.unpack_from(buf, _SEG_HEAD.size)
    if magic != _SEG_MAGIC or crc != zlib.crc32(buf[: _SEG_HEAD.size]):
        return "bad segment header (not a taskd log segment, or damaged)", True
    if index != first:
        return (
            f"the segment header says its first index is {index}, its name says {first} "
            f"(a file renamed or copied over another)",
            False,
        )
    return None


def _head_of(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(SEGMENT_HEADER_SIZE)


def _entry_range(first: int, last: int) -> str:
    if last < first:
        return "no entries"
    if last == first:
        return f"entry {first}"
    return f"entries {first}..{last} ({last - first + 1:,} entries)"


def _missing(first: int, last: int) -> str:
    text = _entry_range(first, last)
    return f"{text[0].upper()}{text[1:]} {'is' if first == last else 'are'} missing"


class DiskLog:
    def __init__(
        self,
        data_dir: Path,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        accept_data_loss: bool = False,
    ) -> None:
        self.dir = Path(data_dir) / "raft"
        self.segment_bytes = segment_bytes
        self.accept_data_loss = accept_data_loss
        self._lock = threading.Lock()
        self._segments: list[tuple[int, Path]] = []  # (first index, path), ascending
        self._fd: int | None = None  # the active (last) segment, open for appending
        self._active_size = 0
        self._last_index = 0
        self._dir_dirty = False
        self._lock_fd: int | None = None
        self._repairs: list[str] = []
        self._dropped = False  # the flag cut something
        self._mark = MarkFile(self.dir / _MARK)
        self._durable = 0  # highest index whose fsync returned: what the mark may say
        self._commit = 0  # highest commit index the driver reported
        self._broken = False  # a sync failed: write nothing more, not even the mark
        self._pool: ThreadPoolExecutor | None = None

    # -- recovery -------------------------------------------------------------------------

    def open(self) -> Recovered:
        """Recover the log (repairing a torn tail), and make it ready for ``append``.
        Raises ``LogCorrupted`` (one line: file, offset, loss, remedy) on any other damage."""
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
        segments = sorted(
            (int(m[1]), p) for p in self.dir.iterdir() if (m := _SEGMENT.match(p.name))
        )
        has_snapshot = any(_SNAPSHOT.match(p.name) for p in self.dir.iterdir())
        mark_path = self.dir / _MARK
        hs_path = self.dir / _HARDSTATE
        if not segments and not has_snapshot and not mark_path.exists() and not hs_path.exists():
            self._mark.create(0, 0, self._write_atomic)  # from now on the mark must exist
            self._open_pool()
            return Recovered(None, None, HardState(), [], [], None)
        # Every check that can refuse comes before anything is cut: a refused start
        # changes nothing on disk.
        mark, mark_problem = durablemark.read(mark_path)
        if mark is None and not segments and not has_snapshot:
            mark_problem = None  # no entries for a mark to vouch for: just write a new one
        if mark_problem is not None:
            self._damaged(
                str(mark_path),
                mark_problem,
                "Without it, a log cut short or a deleted last segment cannot be detected.",
                "nothing from the log itself: the mark is rebuilt from what the log holds "
                "(this once, damage at the very end of the log passes for a torn write)",
                sets_aside=False,
            )
        hard_state, hs_problem = self._read_hard_state()
        if hs_problem is not None or (hard_state is None and (segments or has_snapshot)):
            self._damaged(
                str(hs_path),
                hs_problem or "the hard state is missing but the log has entries",
                "It holds the term and the vote; a member that forgets its vote may vote "
                "twice in a term.",
                "the saved vote: the hard state is rebuilt from the log's last term, no vote",
                sets_aside=False,
            )
            hard_state = None
            rebuild_hard_state = True
        else:
            rebuild_hard_state = False
        snapshot, snapshot_data = self._read_snapshot()
        max_term = max(hard_state.term if hard_state else 0, snapshot.term if snapshot else 0)
        entries = self._read_segments(segments, snapshot, mark, max_term)
        # Entries the snapshot covers may linger in segments not yet compacted.
        last = max(entries[-1].index if entries else 0, snapshot.index if snapshot else 0)
        last_term = entries[-1].term if entries else (snapshot.term if snapshot else 0)
        rewrite_mark = mark is None
        if mark is not None and last < mark.durable:
            if not self._dropped:  # else the cut that made it so was reported already
                self._check_reaches_mark(last, mark.durable)
            rewrite_mark = True
        if rebuild_hard_state:
            hard_state = HardState(max(last_term, max_term), None, 0)
            self.save_hard_state(hard_state)
        if hard_state is None:  # a new directory that crashed before its first round
            hard_state = HardState()
        self._last_index = last
        if snapshot is not None:
            if self._segments and (not entries or entries[-1].index < snapshot.index):
                # Every segment left is covered by the snapshot (an installed snapshot whose
                # segment deletion a crash interrupted, or the flag cut the log below it):
                # appending must start a new segment at snapshot + 1.
                for _, covered in self._segments:
                    covered.unlink()
                self._segments = []
                self._dir_dirty = True
            entries = [e for e in entries if e.index > snapshot.index]
            self.compact(snapshot.index)
        if self._segments:
            _, path = self._segments[-1]
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._active_size = os.fstat(self._fd).st_size
            # What a crashed process wrote may still be only in the page cache (the data, or
            # the directory entry of a segment it had just created): sync both before the
            # mark may claim it.
            os.fsync(self._fd)
            self._dir_dirty = True
        if self._dir_dirty:
            self._fsync_dir()
            self._dir_dirty = False
        self._durable = last
        commit = max(hard_state.commit, mark.commit if mark else 0)
        self._commit = commit
        if rewrite_mark or mark is None:
            self._mark.create(last, commit, self._write_atomic)
        else:
            self._mark.open(mark)
        self._open_pool()
        return Recovered(
            snapshot,
            snapshot_data,
            HardState(hard_state.term, hard_state.vote, commit),
            entries,
            list(self._repairs),
            mark.durable if mark else None,
        )

    def _check_reaches_mark(self, last: int, durable: int) -> None:
        follower = self.dir / segment_name(last + 1)
        where = (
            f"{self._segments[-1][1]} (the last segment)"
            if self._segments
            else f"{self.dir} (no log segment left)"
        )
        self._damaged(
            where,
            f"the log ends at index {last}, but the durable mark says every entry up to "
            f"{durable} was synced: {follower} was deleted, or the last segment cut short",
            f"{_missing(last + 1, durable)}.",
            f"those missing entries for good (the mark is rewritten to {last})",
            sets_aside=False,
        )

    def _damaged(
        self, where: str, problem: str, lost: str, drop: str, *, sets_aside: bool = True
    ) -> None:
        """Refuse to start, or (with the flag) log at ERROR what is dropped and go on."""
        if not self.accept_data_loss:
            raise LogCorrupted(
                f"the Raft log is damaged: {where}: {problem}. {lost} Refusing to start. "
                f"Restore the data directory ({self.dir.parent}) from a backup or a replica; "
                f"or start with {ACCEPT_FLAG} to drop {drop}."
            )
        kept = f"; what was cut is kept in {self.dir / _LOST}" if sets_aside else ""
        message = (
            f"accepting data loss as told by --accept-data-loss: {where}: {problem}. {lost} "
            f"Dropped {drop}{kept}."
        )
        log.error("%s", message)
        self._repairs.append(message)
        self._dropped = True

    def _take_lock(self) -> None:
        fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        # A killed node's snapshot child shares its lock until the kernel kills it too
        # (PR_SET_PDEATHSIG): give it a moment rather than report a live node.
        deadline = time.monotonic() + _LOCK_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
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
        buf = path.read_bytes()
        parsed = parse_snapshot(buf)
        if parsed is not None and (parsed[0].index, parsed[0].term) == (index, term):
            for _, _, older in found[:-1]:  # a crash may have come before their removal
                older.unlink()
            return parsed
        self._damaged(
            f"snapshot {path}",
            f"the snapshot is damaged (bad header or checksum, {len(buf)} bytes)",
            f"It holds the state up to index {index}; the log before it was compacted away, "
            f"so starting would lose data.",
            f"the snapshot: the state up to index {index} unless the log still starts at "
            f"index 1 (then nothing), and otherwise every log entry too",
        )
        for _, _, each in found:  # older ones too: the log was compacted past them
            self._set_aside(each)
        return None, None

    def _read_hard_state(self) -> tuple[HardState | None, str | None]:
        path = self.dir / _HARDSTATE
        try:
            buf = path.read_bytes()
        except FileNotFoundError:
            return None, None
        head = len(_HS_MAGIC) + _HS.size
        if len(buf) >= head + _CRC.size and buf.startswith(_HS_MAGIC):
            term, commit, vote_len = _HS.unpack_from(buf, len(_HS_MAGIC))
            body = buf[: head + vote_len]
            intact = len(buf) == len(body) + _CRC.size
            if intact and _CRC.unpack_from(buf, len(body))[0] == zlib.crc32(body):
                vote = body[head:].decode() if vote_len else None
                return HardState(term, vote, commit), None
        return None, f"the hard state is damaged (bad header or checksum, {len(buf)} bytes)"

    def _read_segments(
        self,
        segments: list[tuple[int, Path]],
        snapshot: SnapshotMeta | None,
        mark: durablemark.Mark | None,
        max_term: int,
    ) -> list[Entry]:
        after = snapshot.index if snapshot else 0
        durable = mark.durable if mark else 0
        entries: list[Entry] = []
        kept: list[tuple[int, Path]] = []
        self._segments = kept
        for position, (first, path) in enumerate(segments):
            later = segments[position + 1 :]
            expected = entries[-1].index + 1 if entries else None
            gap: tuple[int, int] | None = None
            if expected is None and first > after + 1:
                gap = (after + 1, first - 1)
                cause = (
                    f"the snapshot ends at index {after}"
                    if snapshot
                    else "there is no snapshot (deleted?) and no segment from index 1"
                )
            elif expected is not None and first != expected:
                gap = (expected, first - 1)
                cause = f"the previous segment {kept[-1][1].name} ends at index {expected - 1}"
            if gap is not None:
                self._damaged(
                    str(path),
                    f"the segment starts at index {first} but {cause}",
                    f"{_missing(*gap)} (a deleted segment or snapshot).",
                    f"this segment and every later one ({len(later) + 1} file(s), "
                    f"entries from {first} on): they cannot be applied past the gap",
                )
                for _, stale in (segments[position], *later):
                    self._set_aside(stale)
                break
            buf = path.read_bytes()
            header = _header_problem(buf, first)
            problem: str | None
            if header is not None:  # nothing in a segment can be trusted past a bad header
                problem, offset, found = header[0], 0, []
            else:
                result = records.scan(buf, first, SEGMENT_HEADER_SIZE)
                problem, offset, found = result.problem, result.valid_length, result.entries
            entries.extend(found)
            if problem is None:
                kept.append((first, path))
                continue
            lost_from = first + len(found)
            needed_from = max(lost_from, after + 1)  # what the snapshot does not cover
            low_term = entries[-1].term if entries else (snapshot.term if snapshot else 0)
            terms = range(low_term, max(max_term, low_term) + 1)
            hit = records.find_valid_after(buf, offset, needed_from, terms)
            torn = header is None or header[1]
            if torn and not later and needed_from > durable and hit is None:
                reason = (
                    "the last write, past the durable mark, whose fsync never returned"
                    if lost_from > after
                    else f"damage only to entries from {lost_from} on, which the snapshot "
                    f"at {after} holds: nothing is lost, but check the disk"
                )
                self._cut_torn_tail(path, offset, problem, reason)
                if offset > 0:
                    kept.append((first, path))
                break
            if hit is not None:
                problem = (
                    f"the segment is corrupt in the middle: {problem}, yet a valid record "
                    f"(index {hit[1].index}) follows at offset {hit[0]}"
                )
            elif later:
                held = sum(1 for f, p in later if _header_problem(_head_of(p), f) is None)
                problem = (
                    f"the segment is corrupt in the middle of the log: {problem}, and later "
                    f"segments hold valid records ({held} of {len(later)} with a valid header)"
                )
            else:
                problem = f"the segment is corrupt at its end: {problem}"
            size = len(buf)
            if needed_from <= durable:
                lost = (
                    f"The synced (durable mark {durable}) {_entry_range(needed_from, durable)} "
                    f"would be lost."
                )
            else:
                lost = (
                    f"Entries from {needed_from} on lie past the durable mark {durable} "
                    f"(written by the last round before a stop) and may have been acknowledged."
                )
            if lost_from < needed_from:
                lost += f" ({_entry_range(lost_from, after)} are also in the snapshot.)"
            self._damaged(
                f"{path} at offset {offset}",
                problem,
                lost,
                f"the rest of this segment ({size - offset:,} bytes from offset {offset}) and "
                f"{len(later)} later segment(s): every entry from index {lost_from} on",
            )
            self._cut(path, offset)
            if offset > 0:
                kept.append((first, path))
            for _, stale in later:
                self._set_aside(stale)
            break
        if self._dir_dirty:
            self._fsync_dir()
            self._dir_dirty = False
        return entries

    def _cut_torn_tail(self, path: Path, offset: int, problem: str, reason: str) -> None:
        size = path.stat().st_size
        message = (
            f"torn write at the tail of the Raft log: {path}: {problem}; cutting it from "
            f"{size} to {offset} bytes ({reason})"
        )
        log.warning("%s", message)
        self._repairs.append(message)
        if offset == 0:
            path.unlink()  # a segment created by the last write: even its header is torn
            self._dir_dirty = True
        else:
            self._truncate(path, offset)

    def _cut(self, path: Path, offset: int) -> None:
        """(With the flag) keep what follows ``offset`` in lost+found, then truncate."""
        if offset == 0:
            self._set_aside(path)
            return
        lost = self._lost_dir()
        with path.open("rb") as src:
            src.seek(offset)
            tail = src.read()
        target = lost / f"{path.name}.from-{offset}.{time.time_ns()}"
        target.write_bytes(tail)
        self._truncate(path, offset)

    def _truncate(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _set_aside(self, path: Path) -> None:
        if not path.exists():
            return
        target = self._lost_dir() / f"{path.name}.{time.time_ns()}"
        shutil.move(path, target)
        self._dir_dirty = True

    def _lost_dir(self) -> Path:
        lost = self.dir / _LOST
        lost.mkdir(exist_ok=True)
        return lost

    # -- the durable mark -----------------------------------------------------------------

    def _mark_due(self) -> tuple[int, int] | None:
        due = (self._durable, min(self._commit, self._durable))
        return due if due != self._mark.marked and not self._broken else None

    def _open_pool(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="taskd-mark")

    @property
    def mark_behind(self) -> bool:
        """Whether ``flush_mark`` has something to write or sync."""
        return self._mark_due() is not None or (self._mark.dirty and not self._broken)

    def note_commit(self, index: int) -> None:
        """The driver's commit index; the mark carries it (never past what is durable)."""
        self._commit = max(self._commit, index)

    def flush_mark(self) -> None:
        """Bring the mark up to date with what is durable (the driver calls this when the
        log goes idle, so the mark does not trail the last round for long)."""
        if not self._mark.is_open or self._broken:
            return
        due = self._mark_due()
        if due is not None:
            self._mark.put(*due)
        if self._mark.dirty:
            self._mark.sync()

    # -- writing --------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Write ``entries`` (which must continue the log) to the active segment."""
        if not entries:
            return
        first = entries[0].index
        if first != self._last_index + 1:
            raise ValueError(
                f"append at index {first} does not continue the log ending at "
                f"{self._last_index} (to overwrite a suffix, truncate_suffix first)"
            )
        data = records.encode_entries(entries)
        with self._lock:
            if self._fd is None or self._active_size >= self.segment_bytes:
                self._rotate(first)
            assert self._fd is not None
            view = memoryview(data)
            try:
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
            except OSError:
                # A full disk mid-write: take the partial records back, or a later append
                # that succeeds would leave them in the middle of the log (damage, at the
                # next start). Nothing of this append was acknowledged.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._active_size)
                raise
            self._active_size += len(data)
        self._last_index = entries[-1].index

    @property
    def last_index(self) -> int:
        """The index of the last entry appended (durable or not)."""
        return self._last_index

    def truncate_suffix(self, index: int) -> None:
        """Remove every entry from ``index`` on, durably (the module docstring gives the
        order and why each crash state recovers). ``append`` then continues at ``index``."""
        if index > self._last_index:
            return
        if self._broken:
            raise OSError(f"the Raft log in {self.dir} failed before; it takes no more writes")
        if index <= self._commit:
            raise ValueError(
                f"truncate_suffix({index}): entries up to {self._commit} are committed"
            )
        with self._lock:
            if self._segments and index < self._segments[0][0]:
                raise ValueError(
                    f"truncate_suffix({index}): the log starts at {self._segments[0][0]}"
                )
            self._lower_mark(index - 1)
            self._cut_suffix(index)

    def _lower_mark(self, last: int) -> None:
        """Step one of a truncation: the mark claims nothing past ``last``, on disk."""
        self._durable = min(self._durable, last)
        self._mark.put(self._durable, min(self._commit, self._durable))
        self._mark.sync()

    def _cut_suffix(self, index: int) -> None:
        """Steps two and three: delete whole segments from the last back, cut the one that
        holds ``index - 1``, and continue appending after it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        removed = False
        while self._segments and self._segments[-1][0] >= index:
            _, path = self._segments.pop()
            path.unlink()
            removed = True
        if removed:
            self._fsync_dir()
        self._last_index = index - 1
        self._active_size = 0
        if not self._segments:
            return  # the next append starts a new segment at ``index``
        first, path = self._segments[-1]
        buf = path.read_bytes()
        cut = records.offset_of(buf, SEGMENT_HEADER_SIZE, first, index)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            if cut < len(buf):
                os.ftruncate(fd, cut)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._active_size = cut

    def sync(self) -> None:
        """Make everything appended so far durable.

        Before the segment's fdatasync, the mark of the previous sync (entries already
        durable) is written to the page cache; at most every ``_MARK_SYNC_EVERY`` seconds it
        is also fdatasync'ed, on the mark thread, beside the segment's fdatasync, so it costs
        no extra wait. After a failure nothing more is written: the kernel may have dropped
        the data."""
        if self._broken:
            raise OSError(f"the Raft log in {self.dir} failed before; it takes no more writes")
        target = self._last_index
        due = self._mark_due()
        if due is not None:
            self._mark.put(*due)
        pending: Future[None] | None = None
        if (
            self._mark.dirty
            and self._pool is not None
            and time.monotonic() - self._mark.synced_at >= _MARK_SYNC_EVERY
        ):
            pending = self._pool.submit(self._mark.sync)
        try:
            if self._fd is not None:
                os.fdatasync(self._fd)
            if self._dir_dirty:
                self._fsync_dir()
                self._dir_dirty = False
        except BaseException:
            self._broken = True
            if pending is not None:
                pending.exception()  # wait for it: the mark thread must be idle after this
            raise
        if pending is not None:
            try:
                pending.result()
            except BaseException:
                self._broken = True
                raise
        self._durable = target

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
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        header = segment_header(first)
        try:
            if os.write(fd, header) != len(header):
                raise OSError(f"short write of the header of {path}")
        except OSError:
            os.close(fd)  # a full disk: leave no half-made segment for the next try
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._fd = fd
        self._active_size = len(header)
        self._segments.append((first, path))
        self._dir_dirty = True

    def save_hard_state(self, hs: HardState) -> None:
        vote = (hs.vote or "").encode()
        body = _HS_MAGIC + _HS.pack(hs.term, hs.commit, len(vote)) + vote
        self._write_atomic(self.dir / _HARDSTATE, body + _CRC.pack(zlib.crc32(body)))

    def save_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Durably store a snapshot (its header carries the configuration as of its index),
        then remove older ones (never a newer one: an installed snapshot may be ahead)."""
        path = self.dir / snapshot_name(meta)
        self._write_atomic(path, encode_snapshot(meta, data))
        self._remove_snapshots_below(meta.index)

    def _remove_snapshots_below(self, index: int) -> None:
        for other in self.dir.iterdir():
            m = _SNAPSHOT.match(other.name)
            if m and int(m[1]) < index:
                other.unlink()

    def install_snapshot(self, meta: SnapshotMeta, staged: Path) -> bytes:
        """Make the snapshot file ``staged`` (written and fsynced by the caller, in this
        directory) the durable base of the log: every entry is dropped and the log continues
        at ``meta.index + 1``. Returns the snapshot's data for the state machine.

        Order, so that every crash state in between recovers (module docstring): (1) rename
        the staged file to its snapshot name and fsync the directory: recovery then starts
        from it, keeping the old entries above it, if any (uncommitted; the leader replaces
        them), and dropping those below; (2) lower the durable mark to ``meta.index`` and
        fsync it, so it never claims entries about to be deleted; (3) delete every segment,
        last first, and fsync the directory: a crash leaves a contiguous prefix of the old
        segments, which (1) already handles; (4) remove older snapshots."""
        buf = staged.read_bytes()
        parsed = parse_snapshot(buf)
        if parsed is None or (parsed[0].index, parsed[0].term) != (meta.index, meta.term):
            staged.unlink(missing_ok=True)
            raise ValueError(
                f"the snapshot received for index {meta.index} (term {meta.term}) is damaged "
                "or names another position; the leader will send it again"
            )
        if self._broken:
            raise OSError(f"the Raft log in {self.dir} failed before; it takes no more writes")
        with self._lock:
            path = self.dir / snapshot_name(meta)
            os.replace(staged, path)
            self._fsync_dir()
            self._durable = meta.index
            self._commit = max(self._commit, meta.index)
            self._mark.put(meta.index, meta.index)
            self._mark.sync()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            while self._segments:
                _, segment = self._segments.pop()
                segment.unlink()
            self._fsync_dir()
            self._active_size = 0
            self._last_index = meta.index
            self._remove_snapshots_below(meta.index)
        return parsed[1]

    def compact(self, index: int) -> None:
        """Delete segments whose every entry is at or below ``index`` (a durable snapshot
        covers them). The active segment is always kept."""
        with self._lock:
            while len(self._segments) > 1 and self._segments[1][0] - 1 <= index:
                _, path = self._segments.pop(0)
                path.unlink()

    def close(self) -> None:
        """Flush the mark (unless a write failed), then release everything."""
        if self._pool is not None:
            try:
                self.flush_mark()
            except OSError as exc:
                log.error("cannot update the durable mark in %s on close: %s", self.dir, exc)
            self._pool.shutdown()
            self._pool = None
        self.abandon()

    def release_in_child(self) -> None:
        """In a forked child (the snapshot writer): drop the child's share of the lock, so
        that the lock goes with the node process and not with a straggling child."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def abandon(self) -> None:
        """Release files and lock without writing anything more: what a crash leaves behind
        (the mark may trail the last sync). ``close`` ends with this."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        self._mark.close()
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
