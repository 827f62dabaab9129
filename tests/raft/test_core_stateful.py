"""Hypothesis drives a five-node network of cores (``net.py``) and shrinks any failure to a
short script: delivery in any order, losses, duplicates, partitions, crashes that keep only
what was persisted, compaction, membership changes and transfers. After every step: at most
one leader per term, and no two nodes ever commit or apply different entries at one index.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from taskd.errors import NotLeader
from taskd.raft.confstate import ConfChangeError
from taskd.raft.core import RaftConfig, Role
from taskd.raft.types import MessageKind
from tests.raft.net import Net

IDS = ["n1", "n2", "n3", "n4", "n5"]
CONFIG = RaftConfig(election_ticks=4, heartbeat_ticks=1, max_append_entries=3, max_inflight=2)
node_ids = st.sampled_from(IDS)


class Cluster(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.net = Net(IDS[:3], joining=IDS[3:], config=CONFIG)
        self.leader_of: dict[int, str] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}
        self.count = 0

    def _leaders(self) -> list[str]:
        return self.net.leaders()

    def _run(self) -> None:
        for node_id in IDS:
            self.net.run_ready(node_id)

    @rule(node=node_ids, times=st.integers(1, 6))
    def tick(self, node: str, times: int) -> None:
        for _ in range(times):
            if not self.net.nodes[node].down:
                self.net.core(node).tick()
        self._run()

    @precondition(lambda self: bool(self.net.queue))
    @rule(data=st.data(), again=st.booleans())
    def deliver(self, data: st.DataObject, again: bool) -> None:
        net = self.net
        message = net.queue.pop(data.draw(st.integers(0, len(net.queue) - 1)))
        if again:
            net.queue.append(message)
        lost = (message.src, message.dst) in net.blocked or net.nodes[message.dst].down
        if message.kind is MessageKind.SNAPSHOT:
            if not lost:
                net.core(message.dst).step(message)
            net.core(message.src).report_snapshot(message.dst, not lost)
        elif not lost:
            net.core(message.dst).step(message)
        self._run()

    @precondition(lambda self: bool(self.net.queue))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        message = self.net.queue.pop(data.draw(st.integers(0, len(self.net.queue) - 1)))
        if message.kind is MessageKind.SNAPSHOT:  # the driver reports a failed stream
            self.net.core(message.src).report_snapshot(message.dst, False)

    @rule(items=st.integers(1, 4))
    def propose(self, items: int) -> None:
        for node_id in self._leaders():
            try:
                self.net.core(node_id).propose_many(
                    [b"%d" % (self.count + i) for i in range(items)]
                )
                self.count += items
            except NotLeader:
                pass
        self._run()

    @rule(node=node_ids)
    def restart(self, node: str) -> None:
        self.net.restart(node)
        self._run()

    @rule(node=node_ids)
    def compact(self, node: str) -> None:
        core = self.net.core(node)
        if core.applied_index > core.log.offset:
            self.net.compact(node)

    @rule(side=st.sets(node_ids, min_size=1, max_size=2))
    def partition(self, side: set[str]) -> None:
        self.net.partition(side, [n for n in IDS if n not in side])

    @rule()
    def heal(self) -> None:
        self.net.heal()

    @rule(cap=st.none() | st.integers(1, 3))
    def cap_rounds(self, cap: int | None) -> None:
        self.net.max_entries = cap  # the drivers take at most this many entries per round

    @rule(member=node_ids)
    def change_membership(self, member: str) -> None:
        for node_id in self._leaders():
            core = self.net.core(node_id)
            try:
                if member in core.conf:
                    core.propose_conf_change(remove=member)
                else:
                    core.propose_conf_change(add=member)
            except (ConfChangeError, NotLeader):
                pass
        self._run()

    @rule(to=st.none() | node_ids)
    def transfer(self, to: str | None) -> None:
        for node_id in self._leaders():
            try:
                self.net.core(node_id).transfer_leadership(to)
            except (ConfChangeError, NotLeader):
                pass
        self._run()

    @invariant()
    def one_leader_per_term(self) -> None:
        for node_id, node in self.net.nodes.items():
            if node.core.role is Role.LEADER:
                holder = self.leader_of.setdefault(node.core.term, node_id)
                assert holder == node_id, f"two leaders in term {node.core.term}"

    @invariant()
    def committed_entries_agree(self) -> None:
        for node_id, node in self.net.nodes.items():
            log = node.core.log
            for entry in log.slice(log.offset + 1, min(log.committed, log.last_index)):
                seen = self.committed.setdefault(entry.index, (entry.term, entry.data))
                assert seen == (entry.term, entry.data), f"{node_id} committed {entry}"
        histories = sorted((node.applied for node in self.net.nodes.values()), key=len)
        for history in histories:
            assert histories[-1][: len(history)] == history, "different commands applied"


Cluster.TestCase.settings = settings(
    max_examples=60, stateful_step_count=120, deadline=None, database=None
)
TestCluster = Cluster.TestCase
