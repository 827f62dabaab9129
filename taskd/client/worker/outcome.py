"""How one attempt ended, as the worker reports it; and ``Retry``, the handler's way to ask
for another attempt later.

A handler's return value is its result (JSON-encoded; ``bytes`` are sent as they are). Raising
fails the attempt with the traceback as the error; the node then retries it while retries
remain, after its backoff. ``raise Retry(delay=30)`` (or ``return Retry(delay=30)``) fails the
attempt with a delay chosen by the handler; whether another attempt happens is still the
node's decision (``max_retries``). ``encode_result`` and ``failure`` turn these into an
``Outcome``: the one place where a handler's exception becomes data.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass

MAX_RESULT = 1 << 20  # the node's default payload limit (--max-payload): larger results fail
MAX_ERROR = 16 << 10  # characters of a traceback kept (the tail: where it was raised)
TIMEOUT = "timeout"  # the error of an attempt past its timeout, as the node writes it


class Retry(Exception):
    """Fail this attempt and ask for another one ``delay`` seconds from now.

    The node re-queues the task no earlier than that (``retry_delay_seconds`` on the wire); the
    attempt counts against ``max_retries`` like any failure. ``delay=0``: the node's backoff.
    """

    def __init__(self, reason: str = "retry requested", *, delay: float = 0.0) -> None:
        if not isinstance(delay, int | float) or not 0 <= delay <= 86_400 * 365:
            raise ValueError(f"Retry: delay must be 0..31536000 seconds, not {delay!r}")
        super().__init__(reason)
        self.reason = reason
        self.delay = float(delay)


@dataclass(frozen=True, slots=True)
class Outcome:
    success: bool
    result: bytes = b""
    error: str = ""
    retry_delay: float = 0.0  # > 0: the handler asked for a retry this much later


def encode_result(value: object, limit: int = MAX_RESULT) -> Outcome:
    """A handler's return value as a successful outcome, or a failure saying why it cannot be."""
    if isinstance(value, Retry):
        return retry_outcome(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    else:
        try:
            data = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            return Outcome(
                False,
                error=f"the handler's result is not JSON-serializable ({exc}); "
                "return a JSON-able value or bytes",
            )
    if len(data) > limit:
        return Outcome(
            False, error=f"the handler's result is {len(data)} bytes; the limit is {limit}"
        )
    return Outcome(True, data)


def retry_outcome(retry: Retry) -> Outcome:
    return Outcome(False, error=f"Retry: {retry.reason}", retry_delay=retry.delay)


def failure(exc: BaseException) -> Outcome:
    """An exception raised by a handler: its traceback is the error (the tail when long)."""
    if isinstance(exc, Retry):
        return retry_outcome(exc)
    text = "".join(traceback.format_exception(exc))
    if len(text) > MAX_ERROR:
        text = "...\n" + text[-(MAX_ERROR - 4) :]
    return Outcome(False, error=text)
