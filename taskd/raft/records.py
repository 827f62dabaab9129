"""The on-disk record codec of the Raft log. Pure: bytes in, bytes or entries out.

Theory of operation: a log segment is a sequence of records, one per entry::

    length u32 | type u8 | term u64 | index u64 | crc u32 | data (length bytes)

little-endian, a 25-byte header. ``crc`` is CRC-32 (``zlib.crc32``) over the first 21 header
bytes and the data, so a flipped bit anywhere in a record, a record cut short by a crash, or a
run of zeros (type 0 is never valid) is detected. ``scan`` reads records until the first one
that is torn or wrong (short header, short body, bad checksum, unknown type, index not one more
than the previous) and reports how many bytes were good, so the caller can truncate there.

Whether a bad record is a torn tail (the last write, cut short: safe to drop) or damage in the
middle of the log (acknowledged data: never drop silently) is the caller's decision, helped by
``find_valid_after``, which looks past the bad spot for any record that still checks out: it
searches for the 9 bytes ``type | term`` of every term the log may hold (``bytes.find``, so a
64 MiB segment takes milliseconds per term) and checks the record at each hit, so no run of
zeros or garbage is too long to step over. ``valid_record_after`` is the older, cheaper
lookahead by index (the next few indexes only).

Record types are the entry kinds (``types.EntryKind``): ``ENTRY`` (a normal command), ``NOOP``
(a new leader's no-op) and ``CONF_CHANGE`` (a membership change). The type byte is covered by
the checksum, so a kind survives the disk exactly as it was written. ``offset_of`` walks the
record lengths of an already-validated segment to find where an index starts (what
``DiskLog.truncate_suffix`` cuts at).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from taskd.raft.types import Entry, EntryKind

ENTRY = int(EntryKind.NORMAL)
NOOP = int(EntryKind.NOOP)
CONF_CHANGE = int(EntryKind.CONF_CHANGE)
_KINDS: dict[int, EntryKind] = {int(kind): kind for kind in EntryKind}
RECORD_TYPES = frozenset(_KINDS)

_HEAD = struct.Struct("<IBQQ")  # length, type, term, index: the checksummed header part
_RECORD = struct.Struct("<IBQQI")  # the whole header, crc included
_CRC = struct.Struct("<I")
_INDEX = struct.Struct("<Q")
_TYPE_TERM = struct.Struct("<BQ")  # the needle find_valid_after looks for
HEADER_SIZE = _RECORD.size
_INDEX_OFFSET = 4 + 1 + 8  # where ``index`` sits inside a header
_TYPE_OFFSET = 4  # where ``type`` (then ``term``) sits inside a header
# How many successive indexes valid_record_after looks for past a bad record.
_LOOKAHEAD = 8


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Entries read before the first problem; ``valid_length`` bytes of the buffer were good.

    ``problem`` is None when the whole buffer was valid records, else a description that
    names the byte offset of the first bad record (which equals ``valid_length``).
    """

    entries: list[Entry]
    valid_length: int
    problem: str | None


def encode_entries(entries: Iterable[Entry]) -> bytes:
    """Encode entries as consecutive records."""
    parts: list[bytes] = []
    append = parts.append
    head = _HEAD.pack
    crc_pack = _CRC.pack
    crc32 = zlib.crc32
    for entry in entries:
        data = entry.data
        header = head(len(data), entry.kind, entry.term, entry.index)
        append(header)
        append(crc_pack(crc32(data, crc32(header))))
        append(data)
    return b"".join(parts)


def scan(buf: bytes, first_index: int | None = None, start: int = 0) -> ScanResult:
    """Decode records from offset ``start`` of ``buf`` up to the first torn or corrupt one.

    With ``first_index``, the first record must carry that index; every later record must
    carry one more than the record before it. Offsets in ``problem`` and ``valid_length``
    count from the start of ``buf``.
    """
    view = memoryview(buf)
    size = len(buf)
    unpack = _RECORD.unpack_from
    crc32 = zlib.crc32
    kinds = _KINDS
    entries: list[Entry] = []
    append = entries.append
    expected = first_index
    pos = start
    problem: str | None = None
    while pos < size:
        if size - pos < HEADER_SIZE:
            problem = f"short header at offset {pos} ({size - pos} of {HEADER_SIZE} bytes)"
            break
        length, rtype, term, index, crc = unpack(buf, pos)
        start = pos + HEADER_SIZE
        end = start + length
        if end > size:
            problem = f"short body at offset {pos} ({size - start} of {length} bytes)"
            break
        if crc32(view[start:end], crc32(view[pos : pos + _HEAD.size])) != crc:
            problem = f"bad checksum at offset {pos}"
            break
        kind = kinds.get(rtype)
        if kind is None:
            problem = f"unknown record type {rtype} at offset {pos}"
            break
        if expected is not None and index != expected:
            problem = f"index {index} where {expected} was expected at offset {pos}"
            break
        append(Entry(term, index, bytes(view[start:end]), kind))
        expected = index + 1
        pos = end
    return ScanResult(entries, pos, problem)


