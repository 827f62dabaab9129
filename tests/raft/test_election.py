"""RaftCore with peers in its tables, driven tick by tick and message by message.

No network and no clock: the test is the driver. It hands the core logical ticks and the
messages a fake peer would send, and reads back what the core decided, exactly.
"""

from __future__ import annotations

import pytest

from taskd.errors import NotLeader
from taskd.raft.core import RaftConfig, RaftCore, Ready, Role
from taskd.raft.types import Entry, EntryKind, Message, MessageKind, ReadState, SoftState

VOTERS = ["n1", "n2", "n3"]
# Plain Raft elections here (pre-vote has its own tests in test_core_election.py).
CONFIG = RaftConfig(election_ticks=10, heartbeat_ticks=1, seed=7, pre_vote=False)


def follower(config: RaftConfig = CONFIG) -> RaftCore:
    return RaftCore("n1", VOTERS, config=config)


def persist(core: RaftCore, ready: Ready) -> None:
    if ready.entries_to_persist:
        last = ready.entries_to_persist[-1]
        core.persisted(last.term, last.index)


def msg(kind: MessageKind, src: str, term: int, **fields: object) -> Message:
    return Message(kind, src, "n1", term, **fields)  # type: ignore[arg-type]


def elect(core: RaftCore) -> None:
    """Campaign and win with n2's vote."""
    while core.role is Role.FOLLOWER:
        core.tick()
    core.step(msg(MessageKind.VOTE_RESPONSE, "n2", core.term))
    assert core.role is Role.LEADER


def test_a_follower_campaigns_after_exactly_its_randomised_timeout() -> None:
    core = follower()
    # The timeout drawn for seed 7 (a golden value: a changed generator breaks replays).
    assert core.timeout == 17
    for _ in range(16):
        core.tick()
    assert (core.role, core.term) == (Role.FOLLOWER, 0)
    assert not core.has_ready()
    core.tick()
    assert (core.role, core.term, core.vote) == (Role.CANDIDATE, 1, "n1")
    ready = core.ready()
    assert ready.must_sync and ready.hard_state is not None and ready.hard_state.vote == "n1"
    assert ready.soft_state == SoftState("candidate", None)
    assert [(m.kind, m.dst, m.term) for m in ready.messages] == [
        (MessageKind.VOTE, "n2", 1),
        (MessageKind.VOTE, "n3", 1),
    ]
    # A candidate nobody answers campaigns again after its next timeout, in a new term.
    assert core.timeout == 14
    for _ in range(13):
        core.tick()
    assert core.term == 1
    core.tick()
    assert (core.role, core.term) == (Role.CANDIDATE, 2)


def test_two_cores_with_the_same_seed_decide_identically_and_other_seeds_differ() -> None:
    def script(seed: int) -> list[object]:
        core = follower(RaftConfig(election_ticks=10, seed=seed, pre_vote=False))
        seen: list[object] = []
        for step in range(120):
            core.tick()
            if step == 60:
                core.step(msg(MessageKind.APPEND, "n2", core.term + 1))
            seen.append((core.role, core.term, core.elapsed, core.timeout))
            if core.has_ready():
                seen.append(core.ready())
        return seen

    assert script(7) == script(7)
    assert script(7) != script(8)


def test_a_quorum_of_votes_makes_a_leader_with_a_noop() -> None:
    core = follower()
    for _ in range(core.timeout):
        core.tick()
    core.ready()
    core.step(msg(MessageKind.VOTE_RESPONSE, "n3", 1, reject=True))
    assert core.role is Role.CANDIDATE
    core.step(msg(MessageKind.VOTE_RESPONSE, "n2", 1))
    assert (core.role, core.leader) == (Role.LEADER, "n1")
    ready = core.ready()
    assert ready.soft_state == SoftState("leader", "n1")
    assert ready.entries_to_persist == [Entry(1, 1, b"", EntryKind.NOOP)]
    # With peers, its own disk is not a majority: nothing commits before a follower answers.
    persist(core, ready)
    assert core.log.committed == 0


def test_one_vote_per_term_and_only_for_an_up_to_date_log() -> None:
    core = follower()
    core.log.append(3, [b"a", b"b"])
    core.step(msg(MessageKind.VOTE, "n2", 4, index=1, log_term=3))  # shorter log: refused
    core.step(msg(MessageKind.VOTE, "n3", 4, index=2, log_term=3))  # as long: granted
    core.step(msg(MessageKind.VOTE, "n2", 4, index=9, log_term=3))  # already voted: refused
    answers = [(m.dst, m.reject) for m in core.ready().messages]
    assert answers == [("n2", True), ("n3", False), ("n2", True)]
    assert (core.term, core.vote) == (4, "n3")


def test_a_higher_term_makes_a_leader_step_down_and_stale_messages_are_refused() -> None:
    core = follower()
    elect(core)
    core.ready()
    core.step(msg(MessageKind.APPEND, "n3", 0))  # from an older term: answered with ours
    (answer,) = core.ready().messages
    assert (answer.kind, answer.term, answer.reject) == (MessageKind.APPEND_RESPONSE, 1, True)
    core.step(msg(MessageKind.VOTE_RESPONSE, "n3", 5, reject=True))
    assert (core.role, core.term, core.vote, core.leader) == (Role.FOLLOWER, 5, None, None)
    with pytest.raises(NotLeader):
        core.propose(b"x")


