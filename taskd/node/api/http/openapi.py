"""The OpenAPI 3.1 document of the REST API, built from the code's own rules.

Theory of operation: the numbers (lengths, ranges, batch sizes), the field lists of a task
spec, the states and the error codes come from ``limits``, ``validate``, ``State`` and
``ErrorCode`` — the same values the handlers check — so a changed limit changes the document
with it. What a handler accepts beyond that (the body fields of the worker and cluster calls)
is written here next to its schema; ``tests/docs/test_openapi.py`` checks that every route
the app serves is documented and nothing else, that each documented body field is accepted
and an undocumented one refused, that real answers match the response schemas, and that the
whole document passes ``openapi-spec-validator``. ``GET /api/v1/openapi.json`` serves it.
"""

from __future__ import annotations

from typing import Any

from taskd.node import limits
from taskd.node.api import validate
from taskd.node.api.codes import ErrorCode, http_status
from taskd.queue.commands import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    DEFAULT_TIMEOUT,
    State,
)

Schema = dict[str, Any]

_REF = "#/components/schemas/"
_STATES = [state.value for state in State]
_NULL_STR: Schema = {"type": ["string", "null"]}
_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
_QUEUE: Schema = {
    "type": "string",
    "pattern": f"^{limits.QUEUE_NAME_RE.pattern}$",
    "description": f"1-{limits.MAX_QUEUE} characters of {limits.QUEUE_CHARS}",
}
_DURATION_PATTERN = "^(\\d+(\\.\\d+)?(ms|h|m|s))+$"


def _ref(name: str) -> Schema:
    return {"$ref": f"{_REF}{name}"}


def _obj(props: dict[str, Schema], required: tuple[str, ...] = (), **more: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    schema.update(more)
    return schema


def _bounded(limit: int, *, nullable: bool = True, **more: Any) -> Schema:
    kind: Any = ["string", "null"] if nullable else "string"
    return {"type": kind, "minLength": 1, "maxLength": limit, **more}


def spec_schema(*, batch: bool) -> Schema:
    """A task as a client submits it (design.md §2): every field optional, null = default."""
    props: dict[str, Schema] = {
        "queue": {**_QUEUE, "type": ["string", "null"], "default": DEFAULT_QUEUE},
        "name": _bounded(limits.MAX_NAME, description="the SDK worker's handler name"),
        "priority": {
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": limits.MAX_PRIORITY},
                {"type": "string", "enum": list(validate.PRIORITY_NAMES)},
                {"type": "null"},
            ],
            "default": DEFAULT_PRIORITY,
            "description": "9 runs first; "
            + ", ".join(f"{name}={n}" for name, n in validate.PRIORITY_NAMES.items()),
        },
        "payload": {
            "description": "any JSON value, opaque to taskd; at most --max-payload "
            f"bytes as compact JSON (default {limits.DEFAULT_MAX_PAYLOAD})"
        },
        "timeout": {
            "oneOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": limits.MAX_TIMEOUT},
                {"type": "string", "pattern": _DURATION_PATTERN},
                {"type": "null"},
            ],
            "default": DEFAULT_TIMEOUT,
            "description": 'seconds of one attempt, or a duration like "300s", "5m", "1h30m"',
        },
        "max_retries": {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": limits.MAX_RETRIES,
            "default": DEFAULT_MAX_RETRIES,
        },
        "delay": {
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": limits.MAX_DELAY,
            "description": "seconds from now before it is runnable (not with run_at)",
        },
        "run_at": {**_TIME, "description": "RFC 3339 time with a zone (not with delay)"},
        "depends_on": {
            "type": ["array", "null"],
            "maxItems": limits.MAX_DEPENDENCIES,
            "items": {"type": "string", "minLength": 1, "maxLength": limits.MAX_ID},
            "description": "task ids (or, in a batch, refs) that must succeed first",
        },
        "idempotency_key": _bounded(
            limits.MAX_KEY, description="a repeat in the same queue returns the first task"
        ),
        "labels": {
            "type": ["object", "null"],
            "maxProperties": limits.MAX_LABELS,
            "propertyNames": {"minLength": 1, "maxLength": limits.MAX_LABEL_KEY},
            "additionalProperties": {"type": "string", "maxLength": limits.MAX_LABEL_VALUE},
        },
    }
    if batch:
        props["ref"] = _bounded(limits.MAX_REF, description="a name other specs' depends_on use")
    return _obj(props)


