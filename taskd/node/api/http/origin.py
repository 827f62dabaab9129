"""Writes that a web page on another origin cannot make (design.md §6), as ASGI middleware.

Theory of operation: a browser lets any page send "simple" cross-origin requests — a POST
with a form content type or none, no preflight — and lets a page whose DNS name was rebound to
127.0.0.1 talk to a node on localhost as if it were its own site. ``OriginGuard`` sits in
front of every route and refuses, in this order, before any handler runs:

1. A ``Host`` the listener does not serve (403 ``forbidden``). A loopback listener serves only
   loopback names — ``localhost``, ``*.localhost``, ``127.0.0.0/8``, ``[::1]``, any port — so a
   rebound name (``evil.example``) reaches nothing, reads included. A non-loopback listener
   serves any name. ``--allow-host NAME`` adds names (and, on a non-loopback listener, limits
   it to loopback names and the list); ``--allow-host '*'`` serves any name.
2. A request whose ``Origin`` header is neither the node's own origin (the request's scheme
   and ``Host``) nor allowed by ``--allow-origin`` (403 ``forbidden``). Requests without an
   ``Origin`` (curl, SDKs, same-origin GETs) pass.
3. A CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here: 204
   with the allow headers for an allowed origin (step 2 refused the others).
4. A state-changing request (any method but GET, HEAD, OPTIONS — every POST, with a body or
   without) whose ``Content-Type`` is not ``application/json`` (or ``*/*+json``): 415
   ``unsupported_media_type``. A JSON content type is not CORS-safelisted, so a foreign page
   cannot send one without a preflight, which step 3 refuses.

Allowed cross-origin responses carry ``Access-Control-Allow-Origin``. Refusals use the API's
JSON error shape and change nothing (no handler ran). WebSocket handshakes get steps 1 and 2
(a refused one is closed with 1008, policy violation).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

__all__ = ["OriginGuard", "OriginPolicy", "is_loopback_listener", "normalize_origin"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_PREFLIGHT_MAX_AGE = "600"
_ALLOWED_METHODS = "GET, HEAD, POST, OPTIONS"
_ALLOWED_HEADERS = "Content-Type, Accept"
_MAX_ECHO = 200  # characters of a header value quoted back in an error message


def normalize_origin(text: str) -> str:
    """``HTTP://Example.com/`` → ``http://example.com:80``; ValueError when not an origin."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"an origin is scheme://host[:port] with http or https, got {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"an origin has no path, query or user part, got {text!r}")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError(f"the port of origin {text!r} is not a number 1-65535") from None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _split_host(value: str) -> tuple[str, str]:
    """A Host header → (name, port text); IPv6 names keep their brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return "", ""  # malformed: matches no name
        rest = value[end + 1 :]
        return value[: end + 1], rest[1:] if rest.startswith(":") else ""
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit():
        return name, port
    return value, ""


def _is_loopback_name(name: str) -> bool:
    name = name.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback


def is_loopback_listener(host: str) -> bool:
    """Whether a listen address (``--http`` host) accepts only loopback connections."""
    return _is_loopback_name(host.strip("[]").lower())


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Which Host names and foreign origins a listener serves (see the module docstring)."""

    loopback: bool = True  # the listener is bound to a loopback address
    allow_origins: tuple[str, ...] = ()  # normalized origins, or "*"
    allow_hosts: tuple[str, ...] = ()  # extra host names (lowercase, no port), or "*"

    def host_allowed(self, name: str) -> bool:
        if "*" in self.allow_hosts or name.rstrip(".") in self.allow_hosts:
            return True
        if _is_loopback_name(name):
            return True
        return not self.loopback and not self.allow_hosts

    def origin_allowed(self, origin: str, own: str) -> bool:
        if "*" in self.allow_origins:
            return True
        try:
            normalized = normalize_origin(origin)
        except ValueError:
            return False  # "null" (sandboxed frames, file: pages) and junk are foreign
        return normalized == own or normalized in self.allow_origins


def _quote(value: str) -> str:
    return repr(value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "...")


class OriginGuard:
    """ASGI middleware enforcing an ``OriginPolicy`` in front of ``app``."""

    def __init__(self, app: App, policy: OriginPolicy | None = None) -> None:
        self.app = app
        self.policy = policy or OriginPolicy()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        headers: dict[str, str] = {}
        for key, value in scope.get("headers", ()):
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            if kind == "websocket":
                await receive()  # the websocket.connect message
                await send({"type": "websocket.close", "code": 1008})
                return
            status, code, message, extra = refusal
            await _send_error(send, status, code, message, extra)
            return
        origin = headers.get("origin")
        if kind == "http" and origin is not None:
            if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
                await _send_preflight(send, origin)
                return
            await self.app(scope, receive, _with_cors(send, origin))
            return
        await self.app(scope, receive, send)

    def _refusal(
        self, scope: Scope, headers: dict[str, str]
    ) -> tuple[int, str, str, dict[str, str]] | None:
        policy = self.policy
        host = headers.get("host", "")
        name, _ = _split_host(host)
        if not host or not policy.host_allowed(name):
            served = "loopback names (localhost, 127.0.0.1, [::1])"
            return (
                403,
                "forbidden",
                f"this node serves only {served} and the names given with --allow-host; the "
                f"request names Host {_quote(host)}. If you reach the node under that name on "
                f"purpose, start it with --allow-host {name or 'NAME'}",
                {},
            )
        origin = headers.get("origin")
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        if origin is not None:
            try:
                own = normalize_origin(f"{scheme}://{host}")
            except ValueError:
                own = ""
            if not policy.origin_allowed(origin, own):
                return (
                    403,
                    "forbidden",
                    f"requests from the web origin {_quote(origin)} are refused: a page on "
                    "another site must not drive this node. If that page is yours, start the "
                    f"node with --allow-origin {origin[:_MAX_ECHO]}",
                    {"Vary": "Origin"},
                )
        if scope["type"] == "http" and scope["method"] not in _SAFE_METHODS:
            content_type = headers.get("content-type")
            mime = (content_type or "").partition(";")[0].strip().lower()
            if mime != "application/json" and not mime.endswith("+json"):
                got = f"Content-Type {_quote(content_type)}" if content_type else "no Content-Type"
                return (
                    415,
                    "unsupported_media_type",
                    f"{scope['method']} requests change state and need Content-Type: "
                    f"application/json (with a JSON body, or none); this one has {got}",
                    {"Accept": "application/json"},
                )
        return None


async def _send_error(
    send: Send, status: int, code: str, message: str, extra: dict[str, str]
) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message, "field": None}})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_preflight(send: Send, origin: str) -> None:
    headers = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", _ALLOWED_METHODS.encode()),
        (b"access-control-allow-headers", _ALLOWED_HEADERS.encode()),
        (b"access-control-max-age", _PREFLIGHT_MAX_AGE.encode()),
        (b"vary", b"Origin"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Send, origin: str) -> Send:
    """``send`` that marks the response readable by ``origin`` (it passed the policy)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
            headers.append((b"vary", b"Origin"))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
