"""Database servers of a test's own (PostgreSQL 15, Redis), on a free loopback port in a temp
directory, that the test may crash and start again: the machine's shared servers are never
restarted.

``PrivateRedis``: ``redis-server`` with an append-only file fsynced on every write
(``appendfsync always``), no RDB snapshots, ``noeviction``; ``crash()`` SIGKILLs it and
``start()`` runs it again on the same port and directory, replaying the AOF.

``PrivatePostgres``: ``initdb`` (trust auth, fsync on as by default) into a directory owned by
the ``postgres`` user, since tests run as root in CI and PostgreSQL refuses to run as root
(``runuser -u postgres --`` then); ``crash()`` is ``pg_ctl stop -m immediate`` (no shutdown
checkpoint: the next start replays the WAL), ``start()`` starts it again.

Both are context managers: leaving stops the server and removes its directory. A missing
binary fails the test naming the package to install; a server that does not come up fails
with the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
import pytest
from psycopg import sql

from tests.conftest import free_ports

PG_BIN = Path(os.environ.get("TASKD_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
UP_DEADLINE = 30.0  # seconds for a server to answer after start()


def _require(binary: Path | str, install: str) -> str:
    found = shutil.which(str(binary))
    if found is None:
        pytest.fail(f"{binary} is missing: install {install}", pytrace=False)
    return found


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path} was never written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class _PrivateServer:
    """What both servers share: ``start``/``crash`` (theirs), a directory of their own, and
    leaving the ``with`` block stops the server and removes that directory."""

    dir: Path

    def start(self) -> None:
        raise NotImplementedError

    def crash(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(BaseException):
            self.crash()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis(_PrivateServer):
    """``persistent=False``: no AOF, as the machine's own Redis runs: a restart loses all."""

    def __init__(
        self, *, persistent: bool = True, appendfsync: str = "always", under: Path | None = None
    ) -> None:
        self.persistent = persistent
        self.appendfsync = appendfsync
        self.binary = _require("redis-server", "redis-server (apt-get install redis-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="taskd-redis-", dir=under))
        [self.port] = free_ports(1)
        self.log = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, prefix: str = "taskd") -> str:
        return f"redis://127.0.0.1:{self.port}/0?prefix={prefix}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None, "redis is running"
        self.starts += 1
        # The AOF names the directory relative to --dir: one layout for every start.
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.log),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + UP_DEADLINE
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited:\n{_tail(self.log)}", pytrace=False)
            if self._pong():
                return
            time.sleep(0.02)
        pytest.fail(f"redis-server not answering within {UP_DEADLINE} s:\n{_tail(self.log)}")

    def _pong(self) -> bool:
        # PING answers "-LOADING" while the AOF replays: only +PONG means it takes writes.
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def crash(self) -> None:
        """SIGKILL: what the AOF fsynced survives, nothing else gets a chance to."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None


class PrivatePostgres(_PrivateServer):
    def __init__(self) -> None:
        install = "PostgreSQL 15's server (apt-get install postgresql-15)"
        self.initdb = _require(PG_BIN / "initdb", install)
        self.pg_ctl = _require(PG_BIN / "pg_ctl", install)
        # PostgreSQL refuses to run as root: as root, run it as the postgres user
        self._as: list[str] = []
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("as root, these tests need a 'postgres' user to run PostgreSQL")
            self._as = [_require("runuser", "util-linux"), "-u", "postgres", "--"]
        # not under pytest's tmp_path: its directories are private to root
        self.dir = Path(tempfile.mkdtemp(prefix="taskd-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        [self.port] = free_ports(1)
        self.starts = 0
        self.running = False
        if self._owner is not None:
            os.chown(self.dir, self._owner.pw_uid, self._owner.pw_gid)
        self._run(
            self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--no-sync",  # initdb's own final flush only: the server runs with fsync on
        )  # fmt: skip

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self._as, *args], cwd=self.dir, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            pytest.fail(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                f"--- server log ---\n{_tail(self.log)}",
                pytrace=False,
            )

    def start(self) -> None:
        assert not self.running, "postgres is running"
        self.starts += 1
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir}"
        )
        self._run(
            self.pg_ctl, "start", "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", str(int(UP_DEADLINE)),
        )  # fmt: skip
        self.running = True

    def crash(self) -> None:
        """Immediate shutdown: every backend quits at once, no checkpoint; the next start
        recovers from the WAL, as after a power cut that spared the disk."""
        if self.running:
            self._run(self.pg_ctl, "stop", "-D", str(self.data), "-m", "immediate", "-w")
            self.running = False

    @property
    def owner(self) -> pwd.struct_passwd | None:
        """The user the server runs as when the tests run as root (else None: the tests')."""
        return self._owner

    def create_database(self, name: str, *, location: Path | None = None) -> str:
        """A new database; with ``location``, in a tablespace there (its tables' files)."""
        tablespace: list[str] = []
        if location is not None:
            with psycopg.connect(self.dsn(), autocommit=True) as conn:
                conn.execute(
                    sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                        sql.Identifier(f"{name}_space"), sql.Literal(str(location))
                    )
                )
            tablespace = ["--tablespace", f"{name}_space"]
        self._run(
            str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            *tablespace, name,
        )  # fmt: skip
        return self.dsn(name)