def _task() -> Schema:
    return _obj(
        {
            "id": {"type": "string"},
            "queue": {"type": "string"},
            "name": _NULL_STR,
            "priority": {"type": "integer", "minimum": 0, "maximum": limits.MAX_PRIORITY},
            "state": {"type": "string", "enum": _STATES},
            "payload": {"description": "the JSON value submitted (null when none)"},
            "payload_encoding": {"const": "base64", "description": "only for non-UTF-8 bytes"},
            "timeout": {"type": "number"},
            "max_retries": {"type": "integer"},
            "run_at": _TIME,
            "depends_on": {"type": "array", "items": {"type": "string"}},
            "idempotency_key": _NULL_STR,
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "attempt": {"type": "integer", "description": "attempts started so far"},
            "result": {"description": "the worker's result (JSON when it parses as JSON)"},
            "result_encoding": {"const": "base64", "description": "only for non-UTF-8 bytes"},
            "error": _NULL_STR,
            "worker": _NULL_STR,
            "created_at": _TIME,
            "started_at": _TIME,
            "finished_at": _TIME,
            "lease": {
                "type": ["integer", "null"],
                "description": "the fencing epoch while running, else null",
            },
            "duplicate": {
                "type": "boolean",
                "description": "only on submit: true for an idempotent repeat",
            },
            "attempts": {
                "type": "array",
                "description": "the history of finished and running attempts (the last 20)",
                "items": _obj(
                    {
                        "attempt": {"type": "integer", "minimum": 1},
                        "started_at": _TIME,
                        "finished_at": _TIME,
                        "outcome": {"type": "string"},
                        "error": _NULL_STR,
                        "worker": _NULL_STR,
                        "log": {
                            **_NULL_STR,
                            "description": "a successful run's stderr tail (local executors)",
                        },
                    },
                    required=("attempt", "outcome"),
                ),
            },
        },
        required=("id", "queue", "priority", "state", "attempt", "lease"),
    )


def _work_item() -> Schema:
    return _obj(
        {
            "id": {"type": "string"},
            "queue": {"type": "string"},
            "name": _NULL_STR,
            "payload": {},
            "payload_encoding": {"const": "base64"},
            "attempt": {"type": "integer", "minimum": 1},
            "lease": {"type": "integer", "description": "send it back on every call"},
            "timeout": {"type": "number"},
            "dependency_results": {"type": "object", "description": "dependency id -> result"},
            "dependency_results_encoding": {"type": "object"},
        },
        required=("id", "queue", "attempt", "lease", "timeout", "dependency_results"),
    )


def _queue_stats() -> Schema:
    counts = {"type": "object", "additionalProperties": {"type": "integer"}}
    return _obj(
        {
            "name": {"type": "string"},
            "paused": {"type": "boolean"},
            "consumers": {
                "type": "integer",
                "description": "executors and workers serving this queue now",
            },
            "depth": {"type": "integer", "description": "non-terminal tasks"},
            "by_state": {**counts, "propertyNames": {"enum": _STATES}},
            "by_priority": {**counts, "description": "queued tasks per priority"},
            "rates": _obj(
                {
                    "submitted_per_second": {"type": "number"},
                    "finished_per_second": {"type": "number"},
                }
            ),
        },
        required=("name", "paused", "depth", "by_state", "by_priority", "rates"),
    )


def _cluster() -> Schema:
    member = _obj(
        {
            "address": {"type": "string"},
            "role": {"type": "string"},
            "match_index": {"type": "integer"},
            "reachable": {"type": "boolean"},
        }
    )
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "role": {"type": "string", "enum": ["leader", "follower", "candidate", "learner"]},
            "term": {"type": "integer"},
            "leader": _NULL_STR,
            "commit_index": {"type": "integer"},
            "members": {"type": "array", "items": member},
        },
        "required": ["id", "role", "term", "leader", "commit_index", "members"],
    }


