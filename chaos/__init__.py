"""``python -m chaos``: a real taskd cluster under faults, and a Jepsen-style account of it.

Theory of operation. One trio process (the harness) owns everything of a run:

- ``cluster``: ``taskd`` node processes on loopback (ports 23000-23999, a temporary data dir
  each), started with ``--peers`` and one ``--peer-route`` per other member, so that every
  directed link a→b goes through its own TCP proxy;
- ``proxy``: those proxies (one ``Link`` per directed pair), which the nemesis cuts (existing
  connections dropped with a reset, new ones refused), heals and slows down; a link into a
  dead member refuses connects as the member's own port would;
- ``load``: clients submitting tasks over REST and gRPC to random members (some with
  dependencies, idempotency keys, delays, retry limits) and reading some back from another
  member; ``workers``: SDK-less workers leasing, completing and failing them over REST
  (optionally also ``--exec`` executors on every node);
- ``observe``: polls every node's ``GET /api/v1/cluster`` throughout, and does the final reads;
- ``nemesis``: a seeded schedule of faults (SIGKILL + restart, SIGTERM + restart and
  SIGSTOP/SIGCONT of the leader or a follower, partitions isolating the leader,
  majority/minority splits, one-way cuts, slow links), each healed after a while;
- ``run``: wires them for ``--duration`` seconds, heals everything, lets the cluster settle,
  reads every node back and records the whole ``history``.

``checker`` then judges the history (pure functions), ``report`` prints the table, and the run
dir receives ``history.json``, ``account.json``/``account.txt`` and every node's log
(``timeline`` retells a history in time order). The exit status is 0 only if no check found a
violation. Clients reach every node directly (as real clients would);
only node-to-node traffic is faulted.
"""
