"""One simulation run: the cluster wired together, the faults, the end phase, the verdict.

Theory of operation: ``Simulation(seed)`` draws the whole setup from ``random.Random(seed)``
(cluster size, disk and network latencies, loss and duplication rates, client load, nemesis
weights: ``Setup.draw``), builds the nodes, network, clients, nemesis and checker on one
event loop, and ``run()`` goes through three phases:

1. chaos: ``steps`` events with clients and nemesis running; the safety checker runs after
   every event;
2. calm: the nemesis stops, the network heals (no more loss), every member that is down
   restarts, the clients stop. Liveness: within ``LIVENESS_BOUND`` a leader must exist and
   (once the core replicates) commit a marker proposal, acknowledged the way the driver
   acknowledges;
3. quiet: every live member must apply up to the marker within ``CONVERGE_BOUND``; then every
   acknowledged command must have been applied exactly once on every live member.

The result (``SimResult``) names the first violation (or an exception raised by a core) and
keeps the tail of the trace; the same seed and steps replay the same run exactly.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from taskd.errors import NotLeader
from taskd.raft import RaftCore
from tests.raft.sim.checkers import SafetyChecker, Violation
from tests.raft.sim.clients import Clients
from tests.raft.sim.features import Features
from tests.raft.sim.loop import MS, SECOND, EventLoop
from tests.raft.sim.membership import Membership
from tests.raft.sim.nemesis import Nemesis
from tests.raft.sim.network import Network
from tests.raft.sim.node import ACKED, SimNode
from tests.raft.sim.setup import Setup
from tests.raft.sim.trace import Trace

LIVENESS_BOUND = 10 * SECOND  # after healing: a leader that commits (50+ election timeouts)
CONVERGE_BOUND = 10 * SECOND  # then: every live member applied up to the marker
MARKER_PATIENCE = 500 * MS  # a marker attempt not acknowledged by then: propose another


@dataclass(slots=True)
class SimResult:
    seed: int
    steps: int
    ok: bool
    profile: str
    failure: str | None
    sim_time_us: int
    events: int
    stats: dict[str, object] = field(default_factory=dict)
    trace_tail: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verdict = "ok" if self.ok else f"FAILED: {self.failure}"
        stats = " ".join(f"{key}={value}" for key, value in self.stats.items())
        return (
            f"seed {self.seed} steps {self.steps}: {verdict} "
            f"({self.events} events, {self.sim_time_us / SECOND:.2f} s simulated) {stats}"
        )

    def report(self) -> str:
        lines = [self.summary()]
        if not self.ok:
            profile = f" PROFILE={self.profile}" if self.profile != "default" else ""
            lines.append(f"replay: make sim SEED={self.seed} STEPS={self.steps}{profile} VERBOSE=1")
            lines.append(f"-- last {len(self.trace_tail)} trace lines --")
            lines.extend(self.trace_tail)
        return "\n".join(lines)


class Simulation:
    def __init__(
        self,
        seed: int,
        *,
        steps: int = 3000,
        core_class: type[RaftCore] = RaftCore,
        verbose: bool = False,
        trace_lines: int = 300,
        setup: Callable[[random.Random], Setup] = Setup.draw,
        profile: str = "default",
    ) -> None:
        self.seed = seed
        self.profile = profile
        self.steps = steps
        self.rng = random.Random(seed)
        self.setup = setup(self.rng)
        self.loop = EventLoop()
        self.trace = Trace(lambda: self.loop.now, keep=trace_lines, verbose=verbose)
        self.trace_lines = trace_lines
        self.features = Features.detect(core_class)
        self.checker = SafetyChecker(self.trace)
        self.nodes: dict[str, SimNode] = {}
        for node_id in (*self.setup.voters, *self.setup.spares):
            self.nodes[node_id] = SimNode(
                node_id,
                bootstrap=self.setup.voters if node_id in self.setup.voters else (),
                config=self.setup.raft,
                core_class=core_class,
                features=self.features,
                timing=self.setup.timing,
                loop=self.loop,
                rng=self.rng,
                trace=self.trace,
                observer=self.checker,
            )
        self.network = Network(
            self.nodes, self.setup.network, self.features, self.loop, self.rng, self.trace
        )
        spread = self.setup.nemesis.skew
        for node in self.nodes.values():
            node.outbox = self.network
            node.clock_rate = self.rng.uniform(1 - spread, 1 + spread)
        self.clients = Clients(
            self.nodes, self.setup.clients, self.checker, self.loop, self.rng, self.trace
        )
        self.membership = Membership(
            self.nodes, self.setup.voters, self.checker, self.rng, self.trace
        )
        self.nemesis = Nemesis(
            self.nodes,
            self.voters,
            self.members,
            self.membership,
            self.network,
            self.setup.nemesis,
            self.features,
            self.loop,
            self.rng,
            self.trace,
        )

    # -- membership as the cluster sees it ------------------------------------------------

    def voters(self) -> set[str]:
        return self.membership.voters()

    def members(self) -> set[str]:
        return self.membership.members()

    # -- the run --------------------------------------------------------------------------

    def run(self) -> SimResult:
        failure: str | None = None
        try:
            self.trace.log("sim", "seed %d: %s", self.seed, self.setup)
            self.trace.log("sim", "features: %s", self.features)
            for node_id in self.setup.voters:
                self.nodes[node_id].start()
            self.clients.start()
            self.nemesis.start()
            self._run_until(lambda: self.loop.events_run >= self.steps, None)
            self._calm()
        except Violation as exc:
            failure = str(exc)
        except Exception as exc:  # a core raised, or the harness broke: both fail the seed
            failure = f"{exc!r}\n{traceback.format_exc()}"
        return SimResult(
            seed=self.seed,
            profile=self.profile,
            steps=self.steps,
            ok=failure is None,
            failure=failure,
            sim_time_us=self.loop.now,
            events=self.loop.events_run,
            stats=self._stats(),
            trace_tail=self.trace.tail(self.trace_lines) if failure else [],
        )

    def _run_until(self, done: Callable[[], bool], deadline: int | None) -> bool:
        loop, checker, nodes = self.loop, self.checker, self.nodes
        while not done():
            if deadline is not None and loop.now >= deadline:
                return False
            if not loop.run_one():
                return done()
            checker.after_event(nodes)
        return True

    def _calm(self) -> None:
        self.trace.log("sim", "CALM: heal, restart every member, stop the clients")
        self.clients.stop()
        self.nemesis.calm()
        self.network.profile.drop = 0.0
        start = self.loop.now
        if not self.features.replication:
            if not self._run_until(self._leader_known, start + LIVENESS_BOUND):
                raise Violation("liveness", self._no_progress("no leader", start))
            return
        marker: list[tuple[int, int]] = []
        self._propose_marker(marker)
        if not self._run_until(lambda: bool(marker), start + LIVENESS_BOUND):
            raise Violation("liveness", self._no_progress("nothing committed", start))
        # Every acknowledged index (a later marker attempt may be acked too) on every member.
        clients = self.clients
        converged = self._run_until(
            lambda: all(self.nodes[m].sm.index >= clients.max_acked_index
                        for m in self._live_members()),
            self.loop.now + CONVERGE_BOUND,
        )  # fmt: skip
        if not converged:
            behind = {m: self.nodes[m].sm.index for m in self._live_members()}
            raise Violation(
                "liveness",
                f"members did not catch up with index {clients.max_acked_index}: {behind}",
            )
        self._check_acked()

    def _leader_known(self) -> bool:
        return any(node.is_leader() for node in self.nodes.values())

    def _live_members(self) -> list[str]:
        return sorted(m for m in self.members() if self.nodes[m].alive)

    def _propose_marker(self, marker: list[tuple[int, int]], attempt: int = 1) -> None:
        """Propose the end-of-run marker on the leader until one attempt is acknowledged: a
        new attempt (a new command) when one fails, or after ``MARKER_PATIENCE``."""
        if marker:
            return
        data = f"marker.{attempt}".encode()

        def done(outcome: str) -> None:
            if outcome == ACKED and not marker:
                ack = self.clients.acked[data]
                marker.append((ack.term, ack.index))

        leader = self.nemesis.leader()
        delay = 50 * MS
        if leader is not None:
            try:
                self.clients.propose(leader, [data], done)
                delay = MARKER_PATIENCE
            except NotLeader:
                pass
        self.loop.call_later(delay, lambda: self._propose_marker(marker, attempt + 1))

    def _no_progress(self, what: str, since: int) -> str:
        roles = {
            node.id: (node.core.role.value, node.core.term) if node.core else "down"
            for node in self.nodes.values()
            if node.id in self.members()
        }
        return f"{what} within {(self.loop.now - since) / SECOND:.1f} s of healing; {roles}"

    def _check_acked(self) -> None:
        failed = self.clients.failed
        for node in self.nodes.values():
            for command in node.sm.commands:
                if command in failed:
                    raise Violation(
                        "failed write applied",
                        f"{command!r} was applied on {node.id}, but its proposer said it was "
                        f"not ({failed[command]})",
                    )
        for member in self._live_members():
            node = self.nodes[member]
            counts: dict[bytes, int] = {}
            for command in node.sm.commands:
                counts[command] = counts.get(command, 0) + 1
            for data, ack in self.clients.acked.items():
                if counts.get(data, 0) != 1:
                    raise Violation(
                        "acknowledged write lost",
                        f"{data!r} (acked by {ack.node} at {ack.index}/{ack.term}) is applied "
                        f"{counts.get(data, 0)} times on {member}",
                    )

    def _stats(self) -> dict[str, object]:
        return {
            "leaders": len(self.checker.leaders),
            "committed": len(self.checker.committed),
            "acked": len(self.clients.acked),
            "outcomes": dict(self.clients.outcomes),
            "reads": self.checker.reads_checked,
            "snapshots": sum(n.counts["installed"] for n in self.nodes.values()),
            "compactions": sum(n.counts["compacted"] for n in self.nodes.values()),
            "conf": self.membership.changes,
            "nemesis": dict(sorted(self.nemesis.counts.items())),
            "net": f"{self.network.delivered}/{self.network.sent}",
        }
