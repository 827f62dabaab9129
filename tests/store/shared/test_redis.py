"""``RedisBackend`` against the real Redis of tests/store/shared/redisserver.py: the lease and
its fencing, the log and snapshots, waiting for entries, the checks at open, and errors that
name the server but never the password.

That Redis is shared with others: every test works under a key prefix of its own and deletes
its keys afterwards (never FLUSHDB); the one test that changes the server's configuration puts
the original value back, even when it fails.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from taskd.store.shared.backend import BackendDown, Entry, Fenced, Lease, Snapshot
from taskd.store.shared.redis import RedisBackend, durability
from tests.store.shared import redisserver
from tests.store.shared.privateserver import PrivateRedis
from tests.store.shared.smalldisk import SmallDisk

URL = redisserver.URL
SECRET = "s3cret-Pa55word"


def poll(condition: Callable[[], object], deadline: float = 5.0) -> object:
    """The condition's first truthy value, polled until ``deadline`` seconds pass."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < end, "condition not met before the deadline"
        time.sleep(0.01)


@pytest.fixture
def admin() -> Iterator[redis.Redis]:
    with redisserver.admin() as client:
        yield client


@pytest.fixture
def prefix() -> Iterator[str]:
    with redisserver.fresh_prefix() as name:
        yield name


@pytest.fixture
def backend(prefix: str) -> Iterator[Callable[[], RedisBackend]]:
    """Opens backends on the test's prefix (each one a node); closes them all at the end."""
    opened: list[RedisBackend] = []

    def open_() -> RedisBackend:
        made = RedisBackend(URL, prefix=prefix)
        made.open()
        opened.append(made)
        return made

    yield open_
    for made in opened:
        made.close()


def race(barrier: threading.Barrier, node: RedisBackend, name: str) -> Lease | None:
    barrier.wait()
    return node.acquire(name, ttl=5.0)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- the lease ----------------------------------------------------------------------------------


def test_two_nodes_racing_for_the_lease_exactly_one_wins(
    backend: Callable[[], RedisBackend],
) -> None:
    # Given two nodes on one database
    a, b = backend(), backend()
    terms: list[int] = []
    for _ in range(10):
        barrier = threading.Barrier(2)

        # When both try to take the lease at once
        with ThreadPoolExecutor(2) as pool:
            got_a, got_b = pool.map(race, [barrier, barrier], [a, b], ["a", "b"])
        # Expect one of them to hold it, in a new term, as the database says
        winners = [lease for lease in (got_a, got_b) if lease is not None]
        assert len(winners) == 1, (got_a, got_b)
        view = a.lease()
        assert (view.holder, view.term) == (winners[0].holder, winners[0].term)
        terms.append(winners[0].term)
        (a if got_a is not None else b).release(winners[0])
    assert terms == sorted(set(terms))


def test_the_holder_extends_its_lease_in_the_same_term_and_release_frees_it_at_once(
    backend: Callable[[], RedisBackend],
) -> None:
    a, b = backend(), backend()
    first = a.acquire("a", ttl=1.0)
    assert first is not None and first.seconds_left == pytest.approx(1.0)
    assert b.acquire("b", ttl=1.0) is None
    # When the holder acquires again, then renews for longer
    again = a.acquire("a", ttl=2.0)
    renewed = a.renew(first, ttl=30.0)
    # Expect the same term, and the database's clock to show the longer lease
    assert again is not None and again.term == first.term
    assert renewed.term == first.term and renewed.seconds_left == pytest.approx(30.0)
    assert 25.0 < a.lease().seconds_left <= 30.0
    # When it releases
    a.release(first)
    # Expect another node to take it at once, in a higher term
    view = b.lease()
    assert view.holder is None and view.term == first.term
    taken = b.acquire("b", ttl=5.0)
    assert taken is not None and taken.term == first.term + 1


