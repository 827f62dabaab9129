"""The nemesis: the faults of a run, drawn from the seed.

Theory of operation: every few tens of milliseconds the nemesis draws one action from
``actions`` (weighted; an action whose feature the core lacks is never drawn):

- crash a live member, restarting it after a random downtime. At most a minority of the
  voters is down at once, except that now and then (``majority_chance``) a majority goes
  down briefly, so progress stops and must resume;
- partition the network: a random split, the leader isolated, or a few one-way cuts; the
  partition heals after a random time (a new partition replaces the old one);
- freeze a member (often the leader) as SIGSTOP does, and thaw it later: what arrived
  meanwhile is handled then, in order;
- fill a member's disk for a while (its writes fail with ENOSPC, see ``node``);
- skew a node's clock: its ticks run a little faster or slower than real time;
- transfer leadership (to a random voter or to "the most caught-up");
- membership: add a spare node as a learner, or remove a member; nodes no configuration
  names any more are stopped and wiped (see ``membership``).

``calm`` ends the faults for the end of the run: it heals the network and restarts every
member that is down.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from taskd.errors import NotLeader
from tests.raft.sim.features import Features
from tests.raft.sim.loop import MS, EventLoop
from tests.raft.sim.membership import Membership
from tests.raft.sim.network import Network
from tests.raft.sim.node import SimNode
from tests.raft.sim.trace import Trace


@dataclass(frozen=True, slots=True)
class NemesisProfile:
    every_us: tuple[int, int]  # time between actions
    downtime_us: tuple[int, int]
    partition_us: tuple[int, int]
    majority_chance: float
    skew: float  # clock rates are drawn from [1 - skew, 1 + skew]
    weights: dict[str, int]


class Nemesis:
    def __init__(
        self,
        nodes: dict[str, SimNode],
        voters: Callable[[], set[str]],
        members: Callable[[], set[str]],
        membership: Membership,
        network: Network,
        profile: NemesisProfile,
        features: Features,
        loop: EventLoop,
        rng: random.Random,
        trace: Trace,
    ) -> None:
        self.nodes = nodes
        self.voters = voters
        self.members = members
        self.membership = membership
        self.network = network
        self.profile = profile
        self.features = features
        self.loop = loop
        self.rng = rng
        self.trace = trace
        self.running = False
        self.counts: dict[str, int] = {}
        self._partition_token = 0
        self.actions: dict[str, Callable[[], bool]] = {
            "crash": self.crash,
            "partition": self.partition,
            "isolate_leader": self.isolate_leader,
            "one_way": self.one_way,
            "skew": self.skew,
            "pause": self.pause,
            "disk_full": self.disk_full,
        }
        if features.transfer:
            self.actions["transfer"] = self.transfer
        if features.membership:
            self.actions["membership"] = self.change_membership

    def start(self) -> None:
        self.running = True
        self._schedule()

    def calm(self) -> None:
        self.running = False
        self._partition_token += 1
        self.network.heal()
        for node in self.nodes.values():
            node.resume()
            node.disk_freed()
            if not node.alive and node.id in self.members():
                node.start()

    def _schedule(self) -> None:
        self.loop.call_later(self.rng.randint(*self.profile.every_us), self._act)

    def _act(self) -> None:
        if not self.running:
            return
        if self.features.membership:
            self.membership.reap()
        names = [name for name in self.actions if self.profile.weights.get(name, 0) > 0]
        if names:
            weights = [self.profile.weights[name] for name in names]
            name = self.rng.choices(names, weights)[0]
            if self.actions[name]():
                self.counts[name] = self.counts.get(name, 0) + 1
        self._schedule()

    def leader(self) -> SimNode | None:
        leaders = [node for node in self.nodes.values() if node.is_leader()]
        if not leaders:
            return None
        return max(leaders, key=lambda node: node.core.term if node.core else 0)

    # -- actions (each returns whether it did something) ----------------------------------

    def crash(self) -> bool:
        voters = self.voters()
        live = sorted(node.id for node in self.nodes.values() if node.alive)
        if not live:
            return False
        victim = self.nodes[self.rng.choice(live)]
        down = sum(1 for v in voters if v in self.nodes and not self.nodes[v].available)
        down_after = down + (victim.id in voters)
        minority = down_after * 2 < len(voters)
        brief = not minority and self.rng.random() < self.profile.majority_chance
        if not minority and not brief:
            return False
        victim.crash()
        low, high = self.profile.downtime_us
        downtime = self.rng.randint(low, high) if minority else self.rng.randint(low // 4, low)
        self.trace.log("nemesis", "crash %s for %d ms%s", victim.id, downtime // MS,
                       "" if minority else " (a majority is down)")  # fmt: skip
        generation = victim.generation

        def restart() -> None:
            if victim.generation == generation and not victim.alive:
                victim.start()

        self.loop.call_later(downtime, restart)
        return True

    def pause(self) -> bool:
        """Freeze a member (the leader half of the time), as SIGSTOP does, for a while."""
        voters = self.voters()
        leader = self.leader()
        candidates = sorted(n.id for n in self.nodes.values() if n.available)
        if not candidates:
            return False
        if leader is not None and leader.available and self.rng.random() < 0.5:
            victim = leader
        else:
            victim = self.nodes[self.rng.choice(candidates)]
        down = sum(1 for v in voters if v in self.nodes and not self.nodes[v].available)
        if (down + (victim.id in voters)) * 2 >= len(voters):
            return False
        victim.pause()
        generation = victim.generation
        frozen = self.rng.randint(*self.profile.partition_us)
        self.trace.log("nemesis", "freeze %s for %d ms", victim.id, frozen // MS)

        def thaw() -> None:
            if victim.generation == generation:
                victim.resume()

        self.loop.call_later(frozen, thaw)
        return True

    def disk_full(self) -> bool:
        """Fill a member's disk for a while: its next write fails (ENOSPC)."""
        candidates = sorted(n.id for n in self.nodes.values() if n.alive and not n.disk_full)
        if not candidates:
            return False
        victim = self.nodes[self.rng.choice(candidates)]
        victim.disk_full = True
        generation = victim.generation
        lasting = self.rng.randint(*self.profile.partition_us) // 2
        self.trace.log("nemesis", "%s's disk is full for %d ms", victim.id, lasting // MS)

        def free() -> None:
            if victim.generation == generation:
                victim.disk_freed()

        self.loop.call_later(lasting, free)
        return True

    def _partition_for(self) -> None:
        self._partition_token += 1
        token = self._partition_token

        def heal() -> None:
            if token == self._partition_token:
                self.network.heal()

        self.loop.call_later(self.rng.randint(*self.profile.partition_us), heal)

    def partition(self) -> bool:
        ids = sorted(self.members())
        self.rng.shuffle(ids)
        cut = self.rng.randint(1, len(ids) - 1)
        self.network.heal()
        self.network.partition([set(ids[:cut]), set(ids[cut:])])
        self._partition_for()
        return True

    def isolate_leader(self) -> bool:
        leader = self.leader()
        if leader is None:
            return False
        self.network.heal()
        self.network.partition([{leader.id}, self.members() - {leader.id}])
        self._partition_for()
        return True

    def one_way(self) -> bool:
        ids = sorted(self.members())
        self.network.heal()
        for _ in range(self.rng.randint(1, len(ids))):
            src, dst = self.rng.sample(ids, 2)
            self.network.cut(src, dst)
        self._partition_for()
        return True

    def skew(self) -> bool:
        node = self.nodes[self.rng.choice(sorted(self.members()))]
        spread = self.profile.skew
        node.clock_rate = self.rng.uniform(1 - spread, 1 + spread)
        self.trace.log("nemesis", "%s's clock runs at %.3f", node.id, node.clock_rate)
        return True

    def transfer(self) -> bool:
        leader = self.leader()
        if leader is None:
            return False
        voters = sorted(self.voters() - {leader.id})
        target = self.rng.choice([*voters, None]) if voters else None
        self.trace.log("nemesis", "transfer leadership from %s to %s", leader.id, target)
        try:
            leader.call(lambda core: core.transfer_leadership(target))
        except (NotLeader, ValueError) as exc:
            self.trace.log("nemesis", "transfer refused: %s", exc)
        return True

    def change_membership(self) -> bool:
        leader = self.leader()
        return leader is not None and self.membership.change(leader)
