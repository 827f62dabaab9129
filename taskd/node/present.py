"""How tasks and queues look to clients: the JSON views of REST and the protobuf views of gRPC.

Theory of operation: pure functions from the scheduler's records to wire shapes, no I/O.
JSON views follow design.md §2: states as lowercase names, times as RFC 3339 UTC strings with
milliseconds (``null`` when unset), priority as an int, timeout in seconds.

Payloads, results and dependency results are opaque bytes inside taskd. A JSON view shows
them as the JSON value when the bytes parse as JSON (empty bytes → ``null``); otherwise as a
string: the UTF-8 text, or, when the bytes are not UTF-8, their base64 encoding together with
a marker field ``"<field>_encoding": "base64"`` (``payload_encoding``, ``result_encoding``;
for dependency results ``dependency_results_encoding: {id: "base64"}``). The marker is
absent in every other case, so a client that never sends binary never sees it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson

from taskd.api.taskd import v1 as pb
from taskd.exec.work import WorkItem
from taskd.queue.commands import State
from taskd.queue.queues import QueueStats
from taskd.queue.task import Task

STATE_TO_PB = {state: pb.TaskState[state.name] for state in State}


def rfc3339(seconds: float) -> str | None:
    """Epoch seconds → ``"2030-01-02T15:04:05.123Z"``; 0 (unset) → None."""
    if not seconds:
        return None
    when = datetime.fromtimestamp(seconds, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def decode_bytes(data: bytes | None) -> tuple[Any, bool]:
    """Opaque bytes → (JSON-able value, True when the value is base64 of non-UTF-8 bytes)."""
    if not data:
        return None, False
    try:
        return orjson.loads(data), False
    except orjson.JSONDecodeError:
        pass
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


def _ms(seconds: float) -> int:
    return round(seconds * 1000) if seconds else 0


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


def stats_to_json(stats: QueueStats, rates: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
    """Per-queue counts: ``by_state`` for every state, ``by_priority`` of QUEUED tasks, and
    the last minute's rates (tasks submitted and finished per second)."""
    by_state = {state.value: stats.by_state.get(state, 0) for state in State}
    return {
        "name": stats.name,
        "paused": stats.paused,
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
        priority=task.priority,
        payload=task.payload,
        timeout_seconds=task.timeout,
        max_retries=task.max_retries,
        run_at_ms=_ms(task.run_at),
        depends_on=list(task.depends_on),
        idempotency_key=task.idempotency_key,
        labels=dict(task.labels),
        state=STATE_TO_PB[task.state],
        attempt=task.attempt,
        result=task.result or b"",
        error=task.error,
        worker=task.worker,
        created_at_ms=_ms(task.created_at),
        started_at_ms=_ms(task.started_at),
        finished_at_ms=_ms(task.finished_at),
        lease=task.epoch if task.state is State.RUNNING else 0,
    )


def stats_to_proto(stats: QueueStats, rates: tuple[float, float] = (0.0, 0.0)) -> pb.QueueStats:
    return pb.QueueStats(
        name=stats.name,
        paused=stats.paused,
        by_state={state.value: stats.by_state.get(state, 0) for state in State},
        by_priority=dict(stats.by_priority),
        submitted_per_second=rates[0],
        completed_per_second=rates[1],
    )
