"""The durability seam and its stores.

- ``seam``: the ``Store`` protocol (propose, propose_many, leadership, read barrier, status,
  fault, durability) and the status types.
- ``statemachine``: the neutral ``StateMachine`` a store applies committed commands to.
- ``leadership``: the leadership signal a store raises (gained in a term, lost).
- ``memory``: the in-memory store (tests, and the conformance suite's reference).
- ``raft``: the embedded Raft store, the one a node runs on today.
- ``shared``: stores on a shared database (``SharedStore`` on a ``Backend``: PostgreSQL,
  Redis), one lease-holding leader among stateless nodes; docs/stores.md. Not yet wired to
  ``--store``: until then ``--store`` other than ``raft`` is refused at start-up.

Nothing here but ``raft`` imports ``taskd.raft`` or ``taskd.node`` (an import contract in
pyproject.toml).
"""
