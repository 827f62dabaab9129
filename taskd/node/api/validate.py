"""Turning what a client sent (JSON or protobuf) into ``TaskSpec``s, or a precise refusal.

Theory of operation: this module owns the *shape* rules of design.md §2 — types, ranges,
formats, sizes, unknown fields — and the translation of client conveniences into the
scheduler's plain form (priority names → ints, duration strings → seconds, ``delay`` or an
RFC 3339 ``run_at`` → absolute epoch seconds, a JSON ``payload`` → its compact JSON bytes).
Every refusal is a ``CallerError("invalid", message, field)`` (``"too_large"`` for an oversized
payload) whose ``field`` is the JSON path of the culprit, e.g. ``tasks[3].depends_on[0]``, and
whose message says what is expected. It checks nothing that needs scheduler state: unknown
dependencies, cycles, duplicate refs, idempotent repeats and full queues are decided by the
scheduler when the ``Submit`` is applied.

Conventions: a JSON ``null`` for an optional field means "use the default"; a ``null`` or
absent payload is stored as empty bytes (shown as ``null``). Booleans are never numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeGuard

import orjson

from taskd.errors import CallerError
from taskd.node import limits
from taskd.queue.commands import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    DEFAULT_TIMEOUT,
    TaskSpec,
)

PRIORITY_NAMES = {"low": 2, "normal": 5, "high": 7, "critical": 9}
# The limits live in taskd.node.limits; these names are kept for existing importers.
MAX_PRIORITY = limits.MAX_PRIORITY
MAX_RETRIES = limits.MAX_RETRIES
MAX_TIMEOUT = limits.MAX_TIMEOUT
MAX_DELAY = limits.MAX_DELAY
MAX_NAME = limits.MAX_NAME
MAX_QUEUE = limits.MAX_QUEUE
MAX_KEY = limits.MAX_KEY
MAX_REF = limits.MAX_REF
MAX_DEPENDENCIES = limits.MAX_DEPENDENCIES
MAX_DEPENDENCY_ID = limits.MAX_ID
MAX_LABELS = limits.MAX_LABELS
MAX_LABEL_KEY = limits.MAX_LABEL_KEY
MAX_LABEL_VALUE = limits.MAX_LABEL_VALUE
MAX_BATCH = limits.MAX_BATCH

_RFC3339_RE = re.compile(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)")
_DURATION_RE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|d|h|m|s))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# A List cursor is the id of the last task of the previous page: a ULID (Crockford base32).
_CURSOR_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")

_SPEC_FIELDS = frozenset(
    {
        "queue",
        "name",
        "priority",
        "payload",
        "timeout",
        "max_retries",
        "delay",
        "run_at",
        "depends_on",
        "idempotency_key",
        "labels",
    }
)
_BATCH_SPEC_FIELDS = _SPEC_FIELDS | {"ref"}
_PRIORITY_HINT = "priority must be an integer 0-9 or one of low, normal, high, critical"


def invalid(message: str, field: str) -> CallerError:
    return CallerError("invalid", message, clip(field, limits.MAX_MESSAGE // 4))


def clip(text: str, limit: int = limits.ECHO) -> str:
    """``text`` cut to ``limit`` characters (marked with "…"): what a message may quote."""
    return text if len(text) <= limit else f"{text[:limit]}…"


def echo(value: object) -> str:
    """A client's value as an error message may quote it: repr'd, at most ~64 characters."""
    if isinstance(value, str | bytes) and len(value) > limits.ECHO:
        value = value[: limits.ECHO]
        return f"{value!r}…"
    return clip(repr(value))


# ---- JSON ---------------------------------------------------------------------------------


def spec_from_json(
    obj: object,
    *,
    now: float,
    field_prefix: str = "",
    max_payload: int = limits.DEFAULT_MAX_PAYLOAD,
    allow_ref: bool = False,
) -> TaskSpec:
    """One task spec from a decoded JSON object; ``field_prefix`` is e.g. ``"tasks[3]."``."""
    at = field_prefix
    if not isinstance(obj, dict):
        raise invalid("a task must be a JSON object", at.rstrip(".") or "body")
    allowed = _BATCH_SPEC_FIELDS if allow_ref else _SPEC_FIELDS
    for key in obj:
        if key not in allowed:
            if key == "ref":
                raise invalid("ref is only allowed inside a batch", f"{at}ref")
            raise invalid(f"unknown field {echo(key)}", f"{at}{clip(key)}")

    def get(key: str) -> Any:
        return obj.get(key)

    delay, run_at_text = get("delay"), get("run_at")
    if delay is not None and run_at_text is not None:
        raise invalid("give either delay or run_at, not both", f"{at}run_at")
    run_at = 0.0
    if delay is not None:
        seconds = check_delay(delay, f"{at}delay")
        run_at = now + seconds if seconds > 0 else 0.0
    elif run_at_text is not None:
        run_at = check_run_at(parse_rfc3339(run_at_text, f"{at}run_at"), f"{at}run_at")

    return TaskSpec(
        queue=check_queue(get("queue"), f"{at}queue", default=DEFAULT_QUEUE),
        name=_optional_str(get("name"), f"{at}name", "name", MAX_NAME),
        priority=check_priority(get("priority"), f"{at}priority"),
        payload=json_bytes(get("payload"), f"{at}payload", max_payload),
        timeout=check_timeout(get("timeout"), f"{at}timeout"),
        max_retries=check_max_retries(get("max_retries"), f"{at}max_retries"),
        run_at=run_at,
        depends_on=_depends_on(get("depends_on"), f"{at}depends_on"),
        idempotency_key=_optional_str(
            get("idempotency_key"), f"{at}idempotency_key", "idempotency_key", MAX_KEY
        ),
        labels=_labels(get("labels"), f"{at}labels"),
        ref=_optional_str(get("ref"), f"{at}ref", "ref", MAX_REF) if allow_ref else "",
    )


def batch_from_json(
    obj: object,
    *,
    now: float,
    max_payload: int = limits.DEFAULT_MAX_PAYLOAD,
    max_batch: int = MAX_BATCH,
) -> list[TaskSpec]:
    """``{"tasks": [spec, ...]}`` → specs, fields named ``tasks[i].<field>``."""
    if not isinstance(obj, dict):
        raise invalid('the body must be a JSON object like {"tasks": [...]}', "body")
    for key in obj:
        if key != "tasks":
            raise invalid(f"unknown field {echo(key)}", clip(key))
    tasks = obj.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise invalid("tasks must be a non-empty list of task objects", "tasks")
    if len(tasks) > max_batch:
        raise invalid(f"a batch holds at most {max_batch} tasks, got {len(tasks)}", "tasks")
    # Count the batch's total work before checking each entry: a batch of many entries
    # each within its own limit is refused without walking all of them.
    _batch_totals(
        (len(t["depends_on"]) for t in tasks if isinstance(t, dict) and _sized(t, "depends_on")),
        (len(t["labels"]) for t in tasks if isinstance(t, dict) and _sized(t, "labels")),
    )
    specs = [
        spec_from_json(
            item, now=now, field_prefix=f"tasks[{i}].", max_payload=max_payload, allow_ref=True
        )
        for i, item in enumerate(tasks)
    ]
    check_batch(specs, max_payload=max_payload)
    return specs


def _sized(obj: dict[str, Any], key: str) -> bool:
    return isinstance(obj.get(key), list | dict)


def check_batch(specs: Sequence[TaskSpec], *, max_payload: int) -> None:
    """The limits on a whole batch (both APIs): tasks, dependency edges, labels, bytes."""
    if len(specs) > limits.MAX_BATCH:
        raise invalid(f"a batch holds at most {limits.MAX_BATCH} tasks, got {len(specs)}", "tasks")
    _batch_totals((len(s.depends_on) for s in specs), (len(s.labels) for s in specs))
    total = sum(len(s.payload) for s in specs)
    budget = batch_bytes(max_payload)
    if total > budget:
        raise CallerError(
            "too_large",
            f"the payloads of this batch add up to {total} bytes; a batch may carry at most "
            f"{budget}; split it into smaller batches",
            "tasks",
        )


def batch_bytes(max_payload: int) -> int:
    """Payload bytes one batch may carry on either API: what REST's body limit (twice the
    payload limit, plus room for the other fields) lets through."""
    return limits.BATCH_PAYLOADS * max_payload


def _batch_totals(edges: Iterable[int], labels: Iterable[int]) -> None:
    if (n := sum(edges)) > limits.MAX_BATCH_EDGES:
        raise invalid(
            f"the batch holds {n} depends_on entries in total; the limit is "
            f"{limits.MAX_BATCH_EDGES} per batch; split it into smaller batches",
            "tasks",
        )
    if (n := sum(labels)) > limits.MAX_BATCH_LABELS:
        raise invalid(
            f"the batch holds {n} labels in total; the limit is {limits.MAX_BATCH_LABELS} "
            "per batch; split it into smaller batches",
            "tasks",
        )


# ---- protobuf -----------------------------------------------------------------------------


def spec_from_proto(
    msg: Any, *, now: float, max_payload: int = limits.DEFAULT_MAX_PAYLOAD, field_prefix: str = ""
) -> TaskSpec:
    """One ``taskd.v1.TaskSpec`` message → ``TaskSpec``; unset optionals take the defaults."""
    at = field_prefix
    payload = bytes(msg.payload)
    if len(payload) > max_payload:
        raise CallerError(
            "too_large",
            f"payload is {len(payload)} bytes; the limit is {max_payload}",
            f"{at}payload",
        )
    if msg.delay_seconds and msg.run_at_ms:
        raise invalid("give either delay_seconds or run_at_ms, not both", f"{at}run_at_ms")
    run_at = 0.0
    if msg.delay_seconds:
        seconds = check_delay(msg.delay_seconds, f"{at}delay_seconds")
        run_at = now + seconds if seconds > 0 else 0.0
    elif msg.run_at_ms:
        if msg.run_at_ms < 0:
            raise invalid("run_at_ms must be milliseconds since the Unix epoch", f"{at}run_at_ms")
        run_at = check_run_at(msg.run_at_ms / 1000.0, f"{at}run_at_ms")
    timeout = msg.timeout_seconds
    labels: Mapping[str, str] = msg.labels or {}
    return TaskSpec(
        queue=check_queue(msg.queue or None, f"{at}queue", default=DEFAULT_QUEUE),
        name=_optional_str(msg.name or None, f"{at}name", "name", MAX_NAME),
        priority=check_priority(msg.priority, f"{at}priority"),
        payload=payload,
        timeout=check_timeout(timeout, f"{at}timeout"),
        max_retries=check_max_retries(msg.max_retries, f"{at}max_retries"),
        run_at=run_at,
        depends_on=_depends_on(list(msg.depends_on), f"{at}depends_on"),
        idempotency_key=_optional_str(
            msg.idempotency_key or None, f"{at}idempotency_key", "idempotency_key", MAX_KEY
        ),
        labels=_labels(dict(labels), f"{at}labels"),
        ref=_optional_str(msg.ref or None, f"{at}ref", "ref", MAX_REF),
    )


# ---- single fields (also used for path and query parameters) ------------------------------


def is_int(value: object) -> TypeGuard[int]:
    return type(value) is int  # bool is a subclass of int, and is not a number here


def is_number(value: object) -> TypeGuard[int | float]:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def check_queue(value: object, field: str, *, default: str | None = None) -> str:
    """A queue name, wherever one appears (submit, filters, pause/resume, lease, Watch,
    WorkerHello): the one rule of ``limits.QUEUE_NAME_RE``."""
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or not limits.QUEUE_NAME_RE.fullmatch(value):
        got = f", got {echo(value)}" if isinstance(value, str) else ""
        raise invalid(
            f"{_last(field)} must be 1-{MAX_QUEUE} characters of {limits.QUEUE_CHARS}{got}",
            field,
        )
    return value


def check_id(value: object, field: str) -> str:
    """A task id as a client names it: 1-255 characters; an unknown id is the service's
    not_found, not a shape error."""
    if not isinstance(value, str) or not 0 < len(value) <= limits.MAX_ID:
        raise invalid(f"{_last(field)} must be a task id of 1-{limits.MAX_ID} characters", field)
    return value


def check_cursor(value: object, field: str) -> str:
    """A page cursor: the task id ``next`` held; anything else would silently list page one."""
    if not isinstance(value, str) or not _CURSOR_RE.fullmatch(value.upper()):
        raise invalid(
            f"{_last(field)} must be the cursor a previous page returned (its `next`)", field
        )
    return value.upper()


def check_list_limit(value: object, field: str, max_limit: int = limits.MAX_LIST_LIMIT) -> int:
    if is_int(value) and 1 <= value <= max_limit:
        return value
    raise invalid(f"{_last(field)} must be an integer 1-{max_limit}", field)


def check_worker(value: object, field: str) -> str:
    """A worker name: shown in /workers and logs, so printable and bounded."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= limits.MAX_WORKER_NAME
        or not value.isprintable()
    ):
        raise invalid(
            f"{_last(field)} must be a name of 1-{limits.MAX_WORKER_NAME} printable characters",
            field,
        )
    return value


