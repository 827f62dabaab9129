"""Stores on a shared database (PostgreSQL, Redis): stateless nodes in front of one database.

``backend``: what a database must offer (the ``Backend`` protocol); ``driver``: the store the
node runs on any backend (leadership by lease with fencing, group commit, followers tailing the
log), with ``prefix`` (the durable prefix a failed round rolls back to), ``threads`` (how
blocking calls leave the loop) and ``faults`` (what a failure tells the operator);
``postgres`` (with ``pgschema`` and ``pgerrors``) and ``redis`` (with ``redisurl``, its
``--store`` URL checked): the two backends. See
docs/stores.md.
"""
