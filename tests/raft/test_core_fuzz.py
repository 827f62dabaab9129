"""A randomized, seeded cluster: every fault the network and the disks can produce, with
Raft's safety properties checked after every step. (The full simulation is tests/raft/sim;
this one is small and lives with the core, to catch a broken rule at once.)

Faults: messages delayed, reordered, duplicated and dropped, partitions, crashes that keep
only what was persisted, compaction, membership changes, transfers. Properties: at most one
leader per term; every node applied a prefix of one same sequence of commands; no entry
committed anywhere is ever contradicted (log matching on the committed prefix).
"""

from __future__ import annotations

import random

import pytest

from taskd.errors import NotLeader
from taskd.raft.confstate import ConfChangeError
from taskd.raft.core import RaftConfig, Role
from tests.raft.net import Net

CONFIG = RaftConfig(election_ticks=6, heartbeat_ticks=2, max_append_entries=4, max_inflight=3)


class Checked:
    def __init__(self, seed: int) -> None:
        self.rand = random.Random(seed)
        self.net = Net(["n1", "n2", "n3"], joining=["n4", "n5"], config=CONFIG)
        self.net.max_entries = self.rand.choice((None, 1, 3))
        self.leader_of: dict[int, str] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}
        self.proposed = 0

    def check(self) -> None:
        net = self.net
        for node_id, node in net.nodes.items():
            core = node.core
            if core.role is Role.LEADER:
                holder = self.leader_of.setdefault(core.term, node_id)
                assert holder == node_id, f"two leaders in term {core.term}: {holder}, {node_id}"
            log = core.log
            for entry in log.slice(log.offset + 1, min(log.committed, log.last_index)):
                seen = self.committed.setdefault(entry.index, (entry.term, entry.data))
                assert seen == (entry.term, entry.data), (
                    f"{node_id} committed {entry} where {seen} was committed"
                )
        histories = sorted((node.applied for node in net.nodes.values()), key=len)
        longest = histories[-1]
        for history in histories:
            assert longest[: len(history)] == history, "two nodes applied different commands"

    def step(self) -> None:
        net, rand = self.net, self.rand
        ids = list(net.nodes)
        roll = rand.random()
        if roll < 0.25:
            node_id = rand.choice(ids)
            if not net.nodes[node_id].down:
                net.core(node_id).tick()
        elif roll < 0.60 and net.queue:
            message = net.queue.pop(rand.randrange(len(net.queue)))
            if rand.random() < 0.1:
                net.queue.append(message)  # delivered twice
            target = net.nodes[message.dst]
            if (message.src, message.dst) not in net.blocked and not target.down:
                target.core.step(message)
                if message.kind.value == "snapshot":
                    net.core(message.src).report_snapshot(message.dst, True)
            elif message.kind.value == "snapshot":
                net.core(message.src).report_snapshot(message.dst, False)
        elif roll < 0.65 and net.queue:
            message = net.queue.pop(rand.randrange(len(net.queue)))  # lost
            if message.kind.value == "snapshot":  # the driver reports a failed stream
                net.core(message.src).report_snapshot(message.dst, False)
        elif roll < 0.80:
            for node_id in ids:
                core = net.core(node_id)
                if core.role is Role.LEADER:
                    try:
                        core.propose(b"c%d" % self.proposed)
                        self.proposed += 1
                    except NotLeader:
                        pass
        elif roll < 0.83:
            node_id = rand.choice(ids)
            net.restart(node_id)
        elif roll < 0.85:
            node_id = rand.choice(ids)
            if net.core(node_id).applied_index > net.core(node_id).log.offset:
                net.compact(node_id)
        elif roll < 0.88:
            if rand.random() < 0.5:
                net.heal()
            else:
                cut = rand.sample(ids, rand.randint(1, 2))
                net.partition(cut, [n for n in ids if n not in cut])
        elif roll < 0.91:
            for node_id in ids:
                core = net.core(node_id)
                if core.role is Role.LEADER:
                    member = rand.choice(ids)
                    try:
                        if member in core.conf:
                            core.propose_conf_change(remove=member)
                        else:
                            core.propose_conf_change(add=member)
                    except (ConfChangeError, NotLeader):
                        pass
        elif roll < 0.92:
            for node_id in ids:
                core = net.core(node_id)
                if core.role is Role.LEADER:
                    try:
                        core.transfer_leadership()
                    except (ConfChangeError, NotLeader):
                        pass
        for node_id in ids:
            net.run_ready(node_id)

    def settle(self) -> None:
        """Heal everything and run until the cluster agrees (liveness, loosely)."""
        net = self.net
        net.heal()
        for node_id in net.nodes:
            net.nodes[node_id].down = False
        net.tick(80)
        leaders = net.leaders()
        assert len(leaders) == 1, f"no single leader once healed: {leaders}"
        self.check()


@pytest.mark.parametrize("seed", range(40))
def test_safety_under_random_faults(seed: int) -> None:
    run = Checked(seed)
    for _ in range(1500):
        run.step()
        run.check()
    run.settle()
    leader = run.net.core(run.net.leaders()[0])
    members = [m for m in leader.conf.members if m in run.net.nodes]
    applied = {m: run.net.nodes[m].applied for m in members}
    longest = max(applied.values(), key=len)
    assert all(history == longest for history in applied.values()), applied
