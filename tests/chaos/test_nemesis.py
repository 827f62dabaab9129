"""The nemesis schedule is a pure function of the seed.

Given a seed, a duration and a cluster size, Expect the same faults every time, every fault
healed before the run ends and before the next one starts, several kinds over a long run, and
only process faults (kill, pause) for a single node, which has no network to cut. On a shared
database, Expect database cuts instead of partitions, and a cut of a majority to cut exactly
a majority's links to the database.
"""

from __future__ import annotations

import itertools
import time

from chaos.cluster import DATABASE, Cluster, layout
from chaos.databases import Database
from chaos.history import ClusterView, History
from chaos.nemesis import WARMUP, Fault, Nemesis, schedule
from chaos.observe import Observer
from chaos.ports import PortPool
from chaos.proxy import Link, Network


def test_the_same_seed_gives_the_same_schedule():
    assert schedule(7, 60, 3) == schedule(7, 60, 3)
    assert schedule(7, 60, 3) != schedule(8, 60, 3)


def test_faults_do_not_overlap_and_end_before_the_run_does():
    faults = schedule(3, 120, 3)
    assert faults[0].at >= WARMUP
    for before, after in itertools.pairwise(faults):
        assert before.at + before.hold < after.at
    assert faults[-1].at + faults[-1].hold <= 120
    assert len({f.kind for f in faults}) >= 4


def test_a_single_node_gets_only_process_faults():
    kinds = {f.kind for seed in range(20) for f in schedule(seed, 60, 1)}
    assert kinds <= {"kill", "terminate", "pause", "kill-all"}
    assert "kill" in kinds


def test_a_shared_store_gets_database_cuts_instead_of_partitions():
    kinds = {f.kind for seed in range(20) for f in schedule(seed, 60, 3, shared=True)}
    assert {"cut-db", "cut-db-majority", "lose-db-answers", "kill", "pause"} <= kinds
    assert not kinds & {"isolate", "split", "one-way"}
    alone = {f.kind for seed in range(20) for f in schedule(seed, 60, 1, shared=True)}
    assert "cut-db" in alone  # one node still has its link to the database
    assert schedule(4, 60, 3) == schedule(4, 60, 3, shared=False)  # Raft runs: unchanged


def _nemesis(tmp_path, members: int, database: Database | None = None):
    lay = layout(members, PortPool(), tmp_path / "data", tmp_path, proxied=True, database=database)
    cluster = Cluster(lay, database=database)
    links = {(ls.source, ls.destination): Link(ls.source, ls.target_port) for ls in lay.links}
    network = Network(links)
    history = History()
    observer = Observer({m: "" for m in lay.members}, history, None)  # type: ignore[arg-type]
    leader = lay.members[1]
    observer.latest[leader] = ClusterView(leader, time.time(), "leader", 3, leader)
    return Nemesis([], cluster, network, observer, history, seed=5), network, leader


def test_a_split_puts_the_target_in_a_minority_and_cuts_every_link_across(tmp_path):
    # Given 5 members and a leader, When the nemesis splits around the leader
    nemesis, network, leader = _nemesis(tmp_path, 5)
    heal = nemesis.apply(Fault(0.0, "split", 1.0, "leader"))
    # Expect a minority of 2 holding the leader, and exactly the 2 x 3 x 2 links across cut
    cut = {pair for pair, link in network.links.items() if link.is_cut}
    minority = {b for (a, b) in network.links if a == leader and (a, b) not in cut} | {leader}
    assert len(minority) == 2 and len(cut) == 12
    assert all((a in minority) != (b in minority) for a, b in cut)
    heal()
    assert not network.faulted
    assert [e.kind for e in nemesis.history.nemesis] == ["cut", "heal"]


def test_isolating_the_leader_and_killing_it_close_its_links(tmp_path):
    nemesis, network, leader = _nemesis(tmp_path, 3)
    heal = nemesis.apply(Fault(0.0, "isolate", 1.0, "leader"))
    assert {p for p, link in network.links.items() if link.is_cut} == {
        p for p in network.links if leader in p
    }
    heal()
    nemesis.apply(Fault(0.0, "kill", 1.0, "leader"))
    into = [link for (_, b), link in network.links.items() if b == leader]
    assert into and all(link.target_is_down and not link.wanted for link in into)
    assert nemesis.history.nemesis[-1].kind == "kill"


def test_cutting_a_majority_from_the_database_cuts_exactly_their_links(tmp_path):
    # Given 5 nodes on a shared database, each behind its own proxy to it
    db = Database("postgres", "127.0.0.1", 5432, "chaos_x")
    nemesis, network, leader = _nemesis(tmp_path, 5, db)
    # When the nemesis cuts a majority around the leader
    heal = nemesis.apply(Fault(0.0, "cut-db-majority", 1.0, "leader"))
    # Expect 3 nodes, the leader among them, cut off the database, and nothing else cut
    cut = {a for (a, b), link in network.links.items() if link.is_cut}
    assert len(cut) == 3 and leader in cut
    assert {b for _, b in network.links} == {DATABASE}
    heal()
    assert not network.faulted
    heal = nemesis.apply(Fault(0.0, "cut-db", 1.0, "leader"))
    assert {a for (a, _), link in network.links.items() if link.is_cut} == {leader}
    heal()
    assert [e.kind for e in nemesis.history.nemesis] == ["cut", "heal", "cut", "heal"]
