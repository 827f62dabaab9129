"""The leader's side of replication, through a tiny network of cores (``net.py``)."""

from __future__ import annotations

from dataclasses import replace

from taskd.raft.core import RaftCore, Role
from taskd.raft.progress import ProgressState
from taskd.raft.types import Entry, EntryKind, HardState, Message, MessageKind
from tests.raft.net import CONFIG, Net


def appends_to(net: Net, dst: str) -> list[Message]:
    return [m for m in net.delivered if m.kind is MessageKind.APPEND and m.dst == dst]


def rejections_from(net: Net, src: str) -> list[Message]:
    return [
        m
        for m in net.delivered
        if m.kind is MessageKind.APPEND_RESPONSE and m.src == src and m.reject
    ]


def test_three_nodes_replicate_commit_and_apply_in_order() -> None:
    # Given a leader of three
    net = Net(["n1", "n2", "n3"])
    leader = net.elect("n1")
    # When it takes proposals one round at a time
    net.propose(leader, b"a")
    net.propose(leader, b"b", b"c")
    # Expect every node to hold, commit and apply them in the same order
    for node in net.nodes.values():
        assert node.applied == [b"a", b"b", b"c"]
        assert node.core.log.committed == 4  # the no-op, a, b, c
        assert [e.index for e in node.disk] == [1, 2, 3, 4]
    assert net.core("n2").leader == "n1"


def test_a_batch_of_proposals_leaves_in_messages_within_the_caps() -> None:
    # Given a leader whose APPENDs carry at most 3 entries or 10 bytes
    config = replace(CONFIG, max_append_entries=3, max_append_bytes=10)
    net = Net(["n1", "n2", "n3"], config=config)
    net.elect("n1")
    net.delivered.clear()
    # When 7 small and 2 big proposals come in one round
    net.propose("n1", *[b"x"] * 7, b"y" * 8, b"z" * 20)
    # Expect each APPEND within the caps (a big entry still goes alone), all committed
    sizes = [[len(e.data) for e in m.entries] for m in appends_to(net, "n2") if m.entries]
    assert sizes == [[1, 1, 1], [1, 1, 1], [1, 8], [20]]
    assert net.nodes["n3"].applied[-1] == b"z" * 20


def test_pipelining_stops_at_the_inflight_window_until_acknowledged() -> None:
    # Given a leader that may have 2 APPENDs of 1 entry in flight, and n2 whose answers are lost
    config = replace(CONFIG, max_inflight=2, max_append_entries=1)
    net = Net(["n1", "n2", "n3"], config=config)
    net.elect("n1")
    net.blocked = {("n2", "n1")}
    net.delivered.clear()
    # When 5 entries are proposed
    net.propose("n1", *[b"e"] * 5)
    # Expect n2 sent exactly 2 of them, n3 (which answers) all 5
    assert len([m for m in appends_to(net, "n2") if m.entries]) == 2
    assert len([m for m in appends_to(net, "n3") if m.entries]) == 5
    assert net.core("n1").log.committed == 6
    # and once n2's answers come through, the heartbeat answer restarts the flow to it
    net.heal()
    net.tick(4)
    assert net.nodes["n2"].applied == [b"e"] * 5


def diverged_net() -> Net:
    """n1 and n2 hold 50 entries of term 1 and 50 of term 3 (all but 10 uncommitted); n3
    holds the same 10 of term 1, then 200 of term 2 that nobody else has."""
    net = Net(["n1", "n2", "n3"])
    good = [Entry(1, i, b"g") for i in range(1, 51)] + [Entry(3, i, b"h") for i in range(51, 101)]
    bad = good[:10] + [Entry(2, i, b"bad") for i in range(11, 211)]
    for node_id, disk in (("n1", good), ("n2", good), ("n3", bad)):
        node = net.nodes[node_id]
        node.disk = list(disk)
        node.hard_state = HardState(3, None, 10)
        net.restart(node_id)
    return net


def test_a_diverged_follower_is_repaired_in_a_few_round_trips() -> None:
    # Given a follower with a long tail of a term the leader never saw
    net = diverged_net()
    # When n1 leads term 4
    net.elect("n1")
    # Expect n3 repaired with one refusal per diverging term, not one per entry
    assert len(rejections_from(net, "n3")) <= 2
    leader_log = [(e.term, e.index) for e in net.nodes["n1"].disk]
    assert [(e.term, e.index) for e in net.nodes["n3"].disk] == leader_log
    assert net.core("n3").log.committed == 101


