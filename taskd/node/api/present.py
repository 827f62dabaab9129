"""How tasks and queues look to clients: the JSON views of REST and the protobuf views of gRPC.

Theory of operation: pure functions from the scheduler's records to wire shapes, no I/O.
JSON views follow design.md §2: states as lowercase names, times as RFC 3339 UTC strings with
milliseconds (``null`` when unset), priority as an int, timeout in seconds.

Payloads, results and dependency results are opaque bytes inside taskd. A JSON view shows
them as the JSON value when the bytes parse as JSON (empty bytes → ``null``); otherwise as a
string: the UTF-8 text, or, when the bytes are not UTF-8, their base64 encoding together with
a marker field ``"<field>_encoding": "base64"`` (``payload_encoding``, ``result_encoding``;
for dependency results ``dependency_results_encoding: {id: "base64"}``). The marker is
absent in every other case, so a client that never sends binary never sees it. Bytes holding
a JSON number JSON readers would change (``jsonnum``) are shown as their text instead.

The presenters are total: no stored value can make a read fail, whatever an older version
or a bug let in. Times outside what RFC 3339 and int64 milliseconds can show are clamped to
the nearest end of the range (0001..9999, ±2^63-1 ms), integers to their protobuf type's
range, and a JSON view that orjson cannot encode (e.g. a lone surrogate) is re-encoded with
the offending text replaced (``printable_json``) rather than answered with a 500.
"""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime
from typing import Any

import orjson

from taskd.api.taskd import v1 as pb
from taskd.exec.work import WorkItem
from taskd.node import limits
from taskd.node.api import jsonnum
from taskd.queue.commands import State
from taskd.queue.queues import QueueStats
from taskd.queue.task import Task

# The one mapping between the scheduler's states and taskd.v1.TaskState.
STATE_TO_PB = {state: pb.TaskState[state.name] for state in State}
PB_TO_STATE = {v: k for k, v in STATE_TO_PB.items()}


_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64 = (0, (1 << 64) - 1)
_MIN_EPOCH = -62135596800.0  # 0001-01-01T00:00:00Z


def rfc3339(seconds: float) -> str | None:
    """Epoch seconds → ``"2030-01-02T15:04:05.123Z"`` (rounded to the millisecond, as gRPC's
    ``*_ms`` fields are); 0 (unset) or NaN → None; clamped to years 1-9999."""
    if not seconds or math.isnan(seconds):
        return None
    millis = round(min(max(seconds, _MIN_EPOCH), limits.MAX_EPOCH_SECONDS) * 1000)
    whole, fraction = divmod(millis, 1000)
    when = datetime.fromtimestamp(whole, UTC)
    # %Y does not zero-pad years before 1000 on every platform: spell it out
    head = f"{when.year:04d}-{when.month:02d}-{when.day:02d}T"
    return head + when.strftime("%H:%M:%S.") + f"{fraction:03d}Z"


def decode_bytes(data: bytes | None) -> tuple[Any, bool]:
    """Opaque bytes → (JSON-able value, True when the value is base64 of non-UTF-8 bytes)."""
    if not data:
        return None, False
    try:
        value = orjson.loads(data)
        if jsonnum.inexact_number(data) is None:
            return value, False
    except (orjson.JSONDecodeError, jsonnum.TooDeep):
        pass
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


def _ms(seconds: float) -> int:
    """Epoch seconds → int64 milliseconds (0 stays unset; NaN → 0; clamped to int64)."""
    if not seconds or math.isnan(seconds):
        return 0
    millis = seconds * 1000
    if not -9.2e18 < millis < 9.2e18:  # inf, or beyond what int64 holds
        return _INT64[0] if millis < 0 else _INT64[1]
    return round(millis)


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    low, high = bounds
    return low if value < low else high if value > high else value