def test_a_new_leader_cuts_the_unstable_tail_and_late_acks_for_it_are_ignored() -> None:
    # Given a leader of term 1 whose no-op and two proposals were handed out, none persisted
    core = follower()
    elect(core)
    core.propose_many([b"a", b"b"])
    handed = core.ready()
    assert [(e.term, e.index) for e in handed.entries_to_persist] == [(1, 1), (1, 2), (1, 3)]
    # When n2 leads term 2 with another entry at index 2 (it has our no-op at 1)
    new = Entry(2, 2, b"x")
    core.step(msg(MessageKind.APPEND, "n2", 2, index=1, log_term=1, entries=(new,), commit=0))
    # Expect the tail from 2 on cut and the leader's entry in its place
    assert (core.role, core.leader, core.term) == (Role.FOLLOWER, "n2", 2)
    assert [(e.term, e.index, e.data) for e in core.log.entries] == [(1, 1, b""), (2, 2, b"x")]
    # and the late fsync acknowledgement of the old batch never marks the new entry stable
    core.persisted(1, 3)  # that index is gone
    core.persisted(1, 2)  # that index now holds term 2's entry
    assert core.log.stable == 0
    core.persisted(1, 1)  # the no-op is still ours: stable
    assert core.log.stable == 1
    ready = core.ready()
    assert ready.entries_to_persist == [new]  # handed out again, to replace the disk's
    (answer,) = ready.messages
    assert (answer.kind, answer.index, answer.reject) == (MessageKind.APPEND_RESPONSE, 2, False)
    persist(core, ready)
    assert core.log.stable == 2


def test_an_append_that_does_not_match_the_previous_entry_is_refused() -> None:
    core = follower()
    core.step(msg(MessageKind.APPEND, "n2", 1, index=5, log_term=1, entries=(Entry(1, 6, b"z"),)))
    (answer,) = core.ready().messages
    assert (answer.reject, core.last_index, core.leader) == (True, 0, "n2")


def test_a_follower_commits_up_to_the_leaders_commit_index_once_durable() -> None:
    core = follower()
    entries = (Entry(1, 1, b"", EntryKind.NOOP), Entry(1, 2, b"a"), Entry(1, 3, b"b"))
    core.step(msg(MessageKind.APPEND, "n2", 1, index=0, log_term=0, entries=entries, commit=2))
    ready = core.ready()
    assert ready.committed_entries == []  # committed, but not yet on this node's disk
    persist(core, ready)
    assert [e.index for e in core.ready().committed_entries] == [1, 2]


def test_a_committed_entry_is_never_cut() -> None:
    core = follower()
    entries = (Entry(1, 1, b"a"), Entry(1, 2, b"b"))
    core.step(msg(MessageKind.APPEND, "n2", 1, index=0, log_term=0, entries=entries, commit=2))
    core.ready()
    # An append from before the commit index (a stale or lying leader) changes nothing: the
    # answer says the log matches up to the commit index.
    core.step(msg(MessageKind.APPEND, "n3", 2, index=1, log_term=1, entries=(Entry(2, 2, b"x"),)))
    assert [e.data for e in core.log.entries] == [b"a", b"b"]
    (answer,) = core.ready().messages
    assert (answer.index, answer.reject) == (2, False)
    # and the log itself refuses to cut a committed entry (a bug, not an input).
    with pytest.raises(AssertionError, match="committed"):
        core.log.merge([Entry(2, 2, b"x")])


def test_read_index_waits_for_the_leaders_first_commit_then_answers_at_once() -> None:
    core = RaftCore("n1", ["n1"])
    with pytest.raises(NotLeader):
        core.read_index("early")
    core.tick()
    core.read_index("r1")  # the no-op is not committed: the commit index is not current
    ready = core.ready()
    assert ready.read_states == []
    persist(core, ready)
    assert core.ready().read_states == [ReadState(1, "r1")]
    core.propose(b"a")
    core.read_index("r2")  # a is not committed: the read need not see it
    assert core.ready().read_states == [ReadState(1, "r2")]


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        RaftConfig(election_ticks=1, heartbeat_ticks=1)


def test_a_repeated_or_partly_new_append_cuts_nothing_it_already_holds() -> None:
    core = follower()
    first = (Entry(1, 1, b"a"), Entry(1, 2, b"b"))
    core.step(msg(MessageKind.APPEND, "n2", 1, index=0, log_term=0, entries=first))
    persist(core, core.ready())
    # A delayed duplicate of the same append, then one overlapping it with a new entry
    core.step(msg(MessageKind.APPEND, "n2", 1, index=0, log_term=0, entries=first[:1]))
    core.step(
        msg(MessageKind.APPEND, "n2", 1, index=1, log_term=1, entries=(first[1], Entry(1, 3, b"c")))
    )
    assert [e.data for e in core.log.entries] == [b"a", b"b", b"c"]
    assert core.log.stable == 2  # nothing held was cut, so nothing needs writing again
    assert core.ready().entries_to_persist == [Entry(1, 3, b"c")]
