"""Deterministic simulation of a whole Raft cluster in one process (``make sim SEED=n``).

Theory of operation: every member is a real ``taskd.raft.RaftCore`` driven by a stand-in for
the trio driver (``node.SimNode``) that follows the driver protocol of contract §1 to the
letter: take a ``Ready``, apply its committed entries and ``advance``, write its hard state and
entries to a simulated disk and "fsync" them (an event with latency), call ``persisted`` and
only then send its messages. A crash drops everything that was not yet synced (sometimes a
prefix of the in-flight write survives, as on a real disk) and rebuilds the core from what the
disk holds. The network (``network``) delays, drops, duplicates and reorders messages and
cuts links; clients (``clients``) propose and read through whoever leads; a nemesis
(``nemesis``) crashes, freezes and restarts nodes, fills their disks, partitions the network,
skews clocks, changes the membership and transfers leadership. After EVERY event the
checkers (``checkers``) verify Raft's safety properties; at the end (``cluster``) the network
heals, every member restarts, and liveness and "no acknowledged write lost" are checked.

Everything is driven by one discrete-event loop (``loop``) on a mock clock (integer
microseconds) and one ``random.Random(seed)``: the same seed gives the same run, event for
event, so a failing seed replays exactly. We deliberately do NOT run the cluster under trio's
``MockClock``: trio's scheduler randomises the order in which runnable tasks resume (on
purpose, to shake out ordering assumptions), which would make two runs of one seed diverge
and break exact replay. A plain heap of (time, sequence number, action) has no such freedom.

Modules, one concept each: ``loop`` (events and the clock), ``trace`` (what happened, printed
on failure), ``statemachine`` (a hash-chained list of applied commands), ``disk`` (what
survives a crash), ``node`` (the driver), ``network``, ``clients``, ``nemesis``, ``checkers``
(safety after every event), ``membership`` (the configuration as the harness sees it, and
its changes), ``features`` (which parts of contract §1 the core under test has), ``setup``
(everything a seed decides), ``cluster`` (one run: wiring, the end phase, the result) and
``__main__`` (the command line behind ``make sim``).
"""
