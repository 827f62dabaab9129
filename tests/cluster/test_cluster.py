"""Three (or four) real ``taskd`` processes on loopback, faults by real signals.

Every test is Given a started cluster / When a fault or a call / Expect what design.md §2 and
§3 promise: one leader that every member names, writes accepted on any member, nothing
acknowledged lost across SIGKILL, SIGSTOP and a restart of everything, membership changes
under load, executors on followers, and clear errors for bad flags.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import grpclib
import pytest
from grpclib.client import Channel
from grpclib.exceptions import StreamTerminatedError

from taskd.api.taskd import v1 as pb
from tests.cluster.conftest import ClusterOf
from tests.cluster.harness import Cluster, Member, TcpProxy, loading, missing
from tests.node import rest

pytestmark = pytest.mark.slow


def submit(member: Member, **body: object) -> str:
    code, task = member.post("/api/v1/tasks", body)
    assert code == 201, (member, task)
    return str(task["id"])


def test_three_nodes_elect_one_leader_that_every_member_names(cluster_of: ClusterOf) -> None:
    # Given three members started together
    cluster = cluster_of(3)
    cluster.start()
    # When they settle
    leader = cluster.wait_for_leader()
    # Expect one leader, named by all, in one term, with the design's status shape
    statuses = [m.status() for m in cluster.members]
    assert all(s is not None for s in statuses)
    assert {s["leader"] for s in statuses if s} == {leader.address}
    assert [s["role"] for s in statuses if s].count("leader") == 1
    assert len({s["term"] for s in statuses if s}) == 1
    view = leader.status()
    assert view is not None
    assert sorted(m["address"] for m in view["members"]) == sorted(cluster.peers)
    assert all(m["reachable"] for m in view["members"])
    for member in cluster.members:  # every member ready: a leader known and caught up
        code, body = member.get("/readyz")
        assert code == 200, (member, body)


def test_a_write_on_a_follower_is_visible_on_every_member(cluster_of: ClusterOf) -> None:
    # Given a cluster with a leader
    cluster = cluster_of(3)
    cluster.start()
    leader = cluster.wait_for_leader()
    follower = cluster.followers(leader)[0]
    # When a task is submitted on a follower
    task_id = submit(follower, queue="visible", payload={"x": 1})
    # Expect a linearizable read of it on every member at once (no waiting)
    for member in cluster.members:
        code, task = member.get(f"/api/v1/tasks/{task_id}")
        assert code == 200 and task["payload"] == {"x": 1}, (member, task)
    # and a cancel on the other follower, then the change seen on the leader
    other = cluster.followers(leader)[1]
    code, task = other.post(f"/api/v1/tasks/{task_id}/cancel")
    assert code == 200 and task["state"] == "canceled", task
    assert leader.get(f"/api/v1/tasks/{task_id}")[1]["state"] == "canceled"


def test_leader_sigkill_under_load_loses_nothing_and_the_node_catches_up(
    cluster_of: ClusterOf,
) -> None:
    # Given a cluster under a steady submit load through every member
    cluster = cluster_of(3)
    cluster.start()
    leader = cluster.wait_for_leader()
    with loading(cluster) as load:
        time.sleep(1.0)
        # When the leader is SIGKILLed
        killed_at = time.monotonic()
        leader.kill()
        new_leader = cluster.wait_for_leader(not_=leader)
        elected_after = time.monotonic() - killed_at
        time.sleep(1.0)
        # and restarted while the load goes on
        leader.start()
        time.sleep(1.0)
    # Expect a new leader that took writes again, soon
    recovered = load.first_ack_after(killed_at + 0.05)
    assert recovered is not None and recovered < 5.0, (recovered, elected_after)
    assert new_leader is not leader
    assert len(load.acknowledged) > 50, (len(load.acknowledged), load.errors[-5:])
    assert load.http_errors == []  # refusals during the failover are 503s (or lost connections)
    # and the killed node caught up, with every acknowledged task on every member
    cluster.wait_caught_up(leader)
    for member in cluster.members:
        assert missing(member, load.acknowledged) == [], member


def test_a_paused_leader_is_replaced_without_split_brain_and_steps_down(
    cluster_of: ClusterOf,
) -> None:
    # Given a cluster with a leader, under load
    cluster = cluster_of(3)
    cluster.start()
    leader = cluster.wait_for_leader()
    term = leader.status()["term"]  # type: ignore[index]
    others = cluster.followers(leader)
    with loading(cluster) as load:
        time.sleep(0.5)
        # When the leader is frozen (SIGSTOP)
        leader.pause()
        try:
            # Expect the others to elect one of them in a newer term, and take writes
            new_leader = cluster.wait_for_leader(among=others)
            new_term = new_leader.status()["term"]  # type: ignore[index]
            assert new_term > term
            task_id = submit(others[0], queue="pause")
            time.sleep(0.5)
        finally:
            # When the old leader wakes up (SIGCONT)
            leader.resume()
        # Expect it to step down, name the new leader and know the write made meanwhile
        deadline = time.monotonic() + 10
        seen: dict[str, object] | None = None
        while time.monotonic() < deadline:
            seen = leader.status()
            if (
                seen is not None
                and seen["role"] != "leader"
                and seen["leader"] == new_leader.address
            ):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"the woken leader did not step down: {seen}")
        time.sleep(0.5)
    assert leader.get(f"/api/v1/tasks/{task_id}")[0] == 200
    # and never two leaders in one term: every member names the same leader per term
    by_term: dict[int, set[str]] = {}
    for member in cluster.members:
        status = member.status()
        assert status is not None
        by_term.setdefault(status["term"], set()).add(status["leader"])
    assert all(len(leaders) == 1 for leaders in by_term.values()), by_term
    # and nothing acknowledged before, during or after the freeze is lost anywhere
    assert len(load.acknowledged) > 10, (load.refused, load.errors[-10:])
    for member in cluster.members:
        cluster.wait_caught_up(member)
        assert missing(member, load.acknowledged) == [], member


def test_sigkill_of_every_member_then_restart_keeps_everything_acknowledged(
    cluster_of: ClusterOf,
) -> None:
    # Given acknowledged writes through every member
    cluster = cluster_of(3)
    cluster.start()
    cluster.wait_for_leader()
    with loading(cluster) as load:
        time.sleep(1.5)
        # When every member is SIGKILLed at once, mid-load
        for member in cluster.members:
            member.kill()
    assert load.acknowledged
    # and all restart
    cluster.start()
    leader = cluster.wait_for_leader()
    # Expect every acknowledged task on every member
    for member in cluster.members:
        cluster.wait_caught_up(member)
        assert missing(member, load.acknowledged) == [], member
    assert leader.status() is not None


def test_add_a_fourth_member_then_remove_one_under_load(cluster_of: ClusterOf) -> None:
    # Given a cluster under load
    cluster = cluster_of(3)
    cluster.start()
    leader = cluster.wait_for_leader()
    with loading(cluster) as load:
        time.sleep(0.5)
        # When a fourth node starts with --join and is added with the CLI
        fourth = cluster.add_member()
        cli = [sys.executable, "-m", "taskd", "cluster", "--server", leader.http_url]
        added = subprocess.run(
            [*cli, "add", fourth.address, "--wait", "30"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # Expect progress lines until it is promoted to voter
        assert added.returncode == 0, added
        lines = added.stdout.splitlines()
        assert lines[0] == f"added {fourth.address} as a learner", lines
        assert f"{fourth.address} caught up and is a voter (follower)" in lines, lines
        view = cluster.wait_for_leader().status() or {}
        roles = {m["address"]: m["role"] for m in view.get("members", [])}
        assert roles.get(fourth.address) in ("follower", "leader"), view
        # When a member (not the one being talked to) is removed
        leader = cluster.wait_for_leader()
        removed = next(m for m in cluster.followers(leader) if m is not fourth)
        code, status = leader.delete(f"/api/v1/cluster/members/{removed.address}")
        assert code == 200, status
        assert removed.address not in [m["address"] for m in status["members"]]
        time.sleep(0.5)
        removed.kill()  # the removed member's process is the operator's to stop
        time.sleep(1.0)
    # Expect the remaining three to agree and hold every acknowledged task
    remaining = [m for m in cluster.members if m is not removed]
    leader = cluster.wait_for_leader(among=remaining)
    assert len(load.acknowledged) > 30
    for member in remaining:
        cluster.wait_caught_up(member)
        assert missing(member, load.acknowledged) == [], member
    view = leader.status()
    assert view is not None
    assert sorted(m["address"] for m in view["members"]) == sorted(m.address for m in remaining)


def test_executors_on_followers_run_tasks(cluster_of: ClusterOf) -> None:
    # Given every member running a queue's tasks as a local command, one at a time each
    # (0.2 s each: the leader alone cannot take them all as they arrive)
    cluster = cluster_of(3, "--exec", "work=sleep 0.2", "--concurrency", "1")
    cluster.start()
    leader = cluster.wait_for_leader()
    # When many tasks are submitted
    ids = [submit(m, queue="work") for m in cluster.members for _ in range(10)]
    # Expect all to succeed, some run by followers' executors (leases forwarded to the leader)
    workers = set()
    deadline = time.monotonic() + 30
    for task_id in ids:
        task = rest.wait_for_task(
            leader.http_url, task_id, {"succeeded", "failed"}, deadline - time.monotonic()
        )
        assert task["state"] == "succeeded", task
        workers.add(task["worker"])
    follower_workers = {f"local@{m.address}" for m in cluster.followers(leader)}
    assert workers & follower_workers, workers


def test_sigterm_on_the_leader_hands_leadership_over(cluster_of: ClusterOf) -> None:
    # Given a cluster with a leader
    cluster = cluster_of(3)
    cluster.start()
    leader = cluster.wait_for_leader()
    term = leader.status()["term"]  # type: ignore[index]
    # When the leader gets SIGTERM
    stopped_at = time.monotonic()
    assert leader.terminate() == 0
    # Expect another member to lead already (transfer, not an election timeout later)
    new_leader = cluster.wait_for_leader(not_=leader)
    assert time.monotonic() - stopped_at < 10
    assert new_leader.status()["term"] > term  # type: ignore[index]
    assert "leadership handed over" in leader.stderr_text()
    submit(new_leader, queue="after-transfer")


def test_a_new_leader_regrants_remote_leases_a_full_period(cluster_of: ClusterOf) -> None:
    # Given an HTTP worker holding a 4 s lease from the leader
    cluster = cluster_of(3, "--worker-lease", "4")
    cluster.start()
    leader = cluster.wait_for_leader()
    task_id = submit(leader, queue="held")
    code, leased = leader.post("/api/v1/queues/held/lease", {"worker": "w1", "max": 1})
    assert code == 200 and leased["tasks"], leased
    epoch = leased["tasks"][0]["lease"]
    leased_at = time.monotonic()
    time.sleep(2.0)
    # When the leader dies two seconds into the lease
    leader.kill()
    new_leader = cluster.wait_for_leader(not_=leader)
    elected = time.monotonic()
    # Expect the lease alive past its original end (a full period from the new leader)
    time.sleep(max(0.0, leased_at + 4.8 - time.monotonic()))
    assert elected - leased_at < 4.0, "the election took too long for this test to mean much"
    code, task = new_leader.get(f"/api/v1/tasks/{task_id}")
    assert code == 200 and task["state"] == "running" and task["attempt"] == 1, task
    code, beat = new_leader.post(f"/api/v1/tasks/{task_id}/heartbeat", {"lease": epoch})
    assert code == 200, beat


def test_a_member_that_cannot_reach_a_majority_says_so(cluster_of: ClusterOf) -> None:
    # Given a cluster that lost two of its three members
    cluster = cluster_of(3)
    cluster.start()
    leader = cluster.wait_for_leader()
    survivor = cluster.followers(leader)[0]
    task_id = submit(survivor, queue="lonely")
    cluster.wait_caught_up(survivor)
    for member in cluster.members:
        if member is not survivor:
            member.kill()
    # When a client writes to the survivor
    started = time.monotonic()
    code, body = survivor.post("/api/v1/tasks", {"queue": "lonely"}, timeout=15)
    # Expect a 503 that says what to do, within the client's patience, and /readyz says why
    assert code == 503, body
    assert time.monotonic() - started < 10
    assert "retry" in body["error"]["message"]
    code, ready = survivor.get("/readyz")
    assert code == 503 and "leader" in ready["error"]["message"], ready
    # and reads: refused unless stale, on REST and gRPC alike
    assert survivor.get(f"/api/v1/tasks/{task_id}", timeout=15)[0] == 503
    assert survivor.get(f"/api/v1/tasks/{task_id}?stale=true")[0] == 200
    assert asyncio.run(grpc_get(survivor, task_id, stale=True)) == "ok"
    assert asyncio.run(grpc_get(survivor, task_id, stale=False)).startswith("UNAVAILABLE")


async def grpc_get(member: Member, task_id: str, *, stale: bool) -> str:
    """``TaskService.Get`` over gRPC: "ok", or the status name and message."""
    channel = Channel("127.0.0.1", member.grpc_port)
    try:
        await pb.TaskServiceStub(channel).get(pb.GetRequest(id=task_id, stale=stale), timeout=15)
    except grpclib.GRPCError as exc:
        return f"{exc.status.name}: {exc.message}"
    finally:
        channel.close()
    return "ok"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--peers", "127.0.0.1:1,127.0.0.1:2", "--grpc", "127.0.0.1:3"], "is not one of --peers"),
        (["--peers", "127.0.0.1:1,127.0.0.1:2"], "several entries of --peers"),
        (["--peers", "a,a"], "names a:50051 twice"),
        (["--join"], "--join needs --grpc"),
        (["--election-timeout", "0"], "--election-timeout must be"),
        (["--peer-route", "nothing"], "MEMBER=HOST:PORT"),
    ],
)
def test_bad_cluster_flags_exit_2_naming_the_flag(args: list[str], words: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result
    assert words in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_follower_far_behind_catches_up_by_snapshot(cluster_of: ClusterOf) -> None:
    # Given a cluster that snapshots (and compacts its log) every 50 entries
    cluster = cluster_of(3, "--snapshot-every", "50")
    cluster.start()
    leader = cluster.wait_for_leader()
    behind = cluster.followers(leader)[0]
    # When a follower is down while the others commit far past a snapshot
    behind.kill()
    ids = []
    for n in range(6):
        code, reply = leader.post(
            "/api/v1/tasks/batch", {"tasks": [{"queue": "load", "payload": n}] * 40}
        )
        assert code == 201, reply
        ids += [task["id"] for task in reply["tasks"]]
    for n in range(60):  # one entry each: the leader's log moves past its snapshots
        ids.append(submit(leader, queue="load", payload=n))
    deadline = time.monotonic() + 15
    while "snapshot at index" not in leader.stderr_text():
        assert time.monotonic() < deadline, "the leader wrote no snapshot"
        time.sleep(0.1)
    # and it restarts
    behind.start()
    # Expect it to catch up (from the leader's snapshot) and know every task
    cluster.wait_caught_up(behind)
    assert missing(behind, ids) == []
    assert "installed the leader's snapshot" in behind.stderr_text()


def _runner_of(cluster: Cluster, task_id: str, deadline: float = 15.0) -> Member:
    """The member whose local executor runs ``task_id`` now."""
    end = time.monotonic() + deadline
    task: dict[str, object] = {}
    while time.monotonic() < end:
        code, task = cluster.running()[0].get(f"/api/v1/tasks/{task_id}")
        if code == 200 and task["state"] == "running":
            worker = str(task["worker"])
            return cluster.by_address(worker.removeprefix("local@"))
        time.sleep(0.05)
    raise AssertionError(f"{task_id} never ran: {task}")


def test_a_member_that_leads_again_keeps_running_its_own_attempts(
    cluster_of: ClusterOf,
) -> None:
    # Given a local attempt running on a follower
    cluster = cluster_of(3, "--exec", "slow=sleep 4", "--concurrency", "1")
    cluster.start()
    leader = cluster.wait_for_leader()
    task_id = submit(leader, queue="slow")
    runner = _runner_of(cluster, task_id)
    if runner is leader:  # make it a follower first
        other = cluster.followers(leader)[0]
        code, status = leader.post("/api/v1/cluster/transfer", {"address": other.address})
        assert code == 200, status
    # When leadership moves to the member that runs the attempt
    code, status = runner.post("/api/v1/cluster/transfer", {"address": runner.address})
    assert code == 200 and status["leader"] == runner.address, status
    # Expect its attempt to run on, uninterrupted, and succeed as the first attempt
    task = rest.wait_for_task(runner.http_url, task_id, {"succeeded", "failed", "queued"}, 20)
    assert task["state"] == "succeeded" and task["attempt"] == 1, task


def test_a_restarted_member_releases_its_previous_attempts_at_once(
    cluster_of: ClusterOf,
) -> None:
    # Given a long local attempt running on some member
    cluster = cluster_of(3, "--exec", "slow=sleep 6", "--concurrency", "1")
    cluster.start()
    cluster.wait_for_leader()
    task_id = submit(cluster.members[0], queue="slow", timeout=600)
    runner = _runner_of(cluster, task_id)
    # When that member is killed and restarted
    runner.kill()
    cluster.wait_for_leader()
    runner.start()
    # Expect its attempt released by the restart (long before the task's timeout): run again
    deadline = time.monotonic() + 20
    task: dict[str, object] = {}
    while time.monotonic() < deadline:
        code, task = cluster.wait_for_leader().get(f"/api/v1/tasks/{task_id}")
        if code == 200 and int(str(task["attempt"])) >= 2:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the restarted member did not release its attempt: {task}")


def test_sigterm_on_a_follower_releases_its_stream_workers_leases_promptly(
    cluster_of: ClusterOf,
) -> None:
    # Given a stream worker on a follower, holding two tasks it never finishes
    cluster = cluster_of(3)
    cluster.start()
    leader = cluster.wait_for_leader()
    follower = cluster.followers(leader)[0]
    ids = [submit(leader, queue="held") for _ in range(2)]
    stopped: list[float] = []

    async def hold() -> None:
        channel = Channel("127.0.0.1", follower.grpc_port)
        stub = pb.WorkerServiceStub(channel)
        hello = pb.WorkerMessage(hello=pb.WorkerHello(worker="holder", queues=["held"], capacity=2))

        async def outgoing() -> AsyncIterator[pb.WorkerMessage]:
            yield hello
            await asyncio.sleep(3600)  # keep our side open, send nothing more

        held: set[str] = set()
        try:
            async for message in stub.work(outgoing()):
                if message.assignment is not None:
                    held.update(item.id for item in message.assignment.items)
                if held == set(ids):
                    # When the follower is told to stop while the worker holds both
                    started = time.monotonic()
                    await asyncio.to_thread(follower.terminate)
                    stopped.append(time.monotonic() - started)
        except (StreamTerminatedError, grpclib.GRPCError, ConnectionError):
            pass  # the node closed the stream on its way down
        finally:
            channel.close()

    asyncio.run(asyncio.wait_for(hold(), 30))
    # Expect it to stop without waiting out the drain, and both attempts released as lost
    assert follower.proc is not None and follower.proc.returncode == 0
    assert stopped and stopped[0] < 4.0, stopped
    for task_id in ids:
        code, task = leader.get(f"/api/v1/tasks/{task_id}")
        assert code == 200 and task["state"] in ("pending", "queued"), task
        assert task["error"] == "worker lost" and task["attempt"] == 1, task


def test_a_member_without_the_cluster_secret_is_shut_out(cluster_of: ClusterOf) -> None:
    # Given three members sharing a cluster secret, but the third was given another one
    secret = "0123456789abcdef0123456789abcdef"
    cluster = cluster_of(3, env={"TASKD_CLUSTER_SECRET": secret})
    cluster.members[2].extra_env["TASKD_CLUSTER_SECRET"] = "f" * 32
    cluster.start()
    # When they settle
    leader = cluster.wait_for_leader(among=cluster.members[:2])
    # Expect the two with the secret to form the cluster, and the third to know no leader
    outsider = cluster.members[2]
    assert leader is not outsider
    submit(leader, queue="secret")
    time.sleep(1.0)
    status = outsider.status()
    assert status is not None and status["leader"] is None, status
    assert outsider.get("/readyz")[0] == 503


def test_peer_route_dials_a_member_through_a_proxy(cluster_of: ClusterOf) -> None:
    # Given a cluster where the first member dials the second through a TCP proxy
    cluster = cluster_of(3, spare=2)
    a, b = cluster.members[0], cluster.members[1]
    proxy_port = cluster._grpc[-1]  # a spare port of the cluster's block
    proxy = TcpProxy(proxy_port, b.grpc_port)
    try:
        a.args += ["--peer-route", f"{b.address}=127.0.0.1:{proxy_port}"]
        cluster.start()
        leader = cluster.wait_for_leader()
        # When the first member leads (so it must send the log to the second) and writes flow
        code, status = leader.post("/api/v1/cluster/transfer", {"address": a.address})
        assert code == 200 and status["leader"] == a.address, status
        leader = cluster.wait_for_leader()
        submit(leader, queue="routed")
        cluster.wait_caught_up(b)
        # Expect the cluster to work with b known by its own address, and a's traffic to b
        # to have gone through the proxy
        assert proxy.connections >= 1
        view = a.status()
        assert view is not None and b.address in [m["address"] for m in view["members"]]
    finally:
        proxy.close()


def test_a_joined_member_restarts_with_join_still_in_its_flags(cluster_of: ClusterOf) -> None:
    # Given a fourth member added with --join and promoted
    cluster = cluster_of(3)
    cluster.start()
    leader = cluster.wait_for_leader()
    fourth = cluster.add_member()
    code, status = leader.post("/api/v1/cluster/members", {"address": fourth.address})
    assert code == 201, status
    cluster.wait_caught_up(fourth)
    # When it is restarted with the same flags (its unit still says --join)
    fourth.kill()
    ids = [submit(leader, queue="load") for _ in range(5)]
    fourth.start()
    # Expect it back as a voter that knows the leader and the writes it missed
    cluster.wait_caught_up(fourth)
    assert missing(fourth, ids) == []
    view = cluster.wait_for_leader().status() or {}
    roles = {m["address"]: m["role"] for m in view.get("members", [])}
    assert roles.get(fourth.address) in ("follower", "learner"), view
    assert fourth.get("/readyz")[0] == 200


def test_membership_and_transfer_over_grpc(cluster_of: ClusterOf) -> None:
    # Given a cluster and a fourth node waiting to join
    cluster = cluster_of(3)
    cluster.start()
    leader = cluster.wait_for_leader()
    follower = cluster.followers(leader)[0]
    fourth = cluster.add_member()

    async def calls() -> tuple[pb.ClusterStatus, pb.ClusterStatus, pb.ClusterStatus, str]:
        channel = Channel("127.0.0.1", follower.grpc_port)
        try:
            stub = pb.ClusterServiceStub(channel)
            # When a follower is asked to add it, to take leadership, then to remove it
            added = await stub.add_member(pb.MemberRequest(address=fourth.address), timeout=15)
            await asyncio.to_thread(cluster.wait_caught_up, fourth)
            moved = await stub.transfer_leadership(
                pb.TransferRequest(address=follower.address), timeout=15
            )
            removed = await stub.remove_member(pb.MemberRequest(address=fourth.address), timeout=15)
            try:
                await stub.remove_member(pb.MemberRequest(address=fourth.address), timeout=15)
            except grpclib.GRPCError as exc:
                refused = f"{exc.status.name}: {exc.message}"
            else:
                refused = "accepted"
            return added, moved, removed, refused
        finally:
            channel.close()

    added, moved, removed, refused = asyncio.run(calls())
    # Expect each answer to be the cluster status after the change
    assert fourth.address in [m.address for m in added.members]
    assert moved.leader == follower.address
    assert fourth.address not in [m.address for m in removed.members]
    assert refused.startswith("FAILED_PRECONDITION") and "not a member" in refused, refused
