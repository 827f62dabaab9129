"""Client processes for load generation, with progress the parent can watch.

Theory of operation: a ``Fleet`` forks ``count`` children that each run one async *role*
(``async def role(child) -> ChildReport``) in a fresh asyncio loop, then send the report back
through a pipe. Children share fork-inherited ``RawArray`` slots with the parent: each child
writes only its own (progress, errors, ready), so no locks are needed and the parent can read
them any time for the live progress line. ``go`` lets every fleet of a workload start at once,
after all have connected; ``stop`` ends open-ended roles (workers).

Fork, not spawn: children need no pickling or re-import, which also keeps ``taskd bench``
working from the one-file binary. The parent forks before it starts any loop or thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import time
from collections.abc import Callable, Coroutine
from multiprocessing.context import ForkContext, ForkProcess
from multiprocessing.sharedctypes import RawArray
from typing import Any

from taskd.bench.stats import ChildReport

_PROGRESS, _ERRORS, _READY = 0, 1, 2
_SLOTS = 3


class Child:
    """One child's handle on its shared slots and the workload's events."""

    def __init__(
        self,
        index: int,
        slots: ctypes.Array[ctypes.c_longlong],
        go: multiprocessing.synchronize.Event,
        stop: multiprocessing.synchronize.Event,
    ) -> None:
        self.index = index
        self._slots = slots
        self._base = index * _SLOTS
        self._go = go
        self._stop = stop

    def advance(self, tasks: int) -> None:
        self._slots[self._base + _PROGRESS] += tasks

    def failed(self, calls: int = 1) -> None:
        self._slots[self._base + _ERRORS] += calls

    def ready(self) -> None:
        self._slots[self._base + _READY] = 1

    async def ready_and_wait_for_go(self) -> None:
        self.ready()
        # a process-shared Event cannot be awaited: poll it (5 ms is below the noise)
        while not self._go.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()


Role = Callable[[Child], Coroutine[Any, Any, ChildReport]]


def _child_main(role: Role, child: Child, conn: multiprocessing.connection.Connection) -> None:
    try:
        report: ChildReport = asyncio.run(role(child))
    except BaseException as exc:  # a client crash is a result to show, never a hung run
        report = ChildReport()
        report.error(f"CLIENT_CRASH ({type(exc).__name__}: {exc})")
        child.ready()  # so that the parent does not wait for it
    conn.send(report)
    conn.close()


class Fleet:
    def __init__(
        self,
        role_for: Callable[[int], Role],
        count: int,
        *,
        go: multiprocessing.synchronize.Event,
        stop: multiprocessing.synchronize.Event,
        ctx: ForkContext,
    ) -> None:
        self.count = count
        self._ctx = ctx
        self._slots = RawArray(ctypes.c_longlong, count * _SLOTS)
        self._procs: list[ForkProcess] = []
        self._conns: list[multiprocessing.connection.Connection] = []
        self._reports: dict[int, ChildReport] = {}
        self._send_ends: list[multiprocessing.connection.Connection] = []
        for index in range(count):
            receive, send = ctx.Pipe(duplex=False)
            child = Child(index, self._slots, go, stop)
            proc = ctx.Process(target=_child_main, args=(role_for(index), child, send), daemon=True)
            self._procs.append(proc)
            self._conns.append(receive)
            self._send_ends.append(send)

    def start(self) -> None:
        for proc in self._procs:
            proc.start()
        for send in self._send_ends:  # the children hold them now; a dead child reads as EOF
            send.close()

    def _sum(self, offset: int) -> int:
        return sum(self._slots[i * _SLOTS + offset] for i in range(self.count))

    @property
    def progress(self) -> int:
        return self._sum(_PROGRESS)

    @property
    def errors(self) -> int:
        return self._sum(_ERRORS)

    @property
    def ready(self) -> bool:
        return self._sum(_READY) == self.count

    def poll(self) -> bool:
        """Take the reports that have arrived; True when every child has reported."""
        for index, conn in enumerate(self._conns):
            if index in self._reports or not conn.poll():
                continue
            try:
                self._reports[index] = conn.recv()
            except (EOFError, OSError):  # died without a report (killed)
                report = ChildReport()
                report.error("CLIENT_DIED")
                self._reports[index] = report
        return len(self._reports) == self.count

    def collect(self, timeout: float) -> list[ChildReport]:
        """Wait up to ``timeout`` for every report, then kill whatever is left."""
        end = time.monotonic() + timeout
        while not self.poll() and time.monotonic() < end:
            time.sleep(0.02)
        self.kill()
        return [self._reports.get(i, ChildReport()) for i in range(self.count)]

    def kill(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
            proc.join(timeout=5)


def fork_context() -> ForkContext:
    return multiprocessing.get_context("fork")
