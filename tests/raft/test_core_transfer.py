"""Leadership transfer, unreachable reports and status."""

from __future__ import annotations

import pytest

from taskd.errors import NotLeader
from taskd.raft.confstate import ConfChangeError
from taskd.raft.core import RaftCore, Role
from taskd.raft.progress import ProgressState
from taskd.raft.types import MessageKind
from tests.raft.net import CONFIG, Net


def test_transfer_hands_leadership_to_the_target_without_an_election_timeout() -> None:
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    net.propose("n1", b"a")
    # When the leader hands over to n3 (no tick needed)
    net.core("n1").transfer_leadership("n3")
    net.deliver()
    # Expect n3 to lead the next term, n1 to follow it, and writes to go on
    assert net.leaders() == ["n3"] and net.core("n3").term == 2
    assert net.core("n1").leader == "n3"
    net.propose("n3", b"b")
    assert net.nodes["n1"].applied == [b"a", b"b"]


def test_a_lagging_target_is_brought_up_to_date_first_and_proposals_wait() -> None:
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    net.nodes["n3"].down = True
    net.propose("n1", *[b"x"] * 10)
    net.nodes["n3"].down = False
    leader = net.core("n1")
    leader.transfer_leadership("n3")
    with pytest.raises(NotLeader) as caught:
        leader.propose(b"refused")
    assert caught.value.leader_hint is None
    assert not [m for m in leader.ready().messages if m.kind is MessageKind.TIMEOUT_NOW]
    net.tick(2)  # the heartbeat answer shows n3 behind; appends catch it up; then TIMEOUT_NOW
    assert net.leaders() == ["n3"]
    assert net.nodes["n3"].applied == [b"x"] * 10


def test_a_transfer_that_cannot_finish_gives_up_after_an_election_timeout() -> None:
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    net.isolate("n3")
    net.propose("n1", b"x")
    leader = net.core("n1")
    leader.transfer_leadership("n3")
    net.tick(CONFIG.election_ticks - 1, nodes=["n1", "n2"])
    with pytest.raises(NotLeader):
        leader.propose(b"still transferring")
    net.tick(1, nodes=["n1", "n2"])
    assert leader.role is Role.LEADER
    leader.propose(b"taken again")


def test_transfer_picks_the_most_caught_up_voter_and_refuses_non_voters() -> None:
    net = Net(["n1", "n2", "n3"], learners=["n4"])
    net.isolate("n4")
    net.elect("n1")
    net.nodes["n2"].down = True
    net.propose("n1", b"x")
    leader = net.core("n1")
    with pytest.raises(ConfChangeError, match="n4 is not a voter"):
        leader.transfer_leadership("n4")
    leader.transfer_leadership()
    assert leader.transfer_target == "n3"
    single = RaftCore("n1", ["n1"])
    single.tick()
    with pytest.raises(ConfChangeError, match="no other voter"):
        single.transfer_leadership()
    with pytest.raises(NotLeader):
        net.core("n2").transfer_leadership()


def test_report_unreachable_stops_pipelining_to_that_peer() -> None:
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    leader = net.core("n1")
    progress = leader.replication.progress["n2"]
    assert progress.state is ProgressState.REPLICATE
    leader.report_unreachable("n2")
    assert progress.state is ProgressState.PROBE and progress.next == progress.match + 1


def test_status_shows_roles_match_and_reachability() -> None:
    net = Net(["n1", "n2", "n3"], learners=["n4"])
    net.isolate("n4")
    net.elect("n1")
    net.propose("n1", b"a")
    net.nodes["n3"].down = True
    net.tick(CONFIG.election_ticks, nodes=["n1", "n2"])
    status = net.core("n1").status()
    assert (status.role, status.leader, status.commit_index) == ("leader", "n1", 2)
    rows = {m.id: (m.role, m.match_index, m.reachable) for m in status.members}
    assert rows == {
        "n1": ("leader", 2, True),
        "n2": ("follower", 2, True),
        "n3": ("follower", 2, False),
        "n4": ("learner", 0, False),
    }
    follower = {m.id: (m.role, m.reachable) for m in net.core("n2").status().members}
    assert follower["n1"] == ("leader", True) and follower["n3"] == ("follower", False)
    assert net.core("n4").status().role == "follower"
    net.isolate("n1")
    net.tick(CONFIG.election_ticks * 2, nodes=["n2"])
    assert net.core("n2").role is Role.PRE_CANDIDATE
    assert net.core("n2").status().role == "candidate"


def test_a_lost_timeout_now_is_sent_again_on_the_next_heartbeat_answer() -> None:
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    net.drop_if = lambda m: m.kind is MessageKind.TIMEOUT_NOW
    net.core("n1").transfer_leadership("n2")
    net.deliver()
    assert net.leaders() == ["n1"]
    net.drop_if = lambda m: False
    net.tick(2, nodes=["n1"])
    assert net.leaders() == ["n2"]