@pytest.mark.slow
def test_a_lapsed_lease_is_taken_in_a_higher_term_and_the_old_holder_is_fenced(
    backend: Callable[[], RedisBackend],
) -> None:
    # Given a holds a short lease and has appended an entry
    a, b = backend(), backend()
    old = a.acquire("a", ttl=0.2)
    assert old is not None
    a.append(old, 1, [b"from a"])
    assert b.acquire("b", ttl=5.0) is None
    # When it lapses (a did not renew) and b takes it
    new = poll(lambda: b.acquire("b", ttl=5.0))
    # Expect a higher term, and every write of the old holder refused, with nothing written
    assert isinstance(new, Lease) and new.term > old.term
    with pytest.raises(Fenced, match="b holds it"):
        a.append(old, 2, [b"late"])
    with pytest.raises(Fenced):
        a.renew(old, ttl=5.0)
    with pytest.raises(Fenced):
        a.save_snapshot(old, Snapshot(index=1, term=old.term, data=b"state"))
    a.release(old)  # a stale release gives up nothing
    assert a.lease().holder == "b"
    assert a.acquire("a", ttl=5.0) is None
    assert b.read(0, 10) == [Entry(1, old.term, b"from a")]
    assert b.load_snapshot() is None
    b.append(new, 2, [b"from b"])
    assert [e.term for e in a.read(0, 10)] == [old.term, new.term]


def test_terms_never_go_back_even_after_the_lease_key_expired(
    backend: Callable[[], RedisBackend],
) -> None:
    a = backend()
    first = a.acquire("a", ttl=0.05)
    assert first is not None
    poll(lambda: a.lease().holder is None)
    assert a.lease().term == first.term
    # When the same node takes it again after it expired
    second = a.acquire("a", ttl=5.0)
    # Expect a new term: its old one is fenced
    assert second is not None and second.term == first.term + 1
    with pytest.raises(Fenced):
        a.renew(first, ttl=5.0)


# -- the log and snapshots ----------------------------------------------------------------------


def test_an_append_with_a_wrong_first_index_is_fenced_and_writes_nothing(
    backend: Callable[[], RedisBackend],
) -> None:
    a = backend()
    lease = a.acquire("a", ttl=5.0)
    assert lease is not None
    a.append(lease, 1, [b"one", b"two"])
    # When the leader appends as if the log ended elsewhere (behind it, then past it)
    for first_index in (2, 4, 1):
        with pytest.raises(Fenced, match="the log ends at 2"):
            a.append(lease, first_index, [b"x", b"y"])
    # Expect nothing written, and the right index to be taken
    assert a.last_index() == 2
    assert [e.data for e in a.read(0, 10)] == [b"one", b"two"]
    a.append(lease, 3, [b"three"])
    assert a.last_index() == 3


def test_the_log_and_snapshots_round_trip_and_a_read_behind_the_snapshot_is_refused(
    backend: Callable[[], RedisBackend],
) -> None:
    a, b = backend(), backend()
    assert (a.last_index(), a.read(0, 10), a.load_snapshot()) == (0, [], None)
    lease = a.acquire("a", ttl=5.0)
    assert lease is not None
    items = [b"\x00binary\xff", b"", b"c" * 100_000, b"d", b"e"]
    a.append(lease, 1, items[:3])
    a.append(lease, 4, items[3:])
    # Expect what was appended to be read back, in order, from another connection
    expected = [Entry(i + 1, lease.term, data) for i, data in enumerate(items)]
    assert b.read(0, 100) == expected
    assert b.read(0, 2) == expected[:2]
    assert b.read(3, 100) == expected[3:]
    assert b.read(5, 100) == []
    assert b.read(0, 0) == []
    assert b.last_index() == 5
    # When a snapshot covering entries 1..3 is saved
    snapshot = Snapshot(index=3, term=lease.term, data=b"state\x00at 3")
    a.save_snapshot(lease, snapshot)
    # Expect it back, the entries it covers gone, and those after it still there
    assert b.load_snapshot() == snapshot
    for after in (0, 2):
        with pytest.raises(ValueError, match="dropped by a snapshot"):
            b.read(after, 10)
    assert b.read(3, 10) == expected[3:]
    assert b.last_index() == 5
    # When a snapshot covers the whole log
    a.save_snapshot(lease, Snapshot(index=5, term=lease.term, data=b"state at 5"))
    # Expect the log empty after it, its last index still 5, and appends to go on from 6
    assert (b.last_index(), b.read(5, 10)) == (5, [])
    with pytest.raises(Fenced, match="the log ends at 5"):
        a.append(lease, 1, [b"again"])
    a.append(lease, 6, [b"f"])
    assert b.read(5, 10) == [Entry(6, lease.term, b"f")]
    with pytest.raises(ValueError, match="older"):
        a.save_snapshot(lease, Snapshot(index=4, term=lease.term, data=b"old"))
    assert b.load_snapshot() == Snapshot(index=5, term=lease.term, data=b"state at 5")


