"""The leadership signal: whether this node leads now, and in which term.

Theory of operation: a store owns one ``Leadership`` and calls ``gained(term)`` when this node
becomes the one that takes writes, and ``lost()`` when it stops (another member won a higher
term, the store stopped, the store shut down). Readers see ``term`` (None while not leading)
and ``version``, a counter that grows by one on every change; ``changed(since)`` returns once
``version`` differs from ``since``, so a reader that looked at the signal and then waits never
misses a change made in between. Gaining the term already held is no change; terms never go
back.

The Raft store (one member today) gains leadership once, after replay, and loses it when
``serve`` ends; the memory store gains it when it starts. Leader-only duties start and stop on
this signal (``taskd.node.app.duties.LeaderDuties``).
"""

from __future__ import annotations

import trio


class Leadership:
    def __init__(self) -> None:
        self._term: int | None = None
        self._highest = 0
        self._version = 0
        self._changed = trio.Event()

    @property
    def term(self) -> int | None:
        """The term this node leads in, or None while it does not lead."""
        return self._term

    @property
    def version(self) -> int:
        """How many times leadership changed hands here: grows by one per change."""
        return self._version

    def gained(self, term: int) -> None:
        if term == self._term:
            return
        if term < self._highest:
            raise ValueError(f"leadership gained in term {term} after term {self._highest}")
        self._term = self._highest = term
        self._bump()

    def lost(self) -> None:
        if self._term is None:
            return
        self._term = None
        self._bump()

    async def changed(self, since: int) -> None:
        """Return once ``version`` is no longer ``since`` (at once if it already is not)."""
        while self._version == since:
            await self._changed.wait()

    def _bump(self) -> None:
        self._version += 1
        self._changed.set()
        self._changed = trio.Event()
