"""How the cluster's refusals reach gRPC clients (status, message, ``x-taskd-leader``), and
how ``--election-timeout`` becomes the Raft core's ticks. The last test runs a real grpclib
server and client on their own asyncio loop."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import grpclib
import grpclib.events
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.server import Server

from taskd.api.taskd import v1 as pb
from taskd.errors import NotLeader, StorageFault, Unavailable
from taskd.node.api.grpc.handlers import LEADER_KEY, LeaderHint, add_leader_trailer, grpc_error
from taskd.node.config import load
from taskd.node.runner import TICK_SECONDS, _warn_if_exposed, raft_config


@dataclass
class Trailers:
    """What grpclib hands a ``SendTrailingMetadata`` listener."""

    status_details: Any
    metadata: dict[str, str] = field(default_factory=dict)


async def test_not_leader_is_unavailable_naming_the_leader_in_a_trailer() -> None:
    # Given a refusal on a follower that knows the leader
    error = grpc_error(NotLeader("10.0.0.2:50051"))
    # Expect UNAVAILABLE, what to do, and the leader in the trailing metadata
    assert error.status is Status.UNAVAILABLE
    assert "retry, or send it to the leader at 10.0.0.2:50051" in str(error.message)
    trailers = Trailers(error.details)
    await add_leader_trailer(trailers)  # type: ignore[arg-type]
    assert trailers.metadata == {LEADER_KEY: "10.0.0.2:50051"}


async def test_unavailable_names_the_leader_this_member_knows() -> None:
    error = grpc_error(Unavailable("no quorum"), "10.0.0.3:50051")
    assert error.details == LeaderHint("10.0.0.3:50051")
    assert error.message == "no quorum; retry, or send it to the leader at 10.0.0.3:50051"


async def test_no_leader_known_means_no_trailer() -> None:
    error = grpc_error(NotLeader(None))
    assert error.details is None and "no leader is known yet" in str(error.message)
    trailers = Trailers(error.details)
    await add_leader_trailer(trailers)  # type: ignore[arg-type]
    assert trailers.metadata == {}
    disk = grpc_error(StorageFault("disk full in /d: free space", resumes_by_itself=True), "x:1")
    assert disk.details is None and disk.message == "disk full in /d: free space"


def test_election_timeout_in_ticks() -> None:
    default = raft_config(load([], {}))
    assert TICK_SECONDS == 0.05
    assert (default.election_ticks, default.heartbeat_ticks) == (10, 2)
    fast = raft_config(load(["--election-timeout", "0.3"], {}))
    assert (fast.election_ticks, fast.heartbeat_ticks) == (6, 1)
    a = raft_config(load(["--peers", "a,b,c", "--grpc", "a"], {}))
    b = raft_config(load(["--peers", "a,b,c", "--grpc", "b"], {}))
    assert a.seed != b.seed  # each member its own randomised timeouts


def test_the_leader_trailer_reaches_a_real_grpc_client() -> None:
    # Given a grpclib server with the node's trailer listener, whose Get refuses as a follower
    class Follower(pb.TaskServiceBase):
        async def get(self, message: pb.GetRequest) -> pb.Task:
            raise grpc_error(NotLeader("10.0.0.9:50051"))

    async def scenario() -> tuple[Status, str | None, str]:
        server = Server([Follower()])
        grpclib.events.listen(server, grpclib.events.SendTrailingMetadata, add_leader_trailer)
        await server.start("127.0.0.1", 0)
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        channel = Channel("127.0.0.1", port)
        try:
            async with channel.request(
                "/taskd.v1.TaskService/Get", Cardinality.UNARY_UNARY, pb.GetRequest, pb.Task
            ) as stream:
                await stream.send_message(pb.GetRequest(id="x"), end=True)
                try:
                    await stream.recv_message()
                except grpclib.GRPCError as exc:
                    trailers = stream.trailing_metadata or stream.initial_metadata or {}
                    return exc.status, dict(trailers).get(LEADER_KEY), str(exc.message)
            raise AssertionError("the call succeeded")
        finally:
            channel.close()
            server.close()
            await server.wait_closed()

    # When a client calls it, Expect UNAVAILABLE with the leader in the trailing metadata
    status, leader, message = asyncio.run(scenario())
    assert status is Status.UNAVAILABLE
    assert leader == "10.0.0.9:50051"
    assert "send it to the leader at 10.0.0.9:50051" in message


def test_a_cluster_beyond_loopback_without_a_secret_warns_once(caplog: Any) -> None:
    def warnings(argv: list[str], env: dict[str, str]) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="taskd.node"):
            _warn_if_exposed(load(argv, env))
        return [r.getMessage() for r in caplog.records if "cluster-secret" in r.getMessage()]

    cluster = ["--peers", "10.0.0.1,10.0.0.2,10.0.0.3", "--grpc", "10.0.0.1"]
    assert len(warnings(cluster, {})) == 1
    assert "TASKD_CLUSTER_SECRET" in warnings(cluster, {})[0]
    assert warnings(cluster, {"TASKD_CLUSTER_SECRET": "x" * 16}) == []
    loopback = ["--peers", "127.0.0.1:1,127.0.0.1:2", "--grpc", "127.0.0.1:1"]
    assert warnings(loopback, {}) == []
    assert warnings(["--grpc", "10.0.0.1:50051"], {}) == []  # a single node: no Raft traffic