def test_a_follower_that_missed_many_entries_catches_up_in_one_probe() -> None:
    # Given n3 down while 300 entries commit
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    net.nodes["n3"].down = True
    net.propose("n1", *[b"p"] * 300)
    # When it comes back (with what it persisted) and hears a heartbeat
    net.restart("n3")
    net.delivered.clear()
    net.tick(2)
    # Expect one refusal (it names its last index), then the missing entries
    assert len(rejections_from(net, "n3")) == 1
    assert net.nodes["n3"].applied == [b"p"] * 300


def test_commit_counts_only_entries_of_the_current_term() -> None:
    # Given n1, leader of term 3, with an entry of term 2 at index 2 and its no-op at 3
    net = Net(["n1", "n2", "n3"])
    n1 = net.nodes["n1"]
    n1.disk = [Entry(1, 1, b"a"), Entry(2, 2, b"b")]
    n1.hard_state = HardState(2, None, 1)
    net.restart("n1")
    core = net.core("n1")
    core.tick()
    while core.role is not Role.LEADER:
        core.tick()
        for m in core.ready().messages:
            if m.kind in (MessageKind.PRE_VOTE, MessageKind.VOTE):
                answer = MessageKind(m.kind.value + "_response")
                core.step(Message(answer, m.dst, "n1", m.term))
    ready = core.ready()
    core.persisted(ready.entries_to_persist[-1].term, ready.entries_to_persist[-1].index)
    assert core.log.entries[-1].kind is EntryKind.NOOP and core.last_index == 3
    # When n2 says it holds up to the old-term entry only
    core.step(Message(MessageKind.APPEND_RESPONSE, "n2", "n1", core.term, index=2))
    # Expect nothing new committed: that entry is on a majority but of an older term
    assert core.log.committed == 1
    # and both commit once the current term's no-op is on a majority
    core.step(Message(MessageKind.APPEND_RESPONSE, "n2", "n1", core.term, index=3))
    assert core.log.committed == 3


def test_learners_receive_everything_but_never_count() -> None:
    # Given voters n1, n2 and a learner n3 that is not caught up enough to be promoted
    config = replace(CONFIG, promote_lag=0)
    net = Net(["n1", "n2"], learners=["n3"], config=config)
    net.isolate("n3")
    net.elect("n1")
    net.partition(["n1"], ["n2"], ["n3"])
    core = net.core("n1")
    net.propose("n1", b"a", b"b")
    assert [m.dst for m in net.queue if m.kind is MessageKind.APPEND] == []  # all blocked
    assert net.core("n1").conf.learners == ("n3",)
    # When the learner says it holds all but the last entry
    committed = core.log.committed
    core.step(
        Message(MessageKind.APPEND_RESPONSE, "n3", "n1", core.term, index=core.last_index - 1)
    )
    # Expect nothing committed on the leader and the learner's word, and no promotion
    assert core.log.committed == committed
    assert core.conf.learners == ("n3",)
    # and the other voter's answer commits
    core.step(Message(MessageKind.APPEND_RESPONSE, "n2", "n1", core.term, index=core.last_index))
    assert core.log.committed == core.last_index


def test_a_learner_never_campaigns() -> None:
    net = Net(["n1", "n2"], learners=["n3"])
    net.isolate("n3")  # never caught up, so never promoted
    net.elect("n1")
    net.tick(100, nodes=["n3"])
    assert net.core("n3").role is Role.FOLLOWER and net.core("n3").term == 0
    assert not [m for m in net.delivered if m.src == "n3" and m.kind is MessageKind.PRE_VOTE]


def test_heartbeats_carry_at_most_what_the_follower_matches() -> None:
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    net.nodes["n3"].down = True
    net.propose("n1", b"a", b"b")
    net.nodes["n3"].down = False
    net.delivered.clear()
    net.tick(2, nodes=["n1"])
    beats = {m.dst: m.commit for m in net.delivered if m.kind is MessageKind.HEARTBEAT}
    assert beats == {"n2": 3, "n3": 1}


