"""The nemesis: a seeded schedule of faults, each applied, held, then healed.

Theory of operation: ``schedule(seed, duration, members)`` is a pure function from the seed to
a list of ``Fault`` (start offset, kind, how long it is held, which node it aims at) — the same
seed always gives the same schedule. Targets are roles ("leader", "follower", "any"), resolved
when the fault starts from the observer's current view, since who leads is the run's outcome,
not the seed's. ``Nemesis.run`` sleeps to each start, applies the fault, records a
``NemesisEvent``, holds it, heals it (restart, SIGCONT, proxy heal) and records that too.

Kinds: ``kill`` (SIGKILL, restart after the hold), ``terminate`` (SIGTERM: a graceful stop, which
on the leader transfers leadership first; SIGKILL if it is still stopping after the hold, then
restart), ``pause`` (SIGSTOP, SIGCONT), ``isolate``
(cut every link into and out of the target), ``split`` (a random minority against the
majority), ``one-way`` (the target's outbound links only), ``slow`` (every link delayed by
50-300 ms), ``kill-all`` (every node at once, rare). A single-node cluster gets only kill and
pause: there is no network to fault. ``heal_all`` undoes everything, whatever is in effect.

On a shared database (``shared=True``) the nodes talk to each other only to forward writes to
the leader, and the network the nemesis controls is each node's one link to the database, so
the partitions become ``cut-db`` (the target loses its database: a leader's lease runs out, a
follower answers 503) and ``cut-db-majority`` (the target and enough others to make a
majority); ``lose-db-answers`` replaces ``one-way``: the target's queries still reach the
database (a write commits) but its answers are lost, and at the heal the target's
connections are reset (``Link.mute``); ``slow`` delays every node's database traffic. Process
faults stay as they are.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from chaos.cluster import DATABASE, Cluster
from chaos.history import History, NemesisEvent
from chaos.observe import Observer
from chaos.proxy import Network

WARMUP = 2.0  # seconds of load before the first fault
_KINDS = (
    ("kill", 3.0),
    ("terminate", 1.0),
    ("pause", 2.0),
    ("isolate", 2.0),
    ("split", 1.5),
    ("one-way", 1.0),
    ("slow", 1.0),
    ("kill-all", 0.3),
)
_SHARED_KINDS = (  # nodes on a shared database: each node's link to it is the network
    ("kill", 3.0),
    ("terminate", 1.0),
    ("pause", 2.0),
    ("cut-db", 2.0),
    ("cut-db-majority", 1.5),
    ("lose-db-answers", 1.0),
    ("slow", 1.0),
    ("kill-all", 0.3),
)
_LOCAL_KINDS = frozenset({"kill", "terminate", "pause", "kill-all"})

_WATCH_EVERY = 0.01  # seconds between looks at the nodes' processes during a fault
Heal = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Fault:
    at: float  # seconds after the nemesis starts
    kind: str
    hold: float
    target: str  # "leader" | "follower" | "any"
    param: float = 0.0  # slow: the delay in seconds; split: a fraction picking the minority


def schedule(
    seed: int, duration: float, members: int, *, network: bool = True, shared: bool = False
) -> list[Fault]:
    """Faults from ``WARMUP`` to ``duration``; each healed before the next starts. Without a
    ``network`` (one member, or no proxies) only process faults; ``shared``: the faults of
    nodes on a shared database (its links exist even for one node)."""
    rng = random.Random(seed)
    if shared:
        kinds = [(k, w) for k, w in _SHARED_KINDS if network or k in _LOCAL_KINDS]
    else:
        kinds = [(k, w) for k, w in _KINDS if (network and members > 1) or k in _LOCAL_KINDS]
    faults: list[Fault] = []
    t = WARMUP
    while True:
        kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        hold = round(rng.uniform(1.5, 4.0), 2)
        if t + hold > duration:
            break
        target = rng.choice(("leader", "leader", "follower", "any"))
        param = round(rng.uniform(0.05, 0.3), 3) if kind == "slow" else round(rng.random(), 3)
        faults.append(Fault(round(t, 2), kind, hold, target, param))
        t += hold + rng.uniform(1.0, 3.0)
    return faults


class Nemesis:
    def __init__(
        self,
        faults: list[Fault],
        cluster: Cluster,
        network: Network | None,
        observer: Observer,
        history: History,
        seed: int,
    ) -> None:
        self.faults = faults
        self.cluster = cluster
        self.network = network
        self.observer = observer
        self.history = history
        self.rng = random.Random(seed + 1)  # targets among equals (which follower)

    def record(self, kind: str, detail: str, targets: list[str] | tuple[str, ...] = ()) -> None:
        self.history.nemesis.append(NemesisEvent(time.time(), kind, detail, tuple(targets)))

    def resolve(self, role: str) -> str:
        members = self.cluster.members
        leader = self.observer.leader()
        if role == "leader" and leader is not None:
            return leader
        if role == "follower" and leader is not None and len(members) > 1:
            return self.rng.choice([m for m in members if m != leader])
        return self.rng.choice(members)

    async def run(self) -> None:
        start = trio.current_time()
        for fault in self.faults:
            await trio.sleep_until(start + fault.at)
            healed = self.apply(fault)
            await self._hold(trio.current_time() + fault.hold)
            healed()

    async def _hold(self, until: float) -> None:
        """Until ``until``, close the links into any node that exits (a SIGTERMed one, a crash)
        as soon as it has, so that no connect meets a dead port through a proxy."""
        down: set[str] = set()
        while trio.current_time() < until:
            for member, node in self.cluster.nodes.items():
                if not node.alive and member not in down and self.network is not None:
                    self.network.member_down(member)
                    down.add(member)
            await trio.sleep(min(_WATCH_EVERY, max(0.0, until - trio.current_time())))

    def apply(self, fault: Fault) -> Heal:
        target = self.resolve(fault.target)
        members = self.cluster.members
        what = f"{fault.kind} {fault.target} {target}"
        if fault.kind == "kill":
            self._kill([target])
            self.record("kill", what, [target])
            return lambda: self._restart([target])
        if fault.kind == "terminate":  # a graceful stop: the leader hands leadership over
            self.cluster.node(target).terminate()
            self.record("terminate", what, [target])
            return lambda: self._restart([target], kill_first=True)
        if fault.kind == "kill-all":
            self._kill(members)
            self.record("kill", "kill-all", members)
            return lambda: self._restart(members)
        if fault.kind == "pause":
            self.cluster.node(target).pause()
            self.record("pause", what, [target])
            return lambda: self._resume(target)
        assert self.network is not None, "network faults need proxies"
        if fault.kind == "isolate":
            cut = self.network.isolate(target)
        elif fault.kind == "split":
            others = [m for m in members if m != target]
            self.rng.shuffle(others)
            minority = [target, *others[: (len(members) - 1) // 2 - 1]]
            majority = [m for m in members if m not in minority]
            cut = self.network.split([minority, majority])
            what = f"split {sorted(minority)} | {sorted(majority)}"
        elif fault.kind == "one-way":
            cut = self.network.one_way([target], members)
            what = f"one-way: {target} cannot send to the others"
        elif fault.kind == "cut-db":
            cut = self.network.cut([(target, DATABASE)])
            what = f"cut-db {fault.target} {target} from the database"
        elif fault.kind == "cut-db-majority":
            others = [m for m in members if m != target]
            self.rng.shuffle(others)
            majority = [target, *others[: len(members) // 2]]
            cut = self.network.cut((m, DATABASE) for m in majority)
            what = f"cut-db-majority {sorted(majority)} from the database"
        elif fault.kind == "lose-db-answers":
            cut = self.network.mute([(target, DATABASE)])
            what = f"lose-db-answers {fault.target} {target}: its queries arrive, answers do not"
        elif fault.kind == "slow":
            cut = self.network.slow(fault.param)
            what = f"slow: every link delayed {fault.param * 1000:.0f} ms"
        else:
            raise ValueError(f"unknown fault kind {fault.kind!r}")
        self.record("cut" if fault.kind != "slow" else "slow", what, cut)
        return self._heal_network

    def _kill(self, members: list[str]) -> None:
        for member in members:
            if self.network is not None:  # first: no connect may meet the dying port
                self.network.member_down(member)
            self.cluster.node(member).kill()

    def _restart(self, members: list[str], *, kill_first: bool = False) -> None:
        for member in members:
            node = self.cluster.node(member)
            if kill_first and node.alive:  # still shutting down after the hold: no more waiting
                self._kill([member])
            node.start()
            if self.network is not None:
                self.network.member_up(member)
        self.record("restart", "restart " + ", ".join(members), members)

    def _resume(self, member: str) -> None:
        self.cluster.node(member).resume()
        self.record("resume", f"resume {member}", [member])

    def _heal_network(self) -> None:
        if self.network is not None:
            self.network.heal()
        self.record("heal", "heal every link")

    def heal_all(self) -> None:
        """Whatever is in effect: resume the frozen, start the dead, heal every link."""
        for node in self.cluster.nodes.values():
            if node.paused:
                self._resume(node.member)
            if not node.alive:
                self._restart([node.member])
        if self.network is not None and self.network.faulted:
            self._heal_network()
