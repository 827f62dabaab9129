"""The PostgreSQL backend against the real server (tests/store/shared/pgserver.py), each test
in a database of its own: the lease race, fencing, concurrent migration, the task table,
LISTEN/NOTIFY, snapshots, and errors that never show credentials. Then SharedStore on it
through a lost connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
import trio

from taskd.errors import StorageFault
from taskd.store.shared import pgschema
from taskd.store.shared.backend import BackendDown, Fenced, Lease, Snapshot
from taskd.store.shared.driver import SharedStore
from taskd.store.shared.postgres import PostgresBackend, idle_timeout_ms
from tests.raft.fakes import AppendLog
from tests.store.shared import pgserver


@pytest.fixture
def dsn() -> Iterator[str]:
    with pgserver.fresh_database() as made:
        yield made


@pytest.fixture
def backends(dsn: str) -> Iterator[tuple[PostgresBackend, PostgresBackend]]:
    a, b = PostgresBackend(dsn), PostgresBackend(dsn)
    a.open()
    b.open()
    yield a, b
    a.close()
    b.close()


def sql(dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]  # tests' own SQL


def test_two_nodes_racing_for_the_lease_get_one_holder(
    backends: tuple[PostgresBackend, PostgresBackend],
) -> None:
    # Given two nodes on one database, released at the same instant
    won: dict[str, Lease | None] = {}
    start = threading.Barrier(2)

    def race(backend: PostgresBackend, node: str) -> None:
        start.wait()
        won[node] = backend.acquire(node, 30.0)

    threads = [
        threading.Thread(target=race, args=(b, n)) for b, n in zip(backends, "ab", strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Expect exactly one lease, in term 1, that the database reports
    leases = [lease for lease in won.values() if lease is not None]
    assert len(leases) == 1 and leases[0].term == 1 and 29 < leases[0].seconds_left <= 30
    view = backends[0].lease()
    assert (view.holder, view.term) == (leases[0].holder, 1)
    # And the holder asking again extends it in the same term; the other still gets nothing
    holder = leases[0].holder
    mine, other = backends if holder == "a" else backends[::-1]
    again = mine.acquire(holder, 30.0)
    assert again is not None and again.term == 1
    assert other.acquire("b" if holder == "a" else "a", 30.0) is None


def wait_until_free(backend: PostgresBackend) -> None:
    deadline = time.monotonic() + 10
    while backend.lease().holder is not None:
        assert time.monotonic() < deadline, "the lease never ran out"
        time.sleep(0.02)


@pytest.mark.slow  # waits twice for a lease to run out on the server's clock
def test_a_stale_lease_and_a_wrong_first_index_write_nothing(
    dsn: str, backends: tuple[PostgresBackend, PostgresBackend]
) -> None:
    a, b = backends
    # Given a lease of a short ttl that ran out on the database's clock, taken by nobody
    old = a.acquire("a", 0.2)
    assert old is not None
    a.append(old, 1, [b"one"])
    wait_until_free(a)
    # Expect its holder's append, renewal and snapshot to be fenced: expired is expired
    with pytest.raises(Fenced):
        a.append(old, 2, [b"late"])
    with pytest.raises(Fenced):
        a.renew(old, 30.0)
    with pytest.raises(Fenced):
        a.save_snapshot(old, Snapshot(1, old.term, b"state"))
    # Given the same node taking the lease again: a new term, and the old one stays fenced
    again = a.acquire("a", 0.2)
    assert again is not None and again.term == old.term + 1
    with pytest.raises(Fenced):
        a.append(old, 2, [b"old term"])
    wait_until_free(a)
    # Given another node holding it now
    new = b.acquire("b", 30.0)
    assert new is not None and new.term == again.term + 1
    with pytest.raises(Fenced):
        a.append(again, 2, [b"stale"])
    # And the holder appending at the wrong index: Fenced too
    with pytest.raises(Fenced):
        b.append(new, 3, [b"gap"])
    with pytest.raises(Fenced):
        b.append(new, 1, [b"overwrite"])
    # Expect nothing of it written, and the right append to go through
    b.append(new, 2, [b"two", b"three"])
    assert [(e.index, e.term, e.data) for e in b.read(0, 10)] == [
        (1, 1, b"one"),
        (2, 3, b"two"),
        (3, 3, b"three"),
    ]
    assert b.last_index() == 3


def test_concurrent_migrations_are_safe_and_idempotent(dsn: str) -> None:
    # Given two nodes opening a fresh database at the same instant
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def open_() -> None:
        try:
            start.wait()
            PostgresBackend(dsn).open()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Expect both to succeed and the schema to be there once, at the current version
    assert errors == []
    assert sql(dsn, "SELECT version FROM taskd_schema") == [(pgschema.VERSION,)]
    assert sql(dsn, "SELECT id, holder, term FROM taskd_lease") == [(1, None, 0)]
    # And a third open to change nothing
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert pgschema.migrate(conn) == pgschema.VERSION
    assert sql(dsn, "SELECT count(*) FROM taskd_schema") == [(1,)]


def test_a_version_1_schema_is_migrated_in_place_and_given_a_peer_secret(dsn: str) -> None:
    # A database a taskd of schema version 1 made, with a task in its log
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("CREATE TABLE taskd_schema (version integer NOT NULL)")
            for statement in pgschema.MIGRATIONS[0]:
                conn.execute(statement)
            conn.execute("INSERT INTO taskd_schema VALUES (1)")
            conn.execute("INSERT INTO taskd_log VALUES (1, 1, 'old')")
    # Expect this taskd's open to migrate it, keep the log, and make one secret for every node
    first, second = PostgresBackend(dsn), PostgresBackend(dsn)
    first.open()
    second.open()
    assert sql(dsn, "SELECT version FROM taskd_schema") == [(pgschema.VERSION,)]
    assert [e.data for e in first.read(0, 10)] == [b"old"]
    secret = first.peer_secret()
    assert len(secret) == 32 and second.peer_secret() == secret
    first.close()
    second.close()


def test_a_leader_stalled_inside_its_append_does_not_block_the_takeover(dsn: str) -> None:
    # Given a leader (lease 1 s) that stalls in the middle of an append's transaction, holding
    # the lease row's lock (as a SIGSTOPped process would)
    a, b = PostgresBackend(dsn, lease_ttl=1.0), PostgresBackend(dsn, lease_ttl=1.0)
    a.open()
    lease = a.acquire("a", 1.0)
    assert lease is not None
    with a._db() as conn:  # the backend's own session, with its own settings
        conn.execute("BEGIN")
        conn.execute("SELECT * FROM taskd_lease WHERE id = 1 FOR UPDATE")
    # When another node tries to take the lease once it lapsed
    time.sleep(1.1)
    started = time.monotonic()
    taken = b.acquire("b", 1.0)
    # Expect it taken within about the idle timeout (0.5 s), not blocked for good
    assert taken is not None and taken.term == lease.term + 1
    assert time.monotonic() - started < 3
    # And the stalled one, resumed, to find its session gone: a passing fault, then fenced
    with pytest.raises(BackendDown) as down:
        a.append(lease, 1, [b"late"])
    assert down.value.resumes_by_itself, down.value
    with pytest.raises(Fenced):
        a.append(lease, 1, [b"late"])
    assert b.read(0, 10) == []
    a.close()
    b.close()


def test_the_idle_timeout_follows_the_lease_within_bounds() -> None:
    leases = (0.5, 1.0, 4.0, 10.0, 300.0)
    assert [idle_timeout_ms(t) for t in leases] == [500, 500, 2000, 5000, 5000]


def test_a_schema_newer_than_this_taskd_is_refused(dsn: str) -> None:
    PostgresBackend(dsn).open()
    sql(dsn, "UPDATE taskd_schema SET version = 99 RETURNING version")
    with pytest.raises(ValueError, match="version 99"):
        PostgresBackend(dsn).open()


def test_task_rows_are_written_with_their_commands_and_queryable_with_sql(
    dsn: str, backends: tuple[PostgresBackend, PostgresBackend]
) -> None:
    a, _ = backends
    lease = a.acquire("a", 30.0)
    assert lease is not None
    # When a round writes two tasks, one of them changed twice within it
    a.append(
        lease,
        1,
        [b"submit", b"start"],
        [
            {"id": "t1", "queue": "q", "state": "queued", "priority": 5, "created_at": 0.0},
            {"id": "t2", "queue": "q", "state": "queued", "labels": {"team": "ml"}},
            {"id": "t1", "queue": "q", "state": "running", "attempt": 1, "started_at": 60.0},
        ],
    )
    # Expect the last change of each in the table, with the round's index
    rows = sql(
        dsn,
        "SELECT id, state, attempt, extract(epoch FROM started_at)::int, labels->>'team', "
        "updated_index FROM taskd_tasks ORDER BY id",
    )
    assert rows == [("t1", "running", 1, 60, None, 2), ("t2", "queued", None, None, "ml", 2)]
    # When the next round purges one
    a.append(lease, 3, [b"purge"], [{"id": "t2", "deleted": True}])
    assert sql(dsn, "SELECT id FROM taskd_tasks") == [("t1",)]
    # And a fenced append to write no rows either
    with pytest.raises(Fenced):
        a.append(lease, 7, [b"x"], [{"id": "t3", "state": "queued"}])
    assert sql(dsn, "SELECT count(*) FROM taskd_tasks") == [(1,)]


def test_a_large_round_of_rows_keeps_every_column_exactly(
    dsn: str, backends: tuple[PostgresBackend, PostgresBackend]
) -> None:
    a, _ = backends
    lease = a.acquire("a", 30.0)
    assert lease is not None
    # When one round writes 5,000 rows (one statement), with every column's edge values:
    # NULLs in whole columns, negative priorities, fractional times, labels that need quoting
    labels = {"quote": 'it\'s "x"', "unicode": "日本", "comma": "a,b", "brace": "{}"}
    rows = [
        {
            "id": f"t{i:05}",
            "queue": "q",
            "name": None if i % 2 else "job",
            "state": "queued",
            "priority": -i,
            "attempt": None,
            "created_at": 1_700_000_000.25 + i,
            "started_at": None,
            "finished_at": None,
            "error": None if i % 3 else 'boom, "quoted"\n',
            "labels": labels if i % 5 == 0 else {},
        }
        for i in range(5000)
    ]
    a.append(lease, 1, [b"submit"], rows)
    # Expect each row as written
    found = sql(
        dsn,
        "SELECT id, name, priority, attempt, extract(epoch FROM created_at)::float8, "
        "started_at, error, labels FROM taskd_tasks ORDER BY id",
    )
    assert found == [
        (
            row["id"],
            row["name"],
            row["priority"],
            None,
            row["created_at"],
            None,
            row["error"],
            row["labels"],
        )
        for row in rows
    ]
    # And a later round changing some of them updates those rows only
    a.append(lease, 2, [b"start"], [{**rows[7], "state": "running", "attempt": 1}])
    changed = sql(dsn, "SELECT id, attempt, updated_index FROM taskd_tasks WHERE state = 'running'")
    assert changed == [("t00007", 1, 2)]
    assert sql(dsn, "SELECT count(*) FROM taskd_tasks WHERE updated_index = 1") == [(4999,)]


@pytest.mark.slow  # waits out one timeout
def test_a_waiting_node_wakes_when_another_appends(
    backends: tuple[PostgresBackend, PostgresBackend],
) -> None:
    a, b = backends
    lease = a.acquire("a", 30.0)
    assert lease is not None
    # Given a node waiting for entries after index 0 (nothing yet: it waits)
    started = time.monotonic()
    b.wait_for_entries(0, 0.3)
    assert time.monotonic() - started >= 0.25
    woke: list[float] = []
    waiter = threading.Thread(target=lambda: (b.wait_for_entries(0, 20.0), woke.append(1)))
    waiter.start()
    # When the leader appends
    time.sleep(0.2)  # let it block first (were it not yet blocked, it returns at once anyway)
    a.append(lease, 1, [b"x"])
    waiter.join(10)
    # Expect it to wake long before its timeout
    assert woke == [1]


def test_a_snapshot_drops_the_entries_it_covers(
    backends: tuple[PostgresBackend, PostgresBackend],
) -> None:
    a, b = backends
    lease = a.acquire("a", 30.0)
    assert lease is not None
    a.append(lease, 1, [b"1", b"2", b"3"])
    a.save_snapshot(lease, Snapshot(2, lease.term, b"state at 2"))
    assert b.load_snapshot() == Snapshot(2, 1, b"state at 2")
    with pytest.raises(ValueError):
        b.read(0, 10)
    assert [e.index for e in b.read(2, 10)] == [3]
    a.save_snapshot(lease, Snapshot(3, lease.term, b"state at 3"))
    assert b.read(3, 10) == [] and b.last_index() == 3
    a.append(lease, 4, [b"4"])  # the log goes on after the snapshot


def test_errors_name_the_database_never_its_credentials(dsn: str) -> None:
    # Given a DSN with a user and a password, to a port nobody listens on
    secret = "s3cr3t-Pw"
    for address in (
        f"postgresql://alice:{secret}@127.0.0.1:1/taskd",
        f"host=127.0.0.1 port=1 dbname=taskd user=alice password={secret}",
    ):
        backend = PostgresBackend(address)
        # Expect its name and every error to show host, port and database only
        assert backend.name == "postgres at 127.0.0.1:1/taskd"
        with pytest.raises(BackendDown) as down:
            backend.open()
        text = f"{down.value} {down.value!r} {down.value.__cause__} {down.value.__context__}"
        assert secret not in text and "alice" not in str(down.value)
        assert "127.0.0.1:1/taskd" in str(down.value) and down.value.resumes_by_itself
    # And a server-side refusal (an I/O error) is one an operator must act on
    good = PostgresBackend(dsn.replace("postgres@", f"postgres:{secret}@"))
    good.open()
    lease = good.acquire("a", 30.0)
    assert lease is not None
    pgserver.refuse_log_writes(dsn)
    with pytest.raises(BackendDown) as refused:
        good.append(lease, 1, [b"x"])
    assert "58030" in str(refused.value) and not refused.value.resumes_by_itself
    assert secret not in str(refused.value)
    good.close()


@pytest.mark.parametrize(
    ("change", "needs_an_operator", "says"),
    [
        (lambda dsn: dsn.rsplit("/", 1)[0] + "/taskd_no_such_db", True, "does not exist"),
        (lambda dsn: dsn.replace("postgres@", "no_such_role@"), True, "does not exist"),
        (lambda dsn: dsn + "?sslmode=bogus", True, "invalid sslmode value"),
        (lambda dsn: dsn + "?sslmode=require", True, "SSL"),
        (lambda dsn: dsn + "?target_session_attrs=any-old", True, "target_session_attrs"),
        (lambda dsn: dsn.replace("127.0.0.1:5432", "127.0.0.1:1"), False, "refused"),
        (lambda dsn: dsn.replace("127.0.0.1", "no-such-host.invalid"), False, "resolve"),
    ],
    ids=["database", "role", "sslmode", "ssl-required", "option", "port", "host"],
)
def test_a_connection_refused_for_the_dsn_itself_is_misconfigured_and_a_down_server_not(
    dsn: str, change: Callable[[str], str], needs_an_operator: bool, says: str
) -> None:
    # Given a DSN changed in one way (a missing database or role, a parameter libpq refuses,
    # SSL the server does not offer; or a server that is not there), with a password
    address = change(dsn).replace("@", ":s3cr3t-Pw@", 1)
    # When a backend on it opens
    with pytest.raises(BackendDown) as down:
        PostgresBackend(address).open()
    # Expect the reason from libpq or the server, naming no password, and whether only an
    # operator can change it (a starting node then stops; a running one keeps trying)
    assert says in str(down.value) and "s3cr3t-Pw" not in str(down.value)
    assert down.value.misconfigured is needs_an_operator, str(down.value)
    assert down.value.resumes_by_itself, str(down.value)


async def test_a_lost_connection_refuses_writes_until_the_database_answers_again(
    dsn: str,
) -> None:
    # Given a SharedStore leading on PostgreSQL
    machine = AppendLog()
    store = SharedStore(PostgresBackend(dsn), machine, node_id="p1", retry_interval=0.1)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        await store.propose(b"a")
        # When the server drops every connection (a restart, a failover)
        assert await trio.to_thread.run_sync(pgserver.drop_connections, dsn) >= 1
        # Expect the next write refused with a fault that passes by itself, not applied
        with pytest.raises(StorageFault) as failed:
            await store.propose(b"b")
        assert failed.value.resumes_by_itself and "127.0.0.1:5432" in str(failed.value)
        assert machine.items == [b"a"]
        # And writes to resume by themselves once it reconnected, in the same term
        with trio.fail_after(10):
            while store.fault is not None:  # noqa: ASYNC110 -- the store's own retry clears it
                await trio.sleep(0.02)
        await store.propose(b"c")
        assert machine.items == [b"a", b"c"] and store.leadership.term == 1
        nursery.cancel_scope.cancel()
    rows = sql(dsn, 'SELECT data FROM taskd_log ORDER BY "index"')
    assert rows == [(b"a",), (b"c",)]


@pytest.mark.slow  # two stores on real threads, one takeover
async def test_a_follower_tails_through_notifications_and_takes_over_when_the_leader_stops(
    dsn: str,
) -> None:
    # Given two stores on one database: the first leads, the second follows
    machines = AppendLog(), AppendLog()
    stores = [
        SharedStore(PostgresBackend(dsn), m, node_id=n, lease_ttl=3.0)
        for m, n in zip(machines, ("p1", "p2"), strict=True)
    ]
    leader_scope = trio.CancelScope()

    async def lead(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with leader_scope:
            await stores[0].serve(task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(lead)
        await nursery.start(stores[1].serve)
        assert stores[0].leadership.term == 1 and stores[1].status().leader == "p1"
        # When the leader writes, the follower applies it (woken by NOTIFY, well within
        # its wait's timeout) and its read barrier covers it
        await stores[0].propose_many([b"a", b"b"])
        with trio.fail_after(0.5):
            while machines[1].items != [b"a", b"b"]:  # noqa: ASYNC110 -- another store applies
                await trio.sleep(0.01)
        await stores[0].propose(b"c")
        await stores[1].read_barrier()
        assert machines[1].items == [b"a", b"b", b"c"]
        # When the leader stops (releasing its lease)
        leader_scope.cancel()
        # Expect the follower to lead within a third of the lease, in term 2, with everything
        with trio.fail_after(2):
            while stores[1].leadership.term is None:  # noqa: ASYNC110 -- see above
                await trio.sleep(0.01)
        assert stores[1].leadership.term == 2
        assert await stores[1].propose(b"d") == (4, 3)
        nursery.cancel_scope.cancel()


@pytest.mark.slow  # waits out one timeout
def test_close_leaves_a_waiting_connection_to_its_waiter_then_nothing_is_left_open(
    dsn: str,
) -> None:
    # Given a backend whose waiting connection is in use by a thread (as an abandoned waiter)
    backend = PostgresBackend(dsn)
    backend.open()
    waiter = threading.Thread(target=backend.wait_for_entries, args=(0, 0.5))
    waiter.start()
    deadline = time.monotonic() + 5
    while taskd_sessions(dsn) < 2:  # the main connection, and the waiter's
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # When the backend is closed meanwhile, expect the waiter to close its own when it returns
    backend.close()
    waiter.join(5)
    assert not waiter.is_alive()
    deadline = time.monotonic() + 5
    while taskd_sessions(dsn) > 0:  # the server notices the closed sockets a moment later
        assert time.monotonic() < deadline, "a connection of the closed backend is still open"
        time.sleep(0.02)


def taskd_sessions(dsn: str) -> int:
    database = dsn.rsplit("/", 1)[1]
    [(count,)] = sql(
        dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'taskd' "
        f"AND datname = '{database}'",
    )
    return int(str(count))


@pytest.mark.slow  # forks snapshot children, restarts a store
async def test_snapshots_are_forked_saved_and_restored_by_the_next_leader(dsn: str) -> None:
    # Given a store on PostgreSQL that snapshots every 4 commands, in a forked child
    machine = AppendLog()
    store = SharedStore(PostgresBackend(dsn), machine, node_id="p1", snapshot_every=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        for n in range(10):
            await store.propose(b"%d" % n)
            with trio.fail_after(10):  # one at a time: a snapshot in flight defers the next
                while store.snapshots < (n + 1) // 4:  # noqa: ASYNC110 -- a child, no event
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    # only the empty state at start (a reset's base) on the loop; all three (takeover, 4, 8)
    # serialized by forked children
    assert machine.snapshots == 1
    # Expect the snapshot at 8 saved and the entries it covers gone from the log
    assert sql(dsn, 'SELECT "index" FROM taskd_snapshot') == [(8,)]
    assert sql(dsn, 'SELECT "index" FROM taskd_log ORDER BY 1') == [(9,), (10,)]
    # When another store starts on the database, expect the whole state back
    again = AppendLog()
    store = SharedStore(PostgresBackend(dsn), again, node_id="p2")
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        assert again.items == [b"%d" % n for n in range(10)]
        assert await store.propose(b"10") == (11, 10)
        nursery.cancel_scope.cancel()


def test_nodes_announce_themselves_and_drop_out_when_they_stop(
    dsn: str, backends: tuple[PostgresBackend, PostgresBackend]
) -> None:
    a, b = backends
    # When two nodes announce themselves, expect each to see both, with their indexes
    assert a.announce("a", 3, 0.5) == [("a", 3)]
    assert b.announce("b", 5, 0.5) == [("a", 3), ("b", 5)]
    # And one that stopped announcing to drop out after the window
    time.sleep(0.6)
    assert a.announce("a", 4, 0.5) == [("a", 4)]
    # and a node not seen for a day to be forgotten
    sql(
        dsn,
        "UPDATE taskd_nodes SET seen_at = now() - interval '2 days' WHERE id = 'b' RETURNING id",
    )
    a.announce("a", 4, 0.5)
    assert sql(dsn, "SELECT id FROM taskd_nodes") == [("a",)]
