"""The Raft store: the embedded Raft log as a ``taskd.store.seam.Store``, alone or in a cluster.

``driver`` is the trio loop around ``taskd.raft.RaftCore`` (group commit, snapshots, the
leadership signal, the read barrier, peers); ``disklog`` the segments, hard state, snapshots
(taken and installed) and recovery; ``durablemark`` how far the synced log reaches;
``diskfault`` what a failed write means; ``snapshotter`` the forked child that writes
snapshots. With peers: ``transport`` (the ``Transport`` protocol and the in-process
``MemoryTransport``), ``grpctransport`` (the internal gRPC service ``taskd.internal.v1.Raft``),
``wire`` (the compact encoding of message batches and forwarded commands) and ``forwarding``
(a follower's writes, coalesced into batched forwards to the leader).
"""

from __future__ import annotations

from taskd.store.raft.driver import RaftStore
from taskd.store.raft.grpctransport import GrpcTransport
from taskd.store.raft.transport import MemoryNetwork, MemoryTransport, PeerUnreachable, Transport

__all__ = [
    "GrpcTransport",
    "MemoryNetwork",
    "MemoryTransport",
    "PeerUnreachable",
    "RaftStore",
    "Transport",
]
