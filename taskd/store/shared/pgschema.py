"""taskd's tables in PostgreSQL, and how ``open()`` creates and migrates them.

Theory of operation: ``MIGRATIONS`` is the schema's whole history, one list of statements per
version; ``migrate`` runs, in one transaction holding a transaction-level advisory lock (so
two nodes starting at once take turns, and the second finds the work done), every version
after the one recorded in ``taskd_schema``. DDL is transactional in PostgreSQL: a migration
that fails leaves nothing half done. A database whose schema is newer than this taskd knows
is refused (``ValueError``): an older node must not write into a layout it does not know.

The tables (all prefixed ``taskd_``):

- ``taskd_schema(version)``: one row, the schema's version.
- ``taskd_lease``: one row (``id = 1``): the holder's node id, the term (fencing token) and
  ``expires_at``, judged by the server's ``clock_timestamp()``.
- ``taskd_log(index, term, data)``: the command log, one row per entry, never updated.
- ``taskd_snapshot``: one row, the latest snapshot (the entries it covers are deleted).
- ``taskd_peer_secret``: one row, random bytes the nodes present to each other when a
  follower forwards writes to the leader (only a node that can read the database knows it).
- ``taskd_nodes(id, seen_at, applied)``: every node that opened the database, when it last
  said it was up (every third of a lease) and how far it had applied the log then: the
  members ``GET /api/v1/cluster`` lists.
- ``taskd_tasks``: one row per task, for users' own SQL (reports, joins): written from the
  task rows of each round in the same transaction as its commands, so it is never ahead of
  or behind the log it derives from. taskd itself never reads it. Timestamps are UTC;
  ``labels`` is a JSON object; ``updated_index`` the log index of the round that last
  changed the row.
"""

from __future__ import annotations

from typing import LiteralString

from psycopg import Connection

LOCK_KEY = 0x7461736B64  # "taskd": the advisory lock migrations hold

MIGRATIONS: list[list[LiteralString]] = [
    [  # version 1
        """CREATE TABLE taskd_lease (
            id smallint PRIMARY KEY CHECK (id = 1),
            holder text,
            term bigint NOT NULL,
            expires_at timestamptz NOT NULL
        )""",
        "INSERT INTO taskd_lease VALUES (1, NULL, 0, 'epoch')",
        """CREATE TABLE taskd_log (
            "index" bigint PRIMARY KEY,
            term bigint NOT NULL,
            data bytea NOT NULL
        )""",
        """CREATE TABLE taskd_snapshot (
            id smallint PRIMARY KEY CHECK (id = 1),
            "index" bigint NOT NULL,
            term bigint NOT NULL,
            data bytea NOT NULL
        )""",
        """CREATE TABLE taskd_tasks (
            id text PRIMARY KEY,
            queue text,
            name text,
            state text,
            priority integer,
            attempt integer,
            created_at timestamptz,
            started_at timestamptz,
            finished_at timestamptz,
            error text,
            labels jsonb,
            updated_index bigint NOT NULL
        )""",
        "CREATE INDEX taskd_tasks_queue_state ON taskd_tasks (queue, state)",
        "COMMENT ON TABLE taskd_tasks IS 'taskd tasks, one row each, for reporting: kept by "
        "taskd in the same transaction as its command log; do not write to it'",
    ],
    [  # version 2: the secret followers present when they forward writes to the leader
        """CREATE TABLE taskd_peer_secret (
            id smallint PRIMARY KEY CHECK (id = 1),
            secret bytea NOT NULL
        )""",
        # 32 bytes from the server's strong random source (gen_random_uuid: PostgreSQL 13+)
        "INSERT INTO taskd_peer_secret VALUES "
        "(1, uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))",
    ],
    [  # version 3: the nodes that are up, for the cluster view
        """CREATE TABLE taskd_nodes (
            id text PRIMARY KEY,
            seen_at timestamptz NOT NULL,
            applied bigint NOT NULL
        )""",
    ],
]
VERSION = len(MIGRATIONS)

# The task row's columns (besides id and updated_index), as the projection's rows name them.
TASK_COLUMNS = (
    "queue",
    "name",
    "state",
    "priority",
    "attempt",
    "created_at",
    "started_at",
    "finished_at",
    "error",
    "labels",
)
TIMESTAMPS = frozenset({"created_at", "started_at", "finished_at"})  # epoch seconds in rows


def migrate(conn: Connection[tuple[object, ...]]) -> int:
    """Bring the schema to ``VERSION``; returns the version found before (0: none)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        conn.execute("CREATE TABLE IF NOT EXISTS taskd_schema (version integer NOT NULL)")
        row = conn.execute("SELECT version FROM taskd_schema").fetchone()
        found = int(str(row[0])) if row is not None else 0
        if found > VERSION:
            raise ValueError(
                f"its taskd schema is version {found}, newer than this taskd's ({VERSION}): "
                f"upgrade taskd on this node"
            )
        for statements in MIGRATIONS[found:]:
            for statement in statements:
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO taskd_schema VALUES (%s)", [VERSION])
        elif found < VERSION:
            conn.execute("UPDATE taskd_schema SET version = %s", [VERSION])
    return found
