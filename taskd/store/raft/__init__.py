"""The Raft store: the embedded Raft log as a ``taskd.store.seam.Store``.

Its driver, disk log and snapshotter live in ``taskd.node`` for now (``raftstore``,
``disklog``, ``snapshotter``); this package is where they move, and what the rest of taskd
imports the Raft store from.
"""

from __future__ import annotations

from taskd.node.raftstore import RaftStore

__all__ = ["RaftStore"]
