"""The Raft transport over gRPC (grpclib): the internal service ``taskd.internal.v1.Raft``.

Theory of operation. grpclib is asyncio code; the node runs it on trio through trio-asyncio,
in the same thread, so asyncio handlers may call the driver's synchronous entry points
(``Inbox.deliver``, ``Inbox.accept_forward``) directly and hop into trio (``trio_as_aio``)
only for what waits (read index, snapshots, membership, transfer).

Client side, per peer: one grpclib ``Channel`` (one HTTP/2 connection) to the peer's dial
address (``routes``, default the member id itself), and one long-lived client stream
``Send`` carrying every batch of Raft messages for that peer (``wire.encode_batch``, one
protobuf message per batch). ``send`` never blocks: it puts the blob on the peer's asyncio
queue (bounded; when full, the batch is dropped, as Raft allows); an asyncio pump writes the
queue to the stream. When the stream fails (connection refused or broken), the pump reports
``unreachable``, drops what was queued (stale by now), and reconnects after a backoff that
doubles from 50 ms to 1 s. Forwards ride one long-lived ``ForwardStream`` per peer
(``forwardstream``; unary ``Forward`` with a member that lacks it); ``ReadIndex``,
``ChangeMembership`` and ``TransferLeadership`` are unary calls on the same channel.
``InstallSnapshot`` streams the snapshot file in ``SNAPSHOT_CHUNK`` pieces read in a worker
thread, so the loop never stalls.

Errors: a call that could not connect (anything raised before the request left, e.g. an
``OSError`` of the connect) or that the peer refused before doing anything
(FAILED_PRECONDITION: not serving; PERMISSION_DENIED, UNAUTHENTICATED) is ``PeerUnreachable``:
nothing happened there. A call that failed in any other way after it was sent is
``Unavailable`` with an unknown outcome: never retried blindly, since a forward would then be
appended twice. A batch that takes over ``_SEND_TIMEOUT`` to go out recycles the stream, and a
pump that died anyway is restarted by the next ``send``. The peer's
"not the leader" answers are fields of the responses, raised here as ``NotLeader(leader)``.

Server side (``handlers(inbox)``, mounted by the node on its gRPC server): every call is
checked first. The caller's source IP must be one of the members' addresses (resolved from
their host names; cached for ``_RESOLVE_TTL``): else PERMISSION_DENIED. With a cluster secret,
metadata ``x-taskd-cluster-secret`` must equal it (``hmac.compare_digest``): else
UNAUTHENTICATED. Both messages say what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import grpclib
import grpclib.const
import grpclib.server
import trio
import trio_asyncio
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.exceptions import StreamTerminatedError

from taskd.api.taskd.internal import v1 as pb
from taskd.errors import NotLeader, TaskdError, Unavailable
from taskd.raft.confstate import ConfChangeError
from taskd.raft.types import Message, SnapshotMeta
from taskd.store.raft import forwardstream, wire
from taskd.store.raft.forwardstream import ForwardStream, describe
from taskd.store.raft.transport import SNAPSHOT_CHUNK, Inbox, PeerUnreachable

log = logging.getLogger("taskd.raft.transport")

SECRET_HEADER = "x-taskd-cluster-secret"
_SERVICE = "/taskd.internal.v1.Raft/"
_QUEUE = 256  # message batches queued per peer before new ones are dropped
# Entry bytes per MessageBatch (and the most a leader puts in one APPEND, see RaftStore): well
# under the node's default --max-payload (1 MiB), which its gRPC server applies to bytes fields.
BATCH_BYTES = 512 * 1024
_BACKOFF_MIN = 0.05
_BACKOFF_MAX = 1.0
_CALL_TIMEOUT = 3.0  # seconds for a unary call (forward, read index)
_SEND_TIMEOUT = 5.0  # seconds one batch may take to go out before the stream is recycled
_SNAPSHOT_TIMEOUT = 600.0
_RESOLVE_TTL = 30.0
_DEFAULT_PORT = 50051


class MembersView(Protocol):
    """Who may call: the driver's current members."""

    def member_ids(self) -> Collection[str]: ...


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) → (host, port); the port defaults to 50051."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else _DEFAULT_PORT
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, _DEFAULT_PORT
    return host, int(port)


