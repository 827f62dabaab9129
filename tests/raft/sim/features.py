"""Which parts of contract §1 the core under test implements, found from its API.

Theory of operation: the simulation turns on a nemesis or a check only when the core has the
feature it exercises, so the same harness runs against today's core and tomorrow's. Each
feature is detected from the contract's names (a method, a config field, a message kind), not
from behaviour: a feature that is present but broken must fail the run, never switch itself
off. ``read_index`` is the one exception: on a leader with peers it raised
``NotImplementedError`` before reads were confirmed by heartbeats, and the clients treat that
answer as "reads not supported" (see ``clients``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from taskd.raft import MessageKind, RaftConfig, RaftCore


@dataclass(frozen=True, slots=True)
class Features:
    replication: bool  # the leader sends appends: entries commit on a quorum
    snapshots: bool  # SNAPSHOT to followers behind the compacted log
    membership: bool  # propose_conf_change, learners
    transfer: bool  # transfer_leadership / TIMEOUT_NOW
    unreachable: bool  # report_unreachable

    @classmethod
    def detect(cls, core_class: type[RaftCore]) -> Features:
        fields = {f.name for f in dataclasses.fields(RaftConfig)}
        kinds = {kind.name for kind in MessageKind}
        return cls(
            replication="max_inflight" in fields and "HEARTBEAT" in kinds,
            snapshots=hasattr(core_class, "report_snapshot")
            and hasattr(core_class, "snapshot_installed"),
            membership=hasattr(core_class, "propose_conf_change"),
            transfer=hasattr(core_class, "transfer_leadership") and "TIMEOUT_NOW" in kinds,
            unreachable=hasattr(core_class, "report_unreachable"),
        )
