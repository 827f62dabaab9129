"""The Raft transport over real grpclib servers on loopback (ports 21000-21999): message
batches, forwards, read index, snapshots streamed as chunks, refused callers; then three
``RaftStore``s over it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_asyncio
from grpclib.server import Server

from taskd.errors import NotLeader, Unavailable
from taskd.raft.types import Entry, Message, MessageKind, SnapshotMeta
from taskd.store.raft import RaftStore, forwardstream, wire
from taskd.store.raft.grpctransport import BATCH_BYTES, GrpcTransport, RaftService
from taskd.store.raft.transport import ChunkSource, PeerUnreachable
from tests.raft.fakes import AppendLog
from tests.store.cluster import Cluster, eventually

_ports = iter(range(21000, 22000))

# Real clocks: elections take a few hundred milliseconds.
pytestmark = pytest.mark.slow


def port() -> int:
    """The next port of this area's range (21000-21999) that is free now."""
    for candidate in _ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
        return candidate
    raise RuntimeError("no free port left in 21000-21999")


class FakeInbox:
    """Records what arrives; answers forwards at a fixed place."""

    def __init__(self, node_id: str, members: list[str], leader: bool = True) -> None:
        self.node_id = node_id
        self.members = members
        self.leader = leader
        self.delivered: list[bytes] = []
        self.forwarded: list[bytes] = []
        self.snapshots: list[tuple[SnapshotMeta, bytes]] = []
        self.arrived = trio.Event()
        self.unreachable_peers: list[str] = []

    def deliver(self, blob: bytes) -> None:
        self.delivered.append(blob)
        self.arrived.set()

    def accept_forward(self, blob: bytes) -> tuple[int, int]:
        if not self.leader:
            raise NotLeader("elsewhere:1")
        self.forwarded.append(blob)
        return 7, 100

    async def read_index(self) -> int:
        return 42

    async def install_snapshot(
        self, leader: str, term: int, meta: SnapshotMeta, chunks: ChunkSource
    ) -> None:
        data = b""
        while (chunk := await chunks()) is not None:
            data += chunk
        self.snapshots.append((meta, data))

    async def change_membership(self, add: str | None, remove: str | None) -> None:
        pass

    async def transfer_leadership(self, target: str | None, patience: float) -> None:
        pass

    def unreachable(self, peer: str) -> None:
        self.unreachable_peers.append(peer)

    def member_ids(self) -> list[str]:
        return self.members


class CrashableServer(Server):
    """A grpclib server whose ``crash()`` also drops its open connections, as the death of
    its process would (``close()`` alone leaves them open, talking to cancelled handlers)."""

    def __init__(self, handlers: Sequence[Any]) -> None:
        super().__init__(handlers)
        self.protocols: list[Any] = []

    def _protocol_factory(self) -> Any:
        protocol = super()._protocol_factory()
        self.protocols.append(protocol)
        return protocol

    def crash(self) -> None:
        self.close()
        for protocol in self.protocols:
            connection = getattr(protocol, "connection", None)
            if connection is not None:
                connection._transport.abort()


async def start_on(server: Server, at: int) -> None:
    """Listen on ``at``; a port its previous server just released may take a moment."""
    for _ in range(40):
        try:
            await trio_asyncio.aio_as_trio(server.start)("127.0.0.1", at)
            return
        except OSError:
            await trio.sleep(0.05)
    await trio_asyncio.aio_as_trio(server.start)("127.0.0.1", at)


@asynccontextmanager
async def grpc_server(handlers: Sequence[Any], at: int) -> AsyncIterator[Server]:
    server = Server(handlers)
    await trio_asyncio.aio_as_trio(server.start)("127.0.0.1", at)
    try:
        yield server
    finally:
        server.close()
        await trio_asyncio.aio_as_trio(server.wait_closed)()


@asynccontextmanager
async def client(node_id: str, **options: object) -> AsyncIterator[GrpcTransport]:
    transport = GrpcTransport(node_id, **options)  # type: ignore[arg-type]
    inbox = FakeInbox(node_id, [])
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve, inbox)
        yield transport
        nursery.cancel_scope.cancel()


