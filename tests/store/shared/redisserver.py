"""The Redis server tests run against (127.0.0.1:6379 DB 0; ``TASKD_TEST_REDIS_URL`` names
another), and a key prefix of its own per test, whose keys are deleted afterwards.

That server is shared with others: nothing here flushes a database or changes its
configuration. Never skipped: if the server cannot be reached, ``fresh_prefix`` fails the
test, saying so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

URL = os.environ.get("TASKD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def admin() -> redis.Redis:
    return redis.Redis.from_url(URL, socket_connect_timeout=5)


def keys_of(client: redis.Redis, prefix: str) -> list[bytes]:
    """Every key under ``prefix`` (its hash tag ``{prefix}``), by SCAN."""
    return list(client.scan_iter(match=f"{{{prefix}}}:*"))


@contextmanager
def fresh_prefix() -> Iterator[str]:
    """A prefix no one else uses; its keys are deleted afterwards."""
    name = f"taskd-test-{uuid.uuid4().hex[:12]}"
    with admin() as client:
        try:
            client.ping()
        except redis.ConnectionError as exc:
            raise AssertionError(
                f"these tests need the Redis server at {URL} (TASKD_TEST_REDIS_URL): {exc}"
            ) from None
        try:
            yield name
        finally:
            keys = keys_of(client, name)
            if keys:
                client.delete(*keys)


def clobber_log(prefix: str) -> None:
    """Make every append fail as Redis fails it when someone else's data took taskd's key
    (WRONGTYPE): the log is replaced by a string; the lease key still works, so the leader
    keeps its lease."""
    with admin() as client:
        client.delete(f"{{{prefix}}}:log")
        client.set(f"{{{prefix}}}:log", b"not a stream")
