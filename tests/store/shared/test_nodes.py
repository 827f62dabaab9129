"""Real node processes on one shared database (PostgreSQL, Redis), as users run them: two nodes
given the same ``--store`` URL; the leader is SIGKILLed or SIGSTOPped and the other takes over
within the lease; nothing acknowledged is lost; a stopped former leader, woken, is fenced off.
Each test has its own database (PostgreSQL) or key prefix (Redis), removed afterwards."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import urllib.request
from collections.abc import Iterator

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from taskd.api.taskd.internal import v1 as pb
from taskd.store.raft import forwardstream, wire
from taskd.store.shared.forwards import SECRET_HEADER
from tests.conftest import NodeFactory, NodeProcess
from tests.node.rest import get, post, wait_for_task
from tests.store.shared import pgserver, redisserver
from tests.store.shared.nodes import LEASE, role, submit, two_nodes, wait_for

pytestmark = pytest.mark.slow


# (tests take ``store_url`` before ``node_factory``: their nodes stop before the database or
# prefix is cleaned up, so that no node writes a key under the prefix after its cleanup)
@pytest.fixture(params=["postgres", "redis"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "postgres":
        with pgserver.fresh_database() as dsn:
            yield dsn
    else:
        with redisserver.fresh_prefix() as prefix:
            yield f"{redisserver.URL}?prefix={prefix}"


def test_the_other_node_takes_over_a_killed_leader_and_holds_every_acknowledged_task(
    store_url: str, node_factory: NodeFactory
) -> None:
    # Given two nodes on one database, 20 tasks acknowledged by the leader and 10 by the
    # follower, which forwards them to the leader
    leader, follower = two_nodes(node_factory, store_url)
    ids = [submit(leader, "shared") for _ in range(20)]
    for _ in range(10):
        task_id = submit(follower, "shared")
        ids.append(task_id)
        # (acknowledged once the follower applied it: a read there sees it at once)
        code, task = get(f"{follower.http_url}/api/v1/tasks/{task_id}?stale=true")
        assert code == 200 and task["state"] == "queued", task
    # When the leader is SIGKILLed
    leader.kill()
    took = wait_for(lambda: role(follower) == "leader", 5 * LEASE + 5, "a takeover")
    # Expect the other to lead within its lease (and a margin), with all 30 tasks, and writable
    assert took < LEASE + 3
    for task_id in ids:
        code, task = get(f"{follower.http_url}/api/v1/tasks/{task_id}")
        assert code == 200 and task["state"] == "queued", (task_id, task)
    submit(follower, "shared")


def test_a_stopped_leader_woken_after_its_lease_lapsed_is_fenced_off(
    store_url: str, node_factory: NodeFactory
) -> None:
    # Given two nodes on one database
    leader, follower = two_nodes(node_factory, store_url)
    before = submit(leader, "fenced")
    # When the leader is SIGSTOPped until the other took over, then woken
    assert leader.proc is not None
    os.kill(leader.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: role(follower) == "leader", 5 * LEASE + 5, "a takeover")
        after = submit(follower, "fenced")
    finally:
        os.kill(leader.proc.pid, signal.SIGCONT)
    # Expect the woken one to follow (its lease is gone): its writes go to the new leader
    wait_for(lambda: role(leader) == "follower", 10, "the old leader stepping down")
    woken = submit(leader, "fenced")
    # and both nodes to show the same tasks: from before, after, and through the woken one
    for node in (leader, follower):
        wait_for(
            lambda node=node: all(  # type: ignore[misc]
                get(f"{node.http_url}/api/v1/tasks/{i}")[0] == 200 for i in (before, after, woken)
            ),
            10,
            f"{node} showing the three tasks",
        )
    # And nothing ever written in the old term after the new one began (terms only grow)
    assert terms_in_log(store_url) == sorted(terms_in_log(store_url))
    assert len(set(terms_in_log(store_url))) >= 2


def terms_in_log(url: str) -> list[int]:
    """The term of every entry of the shared log, in index order (read with the database's
    own client, as an operator would)."""
    if url.startswith("postgres"):
        with pgserver.admin(url.rsplit("/", 1)[1]) as conn:
            rows = conn.execute('SELECT term FROM taskd_log ORDER BY "index"').fetchall()
        return [int(str(row[0])) for row in rows]
    prefix = url.rsplit("prefix=", 1)[1]
    with redisserver.admin() as client:
        entries = client.xrange(f"{{{prefix}}}:log")
    return [int(fields[b"t"]) for _, fields in entries]


def test_a_caller_without_the_databases_secret_cannot_forward_to_the_leader(
    store_url: str, node_factory: NodeFactory
) -> None:
    # Given a node leading on a shared database
    leader = node_factory("--store", store_url, "--store-lease", str(LEASE))
    wait_for(lambda: role(leader) == "leader", 10, "a leader")
    host, port = leader.grpc_address.rsplit(":", 1)
    wait_for(lambda: get(f"{leader.http_url}/readyz")[0] == 200, 10, "ready")
    written = terms_in_log(store_url)

    async def forward(secret: str) -> None:
        channel = Channel(host, int(port))
        try:
            async with channel.request(
                forwardstream.METHOD,
                Cardinality.STREAM_STREAM,
                pb.ForwardRequest,
                pb.ForwardResponse,
                metadata={SECRET_HEADER: secret} if secret else None,
            ) as stream:
                await stream.send_message(
                    pb.ForwardRequest(commands=wire.encode_commands([b"forged"])), end=True
                )
                await stream.recv_message()
        finally:
            channel.close()

    # When a caller forwards with a made-up secret, or none
    for secret in ("00" * 32, ""):
        with pytest.raises(GRPCError) as refused:
            asyncio.run(forward(secret))
        # Expect it refused, saying who may forward, and nothing written
        assert refused.value.status is Status.UNAUTHENTICATED
        assert "same --store" in str(refused.value.message)
    assert terms_in_log(store_url) == written


def test_an_executor_on_a_follower_leases_and_reports_through_the_leader(
    store_url: str, node_factory: NodeFactory
) -> None:
    # Given a leader that runs nothing and a follower whose local executor runs queue "work"
    flags = ("--store", store_url, "--store-lease", str(LEASE))
    leader = node_factory(*flags)
    wait_for(lambda: role(leader) == "leader", 10, "a leader")
    follower = node_factory(*flags, "--exec", "work=sh -c 'echo from-follower'")
    wait_for(lambda: role(follower) == "follower", 10, "a follower")
    # When tasks are submitted on either node
    ids = [submit(leader, "work"), submit(follower, "work"), submit(follower, "work")]
    # Expect every one run by the follower's executor (its lease and its report forwarded),
    # once, with its output as the result, on both nodes
    for task_id in ids:
        task = wait_for_task(leader.http_url, task_id, {"succeeded"}, deadline=15)
        assert task["worker"] == f"local@{follower.grpc_address}", task
        assert [a["outcome"] for a in task["attempts"]] == ["succeeded"], task
        code, seen = get(f"{follower.http_url}/api/v1/tasks/{task_id}")
        assert code == 200 and seen["state"] == "succeeded" and seen["result"] == task["result"]


def test_an_attempt_running_when_its_node_stops_leading_still_completes(
    store_url: str, node_factory: NodeFactory
) -> None:
    # Given two nodes whose local executors run a command that lasts 2 s, and a task running
    # on the leader
    leader, follower = two_nodes(node_factory, store_url, "--exec", "slow=sleep 2")
    task_id = submit(leader, "slow")
    wait_for_task(leader.http_url, task_id, {"running"}, deadline=5)
    # When the leader is SIGSTOPped until the other took over, then woken
    assert leader.proc is not None
    os.kill(leader.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: role(follower) == "leader", 5 * LEASE + 5, "a takeover")
    finally:
        os.kill(leader.proc.pid, signal.SIGCONT)
    wait_for(lambda: role(leader) == "follower", 10, "the old leader stepping down")
    # Expect the task to complete, once: its attempt's report reaches the new leader, or the
    # new leader runs it again (at-least-once), but it does not stay running for the 8 days
    # a local lease lasts
    task = wait_for_task(follower.http_url, task_id, {"succeeded"}, deadline=15)
    assert [a["outcome"] for a in task["attempts"]].count("succeeded") == 1, task


def test_task_rows_are_queryable_with_sql_as_the_node_changes_them(
    node_factory: NodeFactory,
) -> None:
    # Given a node on its own PostgreSQL database
    with pgserver.fresh_database() as dsn:
        node = node_factory("--store", dsn, "--store-lease", str(LEASE))
        # When two tasks are submitted, one with labels, and the other is canceled
        code, kept = post(
            f"{node.http_url}/api/v1/tasks", {"queue": "sql", "labels": {"team": "a"}}
        )
        assert code == 201, kept
        dropped = submit(node, "sql")
        assert post(f"{node.http_url}/api/v1/tasks/{dropped}/cancel", {})[0] == 200
        # Expect the table to say so, to anyone's SQL
        with pgserver.admin(dsn.rsplit("/", 1)[1]) as conn:
            rows = conn.execute(
                "SELECT id, queue, state, labels FROM taskd_tasks ORDER BY id"
            ).fetchall()
        node.terminate()  # before its database is dropped
    assert rows == [(kept["id"], "sql", "queued", {"team": "a"}), (dropped, "sql", "canceled", {})]


def get_text(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:  # a test's own node
        return int(answer.status), answer.read().decode()


def members_seen_by(node: NodeProcess) -> dict[str, tuple[str, int]]:
    """``GET /api/v1/cluster``'s members: address -> (role, match index)."""
    code, body = get(f"{node.http_url}/api/v1/cluster")
    assert code == 200, body
    return {m["address"]: (m["role"], m["match_index"]) for m in body["members"]}


