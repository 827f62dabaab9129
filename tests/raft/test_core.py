"""RaftCore as a one-member cluster: election at start-up, commit on persist, compaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskd.errors import NotLeader
from taskd.raft import diagram
from taskd.raft.core import TRANSITIONS, Event, RaftCore, Ready, Role
from taskd.raft.types import Entry, EntryKind, HardState, Message, MessageKind, SnapshotMeta

NOOP = EntryKind.NOOP


def persist(core: RaftCore, ready: Ready) -> None:
    if ready.entries_to_persist:
        last = ready.entries_to_persist[-1]
        core.persisted(last.term, last.index)


def test_starts_as_follower_and_refuses_proposals() -> None:
    core = RaftCore("n1", ["n1"])
    assert core.role is Role.FOLLOWER
    with pytest.raises(NotLeader) as caught:
        core.propose(b"x")
    assert caught.value.leader_hint is None


def test_first_tick_elects_itself_in_a_new_term_with_a_noop() -> None:
    core = RaftCore("n1", ["n1"], hard_state=HardState(term=4, vote="n1", commit=0))
    core.tick()
    assert (core.role, core.term, core.leader) == (Role.LEADER, 5, "n1")
    ready = core.ready()
    assert ready.hard_state == HardState(5, "n1", 0)
    assert ready.entries_to_persist == [Entry(5, 1, b"", NOOP)]
    assert ready.committed_entries == [] and ready.messages == []


def test_entry_commits_once_persisted_and_is_handed_out_once() -> None:
    core = RaftCore("n1", ["n1"])
    core.tick()
    assert core.propose(b"a") == 2
    first = core.ready()
    assert [e.index for e in first.entries_to_persist] == [1, 2]
    assert not core.ready().entries_to_persist  # handed out already
    assert core.status().commit_index == 0
    persist(core, first)
    assert core.status().commit_index == 2
    second = core.ready()
    assert [e.data for e in second.committed_entries] == [b"", b"a"]
    assert second.hard_state is None
    core.advance(second)
    assert core.applied_index == 2
    assert not core.has_ready()


def test_max_entries_limits_a_ready() -> None:
    core = RaftCore("n1", ["n1"])
    core.tick()
    core.propose_many([b"x"] * 9)
    assert len(core.ready(max_entries=4).entries_to_persist) == 4
    assert core.has_ready()
    assert len(core.ready(max_entries=100).entries_to_persist) == 6


def test_restart_takes_a_term_above_its_log_and_commits_old_entries_with_the_noop() -> None:
    # Given a log whose last entry is from a term the hard state never saw (crash between)
    old = [Entry(1, 1, b"", NOOP), Entry(1, 2, b"a"), Entry(2, 3, b"b")]
    core = RaftCore("n1", ["n1"], hard_state=HardState(1, "n1", 0), entries=old)
    core.tick()
    assert core.term == 3
    ready = core.ready()
    assert ready.entries_to_persist == [Entry(3, 4, b"", NOOP)]
    assert ready.committed_entries == []  # old terms commit only through the new no-op
    persist(core, ready)
    assert [e.index for e in core.ready().committed_entries] == [1, 2, 3, 4]


def test_compaction_forgets_applied_entries() -> None:
    core = RaftCore("n1", ["n1"])
    core.tick()
    core.propose_many([b"a", b"b", b"c"])
    persist(core, core.ready())
    core.advance(core.ready())
    core.compact(3, 1)
    assert core.log.offset == 3 and [e.index for e in core.log.entries] == [4]
    with pytest.raises(ValueError, match="past applied"):
        core.compact(10, 1)


def test_restored_from_snapshot_continues_after_it() -> None:
    core = RaftCore(
        "n1",
        ["n1"],
        snapshot=SnapshotMeta(10, 2),
        entries=[Entry(2, 10, b"old"), Entry(2, 11, b"x")],
    )
    assert core.applied_index == 10
    core.tick()
    persist(core, core.ready())
    assert [e.index for e in core.ready().committed_entries] == [11, 12]


def test_a_leader_ignores_campaigns_and_bad_voter_lists_are_refused() -> None:
    core = RaftCore("n1", ["n1"])
    core.tick()
    core.ready()
    core.step(Message(MessageKind.VOTE, src="n9", dst="n1", term=99))
    core.step(Message(MessageKind.PRE_VOTE, src="n9", dst="n1", term=99))
    assert core.term == 1 and core.role is Role.LEADER
    assert not core.has_ready()
    with pytest.raises(ValueError):
        RaftCore("n1", ["n2", "n2"])


def test_a_node_outside_the_voters_never_campaigns() -> None:
    # A joining node (no configuration yet) and a learner only listen.
    for core in (RaftCore("n4", []), RaftCore("n4", ["n1"], learners=["n4"])):
        for _ in range(100):
            core.tick()
        assert core.role is Role.FOLLOWER and core.term == 0
        assert not core.has_ready()


def test_status_and_transition_table() -> None:
    core = RaftCore("n1", ["n1"])
    core.tick()
    status = core.status()
    assert (status.id, status.role, status.term, status.leader) == ("n1", "leader", 1, "n1")
    assert [m.id for m in status.members] == ["n1"]
    assert all(target in Role for target in TRANSITIONS.values())


def test_discard_unpersisted_forgets_the_unwritten_tail_and_resends_the_hard_state() -> None:
    # Given a leader with persisted entries, a batch handed out and more proposed after it
    core = RaftCore("n1", ["n1"])
    core.tick()
    persist(core, core.ready())
    core.propose_many([b"a", b"b"])
    persist(core, core.ready())
    core.ready()  # commits a, b for applying
    core.propose_many([b"c", b"d"])
    handed = core.ready()
    assert [e.data for e in handed.entries_to_persist] == [b"c", b"d"]
    core.propose(b"e")
    # When the driver could not write the batch and drops everything unpersisted
    assert core.discard_unpersisted() == 3
    # Expect the log to continue from what is on disk, with the hard state handed out again
    assert core.last_index == 3
    again = core.ready()
    assert again.hard_state == HardState(core.term, "n1", core.log.committed)
    assert again.entries_to_persist == []
    assert core.propose(b"f") == 4
    ready = core.ready()
    assert [(e.index, e.data) for e in ready.entries_to_persist] == [(4, b"f")]
    persist(core, ready)
    assert [e.data for e in core.ready().committed_entries] == [b"f"]


def test_committed_role_diagram_is_current_and_complete() -> None:
    committed = (Path(__file__).parents[2] / "docs" / "raft-roles.md").read_text()
    assert committed == diagram.render(), "run: python -m taskd.raft.diagram > docs/raft-roles.md"
    used = {event for _, event in TRANSITIONS}
    assert used == set(Event), f"events with no transition: {set(Event) - used}"
