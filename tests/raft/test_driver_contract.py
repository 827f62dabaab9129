"""The driver's side of the core contract: waiters keyed by (term, index), no-ops skipped,
a new leader's entries replacing the disk's suffix, and the read barrier.

A one-member store cannot lose leadership on its own, so the waiter tests drive a real core
with peers through a fake leader's messages and hand its ``Ready`` to the store's apply step,
with the store's waiters registered as ``propose`` registers them.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio

from taskd.errors import NotLeader, Unavailable
from taskd.raft.core import RaftConfig, RaftCore, Ready, Role
from taskd.raft.types import Entry, EntryKind, HardState, Message, MessageKind
from taskd.store.raft.disklog import DiskLog
from taskd.store.raft.driver import RaftStore
from tests.raft.fakes import AppendLog
from tests.raft.test_raftstore import running


def persist(core: RaftCore, ready: Ready) -> None:
    if ready.entries_to_persist:
        last = ready.entries_to_persist[-1]
        core.persisted(last.term, last.index)


def leader_of_term_1() -> RaftCore:
    core = RaftCore("n1", ["n1", "n2", "n3"], config=RaftConfig(seed=3, pre_vote=False))
    while core.role is Role.FOLLOWER:
        core.tick()
    core.step(Message(MessageKind.VOTE_RESPONSE, "n2", "n1", core.term))
    assert core.role is Role.LEADER and core.term == 1
    return core


def append_from_n2(core: RaftCore, prev: int, prev_term: int, *entries: Entry) -> None:
    commit = entries[-1].index
    core.step(Message(MessageKind.APPEND, "n2", "n1", 2, prev, prev_term, commit, tuple(entries)))


async def apply_all(store: RaftStore, core: RaftCore) -> list[Entry]:
    applied: list[Entry] = []
    while core.has_ready():
        ready = core.ready()
        persist(core, ready)
        if ready.committed_entries:
            await store._apply(core, ready)
            core.advance(ready)
            applied += ready.committed_entries
    return applied


async def test_a_caller_whose_index_another_leader_took_gets_not_leader(tmp_path: Path) -> None:
    # Given a leader of term 1 with a proposal waiting at index 2, persisted, not committed
    machine = AppendLog()
    store = RaftStore(tmp_path, machine)
    core = leader_of_term_1()
    index = core.propose(b"mine")
    waiter = store._wait_for(core.term, index, index)
    persist(core, core.ready())
    # When n2, leader of term 2, commits its own entry at that index (our no-op kept)
    append_from_n2(core, 1, 1, Entry(2, 2, b"theirs"))
    await apply_all(store, core)
    # Expect the caller told NotLeader (naming n2), never handed n2's entry's result
    assert waiter.event.is_set()
    assert isinstance(waiter.error, NotLeader) and waiter.error.leader_hint == "n2"
    assert waiter.results == []
    assert machine.items == [b"theirs"]  # the replica applies the leader's entry all the same


async def test_a_batch_cut_in_the_middle_says_how_much_applied(tmp_path: Path) -> None:
    # Given a batch at 2..3 of which the new leader kept 2 and replaced 3 with a no-op
    machine = AppendLog()
    store = RaftStore(tmp_path, machine)
    core = leader_of_term_1()
    batch = core.propose_many([b"a", b"b"])
    waiter = store._wait_for(core.term, batch.start, batch.stop - 1)
    persist(core, core.ready())
    append_from_n2(core, 2, 1, Entry(2, 3, b"", EntryKind.NOOP))
    applied = await apply_all(store, core)
    # Expect: the no-op reaches no state machine, and the caller learns the head applied
    assert [e.index for e in applied] == [1, 2, 3]
    assert machine.indexes == [2] and machine.items == [b"a"]
    assert isinstance(waiter.error, Unavailable)
    assert "first 1 of the 2 commands" in str(waiter.error)
    assert waiter.results == [(2, 0)]


async def test_a_caller_of_the_same_term_still_gets_its_own_result(tmp_path: Path) -> None:
    machine = AppendLog()
    store = RaftStore(tmp_path, machine)
    core = leader_of_term_1()
    index = core.propose(b"mine")
    waiter = store._wait_for(core.term, index, index)
    persist(core, core.ready())
    # n2 wins term 2 holding our entry, and commits it: it is ours, of term 1
    append_from_n2(core, 2, 1, Entry(2, 3, b"", EntryKind.NOOP))
    await apply_all(store, core)
    assert waiter.error is None and waiter.results == [(2, 0)]


def test_a_new_leaders_entries_replace_the_disks_suffix(tmp_path: Path) -> None:
    # Given a follower that persisted entries 1..3 of term 1, index 3 uncommitted
    disk = DiskLog(tmp_path)
    disk.open()
    core = RaftCore("n1", ["n1", "n2", "n3"])
    old = (Entry(1, 1, b"", EntryKind.NOOP), Entry(1, 2, b"a"), Entry(1, 3, b"b"))
    core.step(Message(MessageKind.APPEND, "n2", "n1", 1, 0, 0, 2, old))
    ready = core.ready()
    RaftStore._persist(disk, ready)
    persist(core, ready)
    # When the leader of term 2 replaces index 3
    new = Entry(2, 3, b"x")
    core.step(Message(MessageKind.APPEND, "n3", "n1", 2, 2, 1, 2, (new,)))
    ready = core.ready()
    RaftStore._persist(disk, ready)
    persist(core, ready)
    disk.close()
    # Expect the disk to hold the new entry in place of the old one, and reopen cleanly
    reopened = DiskLog(tmp_path)
    recovered = reopened.open()
    reopened.close()
    assert recovered.entries == [*old[:2], new]
    assert recovered.hard_state == HardState(2, None, 2)
    assert recovered.repairs == []


async def test_read_barrier_is_answered_through_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store whose fsync can be held (a round in flight)
    machine = AppendLog()
    store = RaftStore(tmp_path, machine)
    with pytest.raises(Unavailable):
        await store.read_barrier()  # not serving yet
    gate = threading.Event()
    gate.set()
    real_sync = DiskLog.sync

    def held_sync(self: DiskLog) -> None:
        gate.wait()
        real_sync(self)

    monkeypatch.setattr(DiskLog, "sync", held_sync)
    async with running(store):
        await store.read_barrier()
        gate.clear()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.propose, b"x")
            await trio.testing.wait_all_tasks_blocked()  # x's round waits in fsync
            done: list[int] = []

            async def barrier() -> None:
                await store.read_barrier()
                done.append(store.status().applied_index)

            nursery.start_soon(barrier)
            try:
                await trio.testing.wait_all_tasks_blocked()
                # When the round is held, the barrier (its read state comes from a round) waits
                assert done == []
            finally:
                gate.set()  # never leave the fsync thread held, even when the test fails
        # Expect it answered once the loop ran, with everything committed before it applied
        assert done and done[0] >= 1
        assert machine.items == [b"x"]