@pytest.mark.parametrize("bad", ["", "a{b", "a}b"])
def test_a_prefix_that_would_break_the_hash_tag_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="no braces"):
        RedisBackend(URL, prefix=bad)


def test_the_keys_share_one_hash_tag_under_the_prefix(
    backend: Callable[[], RedisBackend], prefix: str, admin: redis.Redis
) -> None:
    a = backend()
    lease = a.acquire("a", ttl=5.0)
    assert lease is not None
    a.append(lease, 1, [b"x"])
    a.save_snapshot(lease, Snapshot(index=1, term=lease.term, data=b"s"))
    a.peer_secret()
    keys = sorted(key.decode() for key in redisserver.keys_of(admin, prefix))
    names = ("lease", "log", "peer-secret", "snap", "term")
    assert keys == [f"{{{prefix}}}:{name}" for name in names]


def test_the_peer_secret_is_made_once_at_random_and_read_alike_by_every_node(
    backend: Callable[[], RedisBackend], prefix: str
) -> None:
    first = backend().peer_secret()
    assert len(first) == 32
    assert backend().peer_secret() == first
    with redisserver.fresh_prefix() as other:
        assert RedisBackend(URL, prefix=other).peer_secret() != first


# -- waiting for entries ------------------------------------------------------------------------


def blocked_waiter(admin: redis.Redis, prefix: str) -> bool:
    """Whether the backend's waiting connection is blocked in XREAD now (CLIENT LIST)."""
    return any(
        client.get("name") == f"taskd-wait:{prefix}" and "b" in str(client.get("flags"))
        for client in admin.client_list()
    )


def test_wait_for_entries_returns_soon_after_an_append_from_another_node(
    backend: Callable[[], RedisBackend], prefix: str, admin: redis.Redis
) -> None:
    leader, follower = backend(), backend()
    lease = leader.acquire("a", ttl=5.0)
    assert lease is not None
    with ThreadPoolExecutor(1) as pool:
        # Given a follower blocked waiting for entries after 0
        waiting = pool.submit(follower.wait_for_entries, 0, 10.0)
        poll(lambda: blocked_waiter(admin, prefix))
        assert not waiting.done()
        # When the leader appends
        appended = time.monotonic()
        leader.append(lease, 1, [b"x"])
        waiting.result(timeout=5.0)
        # Expect the follower to wake at once, not after its 10 s
        assert time.monotonic() - appended < 1.0
    # And not to wait at all when an entry after the given index exists already
    started = time.monotonic()
    follower.wait_for_entries(0, 10.0)
    assert time.monotonic() - started < 1.0


@pytest.mark.slow
def test_wait_for_entries_returns_after_the_timeout_when_nothing_is_appended(
    backend: Callable[[], RedisBackend],
) -> None:
    a = backend()
    lease = a.acquire("a", ttl=5.0)
    assert lease is not None
    a.append(lease, 1, [b"x"])
    started = time.monotonic()
    a.wait_for_entries(1, 0.3)
    assert 0.3 <= time.monotonic() - started < 2.0
    started = time.monotonic()
    a.wait_for_entries(1, 0.0)
    assert time.monotonic() - started < 0.2


# -- opening: the server's fitness and durability -------------------------------------------------