def test_an_answer_never_claims_entries_before_they_are_handed_out_to_persist() -> None:
    # Given a follower that was told a commit index past what it persisted
    core = RaftCore("n2", ["n1", "n2", "n3"])
    entries = tuple(Entry(1, i, b"e") for i in range(1, 4))
    core.step(Message(MessageKind.APPEND, "n1", "n2", 1, 0, 0, 3, entries))
    assert core.log.committed == 3 and core.log.handed == 0
    # When an old append (before its commit index) arrives, and a heartbeat
    core.step(Message(MessageKind.APPEND, "n1", "n2", 1, 0, 0, 3, entries[:1]))
    core.step(Message(MessageKind.HEARTBEAT, "n1", "n2", 1, commit=3))
    # Expect the answers held back until the entries are handed out with them
    ready = core.ready(max_entries=2)
    assert ready.messages == []
    ready = core.ready()
    assert [(m.kind, m.index) for m in ready.messages] == [
        (MessageKind.APPEND_RESPONSE, 3),
        (MessageKind.APPEND_RESPONSE, 3),
        (MessageKind.HEARTBEAT_RESPONSE, 0),
    ]


def test_a_leader_whose_disk_refused_sent_entries_steps_down() -> None:
    # Given a leader that sent entries it then could not persist
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    core = net.core("n1")
    core.propose(b"x")
    ready = core.ready()
    assert any(m.entries for m in ready.messages)
    # When the driver discards them
    assert core.discard_unpersisted() == 1
    # Expect it to step down (it must never give those indexes other entries in its term)
    assert core.role is Role.FOLLOWER and core.leader is None


def test_a_follower_that_drops_unpersisted_entries_forgets_their_commit_too() -> None:
    # Given a follower told to commit an entry it has not persisted (sim finding 2, seed 85)
    core = RaftCore("n2", ["n1", "n2", "n3"])
    entries = (Entry(1, 1, b"a"), Entry(1, 2, b"b"))
    core.step(Message(MessageKind.APPEND, "n1", "n2", 1, 0, 0, 1, entries[:1]))
    core.persisted(1, core.ready().entries_to_persist[-1].index)
    core.step(Message(MessageKind.APPEND, "n1", "n2", 1, 1, 1, 2, entries[1:]))
    assert core.log.committed == 2
    # When its disk refuses entry 2
    core.ready()
    assert core.discard_unpersisted() == 1
    # Expect the commit index back to what it holds, and no answer claiming entry 2
    assert (core.log.committed, core.last_index) == (1, 1)
    core.step(Message(MessageKind.APPEND, "n1", "n2", 1, 0, 0, 2, entries[:1]))
    ready = core.ready()
    assert [(m.index, m.reject) for m in ready.messages] == [(1, False)]
    assert not core.has_ready()


def test_a_lost_append_in_the_stream_costs_one_round_trip_and_no_probing() -> None:
    # Given a leader streaming one entry per APPEND to n2, and the first of them lost
    config = replace(CONFIG, max_inflight=4, max_append_entries=1)
    net = Net(["n1", "n2", "n3"], config=config)
    net.elect("n1")
    lost: list[Message] = []

    def lose_first(m: Message) -> bool:
        if m.dst == "n2" and m.kind is MessageKind.APPEND and m.entries and not lost:
            lost.append(m)
            return True
        return False

    net.drop_if = lose_first
    net.delivered.clear()
    # When 6 entries are proposed (no tick: no heartbeat helps)
    net.propose("n1", *[b"e"] * 6)
    # Expect n2 to have everything, with the leader never leaving replicate for a probe
    assert net.nodes["n2"].applied == [b"e"] * 6
    progress = net.core("n1").replication.progress["n2"]
    assert progress.state is ProgressState.REPLICATE and progress.match == 7
    refusals = rejections_from(net, "n2")
    assert refusals and all(m.reject_hint == 1 for m in refusals)


def test_appends_carry_only_entries_handed_out_to_persist() -> None:
    # Given a leader whose driver takes one entry per round (sim finding 3, harsh seed 345)
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    core = net.core("n1")
    core.propose_many([b"a", b"b", b"c"])
    # When it hands out a round
    ready = core.ready(max_entries=1)
    # Expect its APPENDs to carry that round's entry and none past it
    (handed,) = ready.entries_to_persist
    sent = [e.index for m in ready.messages for e in m.entries]
    assert sent and max(sent) == handed.index
    # and when that write fails, no follower ever got the dropped entries
    assert core.discard_unpersisted() == 3
    later = core.ready()
    assert not [e for m in later.messages for e in m.entries]
