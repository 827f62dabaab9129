"""What the peers' tasks do, and where they record it.

Runs in the peers' venv (standard library and redis only), in the agent and in every worker
process. Each peer runs the same three functions, wrapped by its own decorator
(``celery_app``, ``dramatiq_app``) or enqueued by reference (RQ):

- ``noop(payload)``: nothing (W1a enqueues it with no worker running);
- ``count(key, expected, payload)``: INCR ``key``; the call that brings it to ``expected``
  stores its wall time under ``key:end``, so W2's last completion is exact, not a poll's;
- ``pickup(submitted, payload)``: RPUSH ``time.time() - submitted`` in ms (W3's pickup
  latency: the handler starting, measured from the producer's call).

The records live in the recording Redis database, whatever the peer's broker: a database
index of its own (9 by default, never 0), which the agent flushes before and after each run —
never FLUSHALL. Settings reach the workers through ``TASKD_PEERS_*`` environment variables,
since the peers' command lines (``celery -A``, ``rq worker``, ``dramatiq``) import a module.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import redis

PREFIX = "taskd-peers:"
DONE = PREFIX + "done"  # W2's completions
WARM = PREFIX + "warm"  # the warm-up's completions
PICKUP = PREFIX + "pickup"  # W3's latencies, ms

ENV = {
    "redis_url": "TASKD_PEERS_REDIS_URL",
    "amqp_url": "TASKD_PEERS_AMQP_URL",
    "queue": "TASKD_PEERS_QUEUE",
    "broker": "TASKD_PEERS_BROKER",
}
DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_QUEUE = "taskd_peers_bench"


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str = DEFAULT_REDIS  # the recording DB; also the broker of the Redis peers
    amqp_url: str = DEFAULT_AMQP
    queue: str = DEFAULT_QUEUE
    broker: str = "redis"  # "redis" | "rabbitmq"

    @classmethod
    def from_env(cls) -> Settings:
        given = {field: os.environ[name] for field, name in ENV.items() if name in os.environ}
        return cls(**given)

    def to_env(self) -> dict[str, str]:
        return {name: getattr(self, field) for field, name in ENV.items()}

    def validate(self) -> None:
        try:
            db = redis_db(self.redis_url)
        except ValueError:
            raise ValueError(f"{self.redis_url}: not a redis://host:port/DB URL") from None
        if db == 0:
            raise ValueError(
                f"{self.redis_url}: the benchmark flushes its Redis database; give it one of "
                "its own (e.g. redis://127.0.0.1:6379/9), never DB 0"
            )
        if self.broker not in ("redis", "rabbitmq"):
            raise ValueError(f"broker {self.broker!r}: redis or rabbitmq")


def redis_db(url: str) -> int:
    """The database index a redis:// URL names (``/9``, or ``?db=9``; 0 when it names none)."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path:
        return int(path)
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if name == "db":
            return int(value)
    return 0


@functools.cache
def recorder() -> redis.Redis:
    """This process's client of the recording DB (redis-py reconnects after a fork)."""
    return redis.Redis.from_url(Settings.from_env().redis_url)


def noop(payload: str) -> None:
    del payload


def count(key: str, expected: int, payload: str) -> None:
    del payload
    client = recorder()
    if client.incr(key) == expected:
        client.set(f"{key}:end", repr(time.time()))


def pickup(submitted: float, payload: str) -> None:
    del payload
    recorder().rpush(PICKUP, repr((time.time() - submitted) * 1000.0))


def counted(key: str) -> int:
    return int(cast(Any, recorder().get(key)) or 0)


def ended(key: str) -> float | None:
    """When ``count`` reached its expected value, or None."""
    value = cast(bytes | None, recorder().get(f"{key}:end"))
    return float(value) if value is not None else None


def picked() -> int:
    return recorder().llen(PICKUP)


def pickups_ms() -> list[float]:
    return [float(v) for v in cast(list[bytes], recorder().lrange(PICKUP, 0, -1))]


def flush() -> None:
    """Empty the recording DB — only it (``validate`` has refused DB 0)."""
    Settings.from_env().validate()
    recorder().flushdb()
