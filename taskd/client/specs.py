"""From the keyword arguments of ``submit_task`` to a ``taskd.v1.TaskSpec``, and back from a
node's field names to the caller's.

Theory of operation: this module checks only what the wire cannot carry (a payload that is not
bytes, text or JSON-able; a priority that is not an int; a naive datetime) and converts Python
values (``timedelta``, ``datetime``, duration strings, ``Task`` objects in ``depends_on``).
Ranges and limits are the node's to judge: it names the field, and ``caller_field`` turns its
wire name (``task.timeout_seconds``) back into the argument's (``timeout``).

Payloads: ``bytes`` are sent as they are; ``str`` as its UTF-8 bytes (so
``payload=json.dumps(x)`` arrives as JSON); ``None`` as empty; any other value as its compact
JSON encoding.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from taskd.api.taskd import v1 as pb
from taskd.client.errors import InvalidArgument
from taskd.client.task import Priority, Task

Payload: TypeAlias = Any  # bytes | str | None | any JSON-able value
Duration: TypeAlias = float | int | timedelta | str

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
# the node's wire names of the spec's fields → the names a caller of submit_task used
_WIRE_TO_ARG = {"timeout_seconds": "timeout", "delay_seconds": "delay", "run_at_ms": "run_at"}
_PREFIX = re.compile(r"^(?:task\.|tasks\[\d+\]\.)")


def encode_payload(value: Payload, field: str = "payload") -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"give bytes, str or a JSON-able value ({exc})", field) from None


def seconds(value: Duration, field: str) -> float:
    """A duration as seconds: a number, a ``timedelta`` or a string like "300s", "5m"."""
    if isinstance(value, bool):
        raise InvalidArgument("give seconds as a number, a timedelta or e.g. '5m'", field)
    if isinstance(value, timedelta):
        out = value.total_seconds()
    elif isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        found = _DURATION.match(value)
        if not found:
            raise InvalidArgument(
                f"{value!r} is not a duration; write e.g. 300, '300s', '5m', '1h'", field
            )
        out = float(found.group(1)) * _UNITS[found.group(2) or "s"]
    else:
        raise InvalidArgument(
            f"{type(value).__name__} is not a duration; give seconds, a timedelta or '5m'", field
        )
    if not math.isfinite(out):
        raise InvalidArgument("must be a finite number of seconds", field)
    return out


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"must be an int, not {type(value).__name__}", field)
    return value


def priority_value(value: Priority | int | str, field: str = "priority") -> int:
    if isinstance(value, str):
        try:
            return int(Priority[value.upper()])
        except KeyError:
            names = ", ".join(p.name.lower() for p in Priority)
            raise InvalidArgument(
                f"{value!r} is not a priority; use 0..9 or {names}", field
            ) from None
    return _int(value, field)


def run_at_ms(value: datetime | float | int, field: str = "run_at") -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidArgument(
                "a naive datetime is ambiguous; give a timezone-aware one (e.g. UTC)", field
            )
        return max(1, round(value.timestamp() * 1000))
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument("give a timezone-aware datetime or Unix epoch seconds", field)
    return max(1, round(value * 1000))


def task_ids(values: Iterable[str | Task] | None, field: str = "depends_on") -> list[str]:
    if values is None:
        return []
    if isinstance(values, str | Task):
        values = [values]
    out: list[str] = []
    for i, item in enumerate(values):
        if isinstance(item, Task):
            out.append(item.id)
        elif isinstance(item, str):
            out.append(item)
        else:
            raise InvalidArgument(f"give task ids or Task objects, not {item!r}", f"{field}[{i}]")
    return out


def labels_of(value: Mapping[str, str] | None, field: str = "labels") -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument("give a mapping of str to str", field)
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise InvalidArgument(f"{key!r}: {item!r} is not str → str", field)
    return dict(value)


def new_idempotency_key() -> str:
    """The key the SDK gives a submit that has none: retrying it never makes a second task."""
    return f"sdk-{uuid.uuid4().hex}"


def _str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"must be a str, not {type(value).__name__}", field)
    return value


def build_spec(
    payload: Payload = None,
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: Priority | int | str | None = None,
    timeout: Duration | None = None,
    max_retries: int | None = None,
    delay: Duration | None = None,
    run_at: datetime | float | None = None,
    depends_on: Iterable[str | Task] | None = None,
    labels: Mapping[str, str] | None = None,
    idempotency_key: str | None = None,
    ref: str | None = None,
) -> pb.TaskSpec:
    """A TaskSpec from submit_task's arguments (see the module doc for how payloads travel)."""
    spec = pb.TaskSpec(
        queue=_str(queue, "queue") if queue is not None else "",
        name=_str(name, "name") if name is not None else "",
        payload=encode_payload(payload),
        depends_on=task_ids(depends_on),
        labels=labels_of(labels),
        idempotency_key=(
            _str(idempotency_key, "idempotency_key")
            if idempotency_key is not None
            else new_idempotency_key()
        ),
        ref=_str(ref, "ref") if ref is not None else "",
    )
    if priority is not None:
        spec.priority = priority_value(priority)
    if timeout is not None:
        spec.timeout_seconds = seconds(timeout, "timeout")
    if max_retries is not None:
        spec.max_retries = _int(max_retries, "max_retries")
    if delay is not None and run_at is not None:
        raise InvalidArgument("give either delay or run_at, not both", "run_at")
    if delay is not None:
        spec.delay_seconds = seconds(delay, "delay")
    if run_at is not None:
        spec.run_at_ms = run_at_ms(run_at)
    return spec


def caller_field(wire_field: str, *, keep_index: bool = False) -> str:
    """``task.timeout_seconds`` → ``timeout``; ``tasks[3].depends_on[0]`` → ``depends_on[0]``
    (or ``tasks[3].depends_on[0]`` with ``keep_index``, for submit_batch)."""
    head = ""
    rest = wire_field
    found = _PREFIX.match(wire_field)
    if found:
        rest = wire_field[found.end() :]
        if keep_index and found.group(0).startswith("tasks["):
            head = found.group(0)
    name, bracket, tail = rest.partition("[")
    name = _WIRE_TO_ARG.get(name, name)
    return head + name + bracket + tail


def batch_index(wire_field: str) -> int | None:
    """``tasks[3].priority`` → 3; None when the field names no one task of a batch."""
    found = re.match(r"^tasks\[(\d+)\]", wire_field)
    return int(found.group(1)) if found else None
