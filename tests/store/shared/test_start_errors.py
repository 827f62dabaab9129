"""A node given a ``--store`` URL it can never use exits at once, in one line that names what
is wrong and what to do, without a traceback and without the password: a mistyped Redis URL
is refused with the flags (exit 2); a database or role that does not exist, or a Redis
database number the server does not have, when the node opens it (exit 1). A database that
is only down is different: the node starts and waits for it (tests/store/shared/
test_database_cut.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_ports
from tests.store.shared import pgserver, redisserver

PASSWORD = "s3cret-Pa55"


def start(store: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    grpc, http = free_ports(2)
    return subprocess.run(
        [
            sys.executable, "-m", "taskd", "--store", store, "--grpc", f"127.0.0.1:{grpc}",
            "--http", f"127.0.0.1:{http}", "--data-dir", str(data_dir), "--log-format", "text",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )  # fmt: skip


def pg_url(database: str, user: str = "postgres") -> str:
    host = pgserver.SERVER.split("@", 1)[1].rsplit("/", 1)[0]
    return f"postgres://{user}:{PASSWORD}@{host}/{database}"


def redis_url(tail: str) -> str:
    return f"redis://:{PASSWORD}@{redisserver.URL.split('://', 1)[1].rsplit('/', 1)[0]}/{tail}"


@pytest.mark.parametrize(
    ("store", "code", "says"),
    [
        (redis_url("abc"), 2, "--store: the database after the host must be a number"),
        (redis_url("0?prefix=a}b"), 2, "--store: ?prefix=a}b must not be empty nor hold braces"),
        (redis_url("0?db=x"), 2, "--store: ?db= must be a database number"),
        (redis_url("99999"), 1, "DB index is out of range"),
        (pg_url("taskd_no_such_database"), 1, 'database "taskd_no_such_database" does not exist'),
        (pg_url("postgres", user="taskd_no_such_role"), 1, "does not exist"),
    ],
    ids=["redis-db", "redis-prefix", "redis-db-query", "redis-db-range", "pg-db", "pg-role"],
)
def test_a_store_url_that_cannot_work_ends_the_node_in_one_line(
    store: str, code: int, says: str, tmp_path: Path
) -> None:
    done = start(store, tmp_path / "data")
    assert done.returncode == code, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("taskd: ") and says in last, done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr + done.stdout
    if code == 1:  # opened: what to do next
        assert "Fix the --store URL (or TASKD_STORE)" in last, last


def test_a_user_that_may_not_create_taskds_tables_is_told_what_to_grant(tmp_path: Path) -> None:
    # Given a role that may log in to a fresh database but not create tables in it
    role = "taskd_t_no_create"
    with pgserver.fresh_database() as dsn, pgserver.admin() as admin:
        admin.execute(f"DROP ROLE IF EXISTS {role}")  # type: ignore[arg-type]  # a fixed name
        admin.execute(f"CREATE ROLE {role} LOGIN")  # type: ignore[arg-type]
        try:
            # When a node starts as that role
            done = start(pg_url(dsn.rsplit("/", 1)[1], user=role), tmp_path / "data")
        finally:
            admin.execute(f"DROP OWNED BY {role}")  # type: ignore[arg-type]
            admin.execute(f"DROP ROLE {role}")  # type: ignore[arg-type]
    # Expect it to end in one line naming the refusal and the grant that fixes it
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "permission denied" in last and "GRANT CREATE ON SCHEMA public" in last, last
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr
