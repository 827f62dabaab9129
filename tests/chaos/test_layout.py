"""How a chaos cluster is laid out, and the small measurements the cluster benchmarks rely on.

Given 3 nodes with proxies, Expect every directed pair to have its own proxy port in the chaos
range and each node to dial every other member through the proxy of that pair
(``--peer-route``), its own address never routed; without proxies, no routes at all. On a
shared database, Expect no ``--peers`` and no routes, but one proxy per node to the database,
whose port that node's ``--store`` URL names. And Expect
the CPU reading of a process and the failover measurement (the first acknowledgement of a
write sent after the kill) to mean what the benchmarks say.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio
import trio.testing

from bench.failover import Writes
from chaos.cluster import DATABASE, layout, node_argv, process_cpu_seconds
from chaos.databases import Database
from chaos.ports import HIGH, LOW, PortPool


def test_every_directed_link_has_its_own_proxy_and_route(tmp_path: Path):
    lay = layout(3, PortPool(), tmp_path / "data", tmp_path, proxied=True)
    assert len(lay.links) == 6
    ports = [link.port for link in lay.links] + [n.grpc_port for n in lay.nodes]
    ports += [n.http_port for n in lay.nodes]
    assert len(set(ports)) == len(ports) and all(LOW <= p <= HIGH for p in ports)
    for node in lay.nodes:
        others = set(lay.members) - {node.member}
        assert set(node.routes) == others
        argv = node_argv(node, lay.members, ("taskd",), ())
        assert argv[argv.index("--grpc") + 1] == node.member
        assert argv.count("--peer-route") == 2
        for member, address in node.routes.items():
            [link] = [
                ln for ln in lay.links if (ln.source, ln.destination) == (node.member, member)
            ]
            assert address == f"127.0.0.1:{link.port}"
            assert link.target_port == int(member.rpartition(":")[2])
    plain = layout(3, PortPool(), tmp_path / "d2", tmp_path, proxied=False)
    assert not plain.links and all(not n.routes for n in plain.nodes)


def test_on_a_shared_database_each_node_dials_it_through_its_own_proxy(tmp_path: Path):
    for db, url in (
        (
            Database("postgres", "127.0.0.1", 5432, "chaos_x"),
            "postgres://postgres@127.0.0.1:{}/chaos_x",
        ),
        (Database("redis", "127.0.0.1", 6379, "chaos-x"), "redis://127.0.0.1:{}/0?prefix=chaos-x"),
    ):
        lay = layout(3, PortPool(), tmp_path / "data", tmp_path, proxied=True, database=db)
        assert [(ln.source, ln.destination) for ln in lay.links] == [
            (m, DATABASE) for m in lay.members
        ]
        assert {ln.target_port for ln in lay.links} == {db.port}
        for node, link in zip(lay.nodes, lay.links, strict=True):
            assert not node.routes and node.store_port == link.port
            argv = node_argv(node, lay.members, ("taskd",), (), db)
            assert "--peers" not in argv and "--peer-route" not in argv
            assert argv[argv.index("--store") + 1] == url.format(link.port)
        plain = layout(2, PortPool(), tmp_path / "d2", tmp_path, proxied=False, database=db)
        assert not plain.links
        argv = node_argv(plain.nodes[0], plain.members, ("taskd",), (), db)
        assert argv[argv.index("--store") + 1] == url.format(db.port)


def test_process_cpu_seconds_reads_utime_plus_stime():
    before = process_cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))
    assert process_cpu_seconds(os.getpid()) >= before > 0


async def test_failover_counts_only_writes_sent_after_the_kill():
    writes = Writes()
    writes.acks = [(1.0, 5.0), (2.0, 2.5), (3.5, 4.0), (4.0, 4.2)]
    assert writes.first_ack_sent_after(3.0) == 4.0  # not 5.0 (sent before), not 2.5
    assert writes.first_ack_sent_after(9.0) is None
    woke = []

    async def waiter() -> None:
        await writes.next_ack()
        woke.append(True)

    with trio.fail_after(1):  # a waiter that never wakes fails the test
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            writes.acknowledged(6.0)
    assert woke == [True]
    assert writes.first_ack_sent_after(5.0) == writes.acks[-1][1]
