"""How the shared store's trio loop calls a backend's blocking methods.

Theory of operation: a backend is synchronous (psycopg, redis-py) and serves one thread at a
time, except ``wait_for_entries``, which it serves on a connection of its own. ``Threads``
gives the driver exactly that: ``call`` runs one blocking call in a worker thread, one call at
a time (a limiter of one: a renewal waits behind an append, never beside it on the same
connection); ``wait`` runs ``wait_for_entries`` in a second thread, abandoned when the waiter is
cancelled (it returns by its own timeout, and the limiter keeps the next wait behind it).

A ``Hop`` is the seam tests replace: an in-process fake backend runs inline, on the virtual
clock (``tests/store/shared/fake_backend.py``), so lease timings are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import trio

from taskd.store.shared.backend import Backend

T = TypeVar("T")


class Hop(Protocol):
    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (one backend call) off the loop, one at a time."""

    async def wait(self, backend: Backend, after: int, seconds: float) -> None:
        """``backend.wait_for_entries(after, seconds)``, off the loop, beside ``call``."""


class Threads:
    def __init__(self) -> None:
        self._one = trio.CapacityLimiter(1)
        self._waiting = trio.CapacityLimiter(1)

    async def call(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=self._one)

    async def wait(self, backend: Backend, after: int, seconds: float) -> None:
        await trio.to_thread.run_sync(
            backend.wait_for_entries, after, seconds, limiter=self._waiting, abandon_on_cancel=True
        )