def printable_json(value: Any) -> Any:
    """``value`` with every string orjson cannot encode (lone surrogates) repaired, every
    float JSON cannot carry (inf, NaN) as None and every integer beyond 64 bits as its text:
    the slow path of a failed encode."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {printable_json(str(k)): printable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable_json(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _UINT64[1] else str(value)
    return printable_json(str(value))


def task_to_json(task: Task, *, duplicate: bool | None = None) -> dict[str, Any]:
    """The REST view of a task. ``duplicate`` is included only when not None."""
    payload, payload_b64 = decode_bytes(task.payload)
    result, result_b64 = decode_bytes(task.result)
    view: dict[str, Any] = {
        "id": task.id,
        "queue": task.queue,
        "name": task.name or None,
        "priority": task.priority,
        "state": task.state.value,
        "payload": payload,
        "timeout": task.timeout,
        "max_retries": task.max_retries,
        "run_at": rfc3339(task.run_at),
        "depends_on": list(task.depends_on),
        "idempotency_key": task.idempotency_key or None,
        "labels": dict(task.labels),
        "attempt": task.attempt,
        "result": result,
        "error": task.error or None,
        "worker": task.worker or None,
        "created_at": rfc3339(task.created_at),
        "started_at": rfc3339(task.started_at),
        "finished_at": rfc3339(task.finished_at),
        "lease": task.epoch if task.state is State.RUNNING else None,
        "attempts": [
            {
                "attempt": a.number,
                "started_at": rfc3339(a.started_at),
                "finished_at": rfc3339(a.finished_at),
                "outcome": a.outcome,
                "error": a.error or None,
                "worker": a.worker or None,
                "log": a.log or None,
            }
            for a in task.attempts
        ],
    }
    if payload_b64:
        view["payload_encoding"] = "base64"
    if result_b64:
        view["result_encoding"] = "base64"
    if duplicate is not None:
        view["duplicate"] = duplicate
    return view


def work_item_to_json(item: WorkItem) -> dict[str, Any]:
    """One leased attempt as an HTTP worker receives it."""
    payload, payload_b64 = decode_bytes(item.payload)
    results: dict[str, Any] = {}
    encodings: dict[str, str] = {}
    for dep_id, data in item.dependency_results.items():
        value, b64 = decode_bytes(data)
        results[dep_id] = value
        if b64:
            encodings[dep_id] = "base64"
    view: dict[str, Any] = {
        "id": item.id,
        "queue": item.queue,
        "name": item.name or None,
        "payload": payload,
        "attempt": item.attempt,
        "lease": item.epoch,
        "timeout": item.timeout,
        "dependency_results": results,
    }
    if payload_b64:
        view["payload_encoding"] = "base64"
    if encodings:
        view["dependency_results_encoding"] = encodings
    return view


def stats_to_json(
    stats: QueueStats, rates: tuple[float, float] = (0.0, 0.0), consumers: int = 0
) -> dict[str, Any]:
    """Per-queue counts: ``by_state`` for every state, ``by_priority`` of QUEUED tasks, the
    last minute's rates (tasks submitted and finished per second), and ``consumers``: the
    local executors and remote workers of this node that serve the queue (0 with tasks
    queued means nothing here will run them)."""
    by_state = {state.value: stats.by_state.get(state, 0) for state in State}
    return {
        "name": stats.name,
        "paused": stats.paused,
        "consumers": consumers,
        "depth": sum(n for state, n in stats.by_state.items() if not state.terminal),
        "by_state": by_state,
        "by_priority": {str(p): n for p, n in sorted(stats.by_priority.items())},
        "rates": {
            "submitted_per_second": round(rates[0], 3),
            "finished_per_second": round(rates[1], 3),
        },
    }


def task_to_proto(task: Task) -> pb.Task:
    return pb.Task(
        id=task.id,
        queue=task.queue,
        name=task.name,
        priority=_clamp(task.priority, _INT32),
        payload=task.payload,
        timeout_seconds=task.timeout,
        max_retries=_clamp(task.max_retries, _INT32),
        run_at_ms=_ms(task.run_at),
        depends_on=list(task.depends_on),
        idempotency_key=task.idempotency_key,
        labels=dict(task.labels),
        state=STATE_TO_PB[task.state],
        attempt=_clamp(task.attempt, _INT32),
        result=task.result or b"",
        error=task.error,
        worker=task.worker,
        created_at_ms=_ms(task.created_at),
        started_at_ms=_ms(task.started_at),
        finished_at_ms=_ms(task.finished_at),
        lease=_clamp(task.epoch, _UINT64) if task.state is State.RUNNING else 0,
        attempts=[
            pb.TaskAttempt(
                attempt=_clamp(a.number, _INT32),
                started_at_ms=_ms(a.started_at),
                finished_at_ms=_ms(a.finished_at),
                outcome=a.outcome,
                error=a.error,
                worker=a.worker,
                log=a.log,
            )
            for a in task.attempts
        ],
    )


def stats_to_proto(
    stats: QueueStats, rates: tuple[float, float] = (0.0, 0.0), consumers: int = 0
) -> pb.QueueStats:
    return pb.QueueStats(
        consumers=consumers,
        name=stats.name,
        paused=stats.paused,
        by_state={state.value: stats.by_state.get(state, 0) for state in State},
        by_priority=dict(stats.by_priority),
        submitted_per_second=rates[0],
        completed_per_second=rates[1],
    )
