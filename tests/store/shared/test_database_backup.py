"""A PostgreSQL database restored from an older backup while its nodes run, as an operator
would restore it (``pg_dump -Fc`` earlier; now ``pg_restore`` into a new database, the old
one dropped and the new one renamed into its place): the restored log ends before what the
nodes applied. The leader notices, rebuilds the log from its own memory in a new term and
rewrites ``taskd_tasks``; nothing acknowledged before or after the backup is lost, and
writes resume on both nodes without a restart. (tests/store/shared/test_driver.py covers the
same on the fake backend, with a follower doing the rebuild.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import NodeFactory
from tests.node.rest import get
from tests.store.shared import pgserver
from tests.store.shared.nodes import ready, role, submit, two_nodes, wait_for
from tests.store.shared.privateserver import PG_BIN

pytestmark = pytest.mark.slow

QUEUE = "restored"


def rows(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {str(row[0]) for row in conn.execute("SELECT id FROM taskd_tasks").fetchall()}


def term_of_lease(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute("SELECT term FROM taskd_lease").fetchone()
    assert found is not None
    return int(str(found[0]))


def restore(dump: Path, dsn: str) -> None:
    """Restore ``dump`` in place of the database ``dsn`` names, the way that never shows the
    nodes a half-restored database: into a new one, then swapped in by a rename."""
    name = dsn.rsplit("/", 1)[1]
    fresh = f"{name}_restore"
    with pgserver.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(fresh)))
    try:
        subprocess.run(
            [str(PG_BIN / "pg_restore"), "--no-owner", "-d", f"{pgserver.SERVER}/{fresh}", dump],
            check=True,
            capture_output=True,
            text=True,
        )
        with pgserver.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(fresh), sql.Identifier(name)
                )
            )
    finally:
        with pgserver.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(fresh))
            )


def test_a_database_restored_from_an_older_backup_is_rebuilt_from_the_nodes_memory(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    with pgserver.fresh_database() as dsn:
        # Given two nodes, 20 tasks acknowledged, a backup, then 20 more
        leader, follower = two_nodes(node_factory, dsn)
        ids = [submit(node, QUEUE) for node in (leader, follower) for _ in range(10)]
        dump = tmp_path / "taskd.dump"
        subprocess.run(
            [str(PG_BIN / "pg_dump"), "-Fc", "-f", dump, dsn], check=True, capture_output=True
        )
        ids += [submit(node, QUEUE) for node in (leader, follower) for _ in range(10)]
        term_before = term_of_lease(dsn)
        # When the database is restored from that backup
        restore(dump, dsn)
        # Expect both nodes ready again by themselves, one leading in a newer term
        for node in (leader, follower):
            wait_for(lambda node=node: ready(node), 30, f"{node} ready")  # type: ignore[misc]
        wait_for(lambda: term_of_lease(dsn) > term_before, 30, "a rebuild in a new term")
        # with every acknowledged task, on both nodes and in the SQL table
        for node in (leader, follower):
            for task_id in ids:
                code, task = get(f"{node.http_url}/api/v1/tasks/{task_id}")
                assert code == 200 and task["state"] == "queued", (node, task_id, task)
        wait_for(lambda: rows(dsn) >= set(ids), 10, "taskd_tasks rewritten")
        # and writes taken on both again
        more = [submit(node, QUEUE) for node in (leader, follower)]
        assert {role(leader), role(follower)} == {"leader", "follower"}
        wait_for(lambda: rows(dsn) >= set(ids + more), 10, "the new tasks' rows")