async def test_batches_forwards_reads_and_snapshots_reach_the_peer(tmp_path: Path) -> None:
    async with trio_asyncio.open_loop():
        at = port()
        server_id = f"127.0.0.1:{at}"
        inbox = FakeInbox(server_id, [server_id, "127.0.0.1:1"])
        async with grpc_server([RaftService(inbox, None)], at), client("127.0.0.1:1") as t:
            message = Message(MessageKind.HEARTBEAT, "127.0.0.1:1", server_id, 3, commit=9)
            t.send(server_id, [message])
            with trio.fail_after(5):
                await inbox.arrived.wait()
            assert wire.decode_batch(inbox.delivered[0]) == ("127.0.0.1:1", server_id, [message])
            assert await t.forward(server_id, wire.encode_commands([b"a", b"b"])) == (7, 100)
            assert wire.decode_commands(inbox.forwarded[0]) == [b"a", b"b"]
            assert await t.read_index(server_id) == 42
            snapshot = tmp_path / "snap"
            snapshot.write_bytes(b"x" * (2 * 1024 * 1024 + 5))  # several chunks
            meta = SnapshotMeta(10, 2, ("a:1",), ())
            await t.send_snapshot(server_id, 3, meta, snapshot)
            assert inbox.snapshots == [(meta, snapshot.read_bytes())]
            inbox.leader = False
            with pytest.raises(NotLeader) as refused:
                await t.forward(server_id, wire.encode_commands([b"c"]))
            assert refused.value.leader_hint == "elsewhere:1"


async def test_a_caller_without_the_secret_is_refused_with_what_to_fix() -> None:
    async with trio_asyncio.open_loop():
        at = port()
        server_id = f"127.0.0.1:{at}"
        inbox = FakeInbox(server_id, [server_id])
        async with grpc_server([RaftService(inbox, "s3cret")], at):
            async with client("127.0.0.1:1", cluster_secret="wrong") as t:
                with pytest.raises(PeerUnreachable, match="--cluster-secret"):
                    await t.forward(server_id, wire.encode_commands([b"a"]))
            async with client("127.0.0.1:1") as t:  # no secret at all
                with pytest.raises(PeerUnreachable, match="--cluster-secret"):
                    await t.forward(server_id, wire.encode_commands([b"a"]))
            async with client("127.0.0.1:1", cluster_secret="s3cret") as t:
                assert await t.forward(server_id, wire.encode_commands([b"a"])) == (7, 100)
        assert len(inbox.forwarded) == 1


async def test_a_caller_from_an_address_that_is_no_member_is_refused() -> None:
    async with trio_asyncio.open_loop():
        at = port()
        inbox = FakeInbox("127.0.0.9:1", ["127.0.0.9:1", "127.0.0.8:1"])  # not 127.0.0.1
        async with grpc_server([RaftService(inbox, None)], at), client("x") as t:
            with pytest.raises(PeerUnreachable, match="not the address of a member"):
                await t.forward(f"127.0.0.1:{at}", wire.encode_commands([b"a"]))
            assert inbox.forwarded == []


async def test_an_unreachable_peer_is_reported() -> None:
    async with trio_asyncio.open_loop():
        transport = GrpcTransport("127.0.0.1:1")
        inbox = FakeInbox("127.0.0.1:1", [])
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.serve, inbox)
            dead = f"127.0.0.1:{port()}"
            transport.send(dead, [Message(MessageKind.HEARTBEAT, "127.0.0.1:1", dead, 1)])
            await eventually(lambda: bool(inbox.unreachable_peers))
            with pytest.raises(PeerUnreachable):
                await transport.forward(dead, wire.encode_commands([b"a"]))
            nursery.cancel_scope.cancel()


async def test_three_stores_over_grpc_elect_replicate_and_forward(tmp_path: Path) -> None:
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        ids = [f"127.0.0.1:{port()}" for _ in range(3)]
        c = Cluster(nursery, tmp_path, ids, transport=lambda i: GrpcTransport(i))
        handlers = [c.prepare(i).store.grpc_handlers() for i in ids]
        at = [int(i.rsplit(":", 1)[1]) for i in ids]
        async with (
            grpc_server(handlers[0], at[0]),
            grpc_server(handlers[1], at[1]),
            grpc_server(handlers[2], at[2]),
        ):
            await c.start_all()
            leader = await c.leader()
            await leader.store.propose(b"direct")
            follower = c.followers(leader)[0]
            result = await follower.store.propose(b"forwarded")
            assert isinstance(result, tuple)
            await follower.store.read_barrier()
            assert follower.machine.items == [b"direct", b"forwarded"]
            await c.converged()
            nursery.cancel_scope.cancel()