def check_worker_queues(values: Sequence[object], field: str) -> list[str]:
    if not values or len(values) > limits.MAX_WORKER_QUEUES:
        raise invalid(f"name 1-{limits.MAX_WORKER_QUEUES} queues to take work from", field)
    return [check_queue(q, f"{field}[{i}]") for i, q in enumerate(values)]


def check_error_text(value: object, field: str) -> str:
    """A failure's error text (a worker's report)."""
    if not isinstance(value, str) or len(value) > limits.MAX_ERROR:
        raise invalid(
            f"{_last(field)} must be a string of at most {limits.MAX_ERROR} characters", field
        )
    return value


def check_result(value: bytes, field: str, max_payload: int) -> bytes:
    if len(value) > max_payload:
        raise CallerError(
            "too_large", f"{_last(field)} is {len(value)} bytes; the limit is {max_payload}", field
        )
    return value


def check_run_at(seconds: float, field: str) -> float:
    """An absolute start time: from 1970 to the end of year 9999 (what RFC 3339 can show)."""
    if not 0 <= seconds <= limits.MAX_EPOCH_SECONDS:
        raise invalid(f"{_last(field)} must be a time from 1970 to 9999-12-31T23:59:59Z", field)
    return seconds


def check_priority(value: object, field: str) -> int:
    if value is None:
        return DEFAULT_PRIORITY
    if isinstance(value, str):
        if value in PRIORITY_NAMES:
            return PRIORITY_NAMES[value]
        raise invalid(_PRIORITY_HINT, field)
    if is_int(value) and 0 <= value <= MAX_PRIORITY:
        return value
    raise invalid(_PRIORITY_HINT, field)


