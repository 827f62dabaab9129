"""The shared database of a ``--store postgres|redis`` run: made fresh, and gone afterwards.

Theory of operation: a run on a shared store needs a database nobody else uses, on servers
other people do use, so nothing here changes a server's configuration.

- PostgreSQL (``postgresql://postgres@127.0.0.1:5432`` unless told otherwise): ``CREATE
  DATABASE chaos_<random>``; afterwards ``DROP DATABASE ... WITH (FORCE)`` (a session a node
  left behind is ended).
- Redis (``127.0.0.1:6379`` DB 0): a key prefix ``chaos-<random>`` (taskd's keys are
  ``{prefix}:...``, one hash tag); afterwards every key under it is deleted (by ``SCAN``).

``Database`` names the server's host and port (where the per-node proxies forward to) and says
how a node's ``--store`` URL reads when it dials its proxy's port instead (``url(port)``). The
URLs carry no password (trust auth on loopback), so they may be recorded in the history.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import redis
from psycopg import sql

POSTGRES = ("postgres", "127.0.0.1", 5432)  # user, host, port of the machine's server
REDIS = ("127.0.0.1", 6379, 0)  # host, port, database
KINDS = ("postgres", "redis")


@dataclass(frozen=True, slots=True)
class Database:
    kind: str  # "postgres" | "redis"
    host: str
    port: int  # the server's own port (the proxies' target)
    name: str  # the PostgreSQL database, or the Redis key prefix

    def url(self, port: int | None = None) -> str:
        """A node's ``--store``: this database through ``port`` (default: the server's)."""
        at = f"{self.host}:{port or self.port}"
        if self.kind == "postgres":
            return f"postgres://{POSTGRES[0]}@{at}/{self.name}"
        return f"redis://{at}/{REDIS[2]}?prefix={self.name}"


class DatabaseError(Exception):
    """The server cannot be reached or refused to make the database."""


def _admin_dsn() -> str:
    user, host, port = POSTGRES
    return f"postgresql://{user}@{host}:{port}/postgres"


@contextlib.contextmanager
def _postgres() -> Iterator[Database]:
    name = f"chaos_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(_admin_dsn(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot create a database on {_admin_dsn()}: {exc}") from None
    try:
        yield Database("postgres", POSTGRES[1], POSTGRES[2], name)
    finally:
        with psycopg.connect(_admin_dsn(), autocommit=True, connect_timeout=5) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


def _redis_client() -> redis.Redis:
    host, port, db = REDIS
    return redis.Redis(host=host, port=port, db=db, socket_connect_timeout=5)


def keys_of(client: redis.Redis, prefix: str) -> list[bytes]:
    """Every key taskd keeps under ``prefix`` (its hash tag ``{prefix}``)."""
    return list(client.scan_iter(match=f"{{{prefix}}}:*"))


@contextlib.contextmanager
def _redis() -> Iterator[Database]:
    prefix = f"chaos-{secrets.token_hex(6)}"
    host, port, _ = REDIS
    with _redis_client() as client:
        try:
            client.ping()
        except redis.RedisError as exc:
            raise DatabaseError(f"cannot reach Redis at {host}:{port}: {exc}") from None
        try:
            yield Database("redis", host, port, prefix)
        finally:
            if keys := keys_of(client, prefix):
                client.delete(*keys)


def fresh(kind: str) -> contextlib.AbstractContextManager[Database]:
    """A database of ``kind`` for one run, removed when the block ends."""
    if kind == "postgres":
        return _postgres()
    if kind == "redis":
        return _redis()
    raise ValueError(f"no shared store {kind!r}: {' or '.join(KINDS)}")
