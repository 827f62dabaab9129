"""The CLI's REST client: one blocking call at a time to one node, every failure one sentence.

Theory of operation: ``Rest.call`` sends a JSON request with the stdlib's ``urllib.request``
(a client command loads none of the server's libraries, which keeps ``taskd get`` fast) and
returns the decoded JSON answer. Whatever goes wrong on the way (a refused connection, a
timeout, something that is not HTTP answering, e.g. the node's gRPC port, an HTML page, a 5xx)
becomes a ``ClientError`` whose message says what happened and what to do, with an exit code
from ``Exit``; nothing from urllib, http.client, ssl or socket leaks out of here.

``server_url`` turns ``--server`` / ``$TASKD_SERVER`` into a base URL: ``http(s)://host[:port]``,
or ``host[:port]`` (http, port 8080 when none is given); any other scheme is a usage error.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from enum import IntEnum
from typing import Any

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_PORT = 8080
TIMEOUT = 30.0  # seconds per call


class Exit(IntEnum):
    """The exit codes of a client command (also in ``taskd --help``)."""

    OK = 0
    REFUSED = 1  # the node answered and refused the request (4xx: bad input, no such task...)
    USAGE = 2  # the command line is wrong (argparse uses 2 as well)
    UNREACHABLE = 3  # no taskd answer: down, timed out, not taskd at that address, wrong port
    NODE_FAILED = 4  # the node answered with a server error (5xx): unavailable, no leader...


class ClientError(Exception):
    """A failure to report on stderr as one line, with an exit code."""

    def __init__(self, message: str, code: int = Exit.REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def server_url(text: str) -> str:
    """The base URL of the node ``text`` names; raises ``ClientError`` (usage) when it cannot."""
    raw = text.strip()
    if not raw:
        raise ClientError(
            f"--server is empty; give the node's HTTP address, e.g. {DEFAULT_SERVER}", Exit.USAGE
        )
    scheme, sep, _ = raw.partition("://")
    if not sep:
        raw = f"http://{raw}"
        scheme = "http"
    elif scheme.lower() not in ("http", "https"):
        hint = (
            " (that is the gRPC API, for SDK workers and clients; the CLI speaks REST)"
            if scheme.lower().startswith("grpc")
            else ""
        )
        raise ClientError(
            f"--server {text!r}: scheme {scheme}:// is not supported{hint}; give the node's HTTP "
            f"address (its --http), e.g. {DEFAULT_SERVER}",
            Exit.USAGE,
        )
    try:
        parts = urllib.parse.urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ClientError(f"--server {text!r} is not an address: {exc}", Exit.USAGE) from None
    if not parts.hostname:
        raise ClientError(f"--server {text!r} names no host; e.g. {DEFAULT_SERVER}", Exit.USAGE)
    netloc = parts.netloc
    if port is None and not sep:  # bare host: the node's default HTTP port
        netloc = f"{netloc}:{DEFAULT_PORT}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


class Rest:
    """A tiny blocking REST client for one node."""

    def __init__(self, server: str, timeout: float = TIMEOUT) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        # Every call, body or not: the node refuses a POST without it (no cross-site writes).
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                kind = response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise self._unreachable(exc) from None
        return self._answer(raw, kind)

    def _answer(self, raw: bytes, kind: str) -> Any:
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:  # not JSON, or not UTF-8
            raise ClientError(
                f"{self.server} answered {kind}, not taskd's JSON: is --server the node's HTTP "
                "address (its --http, default 127.0.0.1:8080)?",
                Exit.UNREACHABLE,
            ) from None

    def _refusal(self, exc: urllib.error.HTTPError) -> ClientError:
        try:
            raw = exc.read()
        except (OSError, http.client.HTTPException):
            raw = b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        code = Exit.NODE_FAILED if exc.code >= 500 else Exit.REFUSED
        if not isinstance(error, dict):
            if exc.code == 404:
                return ClientError(
                    f"HTTP 404 from {self.server}{urllib.parse.urlsplit(exc.url).path}: is "
                    "--server a taskd node's HTTP address?",
                    Exit.UNREACHABLE,
                )
            return ClientError(f"HTTP {exc.code} {exc.reason} from {self.server}", code)
        message = str(error.get("message") or error.get("code") or exc.reason)
        field = error.get("field")
        text = f"{message} (field: {field})" if field else message
        if code == Exit.NODE_FAILED:
            text = f"the node could not do it (HTTP {exc.code}): {text}; retry later or see its log"
        return ClientError(text, code)

    def _unreachable(self, reason: object) -> ClientError:
        where = f"cannot reach taskd at {self.server}"
        if isinstance(reason, ConnectionRefusedError):
            text = f"{where}: nothing listens there; is a node running? start one with `taskd`"
        elif isinstance(reason, TimeoutError):
            text = (
                f"{where}: no answer within {self.timeout:g}s; the node may be overloaded or "
                "stuck: check it (its log) and retry"
            )
        elif isinstance(reason, (http.client.HTTPException, ConnectionResetError)):
            text = (
                f"{self.server} does not answer as an HTTP/1.1 REST API "
                f"({type(reason).__name__}): is it the node's gRPC port? the CLI needs its "
                "--http address (default port 8080)"
            )
        elif isinstance(reason, ssl.SSLError):
            text = f"{where}: TLS failed ({_describe(reason)}); does the node serve https?"
        elif isinstance(reason, OSError) and reason.errno is not None and reason.strerror:
            text = f"{where}: {reason.strerror}"
        else:
            text = f"{where}: {_describe(reason)}"
        return ClientError(text, Exit.UNREACHABLE)


def _describe(reason: object) -> str:
    text = str(reason).strip()
    name = type(reason).__name__
    return f"{name}: {text}" if text and isinstance(reason, BaseException) else (text or name)