class _Peer:
    """One peer's connection: a channel, a queue of blobs, the pump that writes them."""

    def __init__(self, transport: GrpcTransport, peer: str) -> None:
        self.transport = transport
        self.peer = peer
        host, port = split_address(transport.routes.get(peer, peer))
        self.channel = Channel(host, port, config=_CLIENT_CONFIG)
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(_QUEUE)
        self.closed = False  # the transport stopped: the pump ends
        self.forwards = ForwardStream(
            peer, lambda: self.channel, transport.metadata, timeout=_CALL_TIMEOUT
        )

    async def pump(self) -> None:
        backoff = _BACKOFF_MIN
        while not self.closed:
            blob = await self.queue.get()
            try:
                async with self.channel.request(
                    _SERVICE + "Send",
                    grpclib.const.Cardinality.STREAM_UNARY,
                    pb.MessageBatch,
                    pb.SendAck,
                    metadata=self.transport.metadata,
                ) as stream:
                    # (asyncio.timeout, not wait_for: wait_for of 3.11 can swallow a cancel)
                    async with asyncio.timeout(_SEND_TIMEOUT):
                        await stream.send_message(pb.MessageBatch(blob=blob))
                    backoff = _BACKOFF_MIN
                    # The peer answers only when the stream ends: an answer (or an error) now
                    # means it refused or went away, which writes alone may never show.
                    ended = asyncio.ensure_future(stream.recv_initial_metadata())
                    ended.add_done_callback(_retrieved)
                    try:
                        while True:
                            getting = asyncio.ensure_future(self.queue.get())
                            try:
                                await asyncio.wait(
                                    (getting, ended), return_when=asyncio.FIRST_COMPLETED
                                )
                            finally:
                                if not getting.done():
                                    getting.cancel()
                            if ended.done():
                                ended.result()  # raises what ended the stream
                                raise StreamTerminatedError("the peer ended the Send stream")
                            async with asyncio.timeout(_SEND_TIMEOUT):
                                await stream.send_message(pb.MessageBatch(blob=getting.result()))
                    finally:
                        ended.cancel()
            except Exception as exc:  # any failure of the stream: report, back off, reconnect
                task = asyncio.current_task()
                if self.closed or (task is not None and task.cancelling()):
                    raise  # grpclib may turn our cancellation into a stream error
                try:
                    self.transport.failed(self.peer, exc)
                    while not self.queue.empty():
                        self.queue.get_nowait()
                    self.reconnect()
                except Exception:  # never let the pump die: it is the only way to the peer
                    log.exception("recovering the connection to %s", self.peer)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    def reconnect(self) -> None:
        """A fresh connection for the next try: the old one may be half-dead."""
        old = self.channel
        host, port = split_address(self.transport.routes.get(self.peer, self.peer))
        self.channel = Channel(host, port, config=_CLIENT_CONFIG)
        try:
            old.close()
        except Exception as exc:  # a connection grpclib already half-tore down
            log.debug("closing the old connection to %s: %r", self.peer, exc)


_CLIENT_CONFIG = Configuration(
    _keepalive_time=2.0, _keepalive_timeout=4.0, _keepalive_permit_without_calls=True
)


