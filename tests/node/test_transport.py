"""The transport guard's decisions, without sockets: which connection goes when, what is logged,
what the defaults are. (The real-socket behaviour is in test_resources.py.)"""

from __future__ import annotations

import logging
import resource

import pytest
import trio
import trio_asyncio

from taskd.node import config as node_config
from taskd.node.api.transport import (
    MAX_DERIVED_CONNECTIONS,
    MIN_CONNECTIONS,
    ConnectionTable,
    LogEvery,
    connection_cap,
)
from taskd.node.runner import AsyncioErrorLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeConn:
    """A connection that is busy (``since=None``) or idle since a given time."""

    def __init__(self, name: str, since: float | None) -> None:
        self.name = name
        self.since = since
        self.closed = False

    def idle_since(self) -> float | None:
        return self.since

    def shed(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return self.name


def table_of(*conns: FakeConn, cap: int, clock: FakeClock) -> ConnectionTable:
    table = ConnectionTable("test", cap, idle_timeout=10, clock=clock)
    for conn in conns:
        table.add(conn)
    return table


def test_under_the_cap_every_connection_is_admitted():
    clock = FakeClock()
    table = table_of(FakeConn("a", None), cap=2, clock=clock)
    assert table.admit()
    assert len(table) == 1


def test_at_the_cap_the_longest_idle_connection_makes_room():
    clock = FakeClock()
    busy, recent, oldest = FakeConn("busy", None), FakeConn("recent", 99), FakeConn("old", 50)
    table = table_of(busy, recent, oldest, cap=3, clock=clock)
    assert table.admit()
    assert oldest.closed and not recent.closed and not busy.closed
    assert len(table) == 2 and table.shed_total == 1


def test_at_the_cap_with_every_connection_busy_the_newcomer_is_refused(caplog):
    clock = FakeClock()
    conns = [FakeConn(f"c{i}", None) for i in range(3)]
    table = table_of(*conns, cap=3, clock=clock)
    with caplog.at_level(logging.WARNING, "taskd.transport"):
        assert not table.admit()
        assert not table.admit()
    assert not any(c.closed for c in conns)
    assert table.refused_total == 2
    # refusals are reported once per interval, not once per connection
    assert len(caplog.records) == 1
    assert "--max-connections 3" in caplog.records[0].getMessage()


def test_shed_idle_closes_only_connections_idle_long_enough():
    clock = FakeClock()
    long_idle, short_idle, busy = FakeConn("l", 80), FakeConn("s", 95), FakeConn("b", None)
    table = table_of(long_idle, short_idle, busy, cap=10, clock=clock)
    assert table.shed_idle(10) == 1
    assert long_idle.closed and not short_idle.closed and not busy.closed
    assert table.shed_idle(10) == 0  # a shed connection is gone from the table
    assert table.shed_idle(0) == 1 and short_idle.closed
    assert len(table) == 1


def test_a_discarded_connection_is_never_shed():
    clock = FakeClock()
    conn = FakeConn("gone", 0)
    table = table_of(conn, cap=1, clock=clock)
    table.discard(conn)
    table.discard(conn)  # twice is fine (a shed connection reports its loss later)
    assert table.shed_idle(0) == 0 and not conn.closed


def test_log_every_holds_back_repeats_and_counts_them(caplog):
    clock = FakeClock()
    every = LogEvery(10, clock=clock)
    logger = logging.getLogger("taskd.test")
    with caplog.at_level(logging.WARNING, "taskd.test"):
        for _ in range(5):
            every.warning(logger, "out of %s", "descriptors")
        clock.now += 10
        every.warning(logger, "out of %s", "descriptors")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "out of descriptors",
        "out of descriptors (4 more since the last report)",
    ]


@pytest.mark.parametrize(
    ("configured", "open_files", "expected"),
    [
        (500, 256, 500),  # a flag wins
        (0, 256, 64),  # (256 - 128) / 2
        (0, 1024, 448),
        (0, 150, MIN_CONNECTIONS),
        (0, 1 << 20, MAX_DERIVED_CONNECTIONS),
        (0, resource.RLIM_INFINITY, MAX_DERIVED_CONNECTIONS),
    ],
)
def test_connection_cap_defaults_follow_the_open_files_limit(configured, open_files, expected):
    assert connection_cap(configured, open_files) == expected


def test_transport_flags_and_variables():
    config = node_config.load(
        ["--max-connections", "300", "--idle-timeout", "2.5s"],
        {"TASKD_GRPC_KEEPALIVE": "7"},
    )
    assert (config.max_connections, config.idle_timeout, config.grpc_keepalive) == (300, 2.5, 7)
    assert config.max_body == 2 * config.max_payload + (64 << 10)
    defaults = node_config.load([], {})
    assert (defaults.max_connections, defaults.idle_timeout, defaults.grpc_keepalive) == (
        0,
        60.0,
        60.0,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-connections", "-1"], "--max-connections must be >= 0"),
        (["--idle-timeout", "0"], "--idle-timeout must be > 0 seconds"),
        (["--grpc-keepalive", "-3"], "--grpc-keepalive must be > 0 seconds"),
    ],
)
def test_bad_transport_flags_name_the_flag(argv, message):
    with pytest.raises(node_config.ConfigError, match=message):
        node_config.load(argv, {})


async def test_asyncio_reports_are_logged_not_raised_into_the_node(caplog):
    # trio-asyncio's default handler re-raises what asyncio reports (its accept loop reports
    # EMFILE this way), which ended the node's root nursery: the node's handler logs it.
    async with trio_asyncio.open_loop() as loop:
        loop.set_exception_handler(AsyncioErrorLog().report)
        for _ in range(3):
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(24, "Too many open files"),
                }
            )
        await trio.sleep(0.01)
    reports = [r for r in caplog.records if "out of system resource" in r.getMessage()]
    assert len(reports) == 1  # repeats held back
    assert reports[0].exc_info is not None
