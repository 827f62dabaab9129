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

from taskd.queue.commands import State
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
    try:
        body = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for corrupt input
        raise SnapshotError(f"snapshot is not valid msgpack: {exc}") from exc
    if not isinstance(body, list) or not body:
        raise SnapshotError("snapshot is not a versioned array")
    if body[0] != SNAPSHOT_VERSION:
        raise SnapshotError(
            f"unsupported snapshot version {body[0]!r} (this build reads {SNAPSHOT_VERSION})"
        )
    try:
        _, seq, epoch, paused, rows, *rest = body
        tasks = [_task(row) for row in rows]
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


def _task(row: list[Any]) -> Task:
    (
        task_id, queue, name, priority, payload, timeout, max_retries, run_at, depends_on,
        key, labels, created_at, seq, state, attempt, result, error, worker, started_at,
        finished_at, epoch, lease_deadline, timeout_deadline, waiting_on, canceled_by,
    ) = row[:25]  # fmt: skip
    # Snapshots written before the attempt history have 25 fields: such a task starts empty.
    history = row[25] if len(row) > 25 else []
    return Task(
        id=task_id,
        queue=queue,
        name=name,
        priority=priority,
        payload=payload,
        timeout=timeout,
        max_retries=max_retries,
        run_at=run_at,
        depends_on=tuple(depends_on),
        idempotency_key=key,
        labels=dict(zip(labels[::2], labels[1::2], strict=True)) if labels else NO_LABELS,
        created_at=created_at,
        seq=seq,
        state=_STATES[state],
        attempt=attempt,
        result=result,
        error=error,
        worker=worker,
        started_at=started_at,
        finished_at=finished_at,
        epoch=epoch,
        lease_deadline=lease_deadline,
        timeout_deadline=timeout_deadline,
        waiting_on=set(waiting_on) if waiting_on else NO_WAIT,
        canceled_by=canceled_by,
        attempts=tuple(Attempt(*row) for row in history),  # six fields, or seven with a log
    )
