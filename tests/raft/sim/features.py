"""Which parts of contract §1 the core under test implements, found by asking it.

Theory of operation: the simulation turns on a nemesis or a check only when the core has the
feature it exercises, so the same harness runs against the core as it grows. The core's
unfinished parts are stubs that raise ``NotImplementedError``, so a feature is detected by
calling its entry point on a throwaway follower: ``NotImplementedError`` means absent, any
other answer (``NotLeader`` included) means present. Replication has no entry point of its
own: ``_replicates`` elects a leader among three throwaway cores on a perfect, synchronous
network and looks for an ``APPEND`` or ``HEARTBEAT`` from it.

Only presence is detected, never correctness: a feature that is present but broken runs and
fails the seeds. ``read_index`` is probed by the clients themselves (``clients``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from taskd.raft import Message, MessageKind, RaftConfig, RaftCore

_PROBE_VOTERS = ("p1", "p2", "p3")


def _implemented(call: Callable[[], object]) -> bool:
    try:
        call()
    except NotImplementedError:
        return False
    except Exception:  # NotLeader, ValueError, ...: the method exists and answered
        return True
    return True


def _replicates(core_class: type[RaftCore]) -> bool:
    """Elect a leader among three cores (every message delivered at once, every write
    persisted at once) and see whether it sends appends or heartbeats."""
    cores = {
        node: core_class(
            node, _PROBE_VOTERS, config=RaftConfig(election_ticks=10, heartbeat_ticks=2, seed=i)
        )
        for i, node in enumerate(_PROBE_VOTERS)
    }
    replicating = {MessageKind.APPEND, MessageKind.HEARTBEAT}
    for _ in range(200):
        for core in cores.values():
            core.tick()
        for _ in range(20):
            inbox: list[Message] = []
            for core in cores.values():
                if not core.has_ready():
                    continue
                ready = core.ready()
                if ready.entries_to_persist:
                    last = ready.entries_to_persist[-1]
                    core.persisted(last.term, last.index)
                core.advance(ready)
                if core.role.value == "leader" and any(
                    m.kind in replicating for m in ready.messages
                ):
                    return True
                inbox.extend(ready.messages)
            if not inbox:
                break
            for message in inbox:
                cores[message.dst].step(message)
    return False


@dataclass(frozen=True, slots=True)
class Features:
    replication: bool  # the leader sends appends: entries commit on a quorum
    snapshots: bool  # SNAPSHOT to followers behind the compacted log
    membership: bool  # propose_conf_change, learners, conf_at
    transfer: bool  # transfer_leadership / TIMEOUT_NOW
    unreachable: bool  # report_unreachable

    @classmethod
    def detect(cls, core_class: type[RaftCore]) -> Features:
        found = _detected.get(core_class)
        if found is None:
            found = _detected[core_class] = cls._probe(core_class)
        return found

    @classmethod
    def _probe(cls, core_class: type[RaftCore]) -> Features:
        def follower() -> RaftCore:
            return core_class(_PROBE_VOTERS[0], _PROBE_VOTERS)

        def conf_probe() -> object:
            core = follower()
            return core.conf_at(0), core.propose_conf_change(add="p4")

        return cls(
            replication=_replicates(core_class),
            snapshots=_implemented(lambda: follower().report_snapshot("p2", False)),
            membership=_implemented(conf_probe),
            transfer=_implemented(lambda: follower().transfer_leadership()),
            unreachable=_implemented(lambda: follower().report_unreachable("p2")),
        )


_detected: dict[type[RaftCore], Features] = {}