async def test_over_grpc_with_a_secret_a_killed_leader_is_replaced_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        ids = [f"127.0.0.1:{port()}" for _ in range(3)]
        c = Cluster(
            nursery, tmp_path, ids, transport=lambda i: GrpcTransport(i, cluster_secret="s3cret")
        )
        handlers = {i: c.prepare(i).store.grpc_handlers() for i in ids}
        servers = {i: CrashableServer(handlers[i]) for i in ids}
        for i, server in servers.items():
            await start_on(server, int(i.rsplit(":", 1)[1]))
        try:
            await c.start_all()
            leader = await c.leader()
            acked = [b"w%d" % n for n in range(10)]
            for item in acked:
                await c.followers(leader)[0].store.propose(item)
            await c.kill(leader.id)
            servers[leader.id].crash()
            new = await c.leader()
            assert new.id != leader.id
            await new.store.propose(b"after")
            for member in c.members.values():
                await member.store.read_barrier()
                assert member.machine.items == [*acked, b"after"]
            # the old leader restarts on its port: the others reconnect and it catches up
            await trio_asyncio.aio_as_trio(servers[leader.id].wait_closed)()
            back = c.prepare(leader.id)
            servers[leader.id] = CrashableServer(back.store.grpc_handlers())
            await start_on(servers[leader.id], int(leader.id.rsplit(":", 1)[1]))
            await c.start(leader.id)
            await eventually(lambda: back.machine.items == [*acked, b"after"])
        finally:
            for server in servers.values():
                server.close()
            nursery.cancel_scope.cancel()


async def test_a_large_round_goes_out_in_batches_under_the_node_message_limit() -> None:
    async with trio_asyncio.open_loop():
        at = port()
        server_id = f"127.0.0.1:{at}"
        inbox = FakeInbox(server_id, [server_id, "127.0.0.1:1"])
        async with grpc_server([RaftService(inbox, None)], at), client("127.0.0.1:1") as t:
            # Given one round of 8 appends of 256 KiB each (2 MiB) for one peer
            appends = [
                Message(
                    MessageKind.APPEND,
                    "127.0.0.1:1",
                    server_id,
                    3,
                    index=n,
                    entries=(Entry(3, n + 1, bytes([n]) * 256 * 1024),),
                )
                for n in range(8)
            ]
            t.send(server_id, appends)
            await eventually(lambda: len(inbox.delivered) >= 4)
            # Expect every message, in order, in blobs of at most BATCH_BYTES of entries
            got = [m for blob in inbox.delivered for m in wire.decode_batch(blob)[2]]
            assert got == appends
            assert all(len(blob) < BATCH_BYTES + 64 * 1024 for blob in inbox.delivered)


def test_over_grpc_a_leader_puts_at_most_a_batch_into_one_append(tmp_path: Path) -> None:
    store = RaftStore(
        tmp_path, AppendLog(), node_id="a:1", peers=["a:1", "b:1", "c:1"]
    )  # builds a GrpcTransport
    assert isinstance(store.transport, GrpcTransport)
    assert store.raft_config.max_append_bytes == BATCH_BYTES


async def test_over_grpc_a_follower_far_behind_catches_up_by_a_streamed_snapshot(
    tmp_path: Path,
) -> None:
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        ids = [f"127.0.0.1:{port()}" for _ in range(3)]
        c = Cluster(nursery, tmp_path, ids, transport=GrpcTransport, snapshot_every=20)
        servers = {i: CrashableServer(c.prepare(i).store.grpc_handlers()) for i in ids}
        for i, server in servers.items():
            await start_on(server, int(i.rsplit(":", 1)[1]))
        try:
            await c.start_all()
            leader = await c.leader()
            behind = c.followers(leader)[0]
            await c.kill(behind.id)
            servers[behind.id].crash()
            for n in range(60):
                await leader.store.propose(b"s%d" % n)
            await leader.store.wait_for_snapshot()
            await trio_asyncio.aio_as_trio(servers[behind.id].wait_closed)()
            back = c.prepare(behind.id)
            servers[behind.id] = CrashableServer(back.store.grpc_handlers())
            await start_on(servers[behind.id], int(behind.id.rsplit(":", 1)[1]))
            await c.start(behind.id)
            await eventually(lambda: back.machine.items == [b"s%d" % n for n in range(60)])
            assert back.store._snapshot_index > 0  # through the snapshot, not the log
        finally:
            for server in servers.values():
                server.close()
            nursery.cancel_scope.cancel()


