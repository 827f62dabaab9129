"""Three ``RaftStore``s in one trio run over ``MemoryTransport``: the cluster behaviours of the
driver (elections, replication, forwarding, failover, partitions, snapshots to a follower far
behind, membership, transfer, follower reads)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from taskd.errors import NotLeader, Unavailable
from taskd.raft.confstate import ConfChangeError
from tests.store.cluster import Cluster, eventually

IDS = ["n1", "n2", "n3"]

# Real clocks: elections take a few hundred milliseconds.
pytestmark = pytest.mark.slow


@asynccontextmanager
async def cluster(
    tmp_path: Path, ids: list[str] = IDS, **options: object
) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        c = Cluster(nursery, tmp_path, list(ids), **options)  # type: ignore[arg-type]
        await c.start_all()
        yield c
        nursery.cancel_scope.cancel()


def index_of(result: object) -> int:
    assert isinstance(result, tuple), result
    return int(result[0])


async def test_one_leader_is_elected_and_replicates_to_every_member(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        results = await leader.store.propose_many([b"a", b"b", b"c"])
        assert [r[1] for r in results if isinstance(r, tuple)] == [0, 1, 2]
        await c.converged()
        for member in c.members.values():
            assert member.machine.items == [b"a", b"b", b"c"]
        assert len(c.leaders()) == 1


async def test_a_proposal_on_a_follower_is_forwarded_and_returns_its_applied_result(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        follower = c.followers(leader)[0]
        result = await follower.store.propose(b"via-follower")
        index = index_of(result)
        # the follower answered from its own apply: its machine holds the command at that index
        assert follower.machine.indexes[follower.machine.items.index(b"via-follower")] == index
        await c.converged()
        assert leader.machine.items == [b"via-follower"]


async def test_concurrent_follower_writes_are_coalesced_into_few_forwards(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        follower = c.followers(leader)[0]
        results: dict[int, object] = {}

        async def one(i: int) -> None:
            results[i] = await follower.store.propose(b"c%d" % i)

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(one, i)
        assert len(results) == 200
        positions = sorted(r[1] for r in results.values() if isinstance(r, tuple))
        assert positions == list(range(200))
        forwarder = follower.store._forwarder
        assert forwarder is not None and forwarder.calls <= 20
        await c.converged()


async def test_large_follower_writes_are_split_into_forwards_of_at_most_a_mebibyte(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        follower = c.followers(leader)[0]
        forwarder = follower.store._forwarder
        assert forwarder is not None
        before = forwarder.calls
        blobs = [bytes([i]) * (300 << 10) for i in range(8)]  # 8 x 300 KiB = 2.4 MiB

        async def one(blob: bytes) -> None:
            await follower.store.propose(blob)

        async with trio.open_nursery() as nursery:
            for blob in blobs:
                nursery.start_soon(one, blob)
        # at most three 300 KiB requests fit in one 1 MiB call: at least three calls
        assert forwarder.calls - before >= 3
        await c.converged()
        assert sorted(leader.machine.items) == sorted(blobs)


async def test_killing_the_leader_elects_another_and_keeps_every_acknowledged_write(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        acked = [b"w%d" % i for i in range(20)]
        for item in acked:
            await leader.store.propose(item)
        await c.kill(leader.id)
        new = await c.leader()
        assert new.id != leader.id
        await new.store.propose(b"after")
        await c.start(leader.id)  # the old leader comes back as a follower and catches up
        await c.converged()
        for member in c.members.values():
            assert member.machine.items == [*acked, b"after"]


async def test_a_partitioned_leader_loses_leadership_and_the_majority_goes_on(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        await leader.store.propose(b"before")
        c.network.isolate(leader.id, IDS)
        outcome: list[BaseException] = []

        async def write_to_the_old_leader() -> None:
            try:
                await leader.store.propose(b"lost")
            except NotLeader as exc:
                outcome.append(exc)

        c.nursery.start_soon(write_to_the_old_leader)
        others = [i for i in IDS if i != leader.id]
        new = await c.leader(among=others)
        await new.store.propose(b"majority")
        # check-quorum: the old leader steps down by itself
        await eventually(lambda: leader.store.leadership.term is None)
        c.network.heal()
        await c.converged()
        assert leader.machine.items == [b"before", b"majority"]
        # the write the old leader took was cut by the new leader's log: told "not applied"
        await eventually(lambda: bool(outcome))


async def test_a_follower_far_behind_a_compacted_log_catches_up_by_snapshot(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, snapshot_every=20) as c:
        leader = await c.leader()
        behind = c.followers(leader)[0]
        await c.kill(behind.id)
        for i in range(60):
            await leader.store.propose(b"s%d" % i)
        await leader.store.wait_for_snapshot()
        restarted = await c.start(behind.id)
        await c.converged(patience=10)
        assert restarted.machine.items == [b"s%d" % i for i in range(60)]
        assert restarted.store._snapshot_index > 0  # it got there through a snapshot


async def test_members_are_added_and_removed(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        await leader.store.propose(b"x")
        c.ids.append("n4")
        joiner = await c.start("n4", join=True)
        assert joiner.store.not_ready_reason() is not None
        follower = c.followers(leader)[0]
        await follower.store.add_member("n4")  # from a follower: forwarded to the leader
        await c.converged()
        assert joiner.machine.items == [b"x"]
        core = leader.store._core
        assert core is not None
        # promoted by the leader once caught up (its own conf change, committed)
        await eventually(lambda: "n4" in core.conf.voters and core.log.committed == core.last_index)
        with pytest.raises(ConfChangeError, match="already a member"):
            await leader.store.add_member("n4")
        await leader.store.remove_member("n4")
        assert "n4" not in core.conf.voters


async def test_leadership_is_transferred_on_request(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        target = c.followers(leader)[0]
        await leader.store.transfer_leadership(target.id)
        new = await c.leader()
        assert new.id == target.id
        await new.store.propose(b"after transfer")
        # from a follower: forwarded to the leader, which hands over to the one named
        back = c.followers(new)[0]
        await back.store.transfer_leadership(leader.id)
        assert (await c.leader()).id == leader.id


async def test_a_membership_change_right_after_an_election_waits_for_the_terms_first_commit(
    tmp_path: Path,
) -> None:
    # Given a fourth member added and promoted, then leadership moved to another member
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        c.ids.append("n4")
        await c.start("n4", join=True)
        await leader.store.add_member("n4")
        target = c.followers(leader)[0]
        await leader.store.transfer_leadership(target.id)
        new = await c.leader()
        # When it is removed at once (the new leader's first entry, or the promotion, may not
        # have committed yet)
        await new.store.remove_member("n4")
        # Expect the change taken, not refused with "retry in a moment"
        core = new.store._core
        assert core is not None
        assert "n4" not in core.conf.voters and "n4" not in core.conf.learners


async def test_a_read_barrier_on_a_follower_sees_a_write_acknowledged_elsewhere(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        follower = c.followers(leader)[0]
        await leader.store.propose(b"seen")
        await follower.store.read_barrier()
        assert follower.machine.items == [b"seen"]
        # many barriers at once share a few ReadIndex calls
        calls = follower.store.read_index_calls
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(follower.store.read_barrier)
        assert follower.store.read_index_calls - calls <= 3


async def test_a_stale_read_returns_at_once_even_without_a_leader(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        follower = c.followers(leader)[0]
        c.network.isolate(follower.id, IDS)
        with trio.fail_after(0.05):
            await follower.store.read_barrier(stale=True)
        with pytest.raises((NotLeader, Unavailable)):
            with trio.fail_after(5):
                await follower.store.read_barrier()


async def test_status_and_readiness(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        assert leader.store.not_ready_reason() is None
        status = leader.store.status()
        assert status.role == "leader" and status.leader == leader.id
        assert {m.id for m in status.members} == set(IDS)
        follower = c.followers(leader)[0]
        await eventually(lambda: follower.store.not_ready_reason() is None)
        c.network.isolate(follower.id, IDS)
        await eventually(lambda: follower.store.not_ready_reason() is not None)


async def test_without_a_leader_writes_and_reads_give_up_after_the_leader_wait(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(nursery, tmp_path, IDS, leader_wait=0.2)
        alone = await c.start("n1")  # the other two never start: no quorum
        with trio.fail_after(2), pytest.raises(NotLeader) as refused:
            await alone.store.propose(b"x")
        assert refused.value.leader_hint is None
        with trio.fail_after(2), pytest.raises(NotLeader):
            await alone.store.read_barrier()
        assert "no leader is known" in (alone.store.not_ready_reason() or "")
        nursery.cancel_scope.cancel()


async def test_a_forward_whose_answer_is_lost_has_an_unknown_outcome(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        leader = await c.leader()
        follower = c.followers(leader)[0]
        c.network.lose_forward_replies = True
        with pytest.raises(Unavailable, match="outcome is unknown"):
            await follower.store.propose(b"maybe")
        c.network.lose_forward_replies = False
        # it was appended, and it commits: reading it back shows it applied
        await eventually(lambda: follower.machine.items == [b"maybe"])
        await c.converged()


async def test_writes_through_every_member_survive_a_lossy_network(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await c.leader()
        c.network.drop_rate = 0.2  # one message batch in five is lost
        done: list[bytes] = []

        async def writer(member_id: str) -> None:
            for n in range(15):
                item = b"%s-%d" % (member_id.encode(), n)
                while True:
                    try:
                        await c.members[member_id].store.propose(item)
                        break
                    except NotLeader:
                        await trio.sleep(0.02)  # an election under way: try again
                done.append(item)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for member_id in IDS:
                    nursery.start_soon(writer, member_id)
        c.network.drop_rate = 0.0
        await eventually(lambda: all(len(m.machine.items) >= 45 for m in c.members.values()))
        await c.converged()
        items = next(iter(c.members.values())).machine.items
        assert sorted(items) == sorted(done)  # each exactly once
