"""The threads sync handlers run in: daemon threads, so none can hold the process up.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the interpreter exits, so a
sync handler still running after a worker stopped (its drain timed out, or a second signal
said "now") kept the process alive until the handler returned — for a stuck handler, for
ever. These threads are daemons: ``Worker.run`` returns and the process exits; the abandoned
attempt is run again by the node (its stream ended, so its lease was released).

The pool starts a thread whenever the jobs waiting or running outnumber its threads, up to
``max_threads``, which the runtime never exceeds (it runs at most its maximum concurrency of
handlers at once), so a job never waits behind another.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

_Job = tuple[Callable[[Any], Any], Any, "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class DaemonThreads:
    def __init__(self, max_threads: int, name: str = "taskd-worker") -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self._max = max_threads
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._pending = 0  # jobs queued or running

    def run(self, fn: Callable[[Any], Any], arg: Any) -> asyncio.Future[Any]:
        """``fn(arg)`` in a thread; the future settles on the running loop. Cancelling it does
        not stop the thread (nothing can): its outcome is dropped."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._pending += 1
            if self._pending > self._threads and self._threads < self._max:
                self._threads += 1
                threading.Thread(
                    target=self._serve, name=f"{self._name}-{self._threads}", daemon=True
                ).start()
        self._jobs.put((fn, arg, future, loop))
        return future

    def shutdown(self) -> None:
        """Idle threads end; busy ones end after their job (or with the process)."""
        with self._lock:
            count = self._threads
        for _ in range(count):
            self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, arg, future, loop = job
            try:
                outcome: tuple[bool, Any] = (True, fn(arg))
            except Exception as exc:
                outcome = (False, exc)
            except BaseException as exc:  # SystemExit, KeyboardInterrupt: a failure, not an exit
                outcome = (False, RuntimeError(f"the handler raised {exc!r}"))
            with self._lock:
                self._pending -= 1
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for it
                loop.call_soon_threadsafe(_settle, future, outcome)
        with self._lock:
            self._threads -= 1


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # cancelled: the attempt timed out, was revoked, or the run ended
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
