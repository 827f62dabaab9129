"""Node logs on stderr: for a person on a terminal, JSON lines for everything else.

``--log-format auto`` (the default) picks ``text`` when stderr is a terminal and ``json``
otherwise (a file, a pipe, journald); ``--log-format json|text`` forces one. Call sites pass
context with ``extra={"fields": {...}}``: JSON puts it as top-level keys, text as ``key=value``
after the message.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

import orjson


def _timestamp(record: logging.LogRecord) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z"
    )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``12:00:01.234 WARN  taskd.exec: task failed  id=01H... queue=q attempt=2``."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = {"WARNING": "WARN", "CRITICAL": "CRIT"}.get(record.levelname, record.levelname)
        text = f"{clock}.{int(record.msecs):03d} {level:<5} {record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += "  " + " ".join(f"{k}={_value(v)}" for k, v in fields.items())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _value(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return orjson.dumps(text).decode() if (" " in text or not text) else text


def resolve_format(fmt: str, stream: TextIO) -> str:
    """``auto`` → ``text`` on a terminal, else ``json``; an explicit format stays."""
    if fmt != "auto":
        return fmt
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # a closed or odd stream: machines read it
        return "json"


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if resolve_format(fmt, sys.stderr) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party libraries log at INFO per connection; keep them at warnings.
    for noisy in ("hypercorn.access", "hypercorn.error", "grpclib", "asyncio", "trio_asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
