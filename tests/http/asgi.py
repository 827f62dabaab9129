"""Calling an ASGI app in-process under trio: no sockets, no threads, no extra dependency.

``call(app, method, path, body)`` builds an HTTP scope, feeds the body (optionally in chunks,
with or without a Content-Length), collects the response, and decodes a JSON body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import trio

_UNSET: Any = object()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    chunks_read: int = 0  # how many body chunks the app asked for

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.json["error"]
        return error


async def call(
    app: Any,
    method: str,
    path: str,
    body: Any = _UNSET,
    *,
    raw: bytes | None = None,
    chunks: Sequence[bytes] | None = None,
    content_type: str | None = "application/json",
    content_length: str | bool | None = True,
    headers: dict[str, str] | None = None,
    hang_up: trio.Event | None = None,
    host: str = "localhost:8080",
    scheme: str = "http",
) -> Reply:
    """One request. ``content_length=True`` sends the true length, False none, a str that one.
    ``content_type=None`` sends none; ``host`` is the Host header (a loopback name by default).
    Once the body is sent the client stays connected, or hangs up when ``hang_up`` is set."""
    if chunks is None:
        data = raw if raw is not None else (b"" if body is _UNSET else orjson.dumps(body))
        chunks = [data]
    total = sum(len(c) for c in chunks)
    parts = urlsplit(path)
    header_list: list[tuple[bytes, bytes]] = [(b"host", host.encode())]
    # Like every client of ours, send the JSON content type on every request, body or not: a
    # POST without one is refused (origin.py).
    if content_type is not None:
        header_list.append((b"content-type", content_type.encode()))
    if content_length is True:
        header_list.append((b"content-length", str(total).encode()))
    elif isinstance(content_length, str):
        header_list.append((b"content-length", content_length.encode()))
    for key, value in (headers or {}).items():
        header_list.append((key.lower().encode(), value.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": header_list,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }
    pending = list(chunks)
    sent_chunks = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent_chunks
        if sent_chunks < len(pending):
            chunk = pending[sent_chunks]
            sent_chunks += 1
            return {"type": "http.request", "body": chunk, "more_body": sent_chunks < len(pending)}
        if hang_up is None:
            await trio.sleep_forever()  # the client stays connected until the response is sent
        else:
            await hang_up.wait()
        return {"type": "http.disconnect"}

    status = 0
    out_headers: dict[str, str] = {}
    out: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            for key, value in message.get("headers", []):
                out_headers[key.decode().lower()] = value.decode()
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))

    await app(scope, receive, send)
    return Reply(status, out_headers, b"".join(out), sent_chunks)
