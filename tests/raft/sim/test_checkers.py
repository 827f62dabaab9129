"""The checkers can fail: broken cores and forged histories are caught.

Given a core variant with a classic Raft bug planted in it, run the simulation over a few
seeds; expect at least one seed to fail with the invariant that bug breaks. And given a
forged history fed straight to the checker, expect the exact violation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from taskd.errors import NotLeader
from taskd.raft import Entry, EntryKind, Message, RaftCore, ReadState
from tests.raft.sim.checkers import SafetyChecker, Violation
from tests.raft.sim.cluster import Simulation
from tests.raft.sim.loop import EventLoop
from tests.raft.sim.trace import Trace


class DoubleVoter(RaftCore):
    """Forgets whom it voted for before every vote request: two votes per term."""

    def step(self, message: Message) -> None:
        if message.kind.name == "VOTE" and message.term == self.term:
            self.vote = None
        super().step(message)


class MinorityCommitter(RaftCore):
    """A leader commits whatever it has on its own disk, quorum or not."""

    def persisted(self, term: int, index: int) -> None:
        super().persisted(term, index)
        if self.role.value == "leader":
            self.log.commit_to(self.log.stable)


class ForgetfulRestart(RaftCore):
    """Loses the last entry of its disk log at every restart, as if the fsync had lied."""

    def __init__(self, node_id: str, voters: Sequence[str], **kwargs: Any) -> None:
        entries = list(kwargs.pop("entries", ()))
        super().__init__(node_id, voters, entries=entries[:-1], **kwargs)


class TrustingReader(RaftCore):
    """Answers reads from its own commit index at once, without asking a quorum: a deposed
    leader that does not know it yet serves stale reads."""

    def read_index(self, ctx: object) -> None:
        if self.role.value != "leader":
            raise NotLeader(self.leader)
        self.read_states_confirmed([ReadState(self.log.committed, ctx)])


class Mute(RaftCore):
    """Never campaigns: a cluster of these never elects anyone."""

    def tick(self) -> None:
        pass


def failures(core_class: type[RaftCore], seeds: range) -> list[str]:
    found = []
    for seed in seeds:
        result = Simulation(seed, steps=3000, core_class=core_class).run()
        if not result.ok:
            assert result.failure is not None
            found.append(result.failure)
    return found


def test_two_votes_per_term_break_election_safety() -> None:
    found = failures(DoubleVoter, range(1, 31))
    assert any(f.startswith("election safety") for f in found), found


def test_commits_on_a_minority_are_caught() -> None:
    found = failures(MinorityCommitter, range(1, 21))
    invariants = {f.split(":")[0] for f in found}
    assert "commit on a durable majority" in invariants, found


def test_a_node_that_forgets_fsynced_entries_breaks_its_promise() -> None:
    found = failures(ForgetfulRestart, range(1, 21))
    assert any(f.startswith("acknowledged append lost") for f in found), found


def test_reads_without_a_quorum_round_are_caught() -> None:
    found = failures(TrustingReader, range(1, 41))
    assert any(f.startswith("linearizable read") for f in found), found


def test_a_cluster_that_never_elects_fails_liveness() -> None:
    result = Simulation(1, steps=500, core_class=Mute).run()
    assert not result.ok and result.failure is not None
    assert result.failure.startswith("liveness"), result.failure


# -- forged histories ----------------------------------------------------------------------


class FakeDisk:
    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    @property
    def snapshot(self) -> object:
        return type("Meta", (), {"index": 0, "term": 0})()

    def term_at(self, index: int) -> int | None:
        if index == 0:
            return 0
        return self.entries[index - 1].term if index <= len(self.entries) else None


class FakeNode:
    def __init__(self, node_id: str, entries: list[Entry]) -> None:
        self.id = node_id
        self.disk = FakeDisk(entries)


def checker() -> SafetyChecker:
    loop = EventLoop()
    return SafetyChecker(Trace(lambda: loop.now))


def entry(index: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(term, index, data, EntryKind.NORMAL)


def test_log_matching_catches_two_entries_at_one_index_and_term() -> None:
    check = checker()
    a = [entry(1, 1, b"a")]
    b = [entry(1, 1, b"b")]
    check.on_durable(FakeNode("n1", a), a)  # type: ignore[arg-type]
    with pytest.raises(Violation, match="log matching"):
        check.on_durable(FakeNode("n2", b), b)  # type: ignore[arg-type]


def test_log_matching_catches_the_same_entry_after_different_terms() -> None:
    check = checker()
    a = [entry(1, 1), entry(2, 3, b"y")]
    b = [entry(1, 2), entry(2, 3, b"y")]
    check.on_durable(FakeNode("n1", a), a)  # type: ignore[arg-type]
    with pytest.raises(Violation, match="log matching"):
        check.on_durable(FakeNode("n2", b), b[1:])  # type: ignore[arg-type]


def test_a_read_below_an_acknowledged_write_is_caught() -> None:
    check = checker()
    check.read_floor["r1"] = 10
    check.read_floor["r2"] = 10
    check.on_read_state(FakeNode("n1", []), ReadState(10, "r1"))  # type: ignore[arg-type]
    with pytest.raises(Violation, match="linearizable read"):
        check.on_read_state(FakeNode("n1", []), ReadState(9, "r2"))  # type: ignore[arg-type]
