"""A ``redis://`` ``--store`` URL, checked before anything connects, so that a mistyped one is
refused at start with the part that is wrong (never the whole URL: it may hold a password)
rather than connecting somewhere else (redis-py reads ``/abc`` as database 0).

``split(url)`` returns the URL for redis-py, without taskd's own ``prefix`` parameter, and
that prefix (default ``taskd``): deployments sharing one Redis database keep apart by it.
Forms: ``redis://[[USER]:PASSWORD@]HOST[:PORT][/N][?prefix=NAME]`` and ``rediss://`` (TLS).
"""

from __future__ import annotations

import urllib.parse

SCHEMES = ("redis", "rediss")
DEFAULT_PREFIX = "taskd"


def valid_prefix(prefix: str) -> bool:
    """Not empty and without braces: taskd puts its keys in one hash tag, ``{PREFIX}``."""
    return bool(prefix) and "{" not in prefix and "}" not in prefix


def split(url: str) -> tuple[str, str]:
    """(the URL without ``prefix``, the prefix); ``ValueError`` naming what is wrong."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError("a Redis URL starts with redis:// or rediss://")
    try:
        parts.port  # noqa: B018  # urllib checks the port when it is read
    except ValueError:
        raise ValueError("the port after the host must be a number (redis://HOST:PORT/N)") from None
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    number = parts.path.strip("/")
    if number and not (number.isascii() and number.isdigit()):
        raise ValueError(
            f"the database after the host must be a number (redis://HOST:PORT/N, N from 0), "
            f"got {number[:40]!r}"
        )
    for key, value in query:
        if key == "db" and not (value.isascii() and value.isdigit()):
            raise ValueError(f"?db= must be a database number (0, 1, ...), got {value[:40]!r}")
    prefixes = [value for key, value in query if key == "prefix"]
    if len(prefixes) > 1:
        raise ValueError("?prefix= is given more than once: give it once")
    prefix = prefixes[0] if prefixes else DEFAULT_PREFIX
    if not valid_prefix(prefix):
        raise ValueError(
            f"?prefix={prefix[:40]} must not be empty nor hold braces (taskd puts its keys in one "
            f"hash tag, {{PREFIX}})"
        )
    rest = urllib.parse.urlencode([(key, value) for key, value in query if key != "prefix"])
    return urllib.parse.urlunsplit(parts._replace(query=rest)), prefix