def test_every_node_lists_every_node_on_the_database_and_a_killed_one_drops_out(
    store_url: str, node_factory: NodeFactory
) -> None:
    # Given three nodes on one database
    leader, follower = two_nodes(node_factory, store_url)
    third = node_factory("--store", store_url, "--store-lease", str(LEASE))
    nodes = [leader, follower, third]
    everyone = {node.grpc_address for node in nodes}
    submit(follower, "shared")
    # Expect each to list all three, the leader as leader, each with how far it applied
    roles = {a: "leader" if a == leader.grpc_address else "follower" for a in everyone}
    for node in nodes:
        wait_for(
            lambda node=node: {a: r for a, (r, _) in members_seen_by(node).items()} == roles,  # type: ignore[misc]
            10,
            f"{node} listing all three",
        )
    last = max(index for _, index in members_seen_by(leader).values())
    wait_for(
        lambda: all(index == last for _, index in members_seen_by(leader).values()),
        5,
        "every node's index caught up",
    )
    # and /metrics on each to say the same, for alerts
    for node in nodes:
        code, text = get_text(f"{node.http_url}/metrics")
        assert code == 200
        leads = node is leader
        assert f"taskd_cluster_leader {float(leads)}" in text, text
        assert "taskd_cluster_leader_known 1.0" in text
        listed = re.findall(
            r'^taskd_cluster_member_index\{member="([^"]+)",role="(\w+)"\}', text, re.M
        )
        assert {m for m, _ in listed} == everyone and ("leader" in {r for _, r in listed}), listed
    # And a leadership transfer to one of them refused: leadership moves when a leader stops
    code, body = post(
        f"{leader.http_url}/api/v1/cluster/transfer", {"address": follower.grpc_address}
    )
    assert code == 409 and "shared database" in body["error"]["message"], (code, body)
    # When a follower is SIGKILLed, expect it gone from the others' lists within two leases
    third.kill()
    rest = everyone - {third.grpc_address}
    took = wait_for(
        lambda: members_seen_by(leader).keys() == rest == members_seen_by(follower).keys(),
        5 * LEASE + 5,
        "the killed node dropping out",
    )
    assert took < 3 * LEASE + 2