def test_a_server_that_may_evict_keys_is_refused_with_what_to_set(
    admin: redis.Redis, prefix: str
) -> None:
    original = admin.config_get("maxmemory-policy")["maxmemory-policy"]
    assert original is not None
    try:
        # Given a Redis that evicts keys when memory runs short
        admin.config_set("maxmemory-policy", "allkeys-lru")
        candidate = RedisBackend(URL, prefix=prefix)
        # Expect open() to refuse, saying what to set and why
        with pytest.raises(ValueError) as refused:
            candidate.open()
        candidate.close()
    finally:
        admin.config_set("maxmemory-policy", original)
    message = str(refused.value)
    assert "maxmemory-policy is allkeys-lru" in message
    assert "CONFIG SET maxmemory-policy noeviction" in message
    assert "evict" in message
    assert admin.config_get("maxmemory-policy")["maxmemory-policy"] == original


def test_open_logs_what_the_servers_aof_setting_makes_durable(
    admin: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = admin.config_get("appendonly") | admin.config_get("appendfsync")
    expected = durability(config["appendonly"], config["appendfsync"])
    candidate = RedisBackend(URL, prefix=prefix)
    with caplog.at_level(logging.INFO, logger="taskd.store.shared.redis"):
        candidate.open()
    candidate.close()
    assert candidate.durability == expected
    assert [r.getMessage() for r in caplog.records] == [
        f"{candidate.name}: {expected}; taskd cannot be more durable than Redis"
    ]
    if config["appendfsync"] != "always":
        assert caplog.records[0].levelno == logging.WARNING


def test_without_config_the_policy_is_read_from_info_and_durability_is_said_unknown(
    admin: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a user that may do everything but CONFIG (as on a managed Redis)
    user = f"{prefix}-user"
    admin.acl_setuser(
        user, enabled=True, passwords=[f"+{SECRET}"], keys=["*"], commands=["+@all", "-config"]
    )
    try:
        candidate = RedisBackend(f"redis://{user}:{SECRET}@127.0.0.1:6379/0", prefix=prefix)
        # When it opens
        with caplog.at_level(logging.WARNING, logger="taskd.store.shared.redis"):
            candidate.open()
        # Expect noeviction found through INFO, durability said to be unknown, and it works
        assert "could not be checked" in candidate.durability
        assert [r.getMessage() for r in caplog.records] == [
            f"{candidate.name}: {candidate.durability}; taskd cannot be more durable than Redis"
        ]
        lease = candidate.acquire("a", ttl=5.0)
        assert lease is not None
        candidate.append(lease, 1, [b"x"])
        assert candidate.last_index() == 1
        candidate.close()
    finally:
        admin.acl_deluser(user)


def test_the_durability_of_each_aof_setting_is_stated() -> None:
    assert "nothing taskd acknowledged survives a Redis restart" in durability("no", "always")
    assert "up to ~1 s of acknowledged writes can be lost on a crash of the Redis host" in (
        durability("yes", "everysec")
    )
    assert "every acknowledged write is on disk" in durability("yes", "always")
    assert "~30 s" in durability("yes", "no")
    assert "could not be checked" in durability(None, None)


# -- errors -------------------------------------------------------------------------------------


def test_a_redis_that_is_not_there_raises_backend_down_quickly(prefix: str) -> None:
    port = closed_port()
    absent = RedisBackend(f"redis://127.0.0.1:{port}/5", prefix=prefix)
    assert absent.name == f"redis at 127.0.0.1:{port}/5"
    operations: list[Callable[[], object]] = [
        absent.open,
        absent.last_index,
        lambda: absent.acquire("a", 1.0),
    ]
    for operation in operations:
        started = time.monotonic()
        with pytest.raises(BackendDown, match=f"redis at 127.0.0.1:{port}/5") as down:
            operation()
        assert time.monotonic() - started < 1.0
        assert down.value.resumes_by_itself  # once it is back, writes resume
    with pytest.raises(BackendDown):
        absent.wait_for_entries(0, 5.0)
    absent.close()


@pytest.mark.parametrize("where", ["live", "absent"])
def test_a_url_with_a_password_never_shows_it(where: str, prefix: str) -> None:
    # Given a URL with credentials the server refuses (live), or a server that is not there
    port = 6379 if where == "live" else closed_port()
    url = f"redis://taskd-nobody:{SECRET}@127.0.0.1:{port}/3"
    candidate = RedisBackend(url, prefix=prefix)
    assert candidate.name == f"redis at 127.0.0.1:{port}/3"
    # Expect BackendDown naming host:port/db, and the password nowhere, causes included
    operations: list[Callable[[], object]] = [candidate.open, lambda: candidate.acquire("a", 1.0)]
    for operation in operations:
        with pytest.raises(BackendDown) as down:
            operation()
        text = "".join(traceback.format_exception(down.value))
        assert f"127.0.0.1:{port}/3" in str(down.value)
        assert SECRET not in text and SECRET not in repr(down.value)
        # wrong credentials: an operator fixes them (a starting node stops on it)
        assert down.value.misconfigured == (where != "absent") and down.value.resumes_by_itself
    candidate.close()


def test_someone_elses_data_on_the_log_key_refuses_appends_until_an_operator_acts(
    backend: Callable[[], RedisBackend], prefix: str
) -> None:
    a = backend()
    lease = a.acquire("a", ttl=5.0)
    assert lease is not None
    a.append(lease, 1, [b"x"])
    # When another program overwrites the log key
    redisserver.clobber_log(prefix)
    # Expect appends refused (WRONGTYPE) as a fault that does not pass by itself, and the
    # lease still the leader's
    with pytest.raises(BackendDown, match="WRONGTYPE") as down:
        a.append(lease, 2, [b"y"])
    assert not down.value.resumes_by_itself
    assert a.renew(lease, ttl=5.0).term == lease.term


@pytest.mark.slow  # Redis retries its failed AOF write once a second
def test_a_full_disk_refuses_writes_in_words_that_resume_and_reads_go_on() -> None:
    # Given a private Redis whose append-only file is on a disk that fills up
    with (
        SmallDisk() as disk,
        PrivateRedis(appendfsync="everysec", under=disk.path) as server,
    ):
        url = f"redis://127.0.0.1:{server.port}/0"
        node, fresh = RedisBackend(url, prefix="full"), RedisBackend(url, prefix="fresh")
        node.open()
        fresh.open()
        try:
            lease = node.acquire("a", ttl=30.0)
            assert lease is not None
            secret = node.peer_secret()
            node.append(lease, 1, [b"before"])
            # When the disk is full
            disk.fill()
            index = 2

            def refused() -> BackendDown | None:
                nonlocal index
                try:
                    node.append(lease, index, [b"x" * 4096])
                except BackendDown as exc:
                    return exc
                index += 1  # taken in memory: Redis found out at its next write
                return None

            down = poll(refused)
            # Expect writes refused naming the server and the disk, as passing by themselves
            assert isinstance(down, BackendDown)
            assert "No space left on device" in str(down) and server.address in str(down)
            assert down.resumes_by_itself
            # and a refused pipeline (a new deployment's secret: SET NX) says the same,
            # without its command's arguments (they carry the secret)
            with pytest.raises(BackendDown, match="MISCONF") as piped:
                fresh.peer_secret()
            assert piped.value.resumes_by_itself and "Command #" not in str(piped.value)
            # while reads go on: the secret, the lease, the log
            assert node.peer_secret() == secret
            assert node.lease().holder == "a"
            assert node.read(0, 10)[0] == Entry(1, lease.term, b"before")
            # When the disk has room again, expect writes taken again without a restart
            disk.free()
            poll(lambda: refused() is None)
            assert node.last_index() == index - 1
        finally:
            node.close()
            fresh.close()


def test_nodes_announce_themselves_and_drop_out_when_they_stop(
    backend: Callable[[], RedisBackend], admin: redis.Redis, prefix: str
) -> None:
    a, b = backend(), backend()
    # When two nodes announce themselves, expect each to see both, with their indexes
    assert a.announce("a", 3, 0.5) == [("a", 3)]
    assert b.announce("b", 5, 0.5) == [("a", 3), ("b", 5)]
    # And one that stopped announcing to drop out after the window
    time.sleep(0.6)
    assert a.announce("a", 4, 0.5) == [("a", 4)]
    # and a node not seen for a day (or a value that is not taskd's) to be forgotten
    admin.hset(f"{{{prefix}}}:nodes", mapping={"b": "1000:5", "junk": "x"})
    a.announce("a", 4, 0.5)
    assert admin.hkeys(f"{{{prefix}}}:nodes") == [b"a"]