def check_timeout(value: object, field: str) -> float:
    hint = (
        'timeout must be a number of seconds > 0 or a duration like "300s", "5m", "1h30m", '
        '"250ms", at most 7 days'
    )
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, str):
        seconds = parse_duration(value)
        if seconds is None:
            raise invalid(hint, field)
    elif is_number(value):
        seconds = float(value)
    else:
        raise invalid(hint, field)
    if not 0 < seconds <= MAX_TIMEOUT:
        raise invalid(hint, field)
    return seconds


def parse_duration(text: str) -> float | None:
    """``"1h30m"`` → 5400.0; None when ``text`` is not a duration (units d, h, m, s, ms)."""
    if not _DURATION_RE.fullmatch(text):
        return None
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def check_max_retries(value: object, field: str) -> int:
    if value is None:
        return DEFAULT_MAX_RETRIES
    if is_int(value) and 0 <= value <= MAX_RETRIES:
        return value
    raise invalid(f"max_retries must be an integer 0-{MAX_RETRIES}", field)


def check_delay(value: object, field: str) -> float:
    """Seconds, or a duration string as ``timeout`` takes (``"500ms"``, ``"5m"``, ``"1d"``)."""
    seconds = parse_duration(value) if isinstance(value, str) else value
    if is_number(seconds) and 0 <= seconds <= limits.MAX_DELAY:
        return float(seconds)
    raise invalid(
        f'{_last(field)} must be a number of seconds 0-{MAX_DELAY:.0f} or a duration like "30s", '
        '"5m", "2h", "1d"',
        field,
    )


