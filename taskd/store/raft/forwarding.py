"""A follower's proposals, coalesced into batched ``Forward`` calls to the leader.

Theory of operation: on a follower, ``propose``/``propose_many`` hand their commands to the
``Forwarder`` and wait. One task takes EVERY queued command of every caller (up to
``max_commands``) and sends them to the leader as one blob (``wire.encode_commands``); up to
``max_inflight`` such calls run at once, so a new batch forms while the previous one is on
the wire. The leader appends the whole batch with one ``propose_many`` and answers (term,
first index) at once, without waiting for commit. Each caller's slice of the batch is then
(term, first + offset .. + len - 1), and the follower waits for its OWN apply of those
entries: apply is deterministic, so its state machine's results are the leader's.

The reply and the replication of the entries race (different connections): the follower may
apply an entry before it learns it was its own. So while any forward is in flight, the
driver records the result of every entry it applies (``EarlyResults``); a caller placed after
its entries were applied takes its results from there. Entries at or below the applied index
at the time the OLDEST in-flight forward was sent cannot be any forward's (the leader appends
after everything the follower has applied), so those records are dropped; with no forward in
flight the record is empty and costs nothing.

Failures: ``NotLeader`` from the peer, or no answer because the request never reached it
(``PeerUnreachable``): nothing was appended, so the batch is sent again to the leader the
driver knows next, until the caller's patience (``reforward_for``) runs out, then
``NotLeader(leader)``. Any other failure after the request was sent leaves the outcome
unknown: ``Unavailable`` saying to read it back. No leader known: wait up to ``leader_wait``
for one, then ``NotLeader(None)``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import trio

from taskd.errors import NotLeader, Unavailable
from taskd.store.raft import wire
from taskd.store.raft.transport import PeerUnreachable

_RETRY_PAUSE = 0.05  # seconds between a refused forward and the next try


class Forwarded:
    """One caller's commands on their way to the leader: placed at (term, first) once the
    leader appended them, or failed with ``error``."""

    __slots__ = ("deadline", "error", "event", "first", "items", "term", "waiter")

    def __init__(self, items: Sequence[bytes], deadline: float) -> None:
        self.items = items
        self.deadline = deadline
        self.event = trio.Event()
        self.term = 0
        self.first = 0
        self.error: BaseException | None = None
        self.waiter: Any = None  # the driver's waiter for its apply, once placed


class EarlyResults:
    """Results of entries applied while forwards are in flight, by index: (term, result)."""

    def __init__(self) -> None:
        self.results: dict[int, tuple[int, object]] = {}
        self._bases: deque[int] = deque()  # applied index when each in-flight call was sent

    @property
    def recording(self) -> bool:
        return bool(self._bases)

    def begin(self, applied: int) -> int:
        self._bases.append(applied)
        return applied

    def end(self, base: int) -> None:
        self._bases.remove(base)
        if not self._bases:
            self.results.clear()
        elif len(self.results) > 4096:
            floor = min(self._bases)
            for index in [i for i in self.results if i <= floor]:
                del self.results[index]


class Forwards(Protocol):
    """What the forwarder sends with (a Raft ``Transport``, or the shared store's
    ``forwards.ForwardClient``): ``(term, first index)`` of the appended commands, raising
    ``NotLeader``, ``PeerUnreachable`` (nothing appended) or ``Unavailable`` (unknown)."""

    async def forward(self, leader: str, blob: bytes) -> tuple[int, int]: ...


class Placement(Protocol):
    """The driver's side: where the leader put a caller's commands."""

    def placed(self, forwarded: Forwarded) -> None: ...


class Forwarder:
    def __init__(
        self,
        transport: Forwards,
        *,
        leader: Callable[[], str | None],
        wait_for_leader: Callable[[float], Awaitable[str | None]],
        applied: Callable[[], int],
        early: EarlyResults,
        placement: Placement,
        leader_wait: float,
        max_commands: int = 4096,
        max_bytes: int = 1 << 20,
        max_inflight: int = 2,
    ) -> None:
        self.transport = transport
        self._leader = leader
        self._wait_for_leader = wait_for_leader
        self._applied = applied
        self.early = early
        self._placement = placement
        self.leader_wait = leader_wait
        self.max_commands = max_commands
        self.max_bytes = max_bytes
        self._queue: deque[Forwarded] = deque()
        self._work = trio.Event()
        self._slots = trio.Semaphore(max_inflight)
        self.calls = 0  # Forward calls made: commands per call = coalescing
        self._pause = False
        self._hint: str | None = None  # the leader a refusal named, tried next

    def submit(self, items: Sequence[bytes], patience: float) -> Forwarded:
        forwarded = Forwarded(items, time.monotonic() + patience)
        self._queue.append(forwarded)
        self._work.set()
        return forwarded

    def fail_all(self, error: BaseException) -> None:
        while self._queue:
            forwarded = self._queue.popleft()
            forwarded.error = error
            forwarded.event.set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                while not self._queue:
                    self._work = trio.Event()
                    await self._work.wait()
                await self._slots.acquire()
                if self._pause:  # the last call was refused: give the cluster a moment
                    self._pause = False
                    await trio.sleep(_RETRY_PAUSE)
                leader, self._hint = self._hint or self._leader(), None
                if leader is None:
                    leader = await self._wait_for_leader(self.leader_wait)
                    if leader is None:
                        self._slots.release()
                        self.fail_all(NotLeader(None))
                        continue
                # Up to ``max_commands`` commands and ``max_bytes`` bytes per call, the
                # first request always whole: one call's message stays within the limit the
                # leader's gRPC server allows its peers (one command + 1 MiB).
                batch: list[Forwarded] = []
                count = size = 0
                while self._queue:
                    head = self._queue[0]
                    head_size = sum(map(len, head.items))
                    if batch and (
                        count + len(head.items) > self.max_commands
                        or size + head_size > self.max_bytes
                    ):
                        break
                    batch.append(self._queue.popleft())
                    count += len(head.items)
                    size += head_size
                nursery.start_soon(self._call, leader, batch)

    async def _call(self, leader: str, batch: list[Forwarded]) -> None:
        commands: list[bytes] = []
        for forwarded in batch:
            commands.extend(forwarded.items)
        base = self.early.begin(self._applied())
        try:
            self.calls += 1
            try:
                term, first = await self.transport.forward(leader, wire.encode_commands(commands))
            except (NotLeader, PeerUnreachable) as exc:
                self._retry(batch, exc, leader)
                return
            except Unavailable as exc:
                for forwarded in batch:
                    forwarded.error = Unavailable(
                        f"forwarding to the leader {leader} failed after the request was sent "
                        f"({exc}): the outcome is unknown; read it back before retrying"
                    )
                    forwarded.event.set()
                return
            for forwarded in batch:
                forwarded.term = term
                forwarded.first = first
                first += len(forwarded.items)
                self._placement.placed(forwarded)
                forwarded.event.set()
        finally:
            self.early.end(base)
            self._slots.release()

    def _retry(self, batch: list[Forwarded], exc: BaseException, leader: str) -> None:
        """Nothing of ``batch`` was appended: queue it again (at the head, in order) unless
        a caller's patience ran out."""
        now = time.monotonic()
        hint = exc.leader_hint if isinstance(exc, NotLeader) else None
        self._pause = True
        self._hint = hint if hint != leader else None
        for forwarded in reversed(batch):
            if now >= forwarded.deadline:
                forwarded.error = NotLeader(hint or self._known_other(leader))
                forwarded.event.set()
            else:
                self._queue.appendleft(forwarded)
        self._work.set()

    def _known_other(self, leader: str) -> str | None:
        current = self._leader()
        return current if current != leader else None
