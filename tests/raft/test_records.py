"""The record codec: round trips, torn tails at every byte, flipped bytes."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from taskd.raft import records
from taskd.raft.types import Entry, EntryKind

payloads = st.lists(st.binary(max_size=64), min_size=1, max_size=12)


def make_entries(datas: list[bytes], first: int = 1, term: int = 3) -> list[Entry]:
    return [Entry(term, first + i, data) for i, data in enumerate(datas)]


def record_ends(entries: list[Entry]) -> list[int]:
    ends, pos = [], 0
    for entry in entries:
        pos += records.HEADER_SIZE + len(entry.data)
        ends.append(pos)
    return ends


def test_round_trip() -> None:
    entries = make_entries([b"", b"a", b"hello" * 100, bytes(range(256))], first=7)
    buf = records.encode_entries(entries)
    result = records.scan(buf, 7)
    assert result.entries == entries
    assert result.valid_length == len(buf)
    assert result.problem is None


def test_empty_buffer_is_an_empty_log() -> None:
    assert records.scan(b"") == records.ScanResult([], 0, None)


def test_zero_filled_tail_is_rejected() -> None:
    entries = make_entries([b"x", b"y"])
    buf = records.encode_entries(entries) + bytes(4096)
    result = records.scan(buf, 1)
    assert result.entries == entries
    assert result.problem is not None


def test_non_consecutive_index_stops_the_scan() -> None:
    buf = records.encode_entries([Entry(1, 1, b"a"), Entry(1, 3, b"c")])
    result = records.scan(buf, 1)
    assert [e.index for e in result.entries] == [1]
    assert result.problem is not None and "index 3 where 2" in result.problem
    # The out-of-order record is itself intact, so it counts as valid data after the stop.
    assert records.valid_record_after(buf, result.valid_length, 2) == result.valid_length


def test_wrong_first_index_is_a_problem() -> None:
    buf = records.encode_entries(make_entries([b"a"], first=5))
    assert records.scan(buf, 4).problem is not None


@given(payloads, st.data())
def test_any_truncation_keeps_exactly_the_whole_records(
    datas: list[bytes], data: st.DataObject
) -> None:
    # Given a valid log cut at any byte
    entries = make_entries(datas)
    buf = records.encode_entries(entries)
    cut = data.draw(st.integers(0, len(buf)))
    # When it is scanned
    result = records.scan(buf[:cut], 1)
    # Expect exactly the records wholly before the cut, and a problem iff a record was cut
    whole = [e for e, end in zip(entries, record_ends(entries), strict=True) if end <= cut]
    assert result.entries == whole
    assert result.valid_length == sum(records.HEADER_SIZE + len(e.data) for e in whole)
    assert (result.problem is None) == (result.valid_length == cut)
    # and nothing valid follows the cut point: it is a torn tail, not damage
    assert records.valid_record_after(buf[:cut], result.valid_length, len(whole) + 1) is None


@given(payloads, st.data())
def test_flipped_byte_in_last_record_drops_only_that_record(
    datas: list[bytes], data: st.DataObject
) -> None:
    entries = make_entries(datas)
    buf = bytearray(records.encode_entries(entries))
    last_start = record_ends(entries)[-2] if len(entries) > 1 else 0
    at = data.draw(st.integers(last_start, len(buf) - 1))
    buf[at] ^= data.draw(st.integers(1, 255))
    result = records.scan(bytes(buf), 1)
    assert result.entries == entries[:-1]
    assert result.valid_length == last_start
    assert result.problem is not None
    assert records.valid_record_after(bytes(buf), last_start, len(entries)) is None


@given(st.lists(st.binary(max_size=64), min_size=2, max_size=12), st.data())
def test_flipped_byte_before_the_last_record_is_seen_as_mid_log_damage(
    datas: list[bytes], data: st.DataObject
) -> None:
    entries = make_entries(datas)
    buf = bytearray(records.encode_entries(entries))
    ends = record_ends(entries)
    at = data.draw(st.integers(0, ends[-2] - 1))
    buf[at] ^= data.draw(st.integers(1, 255))
    result = records.scan(bytes(buf), 1)
    assert result.problem is not None
    expected = len(result.entries) + 1
    assert records.valid_record_after(bytes(buf), result.valid_length, expected) is not None


@given(
    st.lists(st.binary(max_size=40), min_size=3, max_size=60),
    st.integers(0, 10**6),
    st.integers(1, 3000),
    st.sampled_from([b"\x00", b"\xff", b"\x01"]),
)
def test_find_valid_after_steps_over_a_damaged_run_of_any_length(
    datas: list[bytes], start_at: int, length: int, fill: bytes
) -> None:
    # Given records of terms 3 and 4, and a run of bytes overwritten from inside one of them
    entries = [Entry(3 if i < len(datas) // 2 else 4, i + 1, d) for i, d in enumerate(datas)]
    original = records.encode_entries(entries)
    buf = bytearray(original)
    ends = [0, *record_ends(entries)]
    start = start_at % (len(buf) - 1)
    end = min(len(buf), start + length)
    buf[start:end] = fill * (end - start)
    damaged = bytes(buf)
    result = records.scan(damaged, 1)
    assume(result.problem is not None)  # the fill changed nothing
    # Expect the first whole record after the bad spot to be found (or none, if the run
    # reached the end), whatever the run's length: the lookahead is complete. A record the
    # fill overwrote with the bytes it already had is whole too.
    intact = [
        e
        for e, at, stop in zip(entries, ends, ends[1:], strict=False)
        if at >= result.valid_length and damaged[at:stop] == original[at:stop]
    ]
    found = records.find_valid_after(damaged, result.valid_length, len(result.entries) + 1, (3, 4))
    if intact:
        assert found is not None and found[1] == intact[0]
        assert found[0] == ends[entries.index(intact[0])]
    else:
        assert found is None


def test_find_valid_after_ignores_records_below_the_index_it_looks_for() -> None:
    stale = records.encode_entries(make_entries([b"old"] * 3, first=1))
    buf = b"\x00" * 30 + stale
    assert records.find_valid_after(buf, 0, 4, (3,)) is None
    assert records.find_valid_after(buf, 0, 1, (3,)) == (30, Entry(3, 1, b"old"))


def test_entry_kinds_round_trip_as_record_types() -> None:
    entries = [
        Entry(2, 1, b"", EntryKind.NOOP),
        Entry(2, 2, b"cmd"),
        Entry(2, 3, b"conf", EntryKind.CONF_CHANGE),
    ]
    buf = records.encode_entries(entries)
    assert [buf[pos + 4] for pos in record_starts(entries)] == [
        records.NOOP,
        records.ENTRY,
        records.CONF_CHANGE,
    ]
    assert records.scan(buf, 1).entries == entries
    assert records.record_at(buf, record_starts(entries)[2]) == entries[2]
    # A no-op after damage is found like any other record
    damaged = bytes(8) + buf
    assert records.find_valid_after(damaged, 0, 1, (2,)) == (8, entries[0])


def test_offset_of_walks_to_an_index() -> None:
    entries = make_entries([b"a", b"bb", b"ccc"], first=5)
    buf = b"HEAD" + records.encode_entries(entries)
    starts = [4 + pos for pos in record_starts(entries)]
    assert [records.offset_of(buf, 4, 5, i) for i in (5, 6, 7, 8)] == [*starts, len(buf)]
    with pytest.raises(ValueError):
        records.offset_of(buf, 4, 5, 9)


def record_starts(entries: list[Entry]) -> list[int]:
    return [0, *record_ends(entries)[:-1]]
