"""``TaskSchedulerClient`` (sync) and ``AsyncTaskSchedulerClient`` (asyncio and trio).

Theory of operation: neither class has logic of its own. Each public method is an
``Operations`` coroutine (taskd/client/operations.py) bridged to the caller by one of four
adapters: ``_blocking`` (the calling thread waits), ``_awaiting`` (the caller's asyncio or trio
task awaits), and ``_sync_stream`` / ``_async_stream`` for the operations that yield
(``list_tasks``, ``watch``). The signatures and docstrings are the operations' own, so the two
clients cannot drift apart. A client owns its engine: one loop thread and one connection per
member, shared by every thread or task that uses the client; ``close()`` (or ``with``/
``async with``) releases them.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from taskd.client.engine import Engine
from taskd.client.operations import Operations
from taskd.client.targets import parse_targets

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

DEFAULT_CALL_TIMEOUT = 10.0  # seconds; every call has a deadline
DEFAULT_LINGER = 0.001  # seconds a submit may wait to share a batch while one is in flight


class _Base:
    def __init__(
        self,
        servers: str | Iterable[str] | None = None,
        *,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        coalesce: bool = True,
        linger: float = DEFAULT_LINGER,
        max_batch: int = 100,
        rng: random.Random | None = None,
    ) -> None:
        """servers: "host:port", "a:1,b:2" or a list of gRPC addresses (default:
        ``TASKD_SERVER``, else 127.0.0.1:50051); calls fail over between them.
        call_timeout: the default deadline of each call, in seconds.
        coalesce: concurrent submit_task calls share one SubmitBatch (linger, max_batch)."""
        targets = parse_targets(servers)
        self._engine = Engine(targets, call_timeout=call_timeout, rng=rng or random.Random())
        self._ops = Operations(self._engine, linger=linger, max_batch=max_batch, coalesce=coalesce)

    @property
    def servers(self) -> list[str]:
        """The members this client knows, the one it calls first first."""
        rotation = self._engine.rotation
        return [str(rotation.current)] + [str(t) for t in rotation.members if t != rotation.current]

    @property
    def batches_sent(self) -> int:
        """How many SubmitBatch calls the coalescer made (a measure of how much it batched)."""
        return self._ops.coalescer.batches_sent


def _blocking(
    op: Callable[Concatenate[Operations, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[_Base, P], R]:
    @functools.wraps(op)
    def call(self: _Base, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._engine.run(op(self._ops, *args, **kwargs))

    return call


def _awaiting(
    op: Callable[Concatenate[Operations, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[_Base, P], Coroutine[Any, Any, R]]:
    @functools.wraps(op)
    async def call(self: _Base, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._engine.run_async(op(self._ops, *args, **kwargs))

    return call


async def _step(source: AsyncIterator[T]) -> tuple[bool, T | None]:
    """One item of ``source`` (on the engine's loop) as (more, item)."""
    try:
        return True, await anext(source)
    except StopAsyncIteration:
        return False, None


class SyncStream(Generic[T]):
    """An iterator over an operation that yields (``list_tasks``, ``watch``); ``close()`` or
    ``with`` ends it early."""

    def __init__(self, engine: Engine, source: AsyncIterator[T]) -> None:
        self._engine = engine
        self._source = source
        self._done = False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        more, item = self._engine.run(_step(self._source))
        if not more:
            self._done = True
            raise StopIteration
        return item  # type: ignore[return-value]  # item is a T whenever more is True

    def close(self) -> None:
        if not self._done:
            self._done = True
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None:
                self._engine.run(aclose())

    def __enter__(self) -> SyncStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream(Generic[T]):
    """An async iterator over an operation that yields; ``aclose()`` or ``async with`` ends
    it early."""

    def __init__(self, engine: Engine, source: AsyncIterator[T]) -> None:
        self._engine = engine
        self._source = source
        self._done = False

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        more, item = await self._engine.run_async(_step(self._source))
        if not more:
            self._done = True
            raise StopAsyncIteration
        return item  # type: ignore[return-value]  # item is a T whenever more is True

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None:
                await self._engine.run_async(aclose())

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _sync_stream(
    op: Callable[Concatenate[Operations, P], AsyncIterator[R]],
) -> Callable[Concatenate[_Base, P], SyncStream[R]]:
    @functools.wraps(op)
    def call(self: _Base, /, *args: P.args, **kwargs: P.kwargs) -> SyncStream[R]:
        return SyncStream(self._engine, op(self._ops, *args, **kwargs))

    return call


def _async_stream(
    op: Callable[Concatenate[Operations, P], AsyncIterator[R]],
) -> Callable[Concatenate[_Base, P], AsyncStream[R]]:
    @functools.wraps(op)
    def call(self: _Base, /, *args: P.args, **kwargs: P.kwargs) -> AsyncStream[R]:
        return AsyncStream(self._engine, op(self._ops, *args, **kwargs))

    return call


class TaskSchedulerClient(_Base):
    """The sync client: ``TaskSchedulerClient()`` talks to 127.0.0.1:50051 (``TASKD_SERVER``
    overrides). Safe to share between threads: their submits are batched together."""

    submit_task = _blocking(Operations.submit_task)
    submit_batch = _blocking(Operations.submit_batch)
    get_task = _blocking(Operations.get_task)
    list_tasks = _sync_stream(Operations.list_tasks)
    cancel = _blocking(Operations.cancel)
    retry = _blocking(Operations.retry)
    wait = _blocking(Operations.wait)
    watch = _sync_stream(Operations.watch)

    def close(self) -> None:
        """Close the connections and stop the client's loop thread."""
        self._engine.close()

    def __enter__(self) -> TaskSchedulerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncTaskSchedulerClient(_Base):
    """The async client, for asyncio and trio alike: ``await client.submit_task(...)``."""

    submit_task = _awaiting(Operations.submit_task)
    submit_batch = _awaiting(Operations.submit_batch)
    get_task = _awaiting(Operations.get_task)
    list_tasks = _async_stream(Operations.list_tasks)
    cancel = _awaiting(Operations.cancel)
    retry = _awaiting(Operations.retry)
    wait = _awaiting(Operations.wait)
    watch = _async_stream(Operations.watch)

    async def close(self) -> None:
        """Close the connections and stop the client's loop thread."""
        self._engine.close()  # quick: the loop thread only closes its sockets

    async def __aenter__(self) -> AsyncTaskSchedulerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
