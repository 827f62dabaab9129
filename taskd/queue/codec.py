"""Log-entry bytes for scheduler commands: ``encode(command, now, entropy)`` and ``decode``.

Theory of operation: one log entry is one msgpack array ``[version, kind, now, entropy,
*fields]``. ``version`` comes first so a reader can refuse a format it does not know with a
clear error rather than misread it; ``kind`` is a small integer tag; fields are positional in
the command's declaration order, and a ``TaskSpec`` is itself a positional array. Payloads and
results are msgpack ``bin``, stored as-is. Arrays instead of maps keep entries small and
encoding fast (this runs once per log entry on every replica).

Adding a field means a new ``FORMAT_VERSION`` and a decoder for the old one. A new command kind
keeps the version (old entries stay readable; an older build refuses the new kind by name).
"""

from __future__ import annotations

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
_ENCODERS: dict[type, tuple[int, Callable[[Any], list[Any]]]] = {
    Submit: (_SUBMIT, lambda c: [c.ids, [_spec_row(s) for s in c.specs]]),
    Cancel: (1, lambda c: [c.task_id]),
    Retry: (2, lambda c: [c.task_id]),
    PauseQueue: (3, lambda c: [c.queue]),
    ResumeQueue: (4, lambda c: [c.queue]),
    Lease: (5, lambda c: [c.queue, c.worker, c.max, c.lease_ttl]),
    Heartbeat: (6, lambda c: [c.task_id, c.epoch, c.lease_ttl]),
    Complete: (7, lambda c: [c.task_id, c.epoch, c.result]),
    Fail: (8, lambda c: [c.task_id, c.epoch, c.error, c.retryable]),
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
    7: Complete,
    8: Fail,
    9: Tick,
    10: ReleaseWorker,
    11: RenewLeases,
    12: SetLimits,
    13: lambda *row: SetConfig(SchedulerConfig(*row)),
}


def encode(command: Command, now: float, entropy: int) -> bytes:
    try:
        kind, fields = _ENCODERS[type(command)]
    except KeyError:
        raise CodecError(f"cannot encode {type(command).__name__}") from None
    data: bytes = msgpack.packb(
        [FORMAT_VERSION, kind, now, entropy, *fields(command)], use_bin_type=True
    )
    return data


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
