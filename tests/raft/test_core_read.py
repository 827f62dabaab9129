"""ReadIndex on a leader with peers: one heartbeat round per batch of reads."""

from __future__ import annotations

import pytest

from taskd.errors import NotLeader
from taskd.raft.core import RaftCore, Role
from taskd.raft.types import Message, MessageKind, ReadState
from tests.raft.net import Net


def leader_with_quiet_followers() -> tuple[Net, RaftCore]:
    """n1 leads, its no-op committed; nothing is delivered from here on unless the test does."""
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    core = net.core("n1")
    assert core.log.committed == 1
    return net, core


def heartbeats(core: RaftCore) -> list[Message]:
    return [m for m in core.ready().messages if m.kind is MessageKind.HEARTBEAT]


def answer(core: RaftCore, beat: Message) -> None:
    core.step(
        Message(MessageKind.HEARTBEAT_RESPONSE, beat.dst, "n1", beat.term, context=beat.context)
    )


def test_a_read_is_confirmed_only_after_a_majority_answered_a_heartbeat_round() -> None:
    # Given a leader with a committed no-op
    _, core = leader_with_quiet_followers()
    # When a read comes in
    core.read_index("r1")
    beats = heartbeats(core)
    # Expect a round of heartbeats carrying a round id, and no answer yet
    assert [b.dst for b in beats] == ["n2", "n3"]
    assert beats[0].context > 0 and beats[0].context == beats[1].context
    assert core.ready().read_states == []
    # When one follower answers (with the leader, a majority of three)
    answer(core, beats[0])
    # Expect the read confirmed at the commit index of the time of the call
    assert core.ready().read_states == [ReadState(1, "r1")]


def test_an_answer_to_an_older_round_confirms_nothing() -> None:
    _, core = leader_with_quiet_followers()
    core.read_index("r1")
    first = heartbeats(core)
    answer(core, first[0])
    core.ready()
    core.read_index("r2")
    (late,) = [b for b in first if b.dst == "n3"]
    answer(core, late)  # round 1's echo, after round 2 started
    assert core.ready().read_states == []


def test_reads_queued_during_a_round_share_the_next_one() -> None:
    _, core = leader_with_quiet_followers()
    core.read_index("a")
    core.read_index("b")  # before the round went out: same round
    first = heartbeats(core)
    assert len(first) == 2
    core.propose(b"x")
    core.read_index("c")
    core.read_index("d")
    assert heartbeats(core) == []  # one round in flight at a time
    answer(core, first[0])
    ready = core.ready()
    assert ready.read_states == [ReadState(1, "a"), ReadState(1, "b")]
    second = [m for m in ready.messages if m.kind is MessageKind.HEARTBEAT]
    assert {m.context for m in second} == {first[0].context + 1}
    answer(core, second[1])
    # c and d were asked before x committed: their index is the commit index of the time
    assert core.ready().read_states == [ReadState(1, "c"), ReadState(1, "d")]


def test_a_read_before_the_terms_first_commit_waits_for_it_then_for_a_round() -> None:
    net = Net(["n1", "n2", "n3"])
    net.partition(["n1", "n2"], ["n3"])
    net.blocked.add(("n2", "n1"))  # the votes... arrive by hand below
    core = net.core("n1")
    while core.role is not Role.LEADER:
        core.tick()
        for m in core.ready().messages:
            if m.kind in (MessageKind.PRE_VOTE, MessageKind.VOTE):
                kind = MessageKind(m.kind.value + "_response")
                core.step(Message(kind, "n2", "n1", m.term))
    core.read_index("early")
    ready = core.ready()
    assert ready.read_states == [] and not any(m.context for m in ready.messages)
    core.persisted(core.term, core.last_index)
    core.step(Message(MessageKind.APPEND_RESPONSE, "n2", "n1", core.term, index=core.last_index))
    assert core.log.committed == 1
    beats = heartbeats(core)
    assert beats and beats[0].context
    answer(core, beats[0])
    assert core.ready().read_states == [ReadState(1, "early")]


def test_a_leader_cut_off_confirms_no_read_and_drops_them_when_it_steps_down() -> None:
    net, core = leader_with_quiet_followers()
    net.isolate("n1")
    core.read_index("r")
    net.tick(20, nodes=["n1"])
    assert core.role is Role.FOLLOWER
    assert core.ready().read_states == []
    with pytest.raises(NotLeader):
        core.read_index("again")


def test_through_the_network_reads_wait_for_voters_and_learners_do_not_confirm() -> None:
    # Given voters n1..n3 and a learner n4 (never promoted: cut off until now)
    net = Net(["n1", "n2", "n3"], learners=["n4"])
    net.isolate("n4")
    net.elect("n1")
    # When n1 can only reach the learner and a read comes in
    net.partition(["n1", "n4"], ["n2", "n3"])
    net.core("n1").read_index("r")
    net.tick(4, nodes=["n1"])
    # Expect no answer from the learner's acknowledgements
    assert net.nodes["n1"].read_states == []
    # and once the voters hear it again, the read is confirmed
    net.heal()
    net.tick(2, nodes=["n1"])
    assert net.nodes["n1"].read_states == [ReadState(1, "r")]
