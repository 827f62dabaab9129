"""Consensus: a replicated, durable log of opaque commands, as a pure state machine.

Theory of operation: ``RaftCore`` (``core.py``) is Raft without I/O, clock or randomness, in
the style of etcd-io/raft. Its driver (``taskd.node.raftstore``) feeds it proposals, ticks and
messages, and asks it for a ``Ready``: the hard state and entries to persist, the messages to
send once those are durable, and the committed entries to apply to the state machine
(``taskd.store.statemachine``, which Raft does not import). The
on-disk record format lives in ``records.py``; the files themselves are the driver's business.

Raft never interprets the bytes of an entry. An entry with empty ``data`` is Raft's own no-op
(appended by every new leader); state machines ignore it.

What is here today is a one-member cluster: the node elects itself at start-up, and an entry
commits once it is persisted locally. Peers, elections with votes, replication, snapshots sent
to followers and membership changes come in a later issue; the types already have their place.
"""

from __future__ import annotations

from taskd.errors import NotLeader, Unavailable
from taskd.raft.core import MemberStatus, RaftCore, RaftStatus, Ready, Role
from taskd.raft.types import Entry, HardState, Message, MessageKind, SnapshotMeta

__all__ = [
    "Entry",
    "HardState",
    "MemberStatus",
    "Message",
    "MessageKind",
    "NotLeader",
    "RaftCore",
    "RaftStatus",
    "Ready",
    "Role",
    "SnapshotMeta",
    "Unavailable",
]
