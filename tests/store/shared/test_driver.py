"""The shared store's driver on an in-memory shared database (``fake_backend``), several
stores in one process, on trio's virtual clock: lease takeover and its timing, fencing of a
paused former leader, group commit, roll-back after a failed append, followers tailing the
log, read barriers, snapshots, and the task rows a projection gives the backend."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import trio

from taskd.errors import NotLeader, StartupError, StorageFault, Unavailable
from taskd.store.raft import wire
from taskd.store.raft.transport import PeerUnreachable
from taskd.store.shared.backend import BackendDown
from taskd.store.shared.driver import ForwardUnknown, Projection, SharedStore
from tests.raft.fakes import AppendLog
from tests.store.shared.fake_backend import FakeBackend, FakeDatabase, FakeHop

TTL = 9.0  # renew every 3 s; stop leading 1.8 s (margin 0.2) before the lease ends


@dataclass
class Node:
    store: SharedStore
    machine: AppendLog
    backend: FakeBackend
    hop: FakeHop
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    changes: list[tuple[float, int | None]] = field(default_factory=list)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch)
                await nursery.start(self.store.serve)
                task_status.started()

    async def _watch(self) -> None:
        version = 0
        while True:
            await self.store.leadership.changed(version)
            version = self.store.leadership.version
            self.changes.append((trio.current_time(), self.store.leadership.term))


class MemoryForwards:
    """Forwards between stores in this process, with the outcomes the gRPC client gives:
    the leader's refusals as ``PeerUnreachable``, an answer that does not come within
    ``timeout`` (a paused leader) or an unknown one as ``Unavailable``."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.stores: dict[str, SharedStore] = {}
        self.timeout = timeout
        self.calls = 0

    async def forward(self, leader: str, blob: bytes) -> tuple[int, int]:
        self.calls += 1
        store = self.stores.get(leader)
        if store is None:
            raise PeerUnreachable(f"no node {leader}")
        with trio.move_on_after(self.timeout):
            try:
                return await store.accept_forward(blob)
            except ForwardUnknown as exc:
                raise Unavailable(f"unknown: {exc}") from None
            except NotLeader:
                raise
            except Unavailable as exc:
                raise PeerUnreachable(f"refused: {exc}") from None
        raise Unavailable(f"no answer from {leader} within {self.timeout} s: outcome unknown")


def node(
    db: FakeDatabase,
    node_id: str,
    *,
    snapshot_every: int = 10_000,
    projection: Projection | None = None,
    max_batch: int = 4096,
    forwards: MemoryForwards | None = None,
) -> Node:
    machine, backend = AppendLog(), FakeBackend(db)
    hop = FakeHop(backend)
    store = SharedStore(
        backend,
        machine,
        node_id=node_id,
        lease_ttl=TTL,
        hop=hop,
        snapshot_every=snapshot_every,
        projection=projection,
        fork_snapshots=False,  # a forked child and a waiting thread: real time, not virtual
        max_batch=max_batch,
        forwards=forwards,
        stamp=(lambda data: data + b"@" + node_id.encode()) if forwards is not None else None,
    )
    if forwards is not None:
        forwards.stores[node_id] = store
    return Node(store, machine, backend, hop)


async def start(nursery: trio.Nursery, *nodes: Node) -> None:
    """Start ``nodes`` in order (the first one on an empty database leads)."""
    for n in nodes:
        await nursery.start(n.run)


async def until(condition: Callable[[], bool], within: float = 30.0) -> None:
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110 -- several stores, no one event to wait on
            await trio.sleep(0.01)


