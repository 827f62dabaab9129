"""How nodes on one shared database forward writes to the lease holder, over gRPC.

Theory of operation. A follower's ``SharedStore`` hands batches of commands to the Raft
store's ``Forwarder``, which sends them with ``ForwardClient.forward``. They ride the same
internal method as between Raft members (``taskd.internal.v1.Raft/ForwardStream``, one
long-lived stream per leader, ``forwardstream.ForwardStream``), so the message types, the
outcomes (answered, refused: nothing done, unknown) and their tests are shared; only the
leader's end differs: ``ForwardService`` answers a request once the round that ran it is
durable in the database, and keeps up to ``_PIPELINE`` requests of one stream in rounds at
once, answering them in order.

Who may forward: a node that can read the database. The first node to open it stores 32
random bytes there (``Backend.peer_secret``); every call carries them in the metadata header
``x-taskd-peer-secret`` and the leader compares them in constant time (UNAUTHENTICATED
otherwise). Between machines the secret travels in the clear until taskd has TLS: run the
nodes on a private network (docs/stores.md).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from typing import Any, Protocol

import grpclib
import grpclib.const
import grpclib.server
import trio
import trio_asyncio
from grpclib.client import Channel
from grpclib.const import Status

from taskd.api.taskd.internal import v1 as pb
from taskd.errors import NotLeader, Unavailable
from taskd.store.raft import forwardstream, wire
from taskd.store.raft.forwardstream import ForwardStream
from taskd.store.raft.grpctransport import split_address
from taskd.store.raft.transport import PeerUnreachable
from taskd.store.shared.driver import ForwardUnknown

SECRET_HEADER = "x-taskd-peer-secret"
_SERVICE = "/taskd.internal.v1.Raft/"
_PIPELINE = 8  # requests of one stream in rounds at once, answered in order
_TIMEOUT = 30.0  # seconds a forward may wait for its answer (a round under a slow database)


class Accepts(Protocol):
    """The leader's side of the store (``SharedStore``)."""

    @property
    def peer_secret(self) -> bytes | None: ...

    async def accept_forward(self, blob: bytes) -> tuple[int, int]: ...


class ForwardClient:
    """The follower's end: one channel and one ``ForwardStream`` per leader it forwarded to.
    Runs on the node's trio loop inside trio-asyncio (grpclib is asyncio code)."""

    def __init__(self, secret: Callable[[], bytes | None], *, timeout: float = _TIMEOUT) -> None:
        self._secret = secret
        self.timeout = timeout
        self._peers: dict[str, tuple[bytes, Channel, ForwardStream]] = {}

    async def forward(self, leader: str, blob: bytes) -> tuple[int, int]:
        stream = self._stream(leader)
        reply = await trio_asyncio.aio_as_trio(stream.forward)(blob)
        return forwardstream.answer(reply, leader)

    def _stream(self, leader: str) -> ForwardStream:
        """The stream to ``leader``, opened again when the database's secret changed (it
        lost its data and a node made a new one)."""
        secret = self._secret()
        if secret is None:
            raise PeerUnreachable("this node has not read the peer secret from the database yet")
        found = self._peers.get(leader)
        if found is not None and found[0] != secret:
            self._drop(leader)
            found = None
        if found is None:
            host, port = split_address(leader)
            channel = Channel(host, port)
            stream = ForwardStream(
                leader, lambda: channel, {SECRET_HEADER: secret.hex()}, timeout=self.timeout
            )
            found = self._peers[leader] = (secret, channel, stream)
        return found[2]

    def _drop(self, leader: str) -> None:
        _, channel, stream = self._peers.pop(leader)
        stream.close()
        channel.close()

    def close(self) -> None:
        for leader in list(self._peers):
            self._drop(leader)

    async def serve(self) -> None:
        """Run until cancelled; closes the connections at the end."""
        try:
            await trio.sleep_forever()
        finally:
            self.close()


class ForwardService:
    """The leader's end, mounted on the node's gRPC server (grpclib ``__mapping__``)."""

    def __init__(self, store: Accepts) -> None:
        self.store = store

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        c = grpclib.const.Cardinality
        return {
            forwardstream.METHOD: grpclib.const.Handler(
                self._forward_stream, c.STREAM_STREAM, pb.ForwardRequest, pb.ForwardResponse
            ),
        }

    def _check(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        expected = self.store.peer_secret
        if expected is None:
            raise grpclib.GRPCError(
                Status.FAILED_PRECONDITION, "this node has not opened the database yet"
            )
        given = stream.metadata.get(SECRET_HEADER) if stream.metadata else None
        try:
            presented = bytes.fromhex(given) if isinstance(given, str) else b""
        except ValueError:
            presented = b""
        if not hmac.compare_digest(presented, expected):
            raise grpclib.GRPCError(
                Status.UNAUTHENTICATED,
                f"forwarding needs metadata {SECRET_HEADER}, the secret stored in the shared "
                "database: only a taskd node started with the same --store may forward",
            )

    async def _forward_stream(
        self, stream: grpclib.server.Stream[pb.ForwardRequest, pb.ForwardResponse]
    ) -> None:
        self._check(stream)
        answers: asyncio.Queue[asyncio.Future[pb.ForwardResponse] | None] = asyncio.Queue(_PIPELINE)
        writer = asyncio.ensure_future(self._answer(stream, answers))
        try:
            async for request in stream:
                if writer.done():
                    break
                # Queued in the order read: the store runs them in rounds in this order too.
                accepting = asyncio.ensure_future(self._accept(request.commands))
                accepting.add_done_callback(_retrieved)
                await answers.put(accepting)
            await answers.put(None)
            await writer
        finally:
            writer.cancel()

    async def _accept(self, blob: bytes) -> pb.ForwardResponse:
        try:
            term, first = await trio_asyncio.trio_as_aio(self.store.accept_forward)(blob)
        except NotLeader as exc:
            return pb.ForwardResponse(not_leader=True, leader=exc.leader_hint or "")
        except wire.WireError as exc:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, str(exc)) from None
        except Unavailable as exc:
            if isinstance(exc, ForwardUnknown):
                return pb.ForwardResponse(unknown=str(exc))
            return pb.ForwardResponse(refused=str(exc))
        return pb.ForwardResponse(term=term, first_index=first)

    async def _answer(
        self,
        stream: grpclib.server.Stream[pb.ForwardRequest, pb.ForwardResponse],
        answers: asyncio.Queue[asyncio.Future[pb.ForwardResponse] | None],
    ) -> None:
        while (accepted := await answers.get()) is not None:
            await stream.send_message(await accepted)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark an answer's failure as seen even if the stream ended before it was written:
    asyncio reports unseen ones, and trio-asyncio turns that report into a crash."""
    if not future.cancelled():
        future.exception()