def _error() -> Schema:
    codes = [code.value for code in ErrorCode]
    inner = _obj(
        {
            "code": {"type": "string", "enum": codes},
            "message": {"type": "string", "maxLength": limits.MAX_MESSAGE + 1},
            "field": {**_NULL_STR, "description": "JSON path of the culprit, e.g. tasks[3].delay"},
            "leader": {"type": "string", "description": "503 only: the leader's gRPC address"},
        },
        required=("code", "message", "field"),
    )
    return _obj({"error": inner}, required=("error",))


_LEASE_BODY = _obj(
    {
        "worker": {"type": "string", "minLength": 1, "maxLength": limits.MAX_WORKER_NAME},
        "max": {"type": "integer", "minimum": 1, "maximum": limits.MAX_LEASE_BATCH, "default": 1},
        "wait": {
            "type": "number",
            "minimum": 0,
            "maximum": limits.MAX_LEASE_WAIT,
            "default": 0,
            "description": "seconds to wait for a task when none is queued (long poll)",
        },
    },
    required=("worker",),
)
_EPOCH: Schema = {"type": "integer", "minimum": 0, "description": "the lease epoch"}
_HEARTBEAT_BODY = _obj({"lease": _EPOCH}, required=("lease",))
_COMPLETE_BODY = _obj({"lease": _EPOCH, "result": {"description": "any JSON value"}}, ("lease",))
_FAIL_BODY = _obj(
    {
        "lease": _EPOCH,
        "error": {"type": "string", "minLength": 1, "maxLength": limits.MAX_ERROR},
        "retryable": {
            "type": "boolean",
            "default": True,
            "description": "false: fail for good now",
        },
        "retry_delay": {
            "type": ["number", "string", "null"],
            "minimum": 0,
            "maximum": limits.MAX_DELAY,
            "description": (
                'seconds (or a duration like "30s", "5m") before the next attempt may start, '
                "instead of the node's backoff; still counted against max_retries. "
                "0 or absent: the backoff"
            ),
        },
    },
    required=("lease", "error"),
)
_ADDRESS: Schema = {"type": "string", "maxLength": limits.MAX_ADDRESS, "description": "host[:port]"}

# Request bodies by (path, method): the ``application/json`` schema each handler checks.
REQUEST_BODIES: dict[tuple[str, str], Schema] = {
    ("/api/v1/tasks", "post"): _ref("TaskSpec"),
    ("/api/v1/tasks/batch", "post"): _obj(
        {
            "tasks": {
                "type": "array",
                "minItems": 1,
                "maxItems": limits.MAX_BATCH,
                "items": _ref("BatchTaskSpec"),
            }
        },
        required=("tasks",),
    ),
    ("/api/v1/queues/{name}/lease", "post"): _LEASE_BODY,
    ("/api/v1/tasks/{id}/heartbeat", "post"): _HEARTBEAT_BODY,
    ("/api/v1/tasks/{id}/complete", "post"): _COMPLETE_BODY,
    ("/api/v1/tasks/{id}/fail", "post"): _FAIL_BODY,
    ("/api/v1/cluster/members", "post"): _obj({"address": _ADDRESS}, required=("address",)),
    ("/api/v1/cluster/transfer", "post"): _obj(
        {"address": {**_ADDRESS, "type": ["string", "null"]}}
    ),
}
_OPTIONAL_BODIES = frozenset({("/api/v1/cluster/transfer", "post")})


def _json(schema: Schema) -> Schema:
    return {"content": {"application/json": {"schema": schema}}}


_STALE = {
    "name": "stale",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean"},
    "description": "serve this replica as it is, without the linearizable read barrier",
}
_LIST_PARAMS = [
    {"name": "queue", "in": "query", "required": False, "schema": _QUEUE},
    {"name": "state", "in": "query", "required": False, "schema": {"enum": _STATES}},
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": limits.MAX_LIST_LIMIT,
            "default": limits.DEFAULT_LIST_LIMIT,
        },
    },
    {
        "name": "after",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "maxLength": limits.MAX_CURSOR},
        "description": "the next cursor of the previous page",
    },
    _STALE,
]


def _path_param(name: str) -> Schema:
    schemas = {"id": {"type": "string", "maxLength": limits.MAX_ID}, "name": _QUEUE}
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schemas.get(name, {"type": "string"}),
    }


