"""Reading REST requests and writing REST answers: bounded bodies, one JSON error shape.

``read_object`` takes a request body as a JSON object: Content-Type checked, refused with 413
as soon as it is known to exceed the limit (never buffered beyond it), UTF-8 and syntax
checked, and every JSON number checked to be storable exactly (``jsonnum``; in a thread for a
big body). ``error_response`` is the one error shape, ``{"error": {"code", "message",
"field"}}`` (plus ``"leader"`` for a cluster's 503), with the status of its code.
"""

from __future__ import annotations

from typing import Any

import orjson
import trio
from starlette.requests import Request
from starlette.responses import Response

from taskd.errors import CallerError
from taskd.node import limits
from taskd.node.api import jsonnum, validate
from taskd.node.api.codes import http_status
from taskd.node.api.present import printable_json

_CHECK_IN_THREAD = 256 << 10  # bytes of body above which JSON numbers are checked in a thread


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    try:
        data = orjson.dumps(body)
    except (TypeError, orjson.JSONEncodeError):  # a stored value JSON cannot carry as it is
        data = orjson.dumps(printable_json(body))
    return Response(data, status, headers, media_type="application/json")


def error_response(
    code: str,
    message: str,
    field: str = "",
    status: int | None = None,
    *,
    leader: str | None = None,
    **headers: str,
) -> Response:
    message = validate.clip(message, limits.MAX_MESSAGE)
    field = validate.clip(field, limits.MAX_MESSAGE // 4)
    error: dict[str, Any] = {"code": code, "message": message, "field": field or None}
    if leader is not None:
        error["leader"] = leader
    return json_response({"error": error}, status or http_status(code), headers or None)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise CallerError("invalid", "Content-Length must be a number of bytes", "")
        if int(declared) > limit:
            raise CallerError(
                "too_large", f"the body is {declared} bytes; the limit is {limit}", "body"
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise CallerError("too_large", f"the body exceeds the limit of {limit} bytes", "body")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object (Content-Type, size, UTF-8 and syntax checked)."""
    content_type = request.headers.get("content-type")
    if content_type is not None:
        mime, _, params = content_type.partition(";")
        mime = mime.strip().lower()
        if mime != "application/json" and not mime.endswith("+json"):
            raise CallerError(
                "invalid", f"send Content-Type: application/json, not {mime or 'nothing'}", ""
            )
        charset = params.strip().lower().removeprefix("charset=").strip('"')
        if params.strip() and charset not in ("utf-8", "utf8"):
            raise CallerError("invalid", "JSON bodies must be UTF-8", "")
    data = await read_body(request, limit)
    if not data.strip():
        raise CallerError("invalid", "a JSON object body is required", "body")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise CallerError("invalid", "the body is not valid UTF-8", "body") from None
        raise CallerError(
            "invalid",
            f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            "body",
        ) from None
    if not isinstance(obj, dict):
        raise CallerError("invalid", "the body must be a JSON object", "body")
    try:
        if len(data) > _CHECK_IN_THREAD:  # the exact re-check of a big body: off the loop
            inexact = await trio.to_thread.run_sync(jsonnum.inexact_number, data)
        else:
            inexact = jsonnum.inexact_number(data)
    except jsonnum.TooDeep as exc:
        raise CallerError("invalid", f"{exc}; send a flatter body", "body") from None
    if inexact is not None:
        where, literal = inexact
        raise CallerError(
            "invalid",
            f"{validate.clip(where) or 'the body'} holds the number {validate.clip(literal)}, "
            "which cannot be stored exactly; send it as a string",
            where,
        )
    return obj


def check_fields(obj: dict[str, Any], allowed: frozenset[str], required: frozenset[str]) -> None:
    for key in obj:
        if key not in allowed:
            raise validate.invalid(f"unknown field {validate.echo(key)}", validate.clip(key))
    for key in sorted(required):
        if obj.get(key) is None:
            raise validate.invalid(f"{key} is required", key)
