"""``Worker``: the decorator API of design.md §3 around one ``Runtime``.

```python
worker = Worker(queues=["default"], concurrency=8)   # or concurrency=(2, 16)
@worker.task("process_data")
def process_data(task): return {"ok": True}
worker.run()                                         # or: await worker.run_async()
```

``run`` owns its event loop (``asyncio.run``) and turns SIGINT/SIGTERM into a drain: no more
work is taken, running handlers finish and their results are reported, then it returns. A
second signal stops at once (handlers still running are abandoned; the node re-runs them).
``run_async`` runs on the caller's loop and installs no signal handlers; call ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

from taskd.client.errors import InvalidArgument
from taskd.client.targets import parse_targets
from taskd.client.worker.handlers import Handler, Handlers
from taskd.client.worker.job import WorkerTask
from taskd.client.worker.outcome import MAX_RESULT
from taskd.client.worker.runtime import Runtime, Settings, Stats, default_name
from taskd.client.worker.scaling import Concurrency

H = TypeVar("H", bound=Handler)
MAX_QUEUES = 64
MAX_QUEUE_NAME = 255


def _drain_timeout(value: float | None) -> float | None:
    if value is not None and not (isinstance(value, int | float) and 0 <= value < math.inf):
        raise InvalidArgument("must be >= 0 seconds, or None to wait", "drain_timeout")
    return value


def _queues(queues: str | Iterable[str]) -> tuple[str, ...]:
    items = [queues] if isinstance(queues, str) else list(queues)
    for q in items:
        if not isinstance(q, str) or not 0 < len(q) <= MAX_QUEUE_NAME or not q.isprintable():
            raise InvalidArgument(
                f"each queue must be a name of 1-{MAX_QUEUE_NAME} printable characters, not {q!r}",
                "queues",
            )
    unique = tuple(dict.fromkeys(items))
    if not unique:
        raise InvalidArgument("name at least one queue", "queues")
    if len(unique) > MAX_QUEUES:
        raise InvalidArgument(f"at most {MAX_QUEUES} queues, not {len(unique)}", "queues")
    return unique


class Worker:
    """Runs the handlers registered with ``@worker.task(...)`` for tasks of ``queues``.

    ``servers``: member gRPC addresses ("host:port", "a:1,b:2" or a list); default
    ``TASKD_SERVER``, else 127.0.0.1:50051. ``concurrency``: handlers at once, ``N`` or
    ``(min, max)`` to grow with the backlog and shrink when idle. ``drain_timeout``: seconds a
    stop waits for running handlers (default: until they finish). ``name``: how the node knows
    this process (default ``host-pid``); it must be unique per worker process, because a
    reconnecting worker tells the node every lease it still holds under it and the node
    releases the others at once (they were lost with the stream). ``shrink_after``: with a
    range, seconds that slots stay unused before the worker gives them back (default 10).
    """

    def __init__(
        self,
        queues: str | Iterable[str] = ("default",),
        concurrency: int | tuple[int, int] | str = 8,
        *,
        servers: str | Iterable[str] | None = None,
        name: str | None = None,
        drain_timeout: float | None = None,
        max_result: int = MAX_RESULT,
        shrink_after: float = 10.0,
    ) -> None:
        try:
            self.concurrency = Concurrency.of(concurrency)
        except ValueError as exc:
            raise InvalidArgument(str(exc), "concurrency") from None
        self.queues = _queues(queues)
        # A bad TASKD_SERVER is reported by run(), not here: `taskd worker --server` (or
        # configure) may replace it, and importing a module must not fail because of it.
        self._servers_error: InvalidArgument | None = None
        try:
            self.servers = parse_targets(servers)
        except InvalidArgument as exc:
            if servers is not None:
                raise
            self.servers, self._servers_error = (), exc
        self.name = name or default_name()
        if not 0 < len(self.name) <= 255 or not self.name.isprintable():
            raise InvalidArgument("must be 1-255 printable characters", "name")
        self.drain_timeout = _drain_timeout(drain_timeout)
        self.max_result = max_result
        if not (isinstance(shrink_after, int | float) and 0 < shrink_after < math.inf):
            raise InvalidArgument("must be a number of seconds > 0", "shrink_after")
        self.shrink_after = float(shrink_after)
        self.handlers = Handlers()
        self._runtime: Runtime | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = threading.Event()
        self._last_stats = Stats()
        self.on_start: Callable[[WorkerTask], None] | None = None  # a hook for tests and bench

    def task(self, name: str | None = None) -> Callable[[H], H]:
        """Register the decorated function for tasks submitted with ``name`` (``None``: the
        tasks that carry no name). It gets a ``WorkerTask`` and returns a JSON-able result."""
        if callable(name):
            raise TypeError("write @worker.task() or @worker.task('name'), with parentheses")

        def register(fn: H) -> H:
            self.handlers.add(name or "", fn)
            return fn

        return register

    def configure(
        self,
        *,
        servers: str | Iterable[str] | None = None,
        concurrency: int | tuple[int, int] | str | None = None,
        queues: str | Iterable[str] | None = None,
        drain_timeout: float | None = None,
    ) -> None:
        """Override settings before ``run`` (what ``taskd worker --server ...`` does); ``None``
        keeps a setting as it is."""
        if servers is not None:
            self.servers = parse_targets(servers)
            self._servers_error = None
        if concurrency is not None:
            try:
                self.concurrency = Concurrency.of(concurrency)
            except ValueError as exc:
                raise InvalidArgument(str(exc), "concurrency") from None
        if queues is not None:
            self.queues = _queues(queues)
        if drain_timeout is not None:
            self.drain_timeout = _drain_timeout(drain_timeout)

    def check(self) -> None:
        """Raise ``InvalidArgument`` if ``run`` could not start: no handler, or no usable
        server address (a bad ``TASKD_SERVER`` that nothing replaced)."""
        if not len(self.handlers):
            raise InvalidArgument("register a handler with @worker.task() first", "handlers")
        if self._servers_error is not None:
            raise self._servers_error

    @property
    def stats(self) -> Stats:
        """What the running (or last) run did: started, succeeded, acked, ..."""
        return self._runtime.stats if self._runtime is not None else self._last_stats

    def run(self) -> None:
        """Block until SIGINT/SIGTERM (then drain) or ``stop()``."""
        asyncio.run(self._main(signals=threading.current_thread() is threading.main_thread()))

    async def run_async(self) -> None:
        """Run on the current asyncio loop until ``stop()`` (no signal handlers installed)."""
        await self._main(signals=False)

    def stop(self) -> None:
        """Drain and return from ``run``; safe from any thread or a signal handler."""
        self._stop_requested.set()
        loop, runtime = self._loop, self._runtime
        if loop is not None and runtime is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(runtime.stop)

    async def _main(self, *, signals: bool) -> None:
        self.check()
        if self._runtime is not None:
            raise RuntimeError("this Worker is already running")
        settings = Settings(
            queues=self.queues,
            concurrency=self.concurrency,
            targets=self.servers,
            name=self.name,
            max_result=self.max_result,
            shrink_after=self.shrink_after,
            drain_timeout=self.drain_timeout,
        )
        runtime = Runtime(settings, self.handlers, on_start=self.on_start)
        self._runtime, self._loop = runtime, asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._signalled, runtime)
                installed.append(sig)
        if self._stop_requested.is_set():
            runtime.stop()
        try:
            await runtime.run()
        finally:
            for sig in installed:
                self._loop.remove_signal_handler(sig)
            self._last_stats = runtime.stats
            self._runtime = self._loop = None

    def _signalled(self, runtime: Runtime) -> None:
        if runtime.stopping:  # a second signal: stop now
            runtime.abandon_now()
        runtime.stop()

    def __repr__(self) -> str:
        return f"<Worker {self.name} queues={list(self.queues)} concurrency={self.concurrency}>"