def check_retry_delay(value: object, field: str) -> float:
    """A worker's retry delay on a failure: seconds 0..MAX_DELAY (0: the node's backoff). REST
    also takes a duration string, as ``delay`` does; gRPC sends a double."""
    if isinstance(value, str):
        return check_delay(value, field)
    if is_number(value) and 0 <= value <= limits.MAX_DELAY:
        return float(value)
    raise invalid(
        f"{_last(field)} must be a number of seconds 0-{MAX_DELAY:.0f} (0 or absent: the node's "
        "backoff), not " + echo(value),
        field,
    )


def parse_rfc3339(value: object, field: str) -> float:
    hint = 'run_at must be an RFC 3339 time with a zone, like "2030-01-02T15:04:05Z"'
    match = _RFC3339_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise invalid(hint, field)
    date, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        when = datetime.fromisoformat(f"{date}{(fraction or '')[:7]}{zone}")
    except ValueError:
        raise invalid(hint, field) from None
    seconds = when.timestamp()
    if seconds < 0:
        raise invalid("run_at must not be before 1970", field)
    return seconds


def json_bytes(value: object, field: str, max_size: int) -> bytes:
    """A decoded JSON value → its compact encoding; None → b"" (no payload)."""
    if value is None:
        return b""
    try:
        data = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        raise invalid(f"{_last(field)} holds a value JSON cannot carry exactly", field) from None
    if len(data) > max_size:
        raise CallerError(
            "too_large",
            f"{_last(field)} is {len(data)} bytes as compact JSON; the limit is {max_size}",
            field,
        )
    return data


