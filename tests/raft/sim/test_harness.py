"""The simulation's own parts behave as the driver protocol says.

Given one piece of the harness (the disk, the network), drive it directly; expect exactly what
a real disk or driver would do. These pin down harness bugs found while hunting seeds.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from taskd.raft import Entry, HardState, Message, MessageKind, RaftCore, SnapshotMeta
from tests.raft.sim.__main__ import main
from tests.raft.sim.cluster import Simulation
from tests.raft.sim.disk import SimDisk, Write


def entries(first: int, last: int, term: int) -> list[Entry]:
    return [Entry(term, index, b"e%d" % index) for index in range(first, last + 1)]


def test_only_synced_writes_survive_a_crash() -> None:
    disk = SimDisk()
    disk.pending = Write(hard_state=HardState(2, "n1", 0), entries=entries(1, 3, 2))
    disk.sync()
    disk.pending = Write(hard_state=HardState(3, "n2", 0), entries=entries(4, 5, 3))
    assert disk.lose(0) == []
    assert (disk.term, disk.vote, disk.last_index) == (2, "n1", 3)


def test_a_torn_write_keeps_a_prefix_in_write_order() -> None:
    disk = SimDisk()
    disk.pending = Write(hard_state=HardState(1, "n1", 0), entries=entries(1, 4, 1))
    disk.sync()
    # Given a write that replaces the suffix from 3, when a crash keeps its hard state and
    # first entry, expect the old entry 3 replaced and the old entry 4 gone.
    disk.pending = Write(hard_state=HardState(2, None, 0), entries=entries(3, 5, 2))
    kept = disk.lose(2)
    assert [(e.index, e.term) for e in kept] == [(3, 2)]
    assert [(e.index, e.term) for e in disk.entries] == [(1, 1), (2, 1), (3, 2)]
    assert disk.term == 2


def test_a_snapshot_over_a_cut_link_is_reported_failed_to_the_leader() -> None:
    # Seed 1049 once hung: the stream was dropped when sent, and nobody told the leader, so
    # it waited for the snapshot forever.
    sim = Simulation(1, steps=0)
    leader = sim.nodes["n1"]
    leader.start()
    reports: list[tuple[str, bool | None]] = []

    class Recorder:
        def report_snapshot(self, peer: str, ok: bool) -> None:
            reports.append((peer, ok))

        def report_unreachable(self, peer: str) -> None:
            reports.append((peer, None))

    def report(action: Callable[[RaftCore], object]) -> None:
        action(Recorder())  # type: ignore[arg-type]  # a stand-in with the two report methods

    leader.report = report  # type: ignore[method-assign]  # the driver's reports, recorded
    sim.network.cut("n1", "n2")
    meta = SnapshotMeta(5, 1)
    sim.network.send(leader, Message(MessageKind.SNAPSHOT, "n1", "n2", 1, snapshot=meta))
    for _ in range(100):
        sim.loop.run_one()
    assert ("n2", False) in reports


def test_make_sim_runs_seeds_and_says_how_many_passed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "3", "--seeds", "2", "--steps", "300"]) == 0
    out = capsys.readouterr().out
    assert "seed 3 steps 300: ok" in out and "seed 4 steps 300: ok" in out
    assert "2/2 seeds passed" in out
