"""The stores the conformance suite runs against, one parameter each: every test in tests/store/
runs once per store, and none is skipped.

A store kind is a ``StoreKind``: ``open()`` makes a store over a fresh ``AppendLog`` state machine
in the test's place (its data directory, its database), so a second ``open()`` after the first
store stopped is a restart; ``break_writes(store)`` puts the store in the state a full or failing
disk (a lost database) gives: every write refused with a ``StorageFault``. To add a store, add a
kind here; a store without durability says so with its ``durable`` flag, and the suite checks
that the flag tells the truth.

"raft3" is a three-member Raft cluster over ``MemoryTransport`` behind the seam
(``tests.store.cluster.ClusterStore``): writes alternate between the leader and a follower
(forwarded), read barriers run on the follower; its ``items`` are the leader's. "postgres" is
``SharedStore`` on ``PostgresBackend``, against the real server of tests/store/shared/pgserver.py,
one fresh database per test; "redis" is ``SharedStore`` on ``RedisBackend``, against the real
server of tests/store/shared/redisserver.py, one fresh key prefix per test.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskd.errors import StorageFault
from taskd.store.memory import MemoryStore
from taskd.store.raft import RaftStore
from taskd.store.raft.disklog import DiskLog
from taskd.store.seam import Store
from taskd.store.shared.driver import SharedStore
from taskd.store.shared.postgres import PostgresBackend
from taskd.store.shared.redis import RedisBackend
from tests.raft.fakes import AppendLog
from tests.store.cluster import ClusterStore
from tests.store.shared import pgserver, redisserver


@dataclass
class StoreKind:
    name: str
    open: Callable[[], tuple[Store, AppendLog]]
    break_writes: Callable[[Store], None]
    cleanup: Callable[[], None] | None = None  # after the test (drop its database)


def _memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StoreKind:
    def open_() -> tuple[Store, AppendLog]:
        machine = AppendLog()
        return MemoryStore(machine, node_id="m1"), machine

    def break_writes(store: Store) -> None:
        assert isinstance(store, MemoryStore)
        fault = StorageFault("disk failure (simulated): restart", resumes_by_itself=False)
        store.refuse_writes(fault)

    return StoreKind("memory", open_, break_writes)


def _raft(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StoreKind:
    def open_() -> tuple[Store, AppendLog]:
        machine = AppendLog()
        return RaftStore(tmp_path / "raft", machine, node_id="n1"), machine

    def break_writes(store: Store) -> None:
        def failing_sync(self: DiskLog) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(DiskLog, "sync", failing_sync)  # the next round's fsync fails

    return StoreKind("raft", open_, break_writes)


def _raft3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StoreKind:
    """Three members over MemoryTransport; writes alternate between leader and follower."""

    def open_() -> tuple[Store, AppendLog]:
        store = ClusterStore(tmp_path / "raft3", ["n1", "n2", "n3"])
        return store, _LeaderMachine(store)  # type: ignore[return-value]

    def break_writes(store: Store) -> None:
        def failing_sync(self: DiskLog) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(DiskLog, "sync", failing_sync)  # every member's next fsync fails
        assert isinstance(store, ClusterStore)
        store.disks_broken = True

    return StoreKind("raft3", open_, break_writes)


def _postgres(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StoreKind:
    """SharedStore on PostgreSQL (a database of its own, dropped after the test); a broken
    disk is the database refusing appends as a server whose disk fails does."""
    database = pgserver.fresh_database()
    dsn = database.__enter__()

    def open_() -> tuple[Store, AppendLog]:
        machine = AppendLog()
        return SharedStore(PostgresBackend(dsn), machine, node_id="p1"), machine

    def break_writes(store: Store) -> None:
        pgserver.refuse_log_writes(dsn)

    return StoreKind("postgres", open_, break_writes, lambda: database.__exit__(None, None, None))


def _redis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StoreKind:
    """SharedStore on Redis (a key prefix of its own, its keys deleted after the test); a
    broken disk is Redis refusing appends because another program's data took the log key."""
    prefix = redisserver.fresh_prefix()
    name = prefix.__enter__()

    def open_() -> tuple[Store, AppendLog]:
        machine = AppendLog()
        backend = RedisBackend(redisserver.URL, prefix=name)
        return SharedStore(backend, machine, node_id="r1"), machine

    def break_writes(store: Store) -> None:
        redisserver.clobber_log(name)

    return StoreKind("redis", open_, break_writes, lambda: prefix.__exit__(None, None, None))


class _LeaderMachine:
    """The cluster's state machine as the suite reads it: the leader's (``items``)."""

    def __init__(self, store: ClusterStore) -> None:
        self._store = store

    @property
    def items(self) -> list[bytes]:
        if self._store._leader is not None:
            return self._store.machine.items
        return self._store.final_items


@pytest.fixture(
    params=[
        pytest.param(_memory, id="memory"),
        pytest.param(_raft, id="raft"),
        pytest.param(_raft3, id="raft3", marks=pytest.mark.slow),  # real elections
        pytest.param(_postgres, id="postgres"),  # a real server, one database per test
        pytest.param(_redis, id="redis"),  # a real server, one key prefix per test
    ]
)
def kind(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> StoreKind:
    make: Callable[[pytest.MonkeyPatch, Path], StoreKind] = request.param
    kind = make(monkeypatch, tmp_path)
    if kind.cleanup is not None:
        request.addfinalizer(kind.cleanup)
    return kind