# (path, method) -> (operationId, summary, success status, success schema, error codes)
_OPS: dict[tuple[str, str], tuple[str, str, int, Schema, tuple[str, ...]]] = {
    ("/api/v1/tasks", "post"): (
        "submitTask",
        "Submit one task (201; 200 with duplicate=true for an idempotent repeat)",
        201,
        _ref("Task"),
        ("invalid", "too_large", "not_found", "queue_full", "node_full", "not_leader"),
    ),
    ("/api/v1/tasks", "get"): (
        "listTasks",
        "A page of tasks, newest first; next is the cursor of the following page",
        200,
        _obj({"tasks": {"type": "array", "items": _ref("Task")}, "next": _NULL_STR}),
        ("invalid", "unavailable"),
    ),
    ("/api/v1/tasks/batch", "post"): (
        "submitBatch",
        "Submit tasks all or nothing; depends_on may name refs of the batch",
        201,
        _obj({"tasks": {"type": "array", "items": _ref("Task")}}),
        ("invalid", "too_large", "not_found", "queue_full", "node_full", "not_leader"),
    ),
    ("/api/v1/tasks/{id}", "get"): (
        "getTask",
        "One task",
        200,
        _ref("Task"),
        ("invalid", "not_found", "unavailable"),
    ),
    ("/api/v1/tasks/{id}/cancel", "post"): (
        "cancelTask",
        "Cancel a non-terminal task (its dependents are canceled too)",
        200,
        _ref("Task"),
        ("not_found", "conflict", "not_leader"),
    ),
    ("/api/v1/tasks/{id}/retry", "post"): (
        "retryTask",
        "Re-queue a failed or canceled task for a fresh set of attempts",
        200,
        _ref("Task"),
        ("not_found", "conflict", "not_leader"),
    ),
    ("/api/v1/tasks/{id}/heartbeat", "post"): (
        "heartbeat",
        "HTTP worker: extend the lease of a running task",
        200,
        _ref("Task"),
        ("invalid", "not_found", "conflict", "not_leader"),
    ),
    ("/api/v1/tasks/{id}/complete", "post"): (
        "complete",
        "HTTP worker: the attempt succeeded with this result",
        200,
        _ref("Task"),
        ("invalid", "too_large", "not_found", "conflict", "not_leader"),
    ),
    ("/api/v1/tasks/{id}/fail", "post"): (
        "fail",
        "HTTP worker: the attempt failed (retried after a backoff, or after retry_delay, "
        "while retries remain)",
        200,
        _ref("Task"),
        ("invalid", "not_found", "conflict", "not_leader"),
    ),
    ("/api/v1/queues", "get"): (
        "listQueues",
        "Per queue: depth by state and priority, paused, rates",
        200,
        _obj({"queues": {"type": "array", "items": _ref("QueueStats")}}),
        ("invalid", "unavailable"),
    ),
    ("/api/v1/queues/{name}/pause", "post"): (
        "pauseQueue",
        "Stop handing out the queue's tasks",
        200,
        _ref("QueueStats"),
        ("invalid", "not_leader"),
    ),
    ("/api/v1/queues/{name}/resume", "post"): (
        "resumeQueue",
        "Hand out the queue's tasks again",
        200,
        _ref("QueueStats"),
        ("invalid", "not_leader"),
    ),
    ("/api/v1/queues/{name}/lease", "post"): (
        "lease",
        "HTTP worker: lease up to max queued tasks, waiting up to wait seconds for one",
        200,
        _obj(
            {
                "tasks": {"type": "array", "items": _ref("WorkItem")},
                "lease_seconds": {"type": "number", "description": "heartbeat well within this"},
            },
            required=("tasks", "lease_seconds"),
        ),
        ("invalid", "not_leader"),
    ),
    ("/api/v1/workers", "get"): (
        "listWorkers",
        "Connected workers (local executors, gRPC streams, HTTP workers)",
        200,
        _obj({"workers": {"type": "array", "items": {"type": "object"}}}),
        (),
    ),
    ("/api/v1/cluster", "get"): (
        "clusterStatus",
        "Members, leader, term",
        200,
        _ref("Cluster"),
        (),
    ),
    ("/api/v1/cluster/members", "post"): (
        "addMember",
        "Add a member started with --join (as a learner until caught up)",
        201,
        _ref("Cluster"),
        ("invalid", "not_found", "conflict", "unavailable"),
    ),
    ("/api/v1/cluster/members/{address}", "delete"): (
        "removeMember",
        "Remove a member",
        200,
        _ref("Cluster"),
        ("invalid", "not_found", "conflict", "unavailable"),
    ),
    ("/api/v1/cluster/transfer", "post"): (
        "transferLeadership",
        "Hand leadership to address, or to the most caught-up voter",
        200,
        _ref("Cluster"),
        ("invalid", "not_found", "conflict", "unavailable"),
    ),
    ("/api/v1/openapi.json", "get"): ("openapi", "This document", 200, {"type": "object"}, ()),
    ("/api/v1/events", "get"): (
        "events",
        "The live event stream: a WebSocket (snapshot, stats, transitions, workers, cluster; "
        "docs/monitor.md). Query: queue, state, id (repeatable), token",
        101,
        {"description": "JSON text frames, each an object with a type"},
        ("invalid",),
    ),
    ("/healthz", "get"): ("healthz", "Liveness", 200, _obj({"status": {"const": "ok"}}), ()),
    ("/readyz", "get"): (
        "readyz",
        "Readiness: a leader is known and writes are possible (503 otherwise)",
        200,
        _obj({"ready": {"const": True}}),
        ("unavailable",),
    ),
    ("/metrics", "get"): ("metrics", "Prometheus text exposition", 200, {"type": "string"}, ()),
    ("/", "get"): ("index", "The monitor page (HTML)", 200, {"type": "string"}, ()),
}
_TEXT = {"/metrics": "text/plain", "/": "text/html"}


