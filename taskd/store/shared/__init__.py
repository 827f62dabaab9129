"""Stores on a shared database (PostgreSQL, Redis): stateless nodes in front of one database.

``backend``: what a database must offer (the ``Backend`` protocol); ``driver``: the store the
node runs on any backend (leadership by lease with fencing, group commit, followers tailing the
log); ``postgres`` and ``redis``: the two backends. See docs/stores.md.
"""
