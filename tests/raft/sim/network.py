"""The simulated network: every message is delayed, and may be dropped, duplicated or cut off.

Theory of operation: ``send`` decides a message's fate when it leaves: dropped (at random, or
because the link is cut), or delivered once or twice, each copy after its own random delay, so
messages overtake each other freely (reordering). A few messages (``straggle``) arrive very
late, long after newer ones: stale answers and requests from old terms and old leaders. A link
is a directed pair (src, dst): ``partition`` cuts every link between groups both ways, ``cut``
one direction only (an asymmetric partition), ``heal`` restores them all. A link cut while a
message is in flight drops it on arrival, and a message for a crashed node is lost. When the
driver would notice (the link is cut or the peer is down: a failed connection) the sender's
core is told ``report_unreachable``.

A ``SNAPSHOT`` message stands for the whole snapshot file that the leader's driver streams:
the network looks the file of that meta up on the sender's disk when it leaves, delivers it
(or not) after a longer delay as one unit, and then tells the sender's core how the stream
ended (``report_snapshot(peer, ok)``), as the driver does: a stream that could not start (the
link is cut, the peer is down, the file was replaced by a newer snapshot) fails too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from taskd.raft import Message, MessageKind, SnapshotMeta
from tests.raft.sim.features import Features
from tests.raft.sim.loop import EventLoop
from tests.raft.sim.node import SimNode
from tests.raft.sim.statemachine import SMSnapshot
from tests.raft.sim.trace import Trace


@dataclass(slots=True)
class NetworkProfile:
    delay_us: tuple[int, int]
    drop: float
    duplicate: float
    snapshot_us: tuple[int, int]
    unreachable_reports: float  # how often a cut link is noticed by the sender's driver
    straggle: float = 0.0  # chance that a message is held up to ``straggle_us`` (very late)
    straggle_us: int = 0


def describe(message: Message) -> str:
    kind = message.kind.name
    text = f"{kind} {message.src}->{message.dst} t{message.term}"
    if message.kind is MessageKind.APPEND:
        text += (
            f" after {message.index}/{message.log_term} +{len(message.entries)} c{message.commit}"
        )
    elif message.index or message.log_term:
        text += f" i{message.index}/{message.log_term}"
    if message.reject:
        hint = message.reject_hint
        text += f" REJECT hint {hint}" if hint else " REJECT"
    context = message.context
    if context:
        text += f" ctx{context}"
    meta = message.snapshot
    if meta is not None:
        text += f" snap {meta.index}/{meta.term}"
    return text


class Network:
    def __init__(
        self,
        nodes: dict[str, SimNode],
        profile: NetworkProfile,
        features: Features,
        loop: EventLoop,
        rng: random.Random,
        trace: Trace,
    ) -> None:
        self.nodes = nodes
        self.profile = profile
        self.features = features
        self.loop = loop
        self.rng = rng
        self.trace = trace
        self.cut_links: set[tuple[str, str]] = set()
        self.sent = self.delivered = self.dropped = 0

    # -- faults ---------------------------------------------------------------------------

    def partition(self, groups: list[set[str]]) -> None:
        for group in groups:
            for other in groups:
                if other is not group:
                    self.cut_links.update((a, b) for a in group for b in other)
        self.trace.log("net", "partition %s", " | ".join(",".join(sorted(g)) for g in groups))

    def cut(self, src: str, dst: str) -> None:
        self.cut_links.add((src, dst))
        self.trace.log("net", "cut %s->%s", src, dst)

    def heal(self) -> None:
        if self.cut_links:
            self.trace.log("net", "heal (%d links back)", len(self.cut_links))
        self.cut_links.clear()

    def connected(self, src: str, dst: str) -> bool:
        return (src, dst) not in self.cut_links

    # -- traffic --------------------------------------------------------------------------

    def send(self, src: SimNode, message: Message) -> None:
        self.sent += 1
        meta = message.snapshot
        if message.kind is MessageKind.SNAPSHOT and meta is not None:
            self._stream(src, message, meta)  # the stream reports its own failures
            return
        dst = self.nodes.get(message.dst)
        if dst is None:
            self._drop(message, "no such node")
            return
        if not self.connected(src.id, dst.id) or not dst.alive:
            self._drop(message, "link cut" if dst.alive else "peer down")
            if self.features.unreachable and self.rng.random() < self.profile.unreachable_reports:
                peer = message.dst
                src.report(lambda core: core.report_unreachable(peer))
            return
        if self.rng.random() < self.profile.drop:
            self._drop(message, "lost")
            return
        copies = 2 if self.rng.random() < self.profile.duplicate else 1
        low, high = self.profile.delay_us
        for _ in range(copies):
            delay = self.rng.randint(low, high)
            if self.rng.random() < self.profile.straggle:
                delay = self.rng.randint(high, max(high, self.profile.straggle_us))
            self.loop.call_later(delay, lambda: self._arrive(src.id, message))

    def _arrive(self, src: str, message: Message) -> None:
        self._deliver(src, message, None)

    def _drop(self, message: Message, why: str) -> None:
        self.dropped += 1
        self.trace.log("net", "drop (%s) %s", why, describe(message))

    def _deliver(self, src: str, message: Message, staged: SMSnapshot | None) -> bool:
        dst = self.nodes[message.dst]
        if not self.connected(src, dst.id):
            self._drop(message, "link cut in flight")
            return False
        if not dst.alive:
            self._drop(message, "peer down")
            return False
        self.delivered += 1
        self.trace.log(dst.id, "<- %s", describe(message))
        dst.receive(message, staged)
        return True

    def _stream(self, src: SimNode, message: Message, meta: SnapshotMeta) -> None:
        generation = src.generation
        peer = message.dst
        staged = src.snapshot_file(meta)

        def report(ok: bool) -> None:
            if src.generation == generation and src.alive:
                self.trace.log(src.id, "snapshot %d/%d to %s: %s", meta.index, meta.term,
                               peer, "sent" if ok else "FAILED")  # fmt: skip
                src.report(lambda core: core.report_snapshot(peer, ok))

        low, high = self.profile.snapshot_us
        delay = self.rng.randint(low, high)
        if staged is None:
            self.trace.log(src.id, "has no snapshot file %d/%d for %s", meta.index, meta.term, peer)
            self.loop.call_later(delay, lambda: report(False))
            return
        lost = self.rng.random() < self.profile.drop
        if message.dst not in self.nodes:
            lost = True

        def arrive() -> None:
            if lost:
                self._drop(message, "stream broken")
            ok = not lost and self._deliver(src.id, message, staged)
            report(ok)

        self.loop.call_later(delay, arrive)
