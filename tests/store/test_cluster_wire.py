"""The wire form of Raft message batches and forwarded commands."""

from __future__ import annotations

import pytest

from taskd.raft.types import Entry, EntryKind, Message, MessageKind, SnapshotMeta
from taskd.store.raft import wire


def test_every_field_of_every_message_kind_survives_a_round_trip() -> None:
    entries = (Entry(3, 11, b"a"), Entry(3, 12, b"", EntryKind.NOOP))
    messages = [
        Message(
            kind,
            "a:1",
            "b:1",
            3,
            index=10,
            log_term=2,
            commit=9,
            reject=True,
            reject_hint=4,
            context=77,
        )
        for kind in MessageKind
    ]
    messages.append(Message(MessageKind.APPEND, "a:1", "b:1", 3, index=10, entries=entries))
    messages.append(
        Message(
            MessageKind.SNAPSHOT, "a:1", "b:1", 3, snapshot=SnapshotMeta(9, 2, ("a:1",), ("c:1",))
        )
    )
    assert wire.decode_batch(wire.encode_batch("a:1", "b:1", messages)) == ("a:1", "b:1", messages)


def test_damaged_batches_are_refused() -> None:
    blob = wire.encode_batch(
        "a:1", "b:1", [Message(MessageKind.APPEND, "a:1", "b:1", 1, entries=(Entry(1, 1, b"x"),))]
    )
    with pytest.raises(wire.WireError):
        wire.decode_batch(blob[:-3])
    with pytest.raises(wire.WireError):
        wire.decode_batch(blob.replace(b"x", b"y"))  # the entry's checksum no longer matches
    with pytest.raises(wire.WireError, match="version"):
        wire.decode_batch(b"\x94\x63\xa1a\xa1b\x90")


def test_forwarded_commands_round_trip_and_must_be_bytes() -> None:
    assert wire.decode_commands(wire.encode_commands([b"a", b""])) == [b"a", b""]
    with pytest.raises(wire.WireError):
        wire.decode_commands(wire.encode_commands(["text"]))  # type: ignore[list-item]