def _optional_str(value: object, field: str, what: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise invalid(f"{what} must be a string of 1-{limit} characters", field)
    return value


def _depends_on(value: object, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid("depends_on must be a list of task ids or batch refs", field)
    if len(value) > MAX_DEPENDENCIES:
        raise invalid(f"depends_on holds at most {MAX_DEPENDENCIES} entries", field)
    for j, dep in enumerate(value):
        if not isinstance(dep, str) or not 0 < len(dep) <= MAX_DEPENDENCY_ID:
            raise invalid(
                f"a dependency must be a task id or batch ref of 1-{MAX_DEPENDENCY_ID} characters",
                f"{field}[{j}]",
            )
    return tuple(value)


def _labels(value: object, field: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise invalid("labels must be an object mapping strings to strings", field)
    if len(value) > MAX_LABELS:
        raise invalid(f"at most {MAX_LABELS} labels are allowed", field)
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_LABEL_KEY:
            raise invalid(
                f"a label name must be 1-{MAX_LABEL_KEY} characters", f"{field}.{clip(key)}"
            )
        if not isinstance(item, str) or len(item) > MAX_LABEL_VALUE:
            raise invalid(
                f"a label value must be a string of at most {MAX_LABEL_VALUE} characters",
                f"{field}.{clip(key)}",
            )
    return tuple(sorted(value.items()))


def _last(field: str) -> str:
    """The last name of a field path: ``tasks[2].delay`` → ``delay``."""
    return field.rsplit(".", 1)[-1] or field
