"""The Raft store: the embedded Raft log as a ``taskd.store.seam.Store``.

``driver`` is the trio loop around ``taskd.raft.RaftCore`` (group commit, snapshots, the
leadership signal, the read barrier); ``disklog`` the segments, hard state and recovery;
``durablemark`` how far the synced log reaches; ``diskfault`` what a failed write means;
``snapshotter`` the forked child that writes snapshots.
"""

from __future__ import annotations

from taskd.store.raft.driver import RaftStore

__all__ = ["RaftStore"]
