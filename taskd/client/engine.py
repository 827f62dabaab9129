"""The SDK's one transport: an asyncio loop in a daemon thread that owns the gRPC channels.

Theory of operation: every call the SDK makes is a coroutine run on this loop, whichever
façade started it. The sync client waits on the ``concurrent.futures.Future`` that
``run_coroutine_threadsafe`` returns; the async client awaits it from the caller's own event
loop — ``asyncio.wrap_future`` under asyncio, a ``trio.Event`` set through the caller's trio
token under trio (no thread per call either way). So the logic is written once, as asyncio
code, and every thread and task of a process that shares a client shares its connections and
its submit coalescer.

``unary`` is the one place grpclib is called for unary RPCs: it gives each call its deadline,
translates grpclib and socket errors into ``taskd.client.errors`` (reading the leader hint from
the ``x-taskd-leader`` trailer), and fails over across the members with ``Rotation``. A call
that may have reached a node before the connection broke is retried only when ``idempotent``
(reads, and submits — which always carry an idempotency key); one refused before it was sent
(connection refused, no leader) is always retried until its deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import betterproto2
import sniffio
from grpclib.client import Channel, Stream
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from taskd.client.errors import (
    DeadlineExceeded,
    TaskdClientError,
    Unavailable,
    from_status,
    trailers_of,
)
from taskd.client.targets import Rotation, Target

R = TypeVar("R")
M = TypeVar("M", bound=betterproto2.Message)


class _Lost(Unavailable):
    """The connection broke after the request may have reached the node."""


class Engine:
    """The loop thread, one lazily made channel per member, and failover."""

    def __init__(
        self, targets: tuple[Target, ...], *, call_timeout: float, rng: random.Random
    ) -> None:
        self.rotation = Rotation(targets, rng)
        self.call_timeout = call_timeout
        self._channels: dict[Target, Channel] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # ---- the loop thread ----

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise TaskdClientError("this client is closed")
            if self._loop is None:
                # A plain selector loop, whatever loop policy the application installed
                # (trio-asyncio's, say, makes loops that only run inside trio).
                loop: asyncio.AbstractEventLoop = asyncio.SelectorEventLoop()
                thread = threading.Thread(target=loop.run_forever, name="taskd-client", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, R]) -> concurrent.futures.Future[R]:
        try:
            loop = self.loop
        except TaskdClientError:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the loop and block this thread until it is done."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("the sync client cannot be called from its own loop thread")
        future = self.submit(coro)
        try:
            while not concurrent.futures.wait([future], timeout=1.0).done:
                thread = self._thread  # never wait on a loop thread that is gone
                if thread is None or not thread.is_alive():
                    raise TaskdClientError("the client's loop thread stopped; create a new client")
            return future.result()
        except BaseException:
            future.cancel()  # KeyboardInterrupt: do not leave the call running
            raise

    async def run_async(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the loop; await it from the caller's asyncio or trio loop."""
        library = sniffio.current_async_library()
        future = self.submit(coro)
        if library == "trio":
            return await _await_in_trio(future)
        try:
            return await asyncio.wrap_future(future)
        finally:
            future.cancel()  # a no-op when done; else the caller was cancelled

    def close(self) -> None:
        """Close the channels and stop the loop thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("close the client from outside its loop thread")

        async def shutdown() -> None:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()

    # ---- calls (on the loop) ----

    def channel(self, target: Target) -> Channel:
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = Channel(target.host, target.port)
        return channel

    def deadline(self, timeout: float | None) -> float:
        """The loop-clock instant a call started now with ``timeout`` must be done by."""
        loop = asyncio.get_running_loop()
        return loop.time() + (self.call_timeout if timeout is None else max(0.0, timeout))

    async def unary(
        self,
        method: str,
        request: betterproto2.Message,
        reply_type: type[M],
        *,
        deadline: float,
        idempotent: bool,
    ) -> M:
        """One unary RPC with failover; ``deadline`` on the loop's clock."""
        loop = asyncio.get_running_loop()
        last: TaskdClientError | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _deadline_error(method, last)
            target = self.rotation.current
            try:
                reply = await self._once(target, method, request, reply_type, remaining)
            except _Lost as exc:
                if not idempotent:
                    raise
                last = exc
            except Unavailable as exc:
                last = exc
            else:
                self.rotation.succeeded(target)
                return reply
            pause = self.rotation.failed(target, last.leader_hint)
            if pause:
                await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))

    async def _once(
        self,
        target: Target,
        method: str,
        request: betterproto2.Message,
        reply_type: type[M],
        seconds_left: float,
    ) -> M:
        stream: Stream[Any, Any] | None = None
        sent = False
        try:
            async with self.channel(target).request(
                method, Cardinality.UNARY_UNARY, type(request), reply_type, timeout=seconds_left
            ) as stream:
                await stream.send_message(request, end=True)
                sent = True
                reply = await stream.recv_message()
        except GRPCError as exc:
            trailers = trailers_of(stream.trailing_metadata if stream else None)
            raise from_status(exc.status, exc.message, trailers) from None
        except TimeoutError:
            raise DeadlineExceeded(
                f"{method} to {target}: no answer in {seconds_left:.3g} s"
            ) from None
        except (StreamTerminatedError, ProtocolError) as exc:
            raise _Lost(f"{method} to {target}: connection lost ({exc})") from None
        except OSError as exc:
            kind = _Lost if sent else Unavailable
            raise kind(f"{method}: cannot reach {target} ({exc})") from None
        if reply is None:
            raise _Lost(f"{method} to {target}: the stream ended without an answer")
        return reply

    async def server_stream(
        self, method: str, request: betterproto2.Message, reply_type: type[M]
    ) -> AsyncIterator[M]:
        """A server-streaming RPC (Watch) on the current member, without a deadline.

        Opening fails over like ``unary``; once messages flow, a broken stream ends with
        ``Unavailable`` (the caller re-opens it and re-reads what it may have missed)."""
        target = self.rotation.current
        stream: Stream[Any, Any] | None = None
        try:
            async with self.channel(target).request(
                method, Cardinality.UNARY_STREAM, type(request), reply_type
            ) as stream:
                await stream.send_message(request, end=True)
                async for message in stream:
                    yield message
        except GRPCError as exc:
            error = from_status(
                exc.status, exc.message, trailers_of(stream.trailing_metadata if stream else None)
            )
            if isinstance(error, Unavailable):
                self.rotation.failed(target, error.leader_hint)
            raise error from None
        except (StreamTerminatedError, ProtocolError, OSError) as exc:
            self.rotation.failed(target)
            raise Unavailable(f"{method} to {target}: {exc}") from None


def _deadline_error(method: str, last: TaskdClientError | None) -> DeadlineExceeded:
    if isinstance(last, DeadlineExceeded):
        return last
    why = f"; last error: {last}" if last else ""
    return DeadlineExceeded(f"{method}: no member answered within the deadline{why}")


async def _await_in_trio(future: concurrent.futures.Future[R]) -> R:
    """Wait for ``future`` inside trio: its completion sets a trio.Event via the run's token."""
    import trio  # noqa: PLC0415 -- trio is optional for the SDK: only a trio caller has it

    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass  # the caller's run is over: nobody waits

    future.add_done_callback(wake)
    try:
        await done.wait()
    finally:
        future.cancel()  # a no-op when done; else the trio caller was cancelled
    return future.result()
