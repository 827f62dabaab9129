"""Forwards on one long-lived gRPC stream per leader (``taskd.internal.v1.Raft/ForwardStream``).

Theory of operation. A follower forwards its clients' writes to the leader in batches
(``forwarding.Forwarder``). A unary call per batch costs the leader a call's worth of HTTP/2
headers, metadata checks and handler set-up, about as much as a client's own unary Submit; on
one stream that cost is paid once per connection, and each batch costs the leader one message
in and one message out.

Client side (``ForwardStream``, asyncio, one per peer): callers put (blob, future) on the
outbox; one runner task opens the stream, writes the outbox in order and reads the answers in
order. The server answers every request, in order, before it reads the next, so the n-th
answer belongs to the n-th request sent: the runner keeps the futures of requests sent and not
yet answered in ``sent``, FIFO.

Outcomes a caller can get, and why each is safe:
- the answer: (term, first index), ``not_leader`` or ``refused`` (nothing was done), or
  ``unknown`` (a shared-database leader's round failed: ``Unavailable``);
- ``PeerUnreachable``: the request never left (the stream could not be opened, or it failed
  before this request was written), or the server ended the stream with a status of its own
  (not a member, wrong secret, not serving, no such method): it acts on requests one at a time
  and answered every one it acted on, so what was not answered was not appended. The
  forwarder may send it again;
- ``Unavailable``: the stream broke after the request was written (connection reset, no answer
  within ``timeout``): the outcome is unknown, never retried blindly.
A stream that failed is dropped; the next call opens a new one. A peer that has no
``ForwardStream`` (UNIMPLEMENTED: an older member during a rolling upgrade) is remembered in
``unimplemented`` so the transport falls back to unary ``Forward`` calls.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping

import grpclib
import grpclib.const
import grpclib.server
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import ProtocolError, StreamTerminatedError

from taskd.api.taskd.internal import v1 as pb
from taskd.errors import NotLeader, Unavailable
from taskd.store.raft import wire
from taskd.store.raft.transport import Inbox, PeerUnreachable

METHOD = "/taskd.internal.v1.Raft/ForwardStream"
# Statuses the server ends the stream with before or instead of acting on a request.
_REFUSALS = frozenset(
    {
        Status.FAILED_PRECONDITION,
        Status.PERMISSION_DENIED,
        Status.UNAUTHENTICATED,
        Status.UNIMPLEMENTED,
    }
)


class _Call:
    __slots__ = ("blob", "future", "written")

    def __init__(self, blob: bytes, future: asyncio.Future[pb.ForwardResponse]) -> None:
        self.blob = blob
        self.future = future
        self.written = False  # handed to the stream: from here on, the outcome may be unknown


class ForwardStream:
    """The follower's end of one ``ForwardStream`` to ``peer``."""

    def __init__(
        self,
        peer: str,
        channel: Callable[[], Channel],
        metadata: Mapping[str, str],
        *,
        timeout: float,
    ) -> None:
        self.peer = peer
        self._channel = channel  # the peer's current channel (the transport may replace it)
        self._metadata = dict(metadata)
        self.timeout = timeout
        self.unimplemented = False  # the peer has no ForwardStream: use unary Forward
        self._outbox: deque[_Call] = deque()
        self._sent: deque[_Call] = deque()  # written, not answered yet, in order
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    async def forward(self, blob: bytes) -> pb.ForwardResponse:
        """One request's answer; ``PeerUnreachable`` or ``Unavailable`` as the module says.
        A caller that gives up (cancelled, or no answer in time) cancels its future: the
        writer then skips it if it did not go out yet, the reader drops its answer."""
        call = _Call(blob, asyncio.get_running_loop().create_future())
        self._outbox.append(call)
        self._wake.set()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._run())
        try:
            async with asyncio.timeout(self.timeout):
                return await call.future
        except TimeoutError:
            self.close()  # stuck: recycle the stream (its other callers are settled too)
            if not call.written:
                raise PeerUnreachable(
                    f"the stream to {self.peer} took no request for {self.timeout:g}s"
                ) from None
            raise Unavailable(
                f"forwarding to {self.peer} got no answer within {self.timeout:g}s: the "
                "outcome is unknown; read it back before retrying"
            ) from None

    def close(self) -> None:
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()

    async def _run(self) -> None:
        try:
            async with self._channel().request(
                METHOD,
                grpclib.const.Cardinality.STREAM_STREAM,
                pb.ForwardRequest,
                pb.ForwardResponse,
                metadata=self._metadata,
            ) as stream:
                await stream.send_request()
                reader = asyncio.ensure_future(self._read(stream))
                try:
                    await self._write(stream, reader)
                finally:
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
        except asyncio.CancelledError:
            self._fail(None)
            raise
        except Exception as exc:  # any failure of the stream settles its callers
            self._fail(exc)

    async def _write(
        self,
        stream: grpclib.client.Stream[pb.ForwardRequest, pb.ForwardResponse],
        reader: asyncio.Future[None],
    ) -> None:
        while True:
            while not self._outbox:
                self._wake.clear()
                waking = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait((waking, reader), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waking.cancel()
                if reader.done():
                    reader.result()  # raises what ended the stream
                    raise StreamTerminatedError("the peer ended the stream")
            call = self._outbox.popleft()
            if call.future.done():  # its caller gave up before it went out
                continue
            call.written = True
            self._sent.append(call)
            await stream.send_message(pb.ForwardRequest(commands=call.blob))

    async def _read(
        self, stream: grpclib.client.Stream[pb.ForwardRequest, pb.ForwardResponse]
    ) -> None:
        sent = self._sent
        while True:
            reply = await stream.recv_message()
            if reply is None:
                raise StreamTerminatedError("the peer ended the stream")
            if not sent:
                raise ProtocolError("an answer to no request")
            call = sent.popleft()
            if not call.future.done():
                call.future.set_result(reply)

    def _fail(self, exc: BaseException | None) -> None:
        """Settle every caller of a stream that ended: see the module's outcomes."""
        refused = isinstance(exc, grpclib.GRPCError) and exc.status in _REFUSALS
        if isinstance(exc, grpclib.GRPCError) and exc.status is Status.UNIMPLEMENTED:
            self.unimplemented = True
        reason = describe(exc) if exc is not None else "the stream was recycled"
        while self._sent:
            future = self._sent.popleft().future
            if future.done():
                continue
            if refused:
                future.set_exception(PeerUnreachable(f"{self.peer} refused: {reason}"))
            else:
                future.set_exception(
                    Unavailable(
                        f"forwarding to {self.peer} failed after it was sent ({reason}): the "
                        "outcome is unknown; read it back before retrying"
                    )
                )
        while self._outbox:
            future = self._outbox.popleft().future
            if not future.done():
                future.set_exception(PeerUnreachable(f"cannot forward to {self.peer}: {reason}"))


def answer(reply: pb.ForwardResponse, peer: str) -> tuple[int, int]:
    """A ``ForwardResponse`` as the transport's result: (term, first index), or raise."""
    if reply.not_leader:
        raise NotLeader(reply.leader or None)
    if reply.refused:
        raise PeerUnreachable(f"{peer} did not take the forward: {reply.refused}")
    if reply.unknown:
        raise Unavailable(f"the leader {peer} could not make the forward durable: {reply.unknown}")
    return reply.term, reply.first_index


async def serve_stream(
    inbox: Inbox, stream: grpclib.server.Stream[pb.ForwardRequest, pb.ForwardResponse]
) -> None:
    """The leader's end: each request appended (or refused) and answered before the next is
    read, so answers are in request order and every request acted on was answered."""
    accept = inbox.accept_forward
    async for request in stream:
        try:
            term, first = accept(request.commands)
        except NotLeader as exc:
            reply = pb.ForwardResponse(not_leader=True, leader=exc.leader_hint or "")
        except wire.WireError as exc:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, str(exc)) from None
        except Unavailable as exc:
            reply = pb.ForwardResponse(refused=str(exc))
        else:
            reply = pb.ForwardResponse(term=term, first_index=first)
        await stream.send_message(reply)


def describe(exc: BaseException) -> str:
    """A failure in one line, for messages that name it (gRPC status and message if any)."""
    if isinstance(exc, grpclib.GRPCError):
        return f"{exc.status.name}: {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
