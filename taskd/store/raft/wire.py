"""The wire form of Raft messages: one msgpack blob per batch of messages between two members.

Theory of operation: the driver sends each ``Ready``'s messages grouped by destination; a
group travels as ONE bytes value (in a protobuf ``bytes`` field on gRPC, as is in memory), so
the cost per message is a few msgpack items and the cost per entry is one disk record
(``taskd.raft.records``: the same 25-byte header and checksum as on disk, so an entry damaged
in transit is refused, not appended). There is never one protobuf message per entry.

A batch is ``[version, src, dst, [message, ...]]``; a message is the flat list
``[kind, term, index, log_term, commit, reject, reject_hint, context, entries, snapshot]``
where ``entries`` is the records blob (empty for no entries) and ``snapshot`` is None or
``[index, term, voters, learners]``. Unknown versions and malformed batches raise
``WireError`` (the receiver drops the batch: Raft tolerates lost messages).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from taskd.errors import TaskdError
from taskd.raft import records
from taskd.raft.types import Entry, Message, MessageKind, SnapshotMeta

VERSION = 1
_KINDS: list[MessageKind] = list(MessageKind)
_CODES: dict[MessageKind, int] = {kind: code for code, kind in enumerate(_KINDS)}


class WireError(TaskdError):
    """A batch of Raft messages that cannot be decoded (another version, or damaged)."""


def encode_batch(src: str, dst: str, messages: Sequence[Message]) -> bytes:
    """Encode messages from ``src`` to ``dst`` as one blob."""
    codes = _CODES
    encode_entries = records.encode_entries
    out = []
    for m in messages:
        snap = m.snapshot
        out.append(
            [
                codes[m.kind],
                m.term,
                m.index,
                m.log_term,
                m.commit,
                m.reject,
                m.reject_hint,
                m.context,
                encode_entries(m.entries) if m.entries else b"",
                None
                if snap is None
                else [snap.index, snap.term, list(snap.voters), list(snap.learners)],
            ]
        )
    packed: bytes = msgpack.packb([VERSION, src, dst, out], use_bin_type=True)
    return packed


def decode_batch(blob: bytes) -> tuple[str, str, list[Message]]:
    """(src, dst, messages) of a blob made by ``encode_batch``. Raises ``WireError``."""
    try:
        version, src, dst, items = msgpack.unpackb(blob, raw=False, use_list=True)
        if version != VERSION:
            raise WireError(f"Raft message batch of version {version}, this node speaks {VERSION}")
        kinds = _KINDS
        messages = []
        for kind, term, index, log_term, commit, reject, hint, ctx, blob_e, snap in items:
            entries: tuple[Entry, ...] = ()
            if blob_e:
                scanned = records.scan(blob_e)
                if scanned.problem is not None:
                    raise WireError(f"damaged entries in a Raft message: {scanned.problem}")
                entries = tuple(scanned.entries)
            meta = None
            if snap is not None:
                meta = SnapshotMeta(snap[0], snap[1], tuple(snap[2]), tuple(snap[3]))
            messages.append(
                Message(
                    kinds[kind],
                    src,
                    dst,
                    term,
                    index=index,
                    log_term=log_term,
                    commit=commit,
                    entries=entries,
                    reject=reject,
                    reject_hint=hint,
                    context=ctx,
                    snapshot=meta,
                )
            )
    except WireError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as exc:
        raise WireError(f"a Raft message batch that does not decode: {exc!r}") from exc
    return src, dst, messages


def encode_commands(commands: Sequence[bytes]) -> bytes:
    """A forwarded batch of encoded commands: one msgpack array of bytes."""
    packed: bytes = msgpack.packb(list(commands), use_bin_type=True)
    return packed


def decode_commands(blob: bytes) -> list[bytes]:
    try:
        items = msgpack.unpackb(blob, raw=False, use_list=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"a forwarded batch that does not decode: {exc!r}") from exc
    if not isinstance(items, list) or not all(isinstance(i, bytes) for i in items):
        raise WireError("a forwarded batch must be a list of byte strings")
    return items
