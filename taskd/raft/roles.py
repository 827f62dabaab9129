"""The roles of a Raft node and the one table of how it moves between them.

Theory of operation: ``RaftCore`` changes ``role`` only through ``TRANSITIONS``, keyed by
(role, event); an event with no entry for the current role is a bug (the core raises). A
voter whose election timeout passes asks for pre-votes (``PRE_CANDIDATE``) when pre-vote is
on, and campaigns (``CANDIDATE``) once a majority would vote for it; a leader leaves only to
``FOLLOWER``: a higher term, a lost quorum (check-quorum), its own removal, or a disk that
could not keep entries it had already sent.
"""

from __future__ import annotations

from enum import Enum

from taskd.raft.types import MessageKind


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Event(Enum):
    PRE_VOTE_TIMEOUT = "election timeout, asking for pre-votes first"
    WON_PRE_VOTE = "won the pre-vote"
    ELECTION_TIMEOUT = "election timeout"
    TIMEOUT_NOW = "the leader asked it to campaign"
    WON_ELECTION = "won election"
    LOST_ELECTION = "a majority refused"
    HIGHER_TERM = "saw a higher term"
    LEADER_SEEN = "heard from the leader of its term"
    QUORUM_LOST = "did not hear from a majority within an election timeout"
    REMOVED = "left the voters"
    DISK_FAULT = "could not persist entries it had sent"


FROM_LEADER = (MessageKind.APPEND, MessageKind.HEARTBEAT, MessageKind.SNAPSHOT)
_ALL = (Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE, Role.LEADER)
_NOT_LEADER = (Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE)

TRANSITIONS: dict[tuple[Role, Event], Role] = {
    (Role.FOLLOWER, Event.PRE_VOTE_TIMEOUT): Role.PRE_CANDIDATE,
    (Role.PRE_CANDIDATE, Event.PRE_VOTE_TIMEOUT): Role.PRE_CANDIDATE,
    (Role.CANDIDATE, Event.PRE_VOTE_TIMEOUT): Role.PRE_CANDIDATE,
    (Role.PRE_CANDIDATE, Event.WON_PRE_VOTE): Role.CANDIDATE,
    (Role.FOLLOWER, Event.ELECTION_TIMEOUT): Role.CANDIDATE,
    (Role.CANDIDATE, Event.ELECTION_TIMEOUT): Role.CANDIDATE,
    (Role.FOLLOWER, Event.TIMEOUT_NOW): Role.CANDIDATE,
    (Role.PRE_CANDIDATE, Event.TIMEOUT_NOW): Role.CANDIDATE,
    (Role.CANDIDATE, Event.TIMEOUT_NOW): Role.CANDIDATE,
    (Role.CANDIDATE, Event.WON_ELECTION): Role.LEADER,
    (Role.PRE_CANDIDATE, Event.LOST_ELECTION): Role.FOLLOWER,
    (Role.CANDIDATE, Event.LOST_ELECTION): Role.FOLLOWER,
    **{(role, Event.HIGHER_TERM): Role.FOLLOWER for role in _ALL},
    **{(role, Event.LEADER_SEEN): Role.FOLLOWER for role in _NOT_LEADER},
    (Role.LEADER, Event.QUORUM_LOST): Role.FOLLOWER,
    **{(role, Event.REMOVED): Role.FOLLOWER for role in _ALL},
    (Role.LEADER, Event.DISK_FAULT): Role.FOLLOWER,
}
