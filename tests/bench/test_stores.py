"""bench/stores: the medians, ratios and table from canned runs, and the benchmark's own
databases (a private redis-server, a fresh PostgreSQL database) made and removed for real.

No timed test: the benchmark itself is run by hand (bench/README.md).
"""

from __future__ import annotations

import argparse

import psycopg
import pytest
import redis

from bench import stores
from bench.databases import ADMIN_DSN, PrivateRedis, fresh_database, with_database
from tests.conftest import free_ports


def runs(*pairs: tuple[float, float]) -> list[dict[str, float]]:
    return [{"w1b": w1b, "w2": w2} for w1b, w2 in pairs]


SAMPLES = {
    "raft": runs((20_000, 5_000), (10_000, 4_000), (18_000, 6_000)),
    "postgres": runs((9_000, 3_600), (12_000, 3_000), (1_000, 3_300)),
    "redis-always": runs((14_000, 3_000), (15_000, 3_400), (13_000, 3_800)),
    "redis-everysec": runs((19_000, 5_100), (17_000, 5_000), (18_500, 4_900)),
    "forwarded": runs((8_100, 2_000), (8_000, 2_100), (7_900, 2_200)),
}


def by_config(rows: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {row["config"]: row for row in rows}


def test_medians_and_ratios_of_medians() -> None:
    # Given three runs of every configuration / When summarized
    rows = by_config(stores.summarize(SAMPLES))
    # Expect the median of each workload, and ratios of medians to the reference
    assert rows["raft"]["median"] == {"w1b": 18_000, "w2": 5_000}
    assert rows["raft"]["ratio"] == {"w1b": None, "w2": None}
    assert rows["postgres"]["median"] == {"w1b": 9_000, "w2": 3_300}
    assert rows["postgres"]["ratio"] == {"w1b": 0.5, "w2": 0.66}
    assert rows["postgres"]["met"] is True  # 0.5 is the line itself
    assert rows["redis-always"]["ratio"] == {"w1b": 0.778, "w2": 0.68}
    assert rows["redis-always"]["met"] is False  # W2 below 0.7
    assert rows["redis-everysec"]["ratio"] == {"w1b": 1.028, "w2": 1.0}
    assert rows["redis-everysec"]["met"] is None  # quoted, no target
    # the forwarded figure is against postgres, not raft
    assert rows["forwarded"]["against"] == "postgres"
    assert rows["forwarded"]["ratio"] == {"w1b": 0.889, "w2": 0.636}
    assert rows["forwarded"]["runs"] == {"w1b": [8_100, 8_000, 7_900], "w2": [2_000, 2_100, 2_200]}


def test_order_follows_the_configurations_and_missing_references_give_no_ratio() -> None:
    # Given a subset without raft / When summarized
    subset = {"forwarded": SAMPLES["forwarded"], "postgres": SAMPLES["postgres"]}
    rows = stores.summarize(subset)
    # Expect the configurations' order, and no ratio (nor verdict) without its reference
    assert [row["config"] for row in rows] == ["postgres", "forwarded"]
    assert rows[0]["ratio"] == {"w1b": None, "w2": None}
    assert rows[0]["met"] is None
    assert rows[1]["ratio"] == {"w1b": 0.889, "w2": 0.636}


def test_table_shows_medians_ratios_and_verdicts() -> None:
    # Given the canned runs / When drawn
    lines = stores.table(stores.summarize(SAMPLES)).splitlines()
    # Expect a header and one line per configuration, with what it is compared to
    assert " ".join(lines[0].split()) == "config W1b /s W2 /s W1b ratio W2 ratio against target"
    assert lines[1].split() == ["raft", "18,000", "5,000", "-", "-", "-", "-"]
    assert " ".join(lines[2].split()) == "postgres 9,000 3,300 0.50x 0.66x raft >= 0.5x: met"
    assert lines[3].split()[-3:] == [">=", "0.7x:", "missed"]
    assert lines[5].split() == ["forwarded", "8,000", "2,100", "0.89x", "0.64x", "postgres", "-"]


def test_configurations_and_the_configs_flag() -> None:
    # Given / When / Expect: every name is a configuration, in the brief's interleaving order
    assert [c.name for c in stores.CONFIGS] == [
        "raft",
        "postgres",
        "redis-always",
        "redis-everysec",
        "forwarded",
    ]
    assert stores.BY_NAME["forwarded"].nodes == 2
    # --configs keeps the order given and refuses a name it does not know
    chosen = stores.config_list("postgres, raft")
    assert [c.name for c in chosen] == ["postgres", "raft"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown configuration mysql"):
        stores.config_list("raft,mysql")


def test_a_database_url_names_the_new_database() -> None:
    assert (
        with_database("postgresql://postgres@127.0.0.1:5432/postgres", "taskd_bench_1")
        == "postgresql://postgres@127.0.0.1:5432/taskd_bench_1"
    )


@pytest.mark.slow
@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
def test_private_redis_runs_as_asked_and_leaves_nothing(appendfsync: str) -> None:
    # Given a private redis-server on a free port
    [port] = free_ports(1)
    server = PrivateRedis(port, appendfsync)
    # When it runs
    with server:
        found = server.settings()
        with server.client() as client:
            client.set("k", "v")
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    # Expect the AOF setting asked for; afterwards no server and no directory
    assert found["appendonly"] == "yes"
    assert found["appendfsync"] == appendfsync
    assert not server.dir.exists()
    with pytest.raises(redis.ConnectionError), server.client() as client:
        client.ping()


@pytest.mark.slow
def test_fresh_database_is_empty_and_dropped_afterwards() -> None:
    # Given a fresh database, empty
    with fresh_database() as url:
        name = url.rpartition("/")[2]
        left_open = psycopg.connect(url, autocommit=True)
        tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        assert left_open.execute(tables).fetchone() == (0,)
        # When a table is made in it and the session is left open (as a killed node's is)
        left_open.execute("CREATE TABLE t (x int)")
    left_open.close()
    # Expect the database dropped all the same
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        gone = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
        assert gone.fetchone() == (0,)
