"""The PostgreSQL backend of the shared store: ``PostgresBackend(dsn)``.

Theory of operation: two synchronous psycopg connections in autocommit mode, opened lazily
and opened again after a failure: one for every call but ``wait_for_entries``, one that
LISTENs on the channel each append NOTIFYs. The tables are ``pgschema``'s, created or
migrated by ``open()``.

Fencing is one transaction per append: lock the lease row (``SELECT ... FOR UPDATE``), check
its holder, term and ``expires_at > clock_timestamp()`` (the server's clock), check the log
ends at ``first_index - 1``, insert the entries with one multi-row INSERT, upsert the round's
task rows, NOTIFY, commit (``synchronous_commit = on``: durable on return). A new holder's
``acquire`` waits for that row lock, so an append either commits before the term changes
(and the new leader reads it back) or finds the lease gone and writes nothing. Leases are
measured by ``clock_timestamp()``, never ``now()``: a transaction that waited for the row
lock must see the time it got it.

A leader stopped or cut off in the middle of that transaction (SIGSTOP, a frozen VM, a
partition) would hold the row lock until its connection dies, which TCP keepalives never
notice of a stopped process, and so block every takeover. taskd's sessions therefore set
``idle_in_transaction_session_timeout`` (half the lease, between 0.5 and 5 s): the server
ends such a session, the transaction rolls back (nothing of it was acknowledged) and the
lock is free before the lease has run out. A healthy leader never idles inside a
transaction: it sends the statements of a round back to back.

Every ``psycopg.Error`` becomes ``BackendDown`` (``pgerrors``): the reason names host, port
and database, never the DSN's user or password.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, LiteralString

import orjson
import psycopg

from taskd.store.shared import pgerrors, pgschema
from taskd.store.shared.backend import BackendDown, Entry, Fenced, Lease, LeaseView, Row, Snapshot

CHANNEL = "taskd_log"
_CONNECT: Mapping[str, Any] = {
    "autocommit": True,
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "options": "-c synchronous_commit=on -c statement_timeout=15000",
    "application_name": "taskd",
}
_LAST_INDEX = """SELECT coalesce((SELECT max("index") FROM taskd_log),
                               (SELECT "index" FROM taskd_snapshot WHERE id = 1), 0)"""
_LOCK_LEASE = """SELECT holder, term, expires_at > clock_timestamp()
                 FROM taskd_lease WHERE id = 1 FOR UPDATE"""
_LEFT = "extract(epoch FROM expires_at - clock_timestamp())::float8"

Conn = psycopg.Connection[tuple[Any, ...]]


def idle_timeout_ms(lease_ttl: float) -> int:
    """``idle_in_transaction_session_timeout`` for a lease of ``lease_ttl`` seconds."""
    return round(1000 * min(max(lease_ttl / 2, 0.5), 5.0))


class PostgresBackend:
    def __init__(self, dsn: str, *, lease_ttl: float = 10.0) -> None:
        self._where = pgerrors.Where.parse(dsn)
        idle = idle_timeout_ms(lease_ttl)
        self._connect = {
            **_CONNECT,
            "options": f"{_CONNECT['options']} -c idle_in_transaction_session_timeout={idle}",
        }
        self._conn: Conn | None = None
        self._listen: Conn | None = None
        self._waiting = threading.Lock()  # held by the thread in wait_for_entries
        self._closed = False

    @property
    def name(self) -> str:
        return self._where.name

    # -- connections ----------------------------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[Conn]:
        """The main connection (connected again if it was lost); psycopg errors translated."""
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = psycopg.connect(self._where.dsn, **self._connect)
            yield self._conn
        except psycopg.Error as exc:
            raise pgerrors.translate(exc, self._where) from None

    def open(self) -> None:
        self._closed = False
        with self._db() as conn:
            try:
                pgschema.migrate(conn)
            except psycopg.errors.InsufficientPrivilege as exc:
                raise BackendDown(
                    f"{pgerrors.translate(exc, self._where)}: taskd's user may not create its "
                    f"tables there: grant it CREATE on the schema (GRANT CREATE ON SCHEMA "
                    f"public TO <the user>) or make it the database's owner, or start one node "
                    f"once as a user that may",
                    resumes_by_itself=False,
                ) from None

    def close(self) -> None:
        """Close both connections; the listening one is closed by the thread waiting on it, if
        any (a waiter the driver abandoned returns by its timeout): libpq must not free a
        connection another thread is using."""
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._waiting.acquire(blocking=False):
            try:
                self._close_listening()
            finally:
                self._waiting.release()

    def _close_listening(self) -> None:
        if self._listen is not None:
            self._listen.close()
            self._listen = None

    # -- the lease ------------------------------------------------------------------------

    def acquire(self, node: str, ttl: float, min_term: int = 0) -> Lease | None:
        with self._db() as conn:
            row = conn.execute(
                f"""UPDATE taskd_lease SET
                      term = CASE WHEN holder = %(node)s AND expires_at > clock_timestamp()
                                  THEN term ELSE greatest(term + 1, %(min)s) END,
                      holder = %(node)s,
                      expires_at = clock_timestamp() + make_interval(secs => %(ttl)s)
                    WHERE id = 1 AND (holder IS NULL OR holder = %(node)s
                                      OR expires_at <= clock_timestamp())
                    RETURNING term, {_LEFT}""",
                {"node": node, "ttl": ttl, "min": min_term},
            ).fetchone()
        return None if row is None else Lease(node, int(row[0]), float(row[1]))

    def renew(self, lease: Lease, ttl: float) -> Lease:
        with self._db() as conn:
            row = conn.execute(
                f"""UPDATE taskd_lease
                    SET expires_at = clock_timestamp() + make_interval(secs => %s)
                    WHERE id = 1 AND holder = %s AND term = %s
                      AND expires_at > clock_timestamp()
                    RETURNING {_LEFT}""",
                [ttl, lease.holder, lease.term],
            ).fetchone()
        if row is None:
            raise Fenced(f"the lease of term {lease.term} is no longer {lease.holder}'s")
        return Lease(lease.holder, lease.term, float(row[0]))

    def release(self, lease: Lease) -> None:
        with self._db() as conn:
            conn.execute(
                """UPDATE taskd_lease SET holder = NULL, expires_at = clock_timestamp()
                   WHERE id = 1 AND holder = %s AND term = %s""",
                [lease.holder, lease.term],
            )

    def lease(self) -> LeaseView:
        with self._db() as conn:
            row = conn.execute(f"SELECT holder, term, {_LEFT} FROM taskd_lease").fetchone()
        if row is None:
            raise BackendDown(f"{self.name}: the lease row is missing", resumes_by_itself=False)
        holder, term, left = row[0], int(row[1]), float(row[2])
        if holder is None or left <= 0:
            return LeaseView(None, term, 0.0)
        return LeaseView(str(holder), term, left)

    # -- the log --------------------------------------------------------------------------

    def append(
        self, lease: Lease, first_index: int, items: Sequence[bytes], rows: Sequence[Row] = ()
    ) -> None:
        last = first_index + len(items) - 1
        with self._db() as conn, conn.transaction():
            found = self._check_lease(conn, lease)
            if found != first_index - 1:
                raise Fenced(f"the log ends at {found}, not {first_index - 1}")
            conn.execute(
                """WITH written AS (
                     INSERT INTO taskd_log ("index", term, data)
                     SELECT i, %s, d FROM unnest(%s::bigint[], %s::bytea[]) AS e(i, d)
                   ) SELECT pg_notify(%s, %s)""",
                [lease.term, list(range(first_index, last + 1)), list(items), CHANNEL, str(last)],
            )
            if rows:
                self._upsert_tasks(conn, rows, last)

    def last_index(self) -> int:
        with self._db() as conn:
            return _one_int(conn.execute(_LAST_INDEX))

    def read(self, after: int, limit: int) -> list[Entry]:
        with self._db() as conn:
            found = conn.execute(
                """SELECT "index", term, data FROM taskd_log WHERE "index" > %s
                   ORDER BY "index" LIMIT %s""",
                [after, limit],
            ).fetchall()
            entries = [Entry(int(i), int(t), bytes(d)) for i, t, d in found]
            if not entries or entries[0].index != after + 1:
                snapshot = _one_int(
                    conn.execute(
                        'SELECT coalesce((SELECT "index" FROM taskd_snapshot WHERE id = 1), 0)'
                    )
                )
                if snapshot > after:
                    raise ValueError(f"entries up to {snapshot} were dropped by a snapshot")
        return entries

    def wait_for_entries(self, after: int, timeout: float) -> None:
        with self._waiting:
            try:
                if self._closed:
                    return
                self._wait(after, timeout)
            except psycopg.Error as exc:
                raise pgerrors.translate(exc, self._where) from None
            finally:
                if self._closed:
                    self._close_listening()

    def _wait(self, after: int, timeout: float) -> None:
        if self._listen is None or self._listen.closed or self._listen.broken:
            self._listen = psycopg.connect(self._where.dsn, **self._connect)
            self._listen.execute(f"LISTEN {CHANNEL}")
        # Listening already: an append that commits after this check will notify.
        if _one_int(self._listen.execute(_LAST_INDEX)) > after:
            return
        for _ in self._listen.notifies(timeout=timeout, stop_after=1):
            return

    # -- snapshots ------------------------------------------------------------------------

    def save_snapshot(
        self, lease: Lease, snapshot: Snapshot, rows: Sequence[Row] | None = None
    ) -> None:
        with self._db() as conn, conn.transaction():
            self._check_lease(conn, lease)
            conn.execute(
                """INSERT INTO taskd_snapshot VALUES (1, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET
                     "index" = excluded."index", term = excluded.term, data = excluded.data""",
                [snapshot.index, snapshot.term, snapshot.data],
            )
            conn.execute('DELETE FROM taskd_log WHERE "index" <= %s', [snapshot.index])
            if rows is not None:
                conn.execute("DELETE FROM taskd_tasks")
                self._upsert_tasks(conn, rows, snapshot.index)

    def load_snapshot(self) -> Snapshot | None:
        with self._db() as conn:
            row = conn.execute(
                'SELECT "index", term, data FROM taskd_snapshot WHERE id = 1'
            ).fetchone()
        return None if row is None else Snapshot(int(row[0]), int(row[1]), bytes(row[2]))

    def announce(self, node: str, applied: int, within: float) -> list[tuple[str, int]]:
        with self._db() as conn:
            found = conn.execute(
                """WITH seen AS (
                     INSERT INTO taskd_nodes VALUES (%(node)s, clock_timestamp(), %(applied)s)
                     ON CONFLICT (id) DO UPDATE
                       SET seen_at = excluded.seen_at, applied = excluded.applied
                     RETURNING id, applied
                   ), gone AS (
                     DELETE FROM taskd_nodes
                     WHERE seen_at < clock_timestamp() - interval '1 day' AND id <> %(node)s
                   )
                   SELECT id, applied FROM taskd_nodes
                   WHERE seen_at > clock_timestamp() - make_interval(secs => %(within)s)
                     AND id <> %(node)s
                   UNION ALL SELECT id, applied FROM seen""",
                {"node": node, "applied": applied, "within": within},
            ).fetchall()
        return sorted((str(id_), int(index)) for id_, index in found)

    def peer_secret(self) -> bytes:
        with self._db() as conn:
            row = conn.execute("SELECT secret FROM taskd_peer_secret WHERE id = 1").fetchone()
        if row is None:  # only if someone deleted it: the schema's migration creates it
            raise BackendDown(
                f"{self.name}: the row of taskd_peer_secret is missing (deleted by hand?): "
                "restore it from a backup, or insert 32 random bytes there and restart every node",
                resumes_by_itself=False,
            )
        return bytes(row[0])

    # -- helpers --------------------------------------------------------------------------

    def _check_lease(self, conn: Conn, lease: Lease) -> int:
        """Lock the lease row, check it is ``lease`` and unexpired; returns the last index,
        read by a statement of its own: it must see what committed before the lock was ours
        (a subquery of the locking statement would read the snapshot from before it waited)."""
        row = conn.execute(_LOCK_LEASE).fetchone()
        if row is None or (row[0], row[1], row[2]) != (lease.holder, lease.term, True):
            raise Fenced(f"the lease of term {lease.term} is no longer {lease.holder}'s")
        return _one_int(conn.execute(_LAST_INDEX))

    def _upsert_tasks(self, conn: Conn, rows: Sequence[Row], index: int) -> None:
        """Write each task's last row of the round; a row ``{"id": ..., "deleted": True}``
        (a task purged) deletes it."""
        latest: dict[object, Row] = {}
        for row in rows:  # one statement cannot change a row twice: the last change wins
            latest[row["id"]] = row
        gone = [str(i) for i, row in latest.items() if row.get("deleted")]
        if gone:
            conn.execute("DELETE FROM taskd_tasks WHERE id = ANY(%s)", [gone])
            latest = {i: row for i, row in latest.items() if not row.get("deleted")}
            if not latest:
                return
        params = _task_arrays(latest.values())
        conn.execute(_UPSERT_TASKS, [index, *params])


# One statement per round, whatever its size: each column travels as one array (unnest), so
# the server plans and runs one INSERT, not one per row.
_ARRAY_TYPES = {"priority": "int[]", "attempt": "int[]", "labels": "text[]"}
_ARRAY_TYPES.update(dict.fromkeys(pgschema.TIMESTAMPS, "float8[]"))
_SELECTED = ", ".join(
    f"to_timestamp({c})" if c in pgschema.TIMESTAMPS else "labels::jsonb" if c == "labels" else c
    for c in pgschema.TASK_COLUMNS
)
_UPSERT_TASKS: LiteralString = (
    f"INSERT INTO taskd_tasks (id, {', '.join(pgschema.TASK_COLUMNS)}, updated_index) "
    f"SELECT id, {_SELECTED}, %s FROM unnest("
    + ", ".join(f"%s::{_ARRAY_TYPES.get(c, 'text[]')}" for c in ("id", *pgschema.TASK_COLUMNS))
    + f") AS r(id, {', '.join(pgschema.TASK_COLUMNS)}) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*pgschema.TASK_COLUMNS, "updated_index"))
)


def _task_arrays(rows: Iterable[Row]) -> list[list[object]]:
    """The rows as one list per column (id first, then ``TASK_COLUMNS``), each value of the
    one Python type its array is dumped as."""
    columns: list[list[object]] = [[] for _ in range(len(pgschema.TASK_COLUMNS) + 1)]
    ids, *rest = columns
    for row in rows:
        ids.append(str(row["id"]))
        for column, values in zip(pgschema.TASK_COLUMNS, rest, strict=True):
            value = row.get(column)
            if value is not None:
                if column in pgschema.TIMESTAMPS:
                    value = float(value)  # type: ignore[arg-type]
                elif column == "labels":
                    value = orjson.dumps(value).decode()
            values.append(value)
    return columns


def _one_int(cursor: psycopg.Cursor[tuple[Any, ...]]) -> int:
    row = cursor.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0