class GrpcTransport:
    def __init__(
        self,
        node_id: str,
        *,
        routes: Mapping[str, str] | None = None,
        cluster_secret: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.routes = dict(routes or {})
        self.cluster_secret = cluster_secret or None
        self.metadata: dict[str, str] = (
            {SECRET_HEADER: self.cluster_secret} if self.cluster_secret else {}
        )
        self._inbox: Inbox | None = None
        self._peers: dict[str, _Peer] = {}
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._warned: dict[str, str] = {}

    # -- client side ----------------------------------------------------------------------

    async def serve(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if trio_asyncio.current_loop.get() is None:
            raise RuntimeError(
                "GrpcTransport needs an asyncio loop: run the store inside trio_asyncio.open_loop()"
            )
        self._inbox = inbox
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._inbox = None
            pumps = list(self._pumps.values())
            for peer in self._peers.values():
                peer.closed = True
                peer.forwards.close()
            for task in pumps:
                task.cancel()
            if pumps:  # let them end before the asyncio loop may close
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    await trio_asyncio.aio_as_trio(asyncio.wait)(pumps)
                left = [t.get_name() for t in pumps if not t.done()]
                if left:
                    log.warning("senders still stopping after 1 s: %s", ", ".join(left))
            for peer in self._peers.values():
                peer.channel.close()
            self._pumps.clear()
            self._peers.clear()

    def _peer(self, peer: str) -> _Peer:
        found = self._peers.get(peer)
        if found is None:
            found = self._peers[peer] = _Peer(self, peer)
        return found

    def send(self, dst: str, messages: Sequence[Message]) -> None:
        if self._inbox is None:
            return
        peer = self._peer(dst)
        pump = self._pumps.get(dst)
        if pump is None or pump.done():
            if pump is not None and not pump.cancelled() and pump.exception() is not None:
                log.error("the sender to %s had stopped: %r; restarted", dst, pump.exception())
            self._pumps[dst] = asyncio.get_event_loop().create_task(
                peer.pump(), name=f"raft-send {self.node_id} -> {dst}"
            )
        encode, node_id = wire.encode_batch, self.node_id
        for part in _parts(messages):
            with contextlib.suppress(asyncio.QueueFull):  # Raft tolerates a lost batch
                peer.queue.put_nowait(encode(node_id, dst, part))

    def failed(self, peer: str, exc: BaseException) -> None:
        reason = describe(exc)
        if self._warned.get(peer) != reason:
            self._warned[peer] = reason
            log.warning("cannot reach the member %s: %s", peer, reason)
        if self._inbox is not None:
            self._inbox.unreachable(peer)

    async def _unary(self, peer: str, method: str, request: Any, reply: type[Any]) -> Any:
        """One unary call. ``PeerUnreachable`` only when the request surely had no effect
        there (no connection, or the peer refused it before acting); any failure after the
        request went out is ``Unavailable`` (outcome unknown), whatever raised it."""
        channel = self._peer(peer).channel
        sent = False

        async def call() -> Any:
            nonlocal sent
            async with channel.request(
                _SERVICE + method,
                grpclib.const.Cardinality.UNARY_UNARY,
                type(request),
                reply,
                metadata=self.metadata,
                timeout=_CALL_TIMEOUT,
            ) as stream:
                await stream.send_request()  # connects: nothing of the call left this node
                sent = True
                await stream.send_message(request, end=True)
                return await stream.recv_message()

        try:
            return await trio_asyncio.aio_as_trio(call)()
        except grpclib.GRPCError as exc:
            if exc.status is Status.FAILED_PRECONDITION:  # refused before it acted
                raise PeerUnreachable(f"{peer} refused: {exc.message}") from exc
            if exc.status in (Status.PERMISSION_DENIED, Status.UNAUTHENTICATED):
                raise PeerUnreachable(f"{peer} refused this node: {exc.message}") from exc
            raise Unavailable(f"{method} to {peer} failed: {exc.message}") from exc
        except Exception as exc:  # grpclib can raise odd things on a connection that closes
            if not sent:
                self._peer(peer).reconnect()
                raise PeerUnreachable(f"cannot connect to {peer}: {describe(exc)}") from exc
            raise Unavailable(
                f"{method} to {peer} failed after it was sent ({describe(exc)}): outcome unknown"
            ) from exc

    async def forward(self, leader: str, blob: bytes) -> tuple[int, int]:
        forwards = self._peer(leader).forwards
        if forwards.unimplemented:  # an older member: one unary call per batch
            reply = await self._unary(
                leader, "Forward", pb.ForwardRequest(commands=blob), pb.ForwardResponse
            )
        else:
            reply = await trio_asyncio.aio_as_trio(forwards.forward)(blob)
        return forwardstream.answer(reply, leader)

    async def read_index(self, leader: str) -> int:
        try:
            reply = await self._unary(
                leader, "ReadIndex", pb.ReadIndexRequest(), pb.ReadIndexResponse
            )
        except PeerUnreachable as exc:
            raise Unavailable(str(exc)) from exc
        if reply.not_leader:
            raise NotLeader(reply.leader or None)
        index: int = reply.index
        return index

    async def change_membership(self, leader: str, add: str | None, remove: str | None) -> None:
        request = pb.ChangeMembershipRequest(add=add or "", remove=remove or "")
        reply = await self._unary(leader, "ChangeMembership", request, pb.ChangeMembershipResponse)
        if reply.not_leader:
            raise NotLeader(reply.leader or None)
        if reply.error:
            raise ConfChangeError(reply.error)

    async def transfer_leadership(self, leader: str, target: str | None, patience: float) -> None:
        request = pb.TransferLeadershipRequest(target=target or "", timeout_seconds=patience)
        reply = await self._unary(
            leader, "TransferLeadership", request, pb.TransferLeadershipResponse
        )
        if reply.not_leader:
            raise NotLeader(reply.leader or None)

    async def send_snapshot(self, peer: str, term: int, meta: SnapshotMeta, path: Path) -> None:
        channel = self._peer(peer).channel
        stream = channel.request(
            _SERVICE + "InstallSnapshot",
            grpclib.const.Cardinality.STREAM_UNARY,
            pb.SnapshotChunk,
            pb.SnapshotAck,
            metadata=self.metadata,
            timeout=_SNAPSHOT_TIMEOUT,
        )
        aio = trio_asyncio.aio_as_trio
        handle = await trio.open_file(path, "rb")
        try:
            await aio(stream.__aenter__)()
            try:
                first = True
                while True:
                    data = await handle.read(SNAPSHOT_CHUNK)
                    if not data and not first:
                        break
                    chunk = pb.SnapshotChunk(data=data)
                    if first:
                        chunk = pb.SnapshotChunk(
                            leader=self.node_id,
                            term=term,
                            index=meta.index,
                            snapshot_term=meta.term,
                            voters=list(meta.voters),
                            learners=list(meta.learners),
                            data=data,
                        )
                        first = False
                    await aio(stream.send_message)(chunk)
                await aio(stream.end)()
                await aio(stream.recv_message)()
            finally:
                await aio(stream.__aexit__)(None, None, None)
        except Exception as exc:  # whatever broke the stream: the leader tries again later
            raise Unavailable(f"sending the snapshot to {peer} failed: {describe(exc)}") from exc
        finally:
            await handle.aclose()

    # -- server side ----------------------------------------------------------------------

    def handlers(self, inbox: Any) -> list[Any]:
        """The internal service for the node's gRPC server."""
        return [RaftService(inbox, self.cluster_secret)]


def _parts(messages: Sequence[Message]) -> list[Sequence[Message]]:
    """Split a round's messages for one peer so that no ``MessageBatch`` carries much more than
    ``BATCH_BYTES`` of entries (the node's gRPC server refuses bytes fields over its
    --max-payload); a single message larger than that still goes, alone."""
    size = 0
    for message in messages:
        for entry in message.entries:
            size += len(entry.data)
    if size <= BATCH_BYTES:
        return [messages]
    parts: list[Sequence[Message]] = []
    part: list[Message] = []
    size = 0
    for message in messages:
        weight = sum(len(entry.data) for entry in message.entries)
        if part and size + weight > BATCH_BYTES:
            parts.append(part)
            part, size = [], 0
        part.append(message)
        size += weight
    if part:
        parts.append(part)
    return parts


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a watcher's exception as seen: unseen ones are reported by asyncio (and
    trio-asyncio turns that report into a crash of the node)."""
    if not future.cancelled():
        future.exception()


class RaftService:
    """The server side of ``taskd.internal.v1.Raft``: checks every caller, then hands the
    call to the driver (``Inbox``)."""

    def __init__(self, inbox: Any, cluster_secret: str | None) -> None:
        self.inbox = inbox
        self.secret = cluster_secret.encode() if cluster_secret else None
        self._resolved: dict[str, tuple[float, frozenset[str]]] = {}

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        c = grpclib.const.Cardinality
        return {
            _SERVICE + "Send": grpclib.const.Handler(
                self._send, c.STREAM_UNARY, pb.MessageBatch, pb.SendAck
            ),
            _SERVICE + "InstallSnapshot": grpclib.const.Handler(
                self._install_snapshot, c.STREAM_UNARY, pb.SnapshotChunk, pb.SnapshotAck
            ),
            _SERVICE + "Forward": grpclib.const.Handler(
                self._forward, c.UNARY_UNARY, pb.ForwardRequest, pb.ForwardResponse
            ),
            forwardstream.METHOD: grpclib.const.Handler(
                self._forward_stream, c.STREAM_STREAM, pb.ForwardRequest, pb.ForwardResponse
            ),
            _SERVICE + "ReadIndex": grpclib.const.Handler(
                self._read_index, c.UNARY_UNARY, pb.ReadIndexRequest, pb.ReadIndexResponse
            ),
            _SERVICE + "ChangeMembership": grpclib.const.Handler(
                self._change_membership,
                c.UNARY_UNARY,
                pb.ChangeMembershipRequest,
                pb.ChangeMembershipResponse,
            ),
            _SERVICE + "TransferLeadership": grpclib.const.Handler(
                self._transfer_leadership,
                c.UNARY_UNARY,
                pb.TransferLeadershipRequest,
                pb.TransferLeadershipResponse,
            ),
        }

    async def _check(self, stream: grpclib.server.Stream[Any, Any]) -> None:
        if self.secret is not None:
            given = stream.metadata.get(SECRET_HEADER) if stream.metadata else None
            if isinstance(given, str):
                given_bytes = given.encode()
            elif isinstance(given, bytes):
                given_bytes = given
            else:
                given_bytes = b""
            if not given_bytes or not hmac.compare_digest(given_bytes, self.secret):
                raise grpclib.GRPCError(
                    Status.UNAUTHENTICATED,
                    f"the internal Raft service needs metadata {SECRET_HEADER} equal to this "
                    "cluster's secret: start every member with the same --cluster-secret",
                )
        addr = stream.peer.addr()
        source = addr[0] if addr else ""
        allowed = await self._member_ips()
        if source not in allowed:
            raise grpclib.GRPCError(
                Status.PERMISSION_DENIED,
                f"{source or 'an unknown address'} is not the address of a member of this "
                f"cluster (members resolve to {', '.join(sorted(allowed)) or 'nothing'}): the "
                "internal Raft service takes calls only from members; add the node with "
                "'taskd cluster add' first",
            )

    async def _member_ips(self) -> frozenset[str]:
        ips: set[str] = set()
        now = time.monotonic()
        for member in self.inbox.member_ids():
            host, _ = split_address(member)
            try:
                ips.add(str(ipaddress.ip_address(host)))
                continue
            except ValueError:
                pass
            cached = self._resolved.get(host)
            if cached is None or now - cached[0] > _RESOLVE_TTL:
                try:
                    infos = await asyncio.get_running_loop().getaddrinfo(
                        host, None, type=socket.SOCK_STREAM
                    )
                    found = frozenset(str(info[4][0]) for info in infos)
                except OSError:
                    found = cached[1] if cached else frozenset()
                cached = (now, found)
                self._resolved[host] = cached
            ips.update(cached[1])
        return frozenset(ips)

    async def _send(self, stream: grpclib.server.Stream[pb.MessageBatch, pb.SendAck]) -> None:
        await self._check(stream)
        deliver = self.inbox.deliver
        try:
            async for batch in stream:
                deliver(batch.blob)
        except Unavailable as exc:  # the store stopped: the sender reconnects elsewhere
            raise grpclib.GRPCError(Status.UNAVAILABLE, str(exc)) from None
        await stream.send_message(pb.SendAck())

    async def _forward(
        self, stream: grpclib.server.Stream[pb.ForwardRequest, pb.ForwardResponse]
    ) -> None:
        await self._check(stream)
        request = await stream.recv_message()
        assert request is not None
        try:
            term, first = self.inbox.accept_forward(request.commands)
        except NotLeader as exc:
            reply = pb.ForwardResponse(not_leader=True, leader=exc.leader_hint or "")
        except wire.WireError as exc:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, str(exc)) from None
        except Unavailable as exc:
            raise grpclib.GRPCError(Status.FAILED_PRECONDITION, str(exc)) from None
        else:
            reply = pb.ForwardResponse(term=term, first_index=first)
        await stream.send_message(reply)

    async def _forward_stream(
        self, stream: grpclib.server.Stream[pb.ForwardRequest, pb.ForwardResponse]
    ) -> None:
        await self._check(stream)
        await forwardstream.serve_stream(self.inbox, stream)

    async def _read_index(
        self, stream: grpclib.server.Stream[pb.ReadIndexRequest, pb.ReadIndexResponse]
    ) -> None:
        await self._check(stream)
        await stream.recv_message()
        try:
            index = await trio_asyncio.trio_as_aio(self.inbox.read_index)()
        except NotLeader as exc:
            reply = pb.ReadIndexResponse(not_leader=True, leader=exc.leader_hint or "")
        except Unavailable as exc:
            raise grpclib.GRPCError(Status.FAILED_PRECONDITION, str(exc)) from None
        else:
            reply = pb.ReadIndexResponse(index=index)
        await stream.send_message(reply)

    async def _change_membership(
        self,
        stream: grpclib.server.Stream[pb.ChangeMembershipRequest, pb.ChangeMembershipResponse],
    ) -> None:
        await self._check(stream)
        request = await stream.recv_message()
        assert request is not None
        try:
            await trio_asyncio.trio_as_aio(self.inbox.change_membership)(
                request.add or None, request.remove or None
            )
        except NotLeader as exc:
            reply = pb.ChangeMembershipResponse(not_leader=True, leader=exc.leader_hint or "")
        except ConfChangeError as exc:
            reply = pb.ChangeMembershipResponse(error=str(exc))
        except Unavailable as exc:
            raise grpclib.GRPCError(Status.UNAVAILABLE, str(exc)) from None
        else:
            reply = pb.ChangeMembershipResponse()
        await stream.send_message(reply)

    async def _transfer_leadership(
        self,
        stream: grpclib.server.Stream[pb.TransferLeadershipRequest, pb.TransferLeadershipResponse],
    ) -> None:
        await self._check(stream)
        request = await stream.recv_message()
        assert request is not None
        try:
            await trio_asyncio.trio_as_aio(self.inbox.transfer_leadership)(
                request.target or None, request.timeout_seconds or 2.0
            )
        except NotLeader as exc:
            reply = pb.TransferLeadershipResponse(not_leader=True, leader=exc.leader_hint or "")
        except Unavailable as exc:
            raise grpclib.GRPCError(Status.UNAVAILABLE, str(exc)) from None
        else:
            reply = pb.TransferLeadershipResponse()
        await stream.send_message(reply)

    async def _install_snapshot(
        self, stream: grpclib.server.Stream[pb.SnapshotChunk, pb.SnapshotAck]
    ) -> None:
        await self._check(stream)
        first = await stream.recv_message()
        if first is None:
            raise grpclib.GRPCError(Status.INVALID_ARGUMENT, "an empty InstallSnapshot stream")
        meta = SnapshotMeta(
            first.index, first.snapshot_term, tuple(first.voters), tuple(first.learners)
        )
        pending: list[bytes | None] = [first.data]

        async def chunks() -> bytes | None:
            if pending:
                return pending.pop()
            message = await trio_asyncio.aio_as_trio(stream.recv_message)()
            return None if message is None else message.data

        try:
            await trio_asyncio.trio_as_aio(self.inbox.install_snapshot)(
                first.leader, first.term, meta, chunks
            )
        except (TaskdError, OSError, ValueError) as exc:
            raise grpclib.GRPCError(Status.UNAVAILABLE, f"snapshot not installed: {exc}") from None
        await stream.send_message(pb.SnapshotAck())