def record_at(buf: bytes, pos: int) -> Entry | None:
    """The record starting exactly at ``pos`` if it is whole and its checksum matches."""
    if pos < 0 or len(buf) - pos < HEADER_SIZE:
        return None
    length, rtype, term, index, crc = _RECORD.unpack_from(buf, pos)
    start = pos + HEADER_SIZE
    end = start + length
    if end > len(buf) or rtype not in RECORD_TYPES:
        return None
    view = memoryview(buf)
    if zlib.crc32(view[start:end], zlib.crc32(view[pos : pos + _HEAD.size])) != crc:
        return None
    return Entry(term, index, bytes(view[start:end]), _KINDS[rtype])


def offset_of(buf: bytes, start: int, first_index: int, index: int) -> int:
    """The byte offset where the record of ``index`` starts (or would start, for the index
    one past the last record), in a buffer of valid records beginning at ``start`` with
    ``first_index``. Reads only the length fields: the records were checked when read."""
    if index < first_index:
        raise ValueError(f"index {index} lies before the first record {first_index}")
    pos = start
    for _ in range(index - first_index):
        if len(buf) - pos < HEADER_SIZE:
            raise ValueError(f"index {index} lies past the records in the buffer")
        (length,) = _CRC.unpack_from(buf, pos)  # the length is the header's first u32
        pos += HEADER_SIZE + length
    if pos > len(buf):
        raise ValueError(f"index {index} lies past the records in the buffer")
    return pos


def valid_record_after(buf: bytes, pos: int, expected_index: int) -> int | None:
    """Offset of a checksum-valid record at or after ``pos``, or None.

    Used after ``scan`` stopped at ``pos`` where it expected ``expected_index``: a valid record
    further on means the bad one is damage in the middle of the log, not a torn tail. It looks
    for the next few indexes (so a record whose header itself is damaged is stepped over)
    rather than trying every byte offset, which keeps recovery fast on large segments.
    """
    if record_at(buf, pos) is not None:  # whole and intact, only out of sequence
        return pos
    found: int | None = None
    for index in range(expected_index, expected_index + _LOOKAHEAD):
        needle = _INDEX.pack(index)
        at = buf.find(needle, pos + _INDEX_OFFSET)
        while at != -1:
            head = at - _INDEX_OFFSET
            if found is not None and head >= found:
                break
            if record_at(buf, head) is not None:
                found = head
                break
            at = buf.find(needle, at + 1)
    return found


def find_valid_after(
    buf: bytes, pos: int, min_index: int, terms: Iterable[int]
) -> tuple[int, Entry] | None:
    """The first checksum-valid record at or after offset ``pos`` whose index is at least
    ``min_index`` and whose term is one of ``terms``, as (offset, entry); None if there is none.

    Complete, unlike ``valid_record_after``: every occurrence of ``type | term`` is tried, so
    a damaged stretch of any length is stepped over. Records with a lower index than
    ``min_index`` are ignored: they cannot be entries the log lost at ``pos`` (a block of an
    older, deleted segment reused by the file system, say).
    """
    best: tuple[int, Entry] | None = None
    for rtype in sorted(RECORD_TYPES):
        for term in terms:
            needle = _TYPE_TERM.pack(rtype, term)
            at = buf.find(needle, pos + _TYPE_OFFSET)
            while at != -1:
                head = at - _TYPE_OFFSET
                if best is not None and head >= best[0]:
                    break
                entry = record_at(buf, head)
                if entry is not None and entry.index >= min_index:
                    best = (head, entry)
                    break
                at = buf.find(needle, at + 1)
    return best
