"""JSON numbers that would not survive storage exactly: found cheaply, named precisely.

Theory of operation: orjson (kept for speed) reads an integer beyond 64 bits as a float
(18446744073709551616 → 1.8446744073709552e19), an underflowing literal as 0.0 (0.1e-400) and
a literal with more digits than a double holds as the nearest double — all silently. A JSON
number can only be at risk when its text has at least 16 digits or an exponent below -99 (a
double holds every decimal of 15 significant digits exactly from 1e-307 up, a larger exponent
overflows to infinity, which orjson refuses, and orjson keeps every integer of
-2^63..2^64-1), so ``RISKY`` scans the raw bytes for values of those shapes — a C-speed
regex that matches nothing in ordinary bodies. Only when it matches (possibly inside a
string: harmless, just a slower path) is the text parsed again with the standard library,
whose hooks see every number literal as written; a literal whose value differs from what
orjson keeps is marked, and its JSON path is reported.

A literal is exact when it is an integer within -2^63..2^64-1, or a decimal whose value
equals the shortest repr of the double it parses to (so ``0.1`` and ``1e2`` pass, while
``0.30000000000000000444`` — more digits than a double holds — does not).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation

# A number starts a value: after [ : , or the start (whitespace allowed), then an optional -;
# it is at risk with 16 or more digits, or a negative exponent of three digits or more.
RISKY = re.compile(rb"(?:^|[\[:,])\s*-?(?:[0-9.]{16,}|[0-9.]+[eE]-[0-9]{3,})")
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


class TooDeep(ValueError):
    """The JSON nests deeper than the exact re-check can follow."""


class _Inexact:
    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _int_hook(literal: str) -> object:
    if len(literal) > 21:  # beyond 2^64 for sure; int() would refuse past 4,300 digits
        return _Inexact(literal)
    value = int(literal)
    return value if _INT_MIN <= value <= _INT_MAX else _Inexact(literal)


def _float_hook(literal: str) -> object:
    value = float(literal)
    if repr(value) == literal:  # the common case, e.g. what orjson itself wrote: exact
        return value
    try:
        exact = Decimal(repr(value)) == Decimal(literal)
    except InvalidOperation:  # inf / nan: orjson refuses those before we get here
        exact = False
    return value if exact else _Inexact(literal)


def inexact_number(data: bytes | str) -> tuple[str, str] | None:
    """(JSON path, literal) of the first number in valid JSON ``data`` that orjson would not
    keep exactly, or None. ``data`` must already have parsed with orjson."""
    raw = data.encode() if isinstance(data, str) else data
    if RISKY.search(raw) is None:
        return None
    try:
        obj = json.loads(raw, parse_int=_int_hook, parse_float=_float_hook)
        return _find(obj, "")
    except RecursionError:  # orjson allows deeper nesting than Python's stack
        raise TooDeep("the JSON nests too deeply to check its numbers") from None
    except ValueError:  # text orjson read and the standard library does not: nothing to add
        return None


def _find(value: object, path: str) -> tuple[str, str] | None:
    if isinstance(value, _Inexact):
        return path, value.literal
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _find(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None
