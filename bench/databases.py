"""The store benchmark's databases: a fresh PostgreSQL database, and a private redis-server.

Theory of operation: a benchmark of a shared store must start every measurement from an empty
database and must never change a server other people use.

- ``fresh_database``: ``CREATE DATABASE taskd_bench_<random>`` on the machine's PostgreSQL
  (``postgresql://postgres@127.0.0.1:5432`` unless told otherwise), yielding its URL for
  ``--store``; afterwards ``DROP DATABASE ... WITH (FORCE)`` (any session a node left behind
  is ended). The server's configuration is only read (``fsync``, ``synchronous_commit``,
  its version), to be reported beside the figures.
- ``PrivateRedis``: ``redis-server`` on a port of the chaos range, in a temporary directory,
  with an append-only file (``--appendonly yes --appendfsync always|everysec``), no RDB
  snapshots and ``noeviction`` (which taskd requires). Leaving SIGKILLs it (and it dies with
  the harness, like the nodes) and removes its directory. The machine's Redis at 6379 is never
  touched. The running server's ``appendfsync`` is read back, so the report says what was
  measured, not what was asked for.

Every wait has a deadline and raises ``RuntimeError`` with the tail of the server's log.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaos.cluster import _die_with_parent  # the nodes' guard: a killed harness leaves nothing

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
UP_DEADLINE = 30.0  # seconds for a private server to answer


def with_database(dsn: str, name: str) -> str:
    """``dsn`` naming database ``name`` instead of its own."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


def postgres_settings(admin_dsn: str) -> dict[str, str]:
    """The server's version and the settings that decide what a commit survives."""
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
        out = {}
        for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method"):
            row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            out[name] = str(row[0]) if row else "?"
        return out


@contextlib.contextmanager
def fresh_database(admin_dsn: str = ADMIN_DSN) -> Iterator[str]:
    """A new, empty database on ``admin_dsn``'s server, dropped afterwards; its URL."""
    name = f"taskd_bench_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:  # the DSN is not shown: it may hold a password
        raise RuntimeError(f"cannot create a database on --admin-dsn's server: {exc}") from None
    try:
        yield with_database(admin_dsn, name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return f"({path} was never written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class PrivateRedis:
    def __init__(self, port: int, appendfsync: str) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: apt-get install redis-server")
        self.binary = binary
        self.port = port
        self.appendfsync = appendfsync
        self.dir = Path(tempfile.mkdtemp(prefix="taskd-bench-redis-"))
        self.log = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, prefix: str = "bench") -> str:
        return f"redis://127.0.0.1:{self.port}/0?prefix={prefix}"

    def client(self) -> redis.Redis:
        # no retries: the start-up poll must see a refused connection at once
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )

    def settings(self) -> dict[str, str]:
        """What the running server says it does (not what it was asked)."""
        with self.client() as client:
            got = client.config_get("appendonly") | client.config_get("appendfsync")
            version = client.info("server")["redis_version"]
        return {"redis_version": str(version), **{k: str(v) for k, v in got.items()}}

    def __enter__(self) -> Self:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.log),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + UP_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = _tail(self.log)
                self.close()
                raise RuntimeError(f"redis-server exited:\n{tail}")
            with contextlib.suppress(redis.RedisError), self.client() as client:
                if client.ping():
                    return self
            time.sleep(0.02)
        tail = _tail(self.log)
        self.close()
        raise RuntimeError(f"redis-server not answering in {UP_DEADLINE:g} s:\n{tail}")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