async def test_the_first_store_leads_at_once_and_the_others_follow_in_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a store that started first on an empty database, and two more
    db = FakeDatabase()
    a, b, c = node(db, "a"), node(db, "b"), node(db, "c")
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        await nursery.start(c.run)
        # Expect the first to lead in term 1, the others to follow it
        assert (a.store.leadership.term, b.store.leadership.term) == (1, None)
        assert b.store.status().leader == "a" and b.store.status().role == "follower"
        # When the leader takes writes
        results = [await a.store.propose(b"x"), *await a.store.propose_many([b"y", b"z"])]
        # Expect them acknowledged in order, and the followers to apply them in order
        assert results == [(1, 0), (2, 1), (3, 2)]
        await until(lambda: b.machine.items == c.machine.items == [b"x", b"y", b"z"])
        assert b.machine.indexes == [1, 2, 3]
        # And a follower refuses writes, naming the leader
        with pytest.raises(NotLeader) as refused:
            await b.store.propose(b"w")
        assert refused.value.leader_hint == "a"
        nursery.cancel_scope.cancel()


async def test_a_follower_read_barrier_covers_what_the_leader_acknowledged(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader and a follower whose tail is held back
    db = FakeDatabase()
    a, b = node(db, "a"), node(db, "b")
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        await a.store.propose_many([b"1", b"2"])
        # When the follower's read barrier returns
        await b.store.read_barrier()
        # Expect everything acknowledged before it to be applied there
        assert b.machine.items == [b"1", b"2"]
        nursery.cancel_scope.cancel()
    # And after it stopped, it answers no more barriers
    with pytest.raises(Unavailable):
        await b.store.read_barrier()


async def test_a_follower_takes_over_only_after_the_leader_stopped_renewing_and_the_lease_ran_out(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader that acquired at t0 and a follower
    db = FakeDatabase()
    a, b = node(db, "a"), node(db, "b")
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        await a.store.propose(b"before")
        # When the leader loses the database at t0 + 4 (its renewal at t0 + 3 went through)
        await trio.sleep_until(t0 + 4)
        a.backend.down = True
        # Expect it to stop leading at its last renewal + ttl - margin, with writes refused
        await until(lambda: a.store.leadership.term is None)
        assert a.changes[-1] == (pytest.approx(t0 + 3 + TTL - 0.2 * TTL), None)
        assert isinstance(a.store.fault, StorageFault) and a.store.fault.resumes_by_itself
        # And the follower to take the lease in term 2 only once it ran out on the database's
        # clock, at t0 + 3 + ttl: never while the old leader could still act as one
        await until(lambda: b.store.leadership.term == 2)
        gained_at = b.changes[-1][0]
        assert t0 + 3 + TTL <= gained_at < t0 + 3 + TTL + 0.01
        assert b.machine.items == [b"before"]
        assert await b.store.propose(b"after") == (2, 1)
        # When the old leader's database comes back
        a.backend.down = False
        # Expect it to follow, with its fault cleared and the new entry applied
        await until(lambda: a.machine.items == [b"before", b"after"] and a.store.fault is None)
        assert a.store.status().leader == "b"
        nursery.cancel_scope.cancel()


async def test_a_paused_former_leader_is_fenced_and_acknowledges_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader whose next append is held before it reaches the database (a pause)
    db = FakeDatabase()
    a, b = node(db, "a"), node(db, "b")
    outcome: list[object] = []

    async def propose_on_a() -> None:
        try:
            outcome.append(await a.store.propose(b"stale"))
        except Unavailable as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        await a.store.propose(b"ok")
        a.hop.pause()
        nursery.start_soon(propose_on_a)
        # When its lease runs out and the follower takes over and writes
        await until(lambda: b.store.leadership.term == 2)
        await b.store.propose(b"new")
        # And the paused node's append finally reaches the database
        a.hop.resume()
        await until(lambda: db.fenced == 1)
        # Expect it refused (fenced), its caller told the outcome is unknown, not acknowledged
        [refused] = outcome
        assert isinstance(refused, Unavailable) and "unknown" in str(refused)
        assert [e.data for e in db.log] == [b"ok", b"new"]
        # And the former leader rolls back and follows the new one
        await until(lambda: a.machine.items == [b"ok", b"new"])
        assert a.store.leadership.term is None and a.store.status().leader == "b"
        nursery.cancel_scope.cancel()


async def test_concurrent_proposals_are_made_durable_together_in_few_appends(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader
    db = FakeDatabase()
    a = node(db, "a")
    answers: dict[bytes, object] = {}

    async def propose(data: bytes) -> None:
        answers[data] = await a.store.propose(data)

    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        # When 100 callers propose at once
        async with trio.open_nursery() as callers:
            for n in range(100):
                callers.start_soon(propose, b"%d" % n)
        # Expect every one its own result, in a handful of appends, not one each
        assert len(answers) == 100
        assert all(a.machine.items[r[1]] == d for d, r in answers.items() if isinstance(r, tuple))
        assert 1 <= db.appends <= 3
        nursery.cancel_scope.cancel()


async def test_a_round_takes_at_most_max_batch_commands_and_whole_requests(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader whose rounds take at most 10 commands
    db = FakeDatabase()
    a = node(db, "a", max_batch=10)
    answers: list[object] = []

    async def propose(n: int) -> None:
        answers.extend(await a.store.propose_many([b"%d" % n] * (1 if n else 25)))

    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        # When one request of 25 commands and 60 of one arrive at once
        async with trio.open_nursery() as callers:
            for n in range(61):
                callers.start_soon(propose, n)
        # Expect every command durable, the request of 25 whole in a round of its own (a
        # request is never split, nor joined past the limit), every other round of 10 at most
        assert len(answers) == sum(db.sizes) == 85 and len(a.machine.items) == 85
        assert db.sizes.count(25) == 1
        assert all(size <= 10 for size in db.sizes if size != 25)
        assert len(db.sizes) >= 7
        nursery.cancel_scope.cancel()


async def test_an_append_that_failed_before_the_commit_is_rolled_back_and_writes_resume(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader with one durable command
    db = FakeDatabase()
    a = node(db, "a")
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await a.store.propose(b"a")
        # When the database goes away before the next append commits
        a.backend.fail_next_append = "before"
        with pytest.raises(StorageFault) as failed:
            await a.store.propose_many([b"b", b"c"])
        # Expect the caller told the outcome is unknown, and the command not visible
        assert "unknown" in str(failed.value)
        assert a.machine.items == [b"a"] and a.store.rollbacks == 1
        await a.store.read_barrier()  # reads go on, on the durable prefix
        # And writes refused at once while the fault lasts, without applying anything
        with pytest.raises(StorageFault, match="not applied"):
            await a.store.propose(b"d")
        assert a.machine.items == [b"a"]
        # When the database answers again, expect writes to resume in the same term
        await until(lambda: a.store.fault is None)
        assert await a.store.propose(b"e") == (2, 1)
        assert a.store.leadership.term == 1
        nursery.cancel_scope.cancel()
    assert [e.data for e in db.log] == [b"a", b"e"]


async def test_an_append_whose_answer_was_lost_is_read_back_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader whose next append commits but whose answer is lost
    db = FakeDatabase()
    a = node(db, "a")
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        a.backend.fail_next_append = "after"
        # When it is proposed
        with pytest.raises(StorageFault, match="unknown"):
            await a.store.propose(b"x")
        # Expect the state machine rebuilt from the database: the command applied exactly once
        await until(lambda: a.store.fault is None)
        assert a.machine.items == [b"x"] and a.machine.indexes == [1]
        assert await a.store.propose(b"y") == (2, 1)
        nursery.cancel_scope.cancel()


async def test_a_reader_never_sees_a_round_whose_append_fails(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader whose append is in flight (held) and will fail
    db = FakeDatabase()
    a = node(db, "a")
    seen: list[list[bytes]] = []

    async def read() -> None:
        await a.store.read_barrier()
        seen.append(list(a.machine.items))

    async def write() -> None:
        with pytest.raises(StorageFault):
            await a.store.propose(b"doomed")

    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        a.hop.pause()
        a.backend.fail_next_append = "before"
        nursery.start_soon(write)
        await until(lambda: a.machine.items == [b"doomed"])  # applied, not durable
        # When a reader passes the barrier meanwhile
        nursery.start_soon(read)
        await trio.sleep(0.5)
        try:
            assert seen == []  # it waits for the round to settle
        finally:
            a.hop.resume()  # else a failure hangs on the held call
        await until(lambda: bool(seen))
        # Expect it to see the durable prefix only
        assert seen == [[]]
        nursery.cancel_scope.cancel()


async def test_a_new_leader_restores_the_latest_snapshot_and_the_entries_after_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader that snapshots every 4 entries and wrote 10
    db = FakeDatabase()
    a = node(db, "a", snapshot_every=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        for n in range(10):
            await a.store.propose(b"%d" % n)
        nursery.cancel_scope.cancel()
    assert db.snapshot is not None and db.snapshot.index == 8
    assert [e.index for e in db.log] == [9, 10]  # the entries the snapshot covers are gone
    # When a new store starts on the database
    b = node(db, "b")
    async with trio.open_nursery() as nursery:
        await nursery.start(b.run)
        # Expect it to lead in a new term with the whole state
        assert b.store.leadership.term == 2
        assert b.machine.items == [b"%d" % n for n in range(10)]
        assert await b.store.propose(b"10") == (11, 10)
        nursery.cancel_scope.cancel()


async def test_the_projection_turns_each_round_into_rows_written_with_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader with a projection from results to rows
    db = FakeDatabase()

    def projection(results: object) -> list[dict[str, object]]:
        assert isinstance(results, list)
        return [{"id": r[0], "position": r[1]} for r in results]

    a = node(db, "a", projection=projection)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        # When it takes writes
        await a.store.propose_many([b"p", b"q"])
        # Expect their rows in the database with them
        assert db.rows == {1: {"id": 1, "position": 0}, 2: {"id": 2, "position": 1}}
        nursery.cancel_scope.cancel()


async def test_a_clean_stop_releases_the_lease_so_another_store_leads_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader and a follower
    db = FakeDatabase()
    a, b = node(db, "a"), node(db, "b")
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        stopped_at = trio.current_time()
        # When the leader stops
        a.scope.cancel()
        # Expect the follower to lead well within a third of the lease
        await until(lambda: b.store.leadership.term == 2)
        assert b.changes[-1][0] - stopped_at <= TTL / 3 + 0.01
        assert a.store.leadership.term is None and not a.backend.opened
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("forwarding", [False, True], ids=["refusing", "forwarding"])
@pytest.mark.parametrize("seed", range(20))  # ~40% of seeds fence a paused leader
async def test_under_random_faults_acknowledged_commands_are_durable_once_and_leaders_never_overlap(
    seed: int, forwarding: bool, autojump_clock: trio.abc.Clock
) -> None:
    # Given three stores on one database, clients proposing to any of them (followers refuse,
    # or forward to the leader), and faults: a node losing the database, a node paused,
    # appends failing before or after the commit
    rng = random.Random(seed)
    db = FakeDatabase()
    forwards = MemoryForwards() if forwarding else None
    nodes = [node(db, name, snapshot_every=25, forwards=forwards) for name in "abc"]
    acked: dict[bytes, int] = {}

    async def client(k: int) -> None:
        for n in range(40):
            data = b"%d:%d" % (k, n)
            proposer = rng.choice(nodes)
            try:
                result = await proposer.store.propose(data)
            except (NotLeader, Unavailable):  # StorageFault included
                pass
            else:
                # (the result is the proposer's own apply: it holds the command already)
                assert isinstance(result, tuple)
                index, position = result
                assert proposer.machine.indexes[position] == index
                acked[proposer.machine.items[position]] = index
            await trio.sleep(rng.uniform(0, 1))

    async def nemesis() -> None:
        for _ in range(20):
            await trio.sleep(rng.uniform(0, 4))
            leaders = [n for n in nodes if n.store.leadership.term is not None]
            victim = rng.choice(leaders if leaders and rng.random() < 0.6 else nodes)
            action = rng.choice(["down", "pause", "before", "after"])
            if action in ("before", "after"):
                victim.backend.fail_next_append = action
                continue
            if action == "down":
                victim.backend.down = True
            else:
                victim.hop.pause()
            await trio.sleep(rng.uniform(0, 2 * TTL))
            victim.backend.down = False
            victim.hop.resume()

    async with trio.open_nursery() as nursery:
        for n in nodes:
            await nursery.start(n.run)
        # When they run through the faults
        async with trio.open_nursery() as load:
            for k in range(5):
                load.start_soon(client, k)
            load.start_soon(nemesis)
        # Expect every acknowledged command in the log exactly once, at the index it was told
        log = [e.data for e in db.log]
        await until(lambda: all(n.store.status().applied_index == db.last_index() for n in nodes))
        assert acked and len(set(acked.values())) == len(acked)
        # (the log may start at a snapshot: check the entries still there, and the machines)
        first = db.log[0].index if db.log else db.last_index() + 1
        for data, index in acked.items():
            if index >= first:
                assert log[index - first] == data
        for n in nodes:  # every store converges on the same state, holding each command once
            assert len(n.machine.items) == len(set(n.machine.items)) == db.last_index()
            assert set(acked) <= set(n.machine.items)
            assert n.machine.items == nodes[0].machine.items
        if forwards is not None:  # (and followers did forward: their commands got stamped)
            assert forwards.calls > 0
            assert any(b"@" in data for data in acked)
        # And no two stores ever led at the same time
        spans = []
        for n in nodes:
            start: float | None = None
            for at, term in n.changes:
                if term is not None:
                    start = at
                elif start is not None:
                    spans.append((start, at))
                    start = None
            if start is not None:
                spans.append((start, float("inf")))
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
        nursery.cancel_scope.cancel()


async def test_a_store_whose_database_is_down_at_start_reports_it_and_leads_once_it_answers(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a database that cannot be reached when the store starts
    db = FakeDatabase()
    a = node(db, "a")
    a.backend.down = True
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.store.serve)
        # Expect the fault reported (not ready) and writes refused
        await until(lambda: a.store.fault is not None)
        assert a.store.fault is not None and a.store.fault.resumes_by_itself
        assert "cannot be reached" in str(a.store.fault)
        with pytest.raises(Unavailable):
            await a.store.propose(b"x")
        # When it answers, expect the store to lead with the fault cleared, and take writes
        a.backend.down = False
        await until(lambda: a.store.leadership.term == 1)
        assert a.store.fault is None
        assert await a.store.propose(b"x") == (1, 0)
        nursery.cancel_scope.cancel()


def misconfigured() -> BackendDown:
    return BackendDown('role "taskd" does not exist (simulated)', misconfigured=True)


async def test_a_connection_refused_for_its_configuration_stops_a_starting_store(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a database that refuses the store's connection for its URL (a missing role)
    db = FakeDatabase()
    a = node(db, "a")
    a.backend.refusal = misconfigured()
    # Expect the store to stop at start, saying why and what to fix
    with pytest.raises(StartupError, match=r"does not exist.*Fix the --store URL"):
        await a.store.serve()


async def test_the_same_refusal_while_running_refuses_writes_until_it_passes(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader that took writes
    db = FakeDatabase()
    a = node(db, "a")
    async with trio.open_nursery() as nursery:
        await start(nursery, a)
        assert await a.store.propose(b"x") == (1, 0)
        # When its connections are refused for their configuration (a database being
        # restored, a role dropped and made again), expect writes refused, saying why
        a.backend.refusal = misconfigured()
        with pytest.raises(StorageFault, match="does not exist"):
            await a.store.propose(b"y")
        assert a.store.fault is not None and a.store.fault.resumes_by_itself
        # When the server takes them again, expect writes to resume without a restart
        a.backend.refusal = None
        await until(lambda: a.store.fault is None)
        assert (await a.store.propose(b"z"))[1] >= 1
        nursery.cancel_scope.cancel()


# -- forwarding ---------------------------------------------------------------------------------


async def test_a_follower_forwards_writes_and_answers_after_its_own_apply(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader and two followers that forward
    db, forwards = FakeDatabase(), MemoryForwards()
    a, b, c = (node(db, name, forwards=forwards) for name in "abc")
    async with trio.open_nursery() as nursery:
        for n in (a, b, c):
            await nursery.start(n.run)
        await a.store.propose(b"first")
        # When clients write on both followers at once
        results: dict[str, list[object]] = {}

        async def write(n: Node, items: list[bytes]) -> None:
            results[n.store.node_id] = await n.store.propose_many(items)
            # Expect the writer's node to hold its commands when it answers (read your write)
            assert all(item + b"@a" in n.machine.items for item in items)

        async with trio.open_nursery() as clients:
            clients.start_soon(write, b, [b"b1", b"b2"])
            clients.start_soon(write, c, [b"c1"])
        # Expect one log, written by the leader, the forwarded commands stamped by it, and each
        # caller's results those of the leader's own apply of the same entries
        assert db.log[0].data == b"first"
        assert sorted(e.data for e in db.log[1:]) == [b"b1@a", b"b2@a", b"c1@a"]
        for name, n in (("b", b), ("c", c)):
            for result in results[name]:
                assert isinstance(result, tuple)
                index, position = result
                assert a.machine.indexes[position] == index
                assert a.machine.items[position] == n.machine.items[position]
        # And the followers' writes were batched into few forwards
        assert forwards.calls <= 2
        nursery.cancel_scope.cancel()


async def test_a_forward_to_a_dead_leader_waits_for_the_next_one_even_if_it_is_this_node(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader that stops answering anyone (paused) and a follower
    db, forwards = FakeDatabase(), MemoryForwards(timeout=1.0)
    a, b = node(db, "a", forwards=forwards), node(db, "b", forwards=forwards)
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        await a.store.propose(b"x")
        del forwards.stores["a"]  # gone from the network: its forwards fail unsent
        a.hop.pause()
        # When a client writes on the follower
        started = trio.current_time()
        result = await b.store.propose(b"y")
        # Expect it applied once the follower took the lapsed lease, within the patience
        assert b.store.leadership.term == 2
        assert trio.current_time() - started <= b.store.forward_patience
        assert result == (2, 1) and [e.data for e in db.log] == [b"x", b"y"]
        a.hop.resume()  # (so that it can stop)
        nursery.cancel_scope.cancel()


async def test_a_forward_whose_round_failed_after_the_commit_is_answered_unknown_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader whose next append commits but loses its answer
    db, forwards = FakeDatabase(), MemoryForwards()
    a, b = node(db, "a", forwards=forwards), node(db, "b", forwards=forwards)
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        a.backend.fail_next_append = "after"
        # When a client writes on the follower
        with pytest.raises(Unavailable, match="unknown"):
            await b.store.propose(b"y")
        # Expect the caller told the outcome is unknown, and the command not sent again: the
        # log holds it once (the leader re-read it), and both nodes apply it once
        await until(lambda: a.store.fault is None)
        assert [e.data for e in db.log] == [b"y@a"]
        await until(lambda: b.machine.items == [b"y@a"])
        assert forwards.calls == 1
        nursery.cancel_scope.cancel()


async def test_a_follower_refuses_writes_with_the_fault_while_its_database_is_down(
    autojump_clock: trio.abc.Clock,
) -> None:
    db, forwards = FakeDatabase(), MemoryForwards()
    a, b = node(db, "a", forwards=forwards), node(db, "b", forwards=forwards)
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        b.backend.down = True
        await until(lambda: b.store.fault is not None)
        # Expect the write refused with the fault (not applied), nothing forwarded
        with pytest.raises(StorageFault, match="not applied"):
            await b.store.propose(b"y")
        assert forwards.calls == 0 and db.log == []
        nursery.cancel_scope.cancel()


async def test_the_leader_refuses_a_malformed_forward_and_a_forward_when_it_does_not_lead(
    autojump_clock: trio.abc.Clock,
) -> None:
    db, forwards = FakeDatabase(), MemoryForwards()
    a, b = node(db, "a", forwards=forwards), node(db, "b", forwards=forwards)
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        with pytest.raises(wire.WireError):
            await a.store.accept_forward(b"\xc1 not msgpack")
        with pytest.raises(NotLeader) as refused:
            await b.store.accept_forward(wire.encode_commands([b"z"]))
        assert refused.value.leader_hint == "a"
        assert db.log == []
        nursery.cancel_scope.cancel()


async def test_a_forwarded_write_the_follower_cannot_read_back_is_answered_in_bounded_time(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a follower whose own reads of the log fail right after its forward went out
    db, forwards = FakeDatabase(), MemoryForwards()
    a, b = node(db, "a", forwards=forwards), node(db, "b", forwards=forwards)
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        original = forwards.forward

        async def forward_then_lose_the_database(leader: str, blob: bytes) -> tuple[int, int]:
            placed = await original(leader, blob)
            b.backend.down = True
            return placed

        forwards.forward = forward_then_lose_the_database  # type: ignore[method-assign]
        # When a client writes on it
        started = trio.current_time()
        with pytest.raises(Unavailable, match="made this write durable") as answer:
            await b.store.propose(b"y")
        # Expect an answer within the patience, saying the write is durable, not to resend it
        assert trio.current_time() - started <= b.store.forward_patience + 1
        assert "send it again only with the same idempotency key" in str(answer.value)
        assert [e.data for e in db.log] == [b"y@a"]
        # and the follower to apply it once its database answers again
        b.backend.down = False
        await until(lambda: b.machine.items == [b"y@a"])
        nursery.cancel_scope.cancel()


# -- a database that forgets --------------------------------------------------------------------


async def test_a_database_that_lost_its_data_is_rebuilt_by_the_last_leader_from_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader and a follower that forwards, with commands acknowledged through both
    db, forwards = FakeDatabase(), MemoryForwards()
    a, b = node(db, "a", forwards=forwards), node(db, "b", forwards=forwards)
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        assert [await a.store.propose(b"x"), await b.store.propose(b"y")] == [(1, 0), (2, 1)]
        await until(lambda: b.machine.items == [b"x", b"y@a"])
        # When the database loses everything (a Redis restarted without persistence)
        db.wipe()
        # Expect the last leader to rebuild the log from its memory, at once, and to take
        # writes again in a term above every term seen before
        await until(lambda: a.store.rebuilds == 1 and a.store.leadership.term is not None)
        assert a.store.leadership.term is not None and a.store.leadership.term > 1
        assert db.snapshot is not None and db.snapshot.index == 2
        assert await a.store.propose(b"z") == (3, 2)
        # and the follower to drop its state for the database's, then go on forwarding
        await until(lambda: b.store.resets == 1)
        assert await b.store.propose(b"w") == (4, 3)
        await until(lambda: a.machine.items == b.machine.items == [b"x", b"y@a", b"z", b"w@a"])
        assert b.store.rebuilds == 0
        nursery.cancel_scope.cancel()


async def test_a_database_that_lost_its_data_is_rebuilt_by_a_follower_when_the_leader_is_stuck(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a follower holding every acknowledged command, and a leader that is stuck
    db = FakeDatabase()
    a, b = node(db, "a"), node(db, "b")
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        await a.store.propose_many([b"x", b"y"])
        await until(lambda: b.machine.items == [b"x", b"y"])
        a.hop.pause()
        # When the database loses everything
        db.wipe()
        started = trio.current_time()
        # Expect the follower to lead and rebuild the log from its memory, after giving the
        # last leader a lease period to do it
        await until(lambda: b.store.rebuilds == 1 and b.store.leadership.term is not None)
        assert TTL <= trio.current_time() - started < 3 * TTL
        assert await b.store.propose(b"z") == (3, 2)
        # and the old leader, unstuck, to follow the rebuilt database, not its own past
        a.hop.resume()
        await until(lambda: a.store.resets == 1 and a.machine.items == [b"x", b"y", b"z"])
        assert a.store.rebuilds == 0 and a.store.leadership.term is None
        nursery.cancel_scope.cancel()


async def test_a_database_restored_from_an_older_backup_is_rebuilt_with_every_task_row(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader with four commands durable, and a task table
    db = FakeDatabase()
    a = node(db, "a")
    a.store._all_rows = lambda: [{"id": item.decode()} for item in a.machine.items]
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await a.store.propose_many([b"1", b"2", b"3", b"4"])
        # When the database comes back from a backup taken after the second (same secret)
        db.log = db.log[:2]
        db.holder = None
        # Expect the leader, fenced on its next write, to rebuild the log and the table
        with pytest.raises((NotLeader, Unavailable)):
            await a.store.propose(b"5")
        await until(lambda: a.store.rebuilds == 1 and a.store.leadership.term is not None)
        assert db.snapshot is not None and db.snapshot.index == 4
        assert sorted(map(str, db.rows)) == ["1", "2", "3", "4"]
        assert await a.store.propose(b"5") == (5, 4)
        nursery.cancel_scope.cancel()


async def test_a_backup_restored_with_the_leaders_lease_still_in_it_is_noticed_and_rebuilt(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader and a follower with four commands applied
    db = FakeDatabase()
    a, b = node(db, "a"), node(db, "b")
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        await a.store.propose_many([b"1", b"2", b"3", b"4"])
        await until(lambda: b.machine.items == [b"1", b"2", b"3", b"4"])
        term = a.store.leadership.term
        # When the database comes back from a backup taken after the second, with the
        # leader's lease in it still running (restored within the lease), and nothing written
        db.log = db.log[:2]
        # Expect the leader to notice at a renewal, and to rebuild the log in a newer term
        await until(lambda: a.store.rebuilds == 1 and a.store.leadership.term is not None)
        assert term is not None and db.term > term
        assert db.snapshot is not None and db.snapshot.index == 4
        # while the follower kept what it applied (never reset to the database's shorter log)
        assert b.store.resets == 0 and b.machine.items == [b"1", b"2", b"3", b"4"]
        assert await a.store.propose(b"5") == (5, 4)
        await until(lambda: b.machine.items == [b"1", b"2", b"3", b"4", b"5"])
        nursery.cancel_scope.cancel()


async def test_a_write_queued_on_a_leader_that_stepped_down_is_forwarded_to_the_next(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Given a leader whose round hangs (its database calls stall) with a second write queued
    db, forwards = FakeDatabase(), MemoryForwards()
    a, b = node(db, "a", forwards=forwards), node(db, "b", forwards=forwards)
    async with trio.open_nursery() as nursery:
        await start(nursery, a, b)
        a.hop.pause()
        answers: dict[bytes, object] = {}

        async def write(data: bytes) -> None:
            try:
                answers[data] = await a.store.propose(data)
            except Unavailable as exc:
                answers[data] = exc

        nursery.start_soon(write, b"1")
        await until(lambda: a.store._round is not None)
        nursery.start_soon(write, b"2")
        # When it steps down (its lease could lapse) and comes back as a follower
        await until(lambda: a.store.leadership.term is None)
        a.hop.resume()
        await until(lambda: len(answers) == 2)
        # Expect the write in the hung round answered unknown (its append went through once
        # the calls resumed, still within the lease), and the queued one (never applied)
        # forwarded to the new leader and acknowledged; the new leader without waiting for
        # the lease the late renewal extended (the old leader gave it up)
        assert isinstance(answers[b"1"], Unavailable) and "unknown" in str(answers[b"1"])
        assert b.store.leadership.term == 2
        assert [e.data for e in db.log] == [b"1", b"2@b"] and answers[b"2"] == (2, 1)
        nursery.cancel_scope.cancel()
