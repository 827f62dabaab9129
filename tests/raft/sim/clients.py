"""Simulated clients: they propose to whoever leads and remember what was acknowledged.

Theory of operation: each client, every few milliseconds, proposes a fresh, unique command
(now and then a batch of a few, through ``propose_many``, as the driver batches) to the node
it believes leads (at first a random live node). ``NotLeader`` sends it to the hint,
or to another random node; otherwise the proposer's driver decides the outcome by (term,
index) when it applies that index (``node``): *acked* when the applied entry has the
proposal's term, *failed* when another term's entry took the index, *unknown* when the
proposer crashed or installed a snapshot over it first. Only acked commands are promised to
the user, and the end of the run checks each of them was applied exactly once on every live
member (``acked``).

Reads: now and then a client asks its leader for ``read_index(ctx)`` and, at that moment,
notes the highest index acknowledged so far as the read's floor (``SafetyChecker.read_floor``):
the ``ReadState`` that comes back must not be below it (a linearizable read sees every write
acknowledged before it began). A core that answers ``NotImplementedError`` (reads on a leader
with peers, before read index was implemented) turns reads off for the run.

``marker`` proposes one command at the end of a run and reports when it is acknowledged: the
liveness check.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

from taskd.errors import NotLeader
from tests.raft.sim.checkers import SafetyChecker
from tests.raft.sim.loop import EventLoop
from tests.raft.sim.node import ACKED, FAILED, OutcomeCallback, SimNode
from tests.raft.sim.trace import Trace


@dataclass(frozen=True, slots=True)
class ClientProfile:
    clients: int
    propose_us: tuple[int, int]  # time between one client's proposals
    read_chance: float  # chance that a client's turn is a read instead
    retry_us: int  # wait before retrying after NotLeader


@dataclass(frozen=True, slots=True)
class Ack:
    node: str
    term: int
    index: int
    at: int


class Clients:
    def __init__(
        self,
        nodes: dict[str, SimNode],
        profile: ClientProfile,
        checker: SafetyChecker,
        loop: EventLoop,
        rng: random.Random,
        trace: Trace,
    ) -> None:
        self.nodes = nodes
        self.profile = profile
        self.checker = checker
        self.loop = loop
        self.rng = rng
        self.trace = trace
        self.acked: dict[bytes, Ack] = {}
        self.failed: dict[bytes, str] = {}  # told "not applied": must never apply anywhere
        self.max_acked_index = 0
        self.outcomes = {"acked": 0, "failed": 0, "unknown": 0, "not leader": 0}
        self.reads_supported = True
        self.reads_asked = 0
        self.running = False
        self._guess: dict[int, str | None] = {}
        self._ids = itertools.count(1)

    def start(self) -> None:
        self.running = True
        for client in range(self.profile.clients):
            self._guess[client] = None
            self._schedule(client, self.rng.randint(*self.profile.propose_us))

    def stop(self) -> None:
        self.running = False

    def _schedule(self, client: int, delay: int) -> None:
        self.loop.call_later(delay, lambda: self._turn(client))

    def _target(self, client: int) -> SimNode | None:
        guess = self._guess.get(client)
        node = self.nodes.get(guess) if guess is not None else None
        if node is not None and node.alive:
            return node
        live = [n for n in self.nodes.values() if n.alive]
        return self.rng.choice(live) if live else None

    def _turn(self, client: int) -> None:
        if not self.running:
            return
        node = self._target(client)
        delay = self.rng.randint(*self.profile.propose_us)
        if node is not None:
            try:
                if self.reads_supported and self.rng.random() < self.profile.read_chance:
                    self._read(client, node)
                else:
                    self._propose(client, node)
            except NotLeader as exc:
                self.outcomes["not leader"] += 1
                self._guess[client] = exc.leader_hint
                delay = self.profile.retry_us
        self._schedule(client, delay)

    def _propose(self, client: int, node: SimNode) -> None:
        count = 1 if self.rng.random() < 0.7 else self.rng.randint(2, 6)
        batch = [f"c{client}.{next(self._ids)}".encode() for _ in range(count)]
        self.propose(node, batch, lambda outcome: None)
        self._guess[client] = node.id

    def propose(self, node: SimNode, batch: list[bytes], done: Callable[[str], None]) -> None:
        """Propose ``batch`` on ``node`` (one ``propose_many`` when it has several commands)
        and record each command's outcome; raises ``NotLeader``."""

        def waiter(data: bytes) -> OutcomeCallback:
            def outcome(result: str, term: int, index: int) -> None:
                self.outcomes[result] += 1
                self.trace.log(node.id, "%s %r at %d/%d", result, data, index, term)
                if result == ACKED:
                    self.acked[data] = Ack(node.id, term, index, self.loop.now)
                    self.max_acked_index = max(self.max_acked_index, index)
                elif result == FAILED:
                    self.failed[data] = f"proposed on {node.id} at {index}/{term}"
                done(result)

            return outcome

        term, indexes = node.propose([(data, waiter(data)) for data in batch])
        self.trace.log(node.id, "propose %r at %d..%d/%d", batch[0], indexes[0], indexes[-1], term)

    def _read(self, client: int, node: SimNode) -> None:
        ctx = f"r{client}.{next(self._ids)}"
        floor = self.max_acked_index
        try:
            node.call(lambda core: core.read_index(ctx))
        except NotImplementedError:
            self.reads_supported = False
            self.trace.log(node.id, "read_index is not implemented: reads off for this run")
            return
        self.reads_asked += 1
        self.checker.read_floor[ctx] = floor
        self.trace.log(node.id, "read %s asked (floor %d)", ctx, floor)
        self._guess[client] = node.id
