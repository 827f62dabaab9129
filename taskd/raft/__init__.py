"""Consensus: a replicated, durable log of opaque commands, as a pure state machine.

Theory of operation: ``RaftCore`` (``core.py``) is Raft without I/O, clock or randomness, in
the style of etcd-io/raft. Its driver (``taskd.store.raft.driver``) feeds it proposals, ticks and
messages, and asks it for a ``Ready``: the hard state and entries to persist, the messages to
send once those are durable, and the committed entries to apply to the state machine
(``taskd.store.statemachine``, which Raft does not import). The
on-disk record format lives in ``records.py``; the files themselves are the driver's business.

Raft never interprets the bytes of an entry. Each entry has a kind (``EntryKind``): only
``NORMAL`` entries are commands; a ``NOOP`` (appended by every new leader) and a
``CONF_CHANGE`` are Raft's own, and the driver never hands them to the state machine.

The core runs a one-member cluster (the node elects itself on its first tick, an entry
commits once persisted locally) and a real cluster: pre-vote elections with check-quorum,
pipelined replication with fast backtracking, ReadIndex, membership changes one server at a
time through the log (learners first), snapshots sent to followers that fell behind, and
leadership transfer. ``core.py`` says what is and is not implemented and where each rule
lives.
"""

from __future__ import annotations

from taskd.errors import NotLeader, Unavailable
from taskd.raft.confstate import ConfChangeError
from taskd.raft.core import MemberStatus, RaftConfig, RaftCore, RaftStatus, Ready, Role
from taskd.raft.types import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageKind,
    ReadState,
    SnapshotMeta,
    SoftState,
    decode_conf,
    encode_conf,
)

__all__ = [
    "ConfChangeError",
    "ConfState",
    "Entry",
    "EntryKind",
    "HardState",
    "MemberStatus",
    "Message",
    "MessageKind",
    "NotLeader",
    "RaftConfig",
    "RaftCore",
    "RaftStatus",
    "ReadState",
    "Ready",
    "Role",
    "SnapshotMeta",
    "SoftState",
    "Unavailable",
    "decode_conf",
    "encode_conf",
]
