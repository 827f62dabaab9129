"""``SharedStore`` on ``RedisBackend``, several stores on one key prefix of the real Redis
(tests/store/shared/redisserver.py), real threads and real time: a follower tails the leader's
log through XREAD BLOCK and takes over when the leader stops; a restart restores the latest
snapshot and the entries after it; a connection Redis drops does not lose what was
acknowledged. (Lease timing and fencing on exact virtual times: test_driver.py; the backend's
own checks: test_redis.py; one store through the conformance suite: tests/store.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
import redis
import trio

from taskd.errors import StorageFault
from taskd.store.shared.driver import SharedStore
from taskd.store.shared.redis import RedisBackend
from tests.raft.fakes import AppendLog
from tests.store.shared import redisserver

TTL = 1.5  # a follower looks at the lease every TTL / 3


@pytest.fixture
def prefix() -> Iterator[str]:
    with redisserver.fresh_prefix() as name:
        yield name


def store(
    prefix: str, node_id: str, *, snapshot_every: int = 10_000, retry_interval: float = 1.0
) -> tuple[SharedStore, AppendLog]:
    machine = AppendLog()
    backend = RedisBackend(redisserver.URL, prefix=prefix)
    shared = SharedStore(
        backend,
        machine,
        node_id=node_id,
        lease_ttl=TTL,
        snapshot_every=snapshot_every,
        retry_interval=retry_interval,
    )
    return shared, machine


@asynccontextmanager
async def serving(shared: SharedStore) -> AsyncIterator[trio.CancelScope]:
    async with trio.open_nursery() as nursery:
        await nursery.start(shared.serve)
        yield nursery.cancel_scope
        nursery.cancel_scope.cancel()


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110 -- state of several stores, no one event
            await trio.sleep(0.01)


@pytest.mark.slow
async def test_a_follower_tails_the_leader_and_takes_over_when_it_stops(prefix: str) -> None:
    leader, leader_machine = store(prefix, "a")
    follower, follower_machine = store(prefix, "b")
    leader_scope = trio.CancelScope()

    async def lead(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with leader_scope:
            await leader.serve(task_status=task_status)

    async with trio.open_nursery() as nursery:
        # Given a store that leads, and a second one started after it, which follows
        await nursery.start(lead)
        await nursery.start(follower.serve)
        term = leader.leadership.term
        assert term is not None and follower.leadership.term is None
        # When the leader acknowledges writes
        await leader.propose(b"one")
        await leader.propose_many([b"two", b"three"])
        # Expect the follower to apply them, in order, soon (it waits in XREAD BLOCK)
        await until(lambda: follower_machine.items == [b"one", b"two", b"three"], 2.0)
        await follower.read_barrier()
        # When the leader stops (a clean stop releases the lease)
        leader_scope.cancel()
        # Expect the follower to lead in a higher term, with everything, and take writes
        await until(lambda: follower.leadership.term is not None, 3 * TTL)
        assert (follower.leadership.term or 0) > term
        await follower.propose(b"four")
        assert follower_machine.items == [b"one", b"two", b"three", b"four"]
        nursery.cancel_scope.cancel()
    assert leader_machine.items == [b"one", b"two", b"three"]


async def test_a_restart_restores_the_latest_snapshot_and_the_entries_after_it(
    prefix: str,
) -> None:
    first, _ = store(prefix, "a", snapshot_every=4)
    async with serving(first):
        for n in range(10):
            await first.propose(b"%d" % n)
        # a forked child writes the snapshot: wait for it to be saved before stopping
        with trio.fail_after(10):
            while first.snapshots < 1:  # noqa: ASYNC110  # the store offers no event for it
                await trio.sleep(0.01)
    # (the snapshot was saved, and the entries it covers are gone)
    backend = RedisBackend(redisserver.URL, prefix=prefix)
    saved = backend.load_snapshot()
    assert saved is not None and saved.index >= 4
    assert [entry.index for entry in backend.read(saved.index, 100)] == list(
        range(saved.index + 1, 11)
    )
    backend.close()
    again, machine = store(prefix, "a", snapshot_every=4)
    async with serving(again):
        assert machine.items == [b"%d" % n for n in range(10)]
        await again.propose(b"10")
    assert machine.items[-1] == b"10"


def drop_connections(client: redis.Redis, prefix: str) -> int:
    """CLIENT KILL every connection of the backends on ``prefix`` (as a restarting Redis
    would drop them), found by their names in CLIENT LIST; the count killed."""
    names = {f"taskd:{prefix}", f"taskd-wait:{prefix}"}
    ids = [c["id"] for c in client.client_list() if c.get("name") in names]
    for client_id in ids:
        client.client_kill_filter(_id=client_id)
    return len(ids)


async def test_connections_redis_drops_lose_nothing_acknowledged_and_writes_go_on(
    prefix: str,
) -> None:
    leader, machine = store(prefix, "a", retry_interval=0.1)
    acknowledged: list[bytes] = []
    async with serving(leader):
        for n in range(5):
            acknowledged.append(b"%d" % n)
            await leader.propose(acknowledged[-1])
        # When Redis drops every connection of the store
        with redisserver.admin() as client:
            assert drop_connections(client, prefix) >= 1
        # Expect writes to go on (at once, or after a fault that passes by itself)
        with trio.fail_after(10):
            while True:
                try:
                    await leader.propose(b"after")
                    break
                except StorageFault as exc:
                    assert exc.resumes_by_itself, exc
                    await trio.sleep(0.05)
        assert machine.items[: len(acknowledged)] == acknowledged
        assert machine.items[-1] == b"after"
    with redisserver.admin() as client:
        log = client.xrange(f"{{{prefix}}}:log")
        assert [fields[b"d"] for _, fields in log] == machine.items
