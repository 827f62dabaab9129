"""Membership as the simulation sees it, and the nemesis's membership changes.

Theory of operation: the configuration in force for the harness is the latest *committed*
``CONF_CHANGE`` (the checker records it as commits happen), else the bootstrap voters.
``members()`` adds whoever a live leader's (possibly uncommitted) configuration names, so a
member being added is restarted by the calm phase and never reaped.

Changes (only with a core that has ``propose_conf_change``), one at a time through the
leader: ``add`` starts a spare node with an empty configuration (a joining node) and proposes
it as a learner (the leader promotes it once it caught up); ``remove`` proposes removing a
learner, or a voter while more than ``MIN_VOTERS`` remain (the leader itself included). A
node that is in no configuration any more (committed or a live leader's) is ``reap``-ed:
stopped, and half the time its disk is wiped; either way it can later join again (fresh, or
with the log and term it had).
"""

from __future__ import annotations

import random

from taskd.errors import NotLeader
from taskd.raft import ConfState, EntryKind, decode_conf
from tests.raft.sim.checkers import SafetyChecker
from tests.raft.sim.node import SimNode
from tests.raft.sim.trace import Trace

MIN_VOTERS = 3


class Membership:
    def __init__(
        self,
        nodes: dict[str, SimNode],
        bootstrap: tuple[str, ...],
        checker: SafetyChecker,
        rng: random.Random,
        trace: Trace,
    ) -> None:
        self.nodes = nodes
        self.bootstrap = ConfState(bootstrap)
        self.checker = checker
        self.rng = rng
        self.trace = trace
        self.changes = 0

    def committed(self) -> ConfState:
        entry = self.checker.last_conf_change
        if entry is None:
            return self.bootstrap
        assert entry.kind is EntryKind.CONF_CHANGE
        return decode_conf(entry.data)

    def voters(self) -> set[str]:
        return set(self.committed().voters)

    def members(self) -> set[str]:
        found = set(self.committed().members)
        for node in self.nodes.values():
            if node.is_leader() and node.features.membership and node.core is not None:
                found.update(node.core.conf.members)
        return found

    def change(self, leader: SimNode) -> bool:
        core = leader.core
        if core is None:
            return False
        conf = core.conf
        spares = sorted(n for n in self.nodes if n not in conf and not self.nodes[n].alive)
        removable = sorted(conf.learners)
        if len(conf.voters) > MIN_VOTERS:
            removable += sorted(conf.voters)
        if spares and (not removable or self.rng.random() < 0.5):
            spare = self.rng.choice(spares)
            self.trace.log("nemesis", "add %s as a learner (conf %s)", spare, conf)
            if self._propose(leader, spare, None):
                self.nodes[spare].start()
            return True
        if removable:
            victim = self.rng.choice(removable)
            self.trace.log("nemesis", "remove %s (conf %s)", victim, conf)
            self._propose(leader, None, victim)
            return True
        return False

    def _propose(self, leader: SimNode, add: str | None, remove: str | None) -> bool:
        try:
            index = leader.call(lambda core: core.propose_conf_change(add=add, remove=remove))
        except (NotLeader, ValueError) as exc:  # ConfChangeError is a ValueError
            self.trace.log("nemesis", "change refused: %s", exc)
            return False
        self.changes += 1
        self.trace.log(leader.id, "conf change proposed at %s", index)
        return True

    def reap(self) -> None:
        """Stop every live node that no configuration names any more; half the time its disk
        is wiped too (an operator who deletes the data), else it keeps its old log and term
        for when it is added again."""
        members = self.members()
        for node in self.nodes.values():
            if node.alive and node.id not in members:
                wipe = self.rng.random() < 0.5
                self.trace.log("nemesis", "%s is no member: stopped%s", node.id,
                               ", its disk wiped" if wipe else "")  # fmt: skip
                node.crash()
                if wipe:
                    node.wipe()
