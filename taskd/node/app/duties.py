"""Leader duties: what only the leader does, started and stopped on the leadership signal.

Theory of operation: ``LeaderDuties.run`` watches the store's leadership
(``taskd.store.seam.LeadershipView``). Each time this node gains leadership in a term it runs,
in a nursery of that term:

1. ``prepare(term)``: what a new leader settles before writing anything of its own (the node:
   its clock not before the last applied command, the limits the flags ask for). It must not
   raise for a refused write: it decides what such a refusal means itself.
2. ``takeover()``: the writes a new leader makes before its duties run (the node: renew every
   active lease a full period, so workers that lost their node have time to reconnect; a
   node's own local attempts are released only by a restart of that node, never here). If the
   store refuses them (a full disk), that is logged and they are retried through ``retry``
   until written.
3. ``duties``: long-running loops (the node: the timer loop, which also expires leases and
   applies retention), run side by side until the term ends.

When leadership is lost, or gained again in a newer term, the term's nursery is cancelled, and
a new one starts for the new term. ``taken_over()`` is True only while this node leads in a
term whose takeover is written. ``settled()`` returns once this node does not lead, or the current
term's takeover was tried once: the node reports ready only then, so a one-member node answers
its first request with its limits and releases in place, as it always did.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import trio

from taskd.errors import ClusterError
from taskd.store.seam import LeadershipView

log = logging.getLogger("taskd.node")

Duty = Callable[[], Awaitable[object]]
Retry = Callable[[str, Duty], Awaitable[None]]

TAKEOVER = "the start-up release and renewal of leases"


class LeaderDuties:
    def __init__(
        self,
        leadership: LeadershipView,
        *,
        prepare: Callable[[int], Awaitable[None]],
        takeover: Duty,
        retry: Retry,
        duties: Sequence[Duty],
    ) -> None:
        self.leadership = leadership
        self._prepare = prepare
        self._takeover = takeover
        self._retry = retry
        self._duties = list(duties)
        self._written_term: int | None = None  # the term whose takeover is written
        self._settled_term: int | None = None  # the term whose takeover was tried once
        self._progress = trio.Event()  # set (and replaced) when either of those moves
        self.terms_led = 0  # terms whose duties were started, since start

    def taken_over(self) -> bool:
        term = self.leadership.term
        return term is not None and self._written_term == term

    async def settled(self) -> None:
        while True:
            term, version, progress = self.leadership.term, self.leadership.version, self._progress
            if term is None or self._settled_term == term:
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_then_cancel, progress.wait, nursery.cancel_scope)
                changed = partial(self.leadership.changed, version)
                nursery.start_soon(_then_cancel, changed, nursery.cancel_scope)

    async def run(self) -> None:
        """Run each term's duties while this node leads in it; never returns."""
        while True:
            term, version = self.leadership.term, self.leadership.version
            if term is None:
                await self.leadership.changed(version)
                continue
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._lead, term)
                await self.leadership.changed(version)  # lost, or a newer term
                nursery.cancel_scope.cancel()
            if self._written_term == term:
                log.info("leader duties of term %d stopped", term)

    async def _lead(self, term: int) -> None:
        self.terms_led += 1
        log.info("leading in term %d: leader duties start", term)
        await self._prepare(term)
        try:
            await self._takeover()
        except ClusterError as exc:
            log.error("start-up writes refused, retrying in the background: %s", exc)
            self._mark(settled=term)
            await self._retry(TAKEOVER, self._takeover)
        self._mark(settled=term, written=term)
        async with trio.open_nursery() as nursery:
            for duty in self._duties:
                nursery.start_soon(duty)

    def _mark(self, *, settled: int, written: int | None = None) -> None:
        self._settled_term = settled
        if written is not None:
            self._written_term = written
        self._progress.set()
        self._progress = trio.Event()


async def _then_cancel(wait: Callable[[], Awaitable[object]], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()
