"""Snapshots sent to followers behind the leader's compacted log, and their installation."""

from __future__ import annotations

from taskd.raft.core import RaftCore
from taskd.raft.progress import ProgressState
from taskd.raft.types import Entry, Message, MessageKind, SnapshotMeta
from tests.raft.net import Net


def lagging_follower() -> Net:
    """n1 leads; n3 was down while 30 entries committed and n1 compacted them away."""
    net = Net(["n1", "n2", "n3"])
    net.elect("n1")
    net.propose("n1", b"a")
    net.nodes["n3"].down = True
    net.propose("n1", *[b"x%d" % i for i in range(30)])
    net.compact("n1")
    return net


def test_a_follower_behind_the_compacted_log_gets_the_snapshot_then_entries() -> None:
    # Given a follower that needs entries the leader no longer has
    net = lagging_follower()
    meta = net.core("n1").log.snapshot
    assert meta.index == 32 and meta.voters == ("n1", "n2", "n3")
    # When it comes back
    net.restart("n3")
    net.delivered.clear()
    net.tick(2)
    # Expect one SNAPSHOT naming the leader's snapshot and its configuration
    offers = [m for m in net.delivered if m.kind is MessageKind.SNAPSHOT]
    assert [(m.dst, m.snapshot) for m in offers] == [("n3", meta)]
    # and the follower restored from it: same state, log restarting at it, then replicating
    n3 = net.nodes["n3"]
    assert n3.applied == net.nodes["n1"].applied
    assert (n3.core.log.offset, n3.core.log.committed, n3.core.applied_index) == (32, 32, 32)
    net.propose("n1", b"after")
    assert n3.applied[-1] == b"after" and [e.index for e in n3.disk] == [33]
    assert net.core("n1").replication.progress["n3"].state is ProgressState.REPLICATE


def test_the_ready_hands_the_snapshot_out_once_with_the_answer_after_it() -> None:
    core = RaftCore("n3", ["n1", "n2", "n3"])
    core.step(Message(MessageKind.APPEND, "n1", "n3", 1, 0, 0, 1, (Entry(1, 1, b"a"),)))
    core.ready()
    meta = SnapshotMeta(10, 1, ("n1", "n2", "n3"))
    core.step(Message(MessageKind.SNAPSHOT, "n1", "n3", 1, 10, 1, snapshot=meta))
    ready = core.ready()
    assert ready.snapshot == meta and ready.must_sync
    assert ready.entries_to_persist == [] and ready.committed_entries == []
    (answer,) = ready.messages
    assert (answer.kind, answer.index, answer.reject) == (MessageKind.APPEND_RESPONSE, 10, False)
    core.snapshot_installed(meta)
    assert core.ready().snapshot is None
    assert (core.log.offset, core.log.committed, core.applied_index, core.last_index) == (
        10,
        10,
        10,
        10,
    )
    # the next append continues after it
    core.step(Message(MessageKind.APPEND, "n1", "n3", 1, 10, 1, 11, (Entry(1, 11, b"b"),)))
    ready = core.ready()
    assert ready.entries_to_persist == [Entry(1, 11, b"b")]


def test_a_snapshot_behind_the_followers_commit_is_refused_with_its_commit_index() -> None:
    core = RaftCore("n3", ["n1", "n2", "n3"])
    entries = tuple(Entry(1, i, b"e") for i in range(1, 6))
    core.step(Message(MessageKind.APPEND, "n1", "n3", 1, 0, 0, 5, entries))
    core.ready()
    core.step(
        Message(MessageKind.SNAPSHOT, "n1", "n3", 1, 3, 1, snapshot=SnapshotMeta(3, 1, ("n1",)))
    )
    ready = core.ready()
    assert ready.snapshot is None
    (answer,) = ready.messages
    assert (answer.index, answer.reject) == (5, False)
    assert core.conf.voters == ("n1", "n2", "n3")


def test_a_failed_snapshot_is_offered_again_after_a_heartbeat() -> None:
    net = lagging_follower()
    net.restart("n3")
    leader = net.core("n1")
    # When the driver cannot stream it (it reports the failure)
    net.drop_if = lambda m: m.kind is MessageKind.SNAPSHOT
    net.tick(2)
    # Expect the follower probed again later, and the snapshot offered again once it can be
    progress = leader.replication.progress["n3"]
    assert progress.state is ProgressState.PROBE
    assert net.nodes["n3"].applied == [b"a"]  # what it had before it went down
    net.drop_if = lambda m: False
    net.tick(2)
    assert net.nodes["n3"].applied == net.nodes["n1"].applied
    assert progress.state is ProgressState.REPLICATE


def test_a_joining_node_starts_from_the_snapshot_and_its_configuration() -> None:
    net = Net(["n1", "n2", "n3"], joining=["n4"])
    net.elect("n1")
    net.propose("n1", b"a", b"b")
    net.compact("n1")
    net.core("n1").propose_conf_change(add="n4")
    net.deliver()
    n4 = net.nodes["n4"]
    assert n4.applied == [b"a", b"b"]
    assert n4.core.conf.voters == ("n1", "n2", "n3", "n4")


def test_a_late_offer_of_a_snapshot_the_log_already_holds_forgets_nothing() -> None:
    # Given a follower that holds and acknowledged entries 1..5 (sim seed 1122, 134)
    core = RaftCore("n3", ["n1", "n2", "n3"])
    entries = tuple(Entry(1, i, b"e") for i in range(1, 6))
    core.step(Message(MessageKind.APPEND, "n1", "n3", 1, 0, 0, 2, entries))
    ready = core.ready()
    core.persisted(1, 5)
    assert [m.index for m in ready.messages] == [5]
    # When an older offer of a snapshot at 3 arrives (3 is ahead of its commit index, 2)
    core.step(Message(MessageKind.SNAPSHOT, "n1", "n3", 1, 3, 1, snapshot=SnapshotMeta(3, 1)))
    # Expect no install, the entries kept, and the commit index moved to the snapshot's
    ready = core.ready()
    assert ready.snapshot is None
    assert core.last_index == 5 and core.log.committed == 3
    (answer,) = ready.messages
    assert (answer.index, answer.reject) == (3, False)
