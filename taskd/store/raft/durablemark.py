"""The durable mark file: how far the synced Raft log reaches. Blocking I/O.

Theory of operation: ``raft/durable`` is an 8 KiB file of two checksummed slots, at offsets
0 and 4096 (so one page write never touches both)::

    magic "TKMK" | sequence u64 | durable index u64 | commit index u64 | crc u32

little-endian; ``crc`` is CRC-32 over the 28 bytes before it. ``put`` overwrites the older
slot in place (the next sequence number), never renaming the file, so a write torn by a crash
spoils at most that slot and the other still holds the previous mark; ``read`` takes the
valid slot with the highest sequence. ``put`` only writes to the page cache; ``sync``
fdatasyncs. Callers put only indexes that are already durable, so whenever the page reaches
the disk it tells the truth (``taskd.store.raft.disklog`` says when it puts and syncs). The mark
usually moves forward; it moves back only before a deliberate truncation of the log's suffix,
put and synced before any entry is cut, so it never claims an entry that is gone. A new file
is written whole with ``create`` (the caller's atomic write: temp file, fsync, rename).
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_MAGIC = b"TKMK"
_SLOT = struct.Struct("<4sQQQ")  # magic, sequence, durable index, commit; then crc u32
_CRC = struct.Struct("<I")
_SLOT_SIZE = _SLOT.size + _CRC.size
_STRIDE = 4096  # slot i lives at i * stride
FILE_SIZE = 2 * _STRIDE


@dataclass(frozen=True, slots=True)
class Mark:
    seq: int
    durable: int
    commit: int


def _slot(seq: int, durable: int, commit: int) -> bytes:
    body = _SLOT.pack(_MAGIC, seq, durable, commit)
    return body + _CRC.pack(zlib.crc32(body))


def read(path: Path) -> tuple[Mark | None, str | None]:
    """The newest valid slot, or (None, what is wrong): missing, or neither slot checks out."""
    try:
        buf = path.read_bytes()
    except FileNotFoundError:
        return None, "the durable mark is missing but the log has entries"
    best: Mark | None = None
    for slot in range(2):
        piece = buf[slot * _STRIDE : slot * _STRIDE + _SLOT_SIZE]
        if len(piece) < _SLOT_SIZE:
            continue
        magic, seq, durable, commit = _SLOT.unpack_from(piece)
        (crc,) = _CRC.unpack_from(piece, _SLOT.size)
        if magic != _MAGIC or crc != zlib.crc32(piece[: _SLOT.size]):
            continue  # a torn slot write: the other slot holds the previous mark
        if best is None or seq > best.seq:
            best = Mark(seq, durable, commit)
    if best is None:
        return None, f"the durable mark is damaged (neither slot checks out, {len(buf)} bytes)"
    return best, None


class MarkFile:
    """The open mark file. ``marked`` is what was last put; ``dirty`` says it is not synced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._seq = 0
        self.marked = (0, 0)  # (durable, commit)
        self.dirty = False
        self.synced_at = 0.0  # time.monotonic() of the last sync

    def open(self, mark: Mark) -> None:
        """Continue the mark file ``read`` found."""
        self._fd = os.open(self.path, os.O_RDWR)
        self._seq = mark.seq
        self.marked = (mark.durable, mark.commit)

    def create(
        self, durable: int, commit: int, write_atomic: Callable[[Path, bytes], None]
    ) -> None:
        """Replace the file with a new one (a new directory, or one rebuilt by the flag)."""
        self.close()
        self._seq += 1
        buf = bytearray(FILE_SIZE)
        buf[:_SLOT_SIZE] = _slot(self._seq, durable, commit)
        write_atomic(self.path, bytes(buf))
        self._fd = os.open(self.path, os.O_RDWR)
        self.marked = (durable, commit)

    def put(self, durable: int, commit: int) -> None:
        """Overwrite the older slot, in the page cache only."""
        assert self._fd is not None, "the mark file is not open"
        seq = self._seq + 1
        os.pwrite(self._fd, _slot(seq, durable, commit), (seq % 2) * _STRIDE)
        self._seq = seq
        self.marked = (durable, commit)
        self.dirty = True

    def sync(self) -> None:
        assert self._fd is not None, "the mark file is not open"
        self.dirty = False  # first: a put racing this sync is synced the next time
        os.fdatasync(self._fd)
        self.synced_at = time.monotonic()

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