async def test_members_named_by_host_name_are_resolved_for_the_address_check() -> None:
    async with trio_asyncio.open_loop():
        at = port()
        inbox = FakeInbox(f"localhost:{at}", [f"localhost:{at}", "localhost:1"])
        async with grpc_server([RaftService(inbox, None)], at), client("localhost:1") as t:
            assert await t.forward(f"127.0.0.1:{at}", wire.encode_commands([b"a"])) == (7, 100)


@asynccontextmanager
async def forwarding(
    inbox_type: type[FakeInbox], service: type[RaftService] = RaftService
) -> AsyncIterator[tuple[FakeInbox, GrpcTransport, str]]:
    """A one-member leader (``service`` over an ``inbox_type``) and a transport calling it:
    (its inbox, the transport, its id). Needs a running trio-asyncio loop."""
    at = port()
    server_id = f"127.0.0.1:{at}"
    inbox = inbox_type(server_id, [server_id])
    async with grpc_server([service(inbox, None)], at), client("127.0.0.1:1") as t:
        yield inbox, t, server_id


class OldRaftService(RaftService):
    """A member from before ForwardStream: it knows only the unary Forward."""

    def __mapping__(self) -> dict[str, Any]:
        mapping = super().__mapping__()
        del mapping[forwardstream.METHOD]
        return mapping


async def test_forwards_fall_back_to_unary_calls_with_a_member_that_has_no_stream() -> None:
    async with (
        trio_asyncio.open_loop(),
        forwarding(FakeInbox, OldRaftService) as (inbox, t, server_id),
    ):
        # Given a leader without ForwardStream, the first try is refused, untouched...
        with pytest.raises(PeerUnreachable, match="UNIMPLEMENTED"):
            await t.forward(server_id, wire.encode_commands([b"a"]))
        assert inbox.forwarded == []
        # ...Expect every later forward to go as a unary call.
        assert await t.forward(server_id, wire.encode_commands([b"b"])) == (7, 100)
        assert [wire.decode_commands(blob) for blob in inbox.forwarded] == [[b"b"]]


class RefusingInbox(FakeInbox):
    def accept_forward(self, blob: bytes) -> tuple[int, int]:
        raise Unavailable("the Raft store in /data is not taking writes")


async def test_a_refusal_on_the_stream_says_nothing_was_done_and_the_stream_goes_on() -> None:
    async with trio_asyncio.open_loop(), forwarding(RefusingInbox) as (_, t, server_id):
        for _ in range(2):  # the same stream answers again after a refusal
            with pytest.raises(PeerUnreachable, match="not taking writes"):
                await t.forward(server_id, wire.encode_commands([b"a"]))


class CountingInbox(FakeInbox):
    def accept_forward(self, blob: bytes) -> tuple[int, int]:
        self.forwarded.append(blob)
        return 7, 100 + len(self.forwarded)


async def test_concurrent_forwards_on_one_stream_get_their_own_answers() -> None:
    answers: dict[bytes, int] = {}
    async with trio_asyncio.open_loop(), forwarding(CountingInbox) as (inbox, t, server_id):

        async def one(name: bytes) -> None:
            answers[name] = (await t.forward(server_id, wire.encode_commands([name])))[1]

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(one, b"c%d" % i)
    # Expect: the n-th request the leader appended got the n-th answer.
    order = [wire.decode_commands(blob)[0] for blob in inbox.forwarded]
    assert {name: 101 + order.index(name) for name in order} == answers


class DyingInbox(FakeInbox):
    """Appends the second forward, then its process dies before it answers."""

    server: CrashableServer

    def accept_forward(self, blob: bytes) -> tuple[int, int]:
        answer = super().accept_forward(blob)
        if len(self.forwarded) == 2:
            self.server.crash()
            raise Unavailable("dying")  # the answer never leaves
        return answer


async def test_a_leader_that_dies_with_a_forward_unanswered_gives_an_unknown_outcome() -> None:
    async with trio_asyncio.open_loop():
        at = port()
        server_id = f"127.0.0.1:{at}"
        inbox = DyingInbox(server_id, [server_id])
        inbox.server = server = CrashableServer([RaftService(inbox, None)])
        await start_on(server, at)
        async with client("127.0.0.1:1") as t:
            assert await t.forward(server_id, wire.encode_commands([b"a"])) == (7, 100)
            with pytest.raises(Unavailable) as failed:
                await t.forward(server_id, wire.encode_commands([b"b"]))
            # Appended there, unanswered: never "nothing was done" (which would re-send it).
            assert not isinstance(failed.value, PeerUnreachable)
            assert "outcome is unknown" in str(failed.value)
