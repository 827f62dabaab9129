"""Pre-vote, check-quorum and the lease on votes, through a tiny network of cores."""

from __future__ import annotations

from dataclasses import replace

from taskd.raft.core import RaftConfig, RaftCore, Role
from taskd.raft.types import CAMPAIGN_TRANSFER, Message, MessageKind
from tests.raft.net import CONFIG, Net


def test_a_sole_voter_still_elects_itself_on_its_first_tick() -> None:
    core = RaftCore("n1", ["n1"])
    core.tick()
    assert (core.role, core.term) == (Role.LEADER, 1)


def test_a_pre_candidate_asks_for_the_next_term_without_taking_it() -> None:
    net = Net(["n1", "n2", "n3"])
    core = net.core("n1")
    while core.role is Role.FOLLOWER:
        core.tick()
    assert (core.role, core.term, core.vote) == (Role.PRE_CANDIDATE, 0, None)
    ready = core.ready()
    assert ready.hard_state is None  # nothing to persist: no term, no vote
    assert [(m.kind, m.dst, m.term) for m in ready.messages] == [
        (MessageKind.PRE_VOTE, "n2", 1),
        (MessageKind.PRE_VOTE, "n3", 1),
    ]
    # One yes is a majority with its own: it campaigns for real, in term 1
    core.step(Message(MessageKind.PRE_VOTE_RESPONSE, "n2", "n1", 1))
    assert (core.role, core.term, core.vote) == (Role.CANDIDATE, 1, "n1")
    # and the voter that said yes to the pre-vote changed nothing
    assert (net.core("n2").term, net.core("n2").vote) == (0, None)


def test_pre_vote_keeps_a_rejoining_partitioned_node_from_disrupting() -> None:
    # Given a leader of three, and n3 cut off for many election timeouts
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    term = net.core("n1").term
    net.isolate("n3")
    net.tick(100)
    # Expect n3 never took a new term on its own
    assert net.core("n3").term == term
    assert net.core("n3").role is Role.PRE_CANDIDATE
    # When it rejoins
    net.heal()
    net.tick(3)
    # Expect the leader and term unchanged, and n3 following again
    assert net.leaders() == ["n1"] and net.core("n1").term == term
    assert (net.core("n3").role, net.core("n3").leader) == (Role.FOLLOWER, "n1")


def test_without_pre_vote_the_rejoining_node_forces_a_new_term() -> None:
    # The same scenario with plain elections (shows what pre-vote prevents)
    net = Net(["n1", "n2", "n3"], config=replace(CONFIG, pre_vote=False))
    net.elect("n1")
    term = net.core("n1").term
    net.isolate("n3")
    net.tick(100)
    assert net.core("n3").term > term + 3
    net.heal()
    net.tick(40)
    assert net.core("n1").term > term  # the cluster had to move to n3's term


def test_check_quorum_makes_a_partitioned_leader_step_down_and_it_commits_nothing() -> None:
    # Given a leader of three, cut off from both followers
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    old_term = net.core("n1").term
    net.isolate("n1")
    index = net.propose("n1", b"lost").start
    # When an election timeout passes without answers
    net.tick(CONFIG.election_ticks, nodes=["n1"])
    # Expect it to step down (no leader known), its proposal uncommitted
    old = net.core("n1")
    assert (old.role, old.leader, old.term) == (Role.FOLLOWER, None, old_term)
    assert old.log.committed < index
    # while the majority elects a new leader that takes writes
    net.tick(40, nodes=["n2", "n3"])
    (new,) = net.leaders()
    assert new in ("n2", "n3") and net.core(new).term > old_term
    net.propose(new, b"kept")
    # and once healed, the old leader's entry is replaced, never applied anywhere
    net.heal()
    net.tick(3)
    for node in net.nodes.values():
        assert node.applied == [b"kept"]


def test_without_check_quorum_a_partitioned_leader_stays_leader() -> None:
    net = Net(["n1", "n2", "n3"], config=replace(CONFIG, check_quorum=False))
    net.elect("n1")
    net.isolate("n1")
    net.tick(3 * CONFIG.election_ticks, nodes=["n1"])
    assert net.core("n1").role is Role.LEADER


def test_a_voter_that_hears_a_leader_ignores_campaigns_except_a_transfer() -> None:
    # Given n2 following n1 and hearing from it
    net = Net(["n1", "n2", "n3"], config=replace(CONFIG, pre_vote=False))
    net.elect("n1")
    n2 = net.core("n2")
    term = n2.term
    # When n3 asks for a vote in a higher term
    n2.step(Message(MessageKind.VOTE, "n3", "n2", term + 1, index=99, log_term=term))
    # Expect it ignored: no answer, no new term
    assert n2.term == term and not n2.ready().messages
    # but a campaign the leader asked for is answered
    n2.step(
        Message(
            MessageKind.VOTE,
            "n3",
            "n2",
            term + 1,
            index=99,
            log_term=term,
            context=CAMPAIGN_TRANSFER,
        )
    )
    (answer,) = n2.ready().messages
    assert (answer.kind, answer.reject, n2.term, n2.vote) == (
        MessageKind.VOTE_RESPONSE,
        False,
        term + 1,
        "n3",
    )


def test_once_the_leader_is_silent_for_a_timeout_votes_are_granted_again() -> None:
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    net.nodes["n1"].down = True
    net.tick(40, nodes=["n2", "n3"])
    (leader,) = [n for n in net.leaders() if n != "n1"]
    assert leader in ("n2", "n3")


def test_a_majority_of_refusals_ends_the_campaign() -> None:
    core = RaftCore("n1", ["n1", "n2", "n3"], config=RaftConfig(seed=5))
    while core.role is Role.FOLLOWER:
        core.tick()
    core.step(Message(MessageKind.PRE_VOTE_RESPONSE, "n2", "n1", 0, reject=True))
    assert core.role is Role.PRE_CANDIDATE
    core.step(Message(MessageKind.PRE_VOTE_RESPONSE, "n3", "n1", 0, reject=True))
    assert (core.role, core.term) == (Role.FOLLOWER, 0)


def test_a_stale_leader_learns_the_new_term_from_any_answer() -> None:
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    net.isolate("n1")
    net.tick(40, nodes=["n2", "n3"])
    new_term = max(net.core("n2").term, net.core("n3").term)
    old = net.core("n1")
    assert old.role is Role.LEADER  # it did not tick: it does not know yet
    net.heal()
    old.propose(b"x")
    net.deliver()
    assert old.role is Role.FOLLOWER and old.term == new_term


def test_a_pre_candidate_asks_again_each_tick_so_a_lease_a_tick_longer_costs_a_tick() -> None:
    # Given n2 heard the leader one tick later than n1 (still in its lease when n1 asks)
    net = Net(["n1", "n2", "n3"])
    net.elect("n3")
    net.nodes["n3"].down = True
    n1, n2 = net.core("n1"), net.core("n2")
    n1.elapsed, n1.timeout = 0, CONFIG.election_ticks
    n2.elapsed, n2.timeout = -1, 100  # and will not time out itself
    net.tick(CONFIG.election_ticks, nodes=["n1", "n2"])
    assert n1.role is Role.PRE_CANDIDATE  # n2 ignored the first request
    # When one more tick passes
    net.tick(1, nodes=["n1", "n2"])
    # Expect n1 elected at once, not an election timeout later
    assert n1.role is Role.LEADER