def _operation(path: str, method: str) -> Schema:
    op_id, summary, status, schema, errors = _OPS[(path, method)]
    media = _TEXT.get(path, "application/json")
    responses: Schema = {
        str(status): {"description": "success", "content": {media: {"schema": schema}}}
    }
    if (path, method) == ("/api/v1/tasks", "post"):
        responses["200"] = {"description": "an idempotent repeat", **_json(schema)}
    if (path, method) == ("/api/v1/events", "get"):
        responses["101"] = {"description": "switching to the WebSocket protocol"}
        responses["426"] = {"description": "a plain GET: upgrade_required", **_json(_ref("Error"))}
    for code in sorted({*errors, "internal"}, key=http_status):
        key = str(http_status(code))
        entry = responses.setdefault(key, {"description": "", **_json(_ref("Error"))})
        entry["description"] = ", ".join(filter(None, [entry["description"], code]))
    op: Schema = {"operationId": op_id, "summary": summary, "responses": responses}
    params = [_path_param(p) for p in _path_names(path)]
    if (path, method) == ("/api/v1/tasks", "get"):
        params += _LIST_PARAMS
    elif method == "get" and path in ("/api/v1/tasks/{id}", "/api/v1/queues"):
        params.append(_STALE)
    if params:
        op["parameters"] = params
    if (path, method) in REQUEST_BODIES:
        op["requestBody"] = {
            "required": (path, method) not in _OPTIONAL_BODIES,
            **_json(REQUEST_BODIES[(path, method)]),
        }
    return op


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def document(version: str) -> Schema:
    """The whole OpenAPI 3.1 document."""
    paths: dict[str, Schema] = {}
    for path, method in _OPS:
        paths.setdefault(path, {})[method] = _operation(path, method)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "taskd REST API",
            "version": version,
            "description": "Unknown body fields and query parameters are refused (400). "
            "Errors share one shape; 503s carry Retry-After. See docs/rest.md.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": paths,
        "components": {
            "schemas": {
                "TaskSpec": spec_schema(batch=False),
                "BatchTaskSpec": spec_schema(batch=True),
                "Task": _task(),
                "WorkItem": _work_item(),
                "QueueStats": _queue_stats(),
                "Cluster": _cluster(),
                "Error": _error(),
            }
        },
    }


def operations() -> frozenset[tuple[str, str]]:
    """Every (path, lowercase method) the document describes."""
    return frozenset(_OPS)
