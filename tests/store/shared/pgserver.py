"""The PostgreSQL server tests run against (127.0.0.1:5432, trust auth; ``TASKD_TEST_PG``
overrides it), and a fresh database per test, dropped afterwards.

Never skipped: if the server cannot be reached, ``fresh_database`` fails the test, saying so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

SERVER = os.environ.get("TASKD_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def admin(database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(f"{SERVER}/{database}", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise AssertionError(
            f"these tests need the PostgreSQL server at {SERVER} (TASKD_TEST_PG): {exc}"
        ) from None


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create ``taskd_t_<random>``, yield its DSN, drop it (with whatever still uses it)."""
    name = f"taskd_t_{uuid.uuid4().hex[:12]}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]  # a generated name
    try:
        yield f"{SERVER}/{name}"
    finally:
        with admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def refuse_log_writes(dsn: str) -> None:
    """Make the database refuse every append as a server whose disk fails would (SQLSTATE
    58030, io_error): the lease table still works, so the leader keeps its lease."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """CREATE FUNCTION taskd_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 RAISE EXCEPTION 'could not write block 7 of relation base/1/2: Input/output '
                                 'error (simulated)' USING ERRCODE = 'io_error';
               END $$"""
        )
        conn.execute(
            """CREATE TRIGGER taskd_test_refuse BEFORE INSERT ON taskd_log
               FOR EACH STATEMENT EXECUTE FUNCTION taskd_test_refuse()"""
        )


def drop_connections(dsn: str) -> int:
    """Terminate every session on the database of ``dsn`` (as a restarting server would)."""
    database = dsn.rsplit("/", 1)[1]
    with admin() as conn:
        row = conn.execute(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE datname = %s AND pid <> pg_backend_pid()""",
            [database],
        ).fetchone()
    assert row is not None
    return int(str(row[0]))
