"""Log-entry bytes for scheduler commands: ``encode(command, now, entropy)`` and ``decode``.

Theory of operation: one log entry is one msgpack array ``[version, kind, now, entropy,
*fields]``. ``version`` comes first so a reader can refuse a format it does not know with a
clear error rather than misread it; ``kind`` is a small integer tag; fields are positional in
the command's declaration order, and a ``TaskSpec`` is itself a positional array. Payloads and
results are msgpack ``bin``, stored as-is. Arrays instead of maps keep entries small and
encoding fast (this runs once per log entry on every replica).

Adding a field means a new ``FORMAT_VERSION`` and a decoder for the old one. A new command kind
keeps the version (old entries stay readable; an older build refuses the new kind by name).
So a ``Fail`` that carries a worker's ``retry_delay`` is written as its own kind
(``_FAIL_AFTER``, the ``Fail`` fields plus the delay); every other ``Fail`` keeps kind 8 and
its bytes, which any build reads. Likewise a ``Complete`` with a stderr ``log``
(``_COMPLETE_LOG``); without one it keeps kind 7.

``restamp(data, now)`` replaces the ``now`` of an encoded command without decoding the rest: a
cluster's leader re-stamps every command a follower forwards with its own (leader) time, and a
batch of forwarded commands must cost the leader next to nothing. It reads the array header,
the two small integers before ``now`` and ``now`` itself, and splices a float64 in its place;
payloads and specs are copied as they are.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgpack

from taskd.queue.commands import (
    Cancel,
    Command,
    Complete,
    Fail,
    Heartbeat,
    Lease,
    PauseQueue,
    ReleaseWorker,
    RenewLeases,
    ResumeQueue,
    Retry,
    SetConfig,
    SetLimits,
    Submit,
    TaskSpec,
    Tick,
)
from taskd.queue.task import SchedulerConfig

FORMAT_VERSION = 1


class CodecError(ValueError):
    """The bytes are not a command this build can read."""


def _spec_row(s: TaskSpec) -> list[Any]:
    labels: list[str] = []
    for key, value in s.labels:
        labels.append(key)
        labels.append(value)
    return [
        s.queue, s.name, s.priority, s.payload, s.timeout, s.max_retries, s.run_at,
        s.depends_on, s.idempotency_key, labels, s.ref,
    ]  # fmt: skip


def _spec(row: tuple[Any, ...]) -> TaskSpec:
    (queue, name, priority, payload, timeout, max_retries, run_at, depends_on, key, labels, ref) = (
        row
    )
    return TaskSpec(
        queue,
        name,
        priority,
        payload,
        timeout,
        max_retries,
        run_at,
        depends_on,
        key,
        tuple(zip(labels[::2], labels[1::2], strict=True)),
        ref,
    )


def _config_row(c: SchedulerConfig) -> list[Any]:
    return [c.retention, c.backoff_base, c.backoff_cap, c.max_queue_depth, c.max_tasks, c.max_bytes]


# kind tag → (command type, fields as a row, row → command)
_SUBMIT = 0
_FAIL = 8
_FAIL_AFTER = 14  # a Fail with retry_delay > 0
_COMPLETE = 7
_COMPLETE_LOG = 15  # a Complete with a stderr log
_ENCODERS: dict[type, tuple[int, Callable[[Any], list[Any]]]] = {
    Submit: (_SUBMIT, lambda c: [c.ids, [_spec_row(s) for s in c.specs]]),
    Cancel: (1, lambda c: [c.task_id]),
    Retry: (2, lambda c: [c.task_id]),
    PauseQueue: (3, lambda c: [c.queue]),
    ResumeQueue: (4, lambda c: [c.queue]),
    Lease: (5, lambda c: [c.queue, c.worker, c.max, c.lease_ttl]),
    Heartbeat: (6, lambda c: [c.task_id, c.epoch, c.lease_ttl]),
    Complete: (_COMPLETE, lambda c: [c.task_id, c.epoch, c.result]),
    Fail: (_FAIL, lambda c: [c.task_id, c.epoch, c.error, c.retryable]),
    Tick: (9, lambda c: []),
    ReleaseWorker: (10, lambda c: [c.worker]),
    RenewLeases: (11, lambda c: [c.lease_ttl]),
    SetLimits: (12, lambda c: [c.max_queue_depth, c.max_tasks, c.max_bytes]),
    SetConfig: (13, lambda c: _config_row(c.config)),
}
_DECODERS: dict[int, Callable[..., Command]] = {
    _SUBMIT: lambda ids, specs: Submit(tuple(_spec(s) for s in specs), ids),
    1: Cancel,
    2: Retry,
    3: PauseQueue,
    4: ResumeQueue,
    5: Lease,
    6: Heartbeat,
    _COMPLETE: Complete,
    _FAIL: Fail,
    9: Tick,
    10: ReleaseWorker,
    11: RenewLeases,
    12: SetLimits,
    13: lambda *row: SetConfig(SchedulerConfig(*row)),
    _FAIL_AFTER: Fail,
    _COMPLETE_LOG: Complete,
}


def encode(command: Command, now: float, entropy: int) -> bytes:
    try:
        kind, fields = _ENCODERS[type(command)]
    except KeyError:
        raise CodecError(f"cannot encode {type(command).__name__}") from None
    row = fields(command)
    if isinstance(command, Fail) and command.retry_delay:
        kind = _FAIL_AFTER
        row.append(command.retry_delay)
    elif isinstance(command, Complete) and command.log:
        kind = _COMPLETE_LOG
        row.append(command.log)
    data: bytes = msgpack.packb([FORMAT_VERSION, kind, now, entropy, *row], use_bin_type=True)
    return data


# msgpack markers of the scalars that may sit in the header of an entry: (marker, extra bytes)
_FIXED = {0xC0: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2}
_FIXED.update({0xD2: 4, 0xD3: 8})
_FLOAT64 = 0xCB


def restamp(data: bytes, now: float) -> bytes:
    """``data`` (an ``encode``d command) with its leader time replaced by ``now``.

    Pure and cheap: only the header is parsed. Raises ``CodecError`` for bytes that do not
    start like an entry of ``FORMAT_VERSION`` (the same refusal ``decode`` would give).
    """
    if not data:
        raise CodecError("log entry is empty")
    head = data[0]
    if 0x90 <= head <= 0x9F:
        count, pos = head & 0x0F, 1
    elif head == 0xDC:
        count, pos = int.from_bytes(data[1:3], "big"), 3
    elif head == 0xDD:
        count, pos = int.from_bytes(data[1:5], "big"), 5
    else:
        raise CodecError("log entry is not a versioned array")
    if count < 4:
        raise CodecError("log entry is too short")
    if data[pos] != FORMAT_VERSION:  # a positive fixint, as encode writes it
        raise CodecError(
            f"unsupported command format version {data[pos]!r} (this build reads {FORMAT_VERSION})"
        )
    pos = _skip_scalar(data, pos + 1)  # the kind
    start = pos
    end = _skip_scalar(data, start)  # ``now``: a float64 as encode writes it, any number accepted
    return b"".join((data[:start], struct.pack(">Bd", _FLOAT64, now), data[end:]))


def _skip_scalar(data: bytes, pos: int) -> int:
    """The position after the msgpack number (or nil) at ``pos``."""
    if pos >= len(data):
        raise CodecError("log entry is too short")
    marker = data[pos]
    if marker <= 0x7F or marker >= 0xE0:  # positive / negative fixint
        return pos + 1
    extra = _FIXED.get(marker)
    if extra is None or pos + 1 + extra > len(data):
        raise CodecError(f"log entry header holds an unexpected value (marker 0x{marker:02x})")
    return pos + 1 + extra


def decode(data: bytes) -> tuple[Command, float, int]:
    try:
        row = msgpack.unpackb(data, raw=False, use_list=False)
    except Exception as exc:  # msgpack raises several unrelated types for corrupt input
        raise CodecError(f"log entry is not valid msgpack: {exc}") from exc
    if type(row) is not tuple or not row:
        raise CodecError("log entry is not a versioned array")
    if row[0] != FORMAT_VERSION:
        raise CodecError(
            f"unsupported command format version {row[0]!r} (this build reads {FORMAT_VERSION})"
        )
    if len(row) < 4:
        raise CodecError("log entry is too short")
    build = _DECODERS.get(row[1])
    if build is None:
        raise CodecError(f"unknown command kind {row[1]!r}")
    try:
        command = build(*row[4:])
    except (TypeError, ValueError) as exc:
        raise CodecError(f"malformed {build.__name__} entry: {exc}") from exc
    return command, row[2], row[3]
