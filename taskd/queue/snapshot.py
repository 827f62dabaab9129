"""Snapshot bytes: the scheduler's logical state, msgpack-encoded and versioned.

Theory of operation: a snapshot holds only what decides future behaviour: the seq and epoch
counters, the paused queues, every held task, in seq order, as a positional array, and the
``SchedulerConfig`` in effect as ``[retention, backoff_base, backoff_cap, max_queue_depth,
max_tasks, max_bytes]`` (set by ``SetConfig``). Snapshots written before ``SetConfig`` hold
the three bounds alone there (``SetLimits``), or nothing; both still restore. A task row ends
with its attempt history (``[number, started_at, finished_at, outcome, error, worker]`` each, plus
``log`` when a successful run left a stderr tail);
rows written before it have 25 fields and restore with an empty history. Every
index (ready heaps, timers, dependents, idempotency keys, worker leases, counts) is derived
data, rebuilt on restore, so two schedulers in the same logical state produce identical bytes
whatever their history (lazy heap entries included). Floats are always encoded as float64 and
sets are sorted, which keeps the bytes canonical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from taskd.queue.commands import DEFAULT_TIMEOUT, State
from taskd.queue.task import NO_LABELS, NO_WAIT, Attempt, SchedulerConfig, Task

SNAPSHOT_VERSION = 1
_STATES = {state.value: state for state in State}


class SnapshotError(ValueError):
    """The bytes are not a snapshot this build can read."""


@dataclass(slots=True)
class SnapshotState:
    seq: int
    epoch: int
    paused: list[str]
    tasks: list[Task]
    limits: tuple[int, int, int] | None = None  # max_queue_depth, max_tasks, max_bytes (old)
    config: SchedulerConfig | None = None  # the whole config (SetConfig); wins over limits


def _task_row(t: Task) -> list[Any]:
    labels: list[str] = []
    for key, value in sorted(t.labels.items()):
        labels.append(key)
        labels.append(value)
    return [
        t.id, t.queue, t.name, t.priority, t.payload, float(t.timeout), t.max_retries,
        float(t.run_at), list(t.depends_on), t.idempotency_key, labels, float(t.created_at),
        t.seq, t.state.value, t.attempt, t.result, t.error, t.worker, float(t.started_at),
        float(t.finished_at), t.epoch, float(t.lease_deadline), float(t.timeout_deadline),
        sorted(t.waiting_on), t.canceled_by,
        [[a.number, float(a.started_at), float(a.finished_at), a.outcome, a.error, a.worker,
          *([a.log] if a.log else [])]  # a log only when there is one: older rows have six
         for a in t.attempts],
    ]  # fmt: skip


def encode(state: SnapshotState) -> bytes:
    rows = [_task_row(t) for t in state.tasks]
    body: list[Any] = [SNAPSHOT_VERSION, state.seq, state.epoch, sorted(state.paused), rows]
    config = state.config
    if config is not None:
        body.append(
            [
                float(config.retention),
                float(config.backoff_base),
                float(config.backoff_cap),
                config.max_queue_depth,
                config.max_tasks,
                config.max_bytes,
            ]
        )
    elif state.limits is not None:
        body.append(list(state.limits))
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data


def decode(data: bytes) -> SnapshotState:
    """The state in ``data``, task rows decoded one at a time as they are read (a million
    rows never exist as one list beside the tasks they become), and the values most tasks
    share (queue, handler and worker names, the usual timeout, zero times, empty strings)
    held once (``_Shared``)."""
    unpacker = msgpack.Unpacker(
        raw=False, use_list=False, strict_map_key=True, max_buffer_size=max(len(data), 1)
    )
    unpacker.feed(data)
    try:
        try:
            fields = unpacker.read_array_header()
        except (ValueError, msgpack.OutOfData) as exc:
            raise SnapshotError("snapshot is not a versioned array") from exc
        if fields < 5:
            raise SnapshotError("snapshot is not a versioned array")
        version = unpacker.unpack()
        if version != SNAPSHOT_VERSION:
            raise SnapshotError(
                f"unsupported snapshot version {version!r} (this build reads {SNAPSHOT_VERSION})"
            )
        seq, epoch, paused = unpacker.unpack(), unpacker.unpack(), unpacker.unpack()
        shared = _Shared()
        tasks = [_task(unpacker.unpack(), shared) for _ in range(unpacker.read_array_header())]
        rest = [unpacker.unpack() for _ in range(fields - 5)]
        try:
            unpacker.unpack()
        except msgpack.OutOfData:
            pass
        else:
            raise SnapshotError("snapshot has data after its end")
    except SnapshotError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise SnapshotError(f"malformed snapshot: {exc}") from exc
    except Exception as exc:  # msgpack raises several unrelated types for corrupt input
        raise SnapshotError(f"snapshot is not valid msgpack: {exc}") from exc
    try:
        limits = config = None
        if rest:
            [settings] = rest
            if len(settings) == 3:
                depth, max_tasks, max_bytes = settings
                limits = (int(depth), int(max_tasks), int(max_bytes))
            else:
                retention, base, cap, depth, max_tasks, max_bytes = settings
                config = SchedulerConfig(
                    float(retention), float(base), float(cap), depth, max_tasks, max_bytes
                )
                config.validate()
    except (ValueError, TypeError, KeyError) as exc:
        raise SnapshotError(f"malformed snapshot: {exc}") from exc
    return SnapshotState(
        seq=seq, epoch=epoch, paused=list(paused), tasks=tasks, limits=limits, config=config
    )


class _Shared:
    """One object for each value many restored tasks hold alike: 24 bytes a float, 50 or more
    a name, per task, otherwise (a million restored tasks held 1.4 GB without it). Zero times
    become the constant ``0.0`` (``x or 0.0``), names go through ``strings``."""

    __slots__ = ("created_at", "strings")

    def __init__(self) -> None:
        self.strings: dict[str, str] = {"": ""}
        self.created_at = 0.0  # tasks of one batch were created at the same instant

    def created(self, value: float) -> float:
        if value == self.created_at:
            return self.created_at
        self.created_at = value
        return value


def _task(row: tuple[Any, ...], shared: _Shared) -> Task:
    (
        task_id, queue, name, priority, payload, timeout, max_retries, run_at, depends_on,
        key, labels, created_at, seq, state, attempt, result, error, worker, started_at,
        finished_at, epoch, lease_deadline, timeout_deadline, waiting_on, canceled_by,
    ) = row[:25]  # fmt: skip
    # Snapshots written before the attempt history have 25 fields: such a task starts empty.
    history = row[25] if len(row) > 25 else ()
    string = shared.strings.setdefault  # inlined: this runs once per task of a million
    return Task(
        task_id,
        string(queue, queue),
        string(name, name),
        priority,
        payload,
        DEFAULT_TIMEOUT if timeout == DEFAULT_TIMEOUT else float(timeout),  # one shared object
        max_retries,
        run_at or 0.0,
        tuple(depends_on),
        key,
        dict(zip(labels[::2], labels[1::2], strict=True)) if labels else NO_LABELS,
        shared.created(created_at),
        seq,
        _STATES[state],
        attempt,
        result,
        string(error, error) if len(error) < 200 else error,
        string(worker, worker),
        started_at or 0.0,
        finished_at or 0.0,
        epoch,
        lease_deadline or 0.0,
        timeout_deadline or 0.0,
        set(waiting_on) if waiting_on else NO_WAIT,
        canceled_by or "",
        0,  # size: derived on restore
        tuple(Attempt(*a) for a in history) if history else (),  # six fields, or seven with a log
    )
