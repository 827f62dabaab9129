"""PostgreSQL and Redis stores (the durability seam of ``taskd.node.store.Store``).

Empty in this release: a node runs on the embedded Raft store only, and ``--store`` with a
``postgres://`` or ``redis://`` URL is refused at start-up with a clear message. The package
exists so the import contracts in pyproject.toml already hold for it.
"""
