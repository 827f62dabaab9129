"""REST in a cluster: linearizable reads with the ``?stale=true`` opt-in, 503s that name the
leader and say what to do, and the membership / transfer endpoints over ``ClusterAdmin``.

A ``FakeClusterStore`` behaves like a member: a memory store for writes, a read barrier that
can be made to refuse (a partitioned follower), and a configuration that membership changes
really change (refusing what Raft refuses, with the core's messages)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from taskd.errors import ClusterError, NotLeader, Unavailable
from taskd.node.api.http.app import HttpExtras, create_app
from taskd.node.app.cluster import ClusterAdmin
from taskd.node.app.machine import SchedulerMachine
from taskd.node.app.service import NodeService, ServiceConfig
from taskd.queue.task import SchedulerConfig
from taskd.raft.confstate import ConfChangeError
from taskd.store.memory import MemoryStore
from taskd.store.seam import Member, StoreStatus
from tests.http.asgi import Reply, call

ME, B, C = "10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"


ConfChange = ConfChangeError


@dataclass
class Cluster:
    leader: str | None = ME
    barrier_error: ClusterError | None = None
    barriers: int = 0


class FakeClusterStore(MemoryStore):
    def __init__(self, machine: SchedulerMachine, cluster: Cluster) -> None:
        super().__init__(machine, node_id=ME)
        self.cluster = cluster
        self.voters = [ME, B, C]
        self.learners: list[str] = []
        self.transfers: list[str | None] = []

    async def read_barrier(self) -> None:
        self.cluster.barriers += 1
        if self.cluster.barrier_error is not None:
            raise self.cluster.barrier_error
        await super().read_barrier()

    def status(self) -> StoreStatus:
        leader = self.cluster.leader
        role = "leader" if leader == ME else "follower"

        def member(m: str, learner: bool) -> Member:
            return Member(
                m, "learner" if learner else ("leader" if m == leader else "follower"), 7, True
            )

        return StoreStatus(
            ME,
            role,
            4,
            leader,
            7,
            7,
            [member(m, False) for m in self.voters] + [member(m, True) for m in self.learners],
        )

    async def add_member(self, addr: str) -> None:
        if addr in self.voters + self.learners:
            raise ConfChange(f"{addr} is already a member")
        self.learners.append(addr)

    async def remove_member(self, addr: str) -> None:
        if addr not in self.voters + self.learners:
            raise ConfChange(f"{addr} is not a member")
        if addr in self.learners:
            self.learners.remove(addr)
        else:
            self.voters.remove(addr)

    async def transfer_leadership(
        self,
        target: str | None = None,
        timeout: float = 2.0,  # noqa: ASYNC109  # the store's signature
    ) -> None:
        self.transfers.append(target)
        self.cluster.leader = target or B


@dataclass
class Node:
    app: Any
    store: FakeClusterStore
    cluster: Cluster

    async def get(self, path: str) -> Reply:
        return await call(self.app, "GET", path)

    async def post(self, path: str, body: Any = None) -> Reply:
        return await call(self.app, "POST", path, body if body is not None else {})


@pytest.fixture
def node() -> Node:
    machine = SchedulerMachine(SchedulerConfig())
    cluster = Cluster()
    store = FakeClusterStore(machine, cluster)
    store.start()
    admin = ClusterAdmin(store)
    service = NodeService(machine, store)
    app = create_app(
        service,
        extras=HttpExtras(
            cluster_status=admin.status,
            workers=lambda: [],
            ready=lambda: True,
            metrics=lambda: b"",
            cluster_admin=admin,
            leader=admin.leader,
        ),
    )
    return Node(app, store, cluster)


# ---- reads ---------------------------------------------------------------------------------


async def test_reads_wait_for_the_barrier_unless_stale(node: Node) -> None:
    # Given a task, and a member that cannot reach the leader for a read index
    reply = await node.post("/api/v1/tasks", {"payload": 1})
    task_id = reply.json["id"]
    node.cluster.leader = B
    node.cluster.barrier_error = NotLeader(B)
    # When it is read in the default way, Expect 503 naming the leader
    for path in (f"/api/v1/tasks/{task_id}", "/api/v1/tasks", "/api/v1/queues"):
        refused = await node.get(path)
        assert refused.status == 503, path
        assert refused.error["leader"] == B
    # When read with ?stale=true, Expect this replica's answer
    for path in (f"/api/v1/tasks/{task_id}", "/api/v1/tasks?queue=default", "/api/v1/queues"):
        stale = await node.get(path + ("&" if "?" in path else "?") + "stale=true")
        assert stale.status == 200, (path, stale.body)
    assert (await node.get(f"/api/v1/tasks/{task_id}?stale=1")).json["id"] == task_id


async def test_a_default_read_goes_through_the_barrier(node: Node) -> None:
    before = node.cluster.barriers
    assert (await node.get("/api/v1/tasks")).status == 200
    assert (await node.get("/api/v1/tasks?stale=false")).status == 200
    assert (await node.get("/api/v1/tasks?stale=true")).status == 200
    assert node.cluster.barriers == before + 2


@pytest.mark.parametrize("query", ["stale=maybe", "stale=true&stale=false", "fresh=1"])
async def test_a_bad_stale_parameter_is_400(node: Node, query: str) -> None:
    reply = await node.get(f"/api/v1/tasks/01H?{query}")
    assert reply.status == 400


# ---- 503s that say what to do -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "leader", "code", "says"),
    [
        (NotLeader(B), None, "not_leader", f"retry, or send it to the leader at {B}"),
        (NotLeader(None), None, "not_leader", "no leader is known yet"),
        (
            Unavailable("no quorum"),
            C,
            "unavailable",
            f"no quorum; retry, or send it to the leader at {C}",
        ),
        (
            Unavailable("the forward was lost: outcome unknown; read it back before retrying"),
            C,
            "unavailable",
            f"read it back before retrying (the leader is {C})",
        ),
    ],
)
async def test_cluster_refusals_are_503_with_the_leader_and_what_to_do(
    node: Node, error: ClusterError, leader: str | None, code: str, says: str
) -> None:
    # Given a member whose store refuses with ``error`` while ``leader`` leads
    node.cluster.leader = leader

    async def refuse(data: bytes) -> object:
        raise error

    node.store.propose = refuse  # type: ignore[method-assign]
    # When a task is submitted
    reply = await node.post("/api/v1/tasks", {"payload": 1})
    # Expect 503, Retry-After, the leader's address and the next step
    assert reply.status == 503 and reply.headers["retry-after"] == "1"
    assert reply.error["code"] == code
    assert says in reply.error["message"]
    expected = error.leader_hint if isinstance(error, NotLeader) else leader
    assert reply.error.get("leader") == expected


# ---- status, membership, transfer ---------------------------------------------------------------


async def test_cluster_status_is_the_design_contract(node: Node) -> None:
    status = (await node.get("/api/v1/cluster")).json
    assert set(status) == {"id", "role", "term", "leader", "commit_index", "members"}
    assert status["id"] == ME and status["role"] == "leader" and status["leader"] == ME
    assert [set(m) for m in status["members"]] == [
        {"address", "role", "match_index", "reachable"}
    ] * 3


async def test_add_a_member_normalised_then_remove_it(node: Node) -> None:
    # When a member is added by host name only
    added = await node.post("/api/v1/cluster/members", {"address": "Node-D"})
    # Expect 201 with the status showing it as a learner at host:50051
    assert added.status == 201, added.body
    assert {"address": "node-d:50051", "role": "learner", "match_index": 7, "reachable": True} in (
        added.json["members"]
    )
    # When it is added again, Expect 409 with the core's message
    again = await node.post("/api/v1/cluster/members", {"address": "node-d:50051"})
    assert again.status == 409 and "already a member" in again.error["message"]
    # When it is removed, Expect it gone
    removed = await call(node.app, "DELETE", "/api/v1/cluster/members/node-d:50051")
    assert removed.status == 200
    assert "node-d:50051" not in [m["address"] for m in removed.json["members"]]
    gone = await call(node.app, "DELETE", "/api/v1/cluster/members/node-d")
    assert gone.status == 409 and "not a member" in gone.error["message"]


@pytest.mark.parametrize(
    "body",
    [{}, {"address": 5}, {"address": "http://x"}, {"address": "a:99999"}, {"address": "a", "x": 1}],
)
async def test_a_bad_member_request_is_400(node: Node, body: dict[str, Any]) -> None:
    reply = await node.post("/api/v1/cluster/members", body)
    assert reply.status == 400, reply.body
    assert reply.error["field"] in ("address", "x")


async def test_transfer_to_a_member_or_the_most_caught_up(node: Node) -> None:
    named = await node.post("/api/v1/cluster/transfer", {"address": "10.0.0.3"})
    assert named.status == 200 and named.json["leader"] == C
    node.cluster.leader = ME
    anyone = await call(node.app, "POST", "/api/v1/cluster/transfer")
    assert anyone.status == 200, anyone.body
    assert node.store.transfers == [C, None]
    stranger = await node.post("/api/v1/cluster/transfer", {"address": "10.9.9.9"})
    assert stranger.status == 404 and stranger.error["field"] == "address"


async def test_a_single_node_refuses_membership_changes_and_says_what_to_do() -> None:
    # Given a node started alone
    machine = SchedulerMachine(SchedulerConfig())
    store = FakeClusterStore(machine, Cluster())
    store.start()
    admin = ClusterAdmin(store, clustered=False)
    extras = HttpExtras(admin.status, lambda: [], lambda: True, lambda: b"", cluster_admin=admin)
    app = create_app(NodeService(machine, store), extras=extras)
    # When a member is added, removed or leadership is transferred
    replies = [
        await call(app, "POST", "/api/v1/cluster/members", {"address": "node-d"}),
        await call(app, "DELETE", f"/api/v1/cluster/members/{B}"),
        await call(app, "POST", "/api/v1/cluster/transfer", {}),
    ]
    # Expect 409s that say what to do, and nothing changed
    for reply in replies:
        assert reply.status == 409 and "start a cluster with --peers" in reply.error["message"]
    assert store.learners == [] and B in store.voters and store.transfers == []


async def test_a_node_alone_reads_without_the_barrier() -> None:
    # Given a single node (no peers: it applies every write before acknowledging it)
    machine = SchedulerMachine(SchedulerConfig())
    cluster = Cluster(barrier_error=Unavailable("a barrier was asked for"))
    store = FakeClusterStore(machine, cluster)
    store.start()
    service = NodeService(machine, store, ServiceConfig(alone=True))
    app = create_app(service, extras=HttpExtras(lambda: {}, lambda: [], lambda: True, lambda: b""))
    # When it serves a default (linearizable) read, Expect no barrier at all
    assert (await call(app, "GET", "/api/v1/tasks")).status == 200
    assert cluster.barriers == 0
