"""The parameters of one run, all drawn from its seed (``Setup.draw``).

Theory of operation: a seed decides the cluster (three or five voters and two spare nodes
that may join), the Raft knobs (flow control, promotion lag, pre-vote and check-quorum on or
off), the disk (fsync latency, snapshot interval, torn writes), the network (latency, loss,
duplication, stragglers), the client load and the nemesis (its pace and the weight of each
fault). Drawing everything up front, in a fixed order, keeps a seed's run the same when the
run itself changes what it draws later. Times are in microseconds of the mock clock.
``PROFILES`` names the ways to draw: ``default`` (CI) and ``harsh`` (for hunting).

The flow-control knobs stay large enough (at least 16 entries a message, 2 in flight) that a
leader with a long uncommitted backlog catches its followers up well within the liveness
bound (seed 3269 of an earlier harness: one entry per message took longer than 10 s).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass

from taskd.raft import RaftConfig
from tests.raft.sim.clients import ClientProfile
from tests.raft.sim.loop import MS, SECOND
from tests.raft.sim.nemesis import NemesisProfile
from tests.raft.sim.network import NetworkProfile
from tests.raft.sim.node import NodeTiming


@dataclass(frozen=True, slots=True)
class Setup:
    voters: tuple[str, ...]
    spares: tuple[str, ...]
    raft: RaftConfig
    timing: NodeTiming
    network: NetworkProfile
    clients: ClientProfile
    nemesis: NemesisProfile

    @classmethod
    def draw(cls, rng: random.Random) -> Setup:
        size = rng.choice((3, 3, 3, 5))
        ids = tuple(f"n{i}" for i in range(1, size + 3))
        return cls(
            voters=ids[:size],
            spares=ids[size:],
            raft=RaftConfig(
                election_ticks=10,
                heartbeat_ticks=2,
                max_append_entries=rng.choice((16, 64, 1024)),
                max_inflight=rng.choice((2, 8, 64)),
                promote_lag=rng.choice((0, 5, 1000)),
                pre_vote=rng.random() < 0.8,
                check_quorum=rng.random() < 0.8,
            ),
            timing=NodeTiming(
                tick_us=10 * MS,
                fsync_us=(200, rng.choice((2, 5, 15)) * MS),
                round_us=50,
                snapshot_every=rng.choice((5, 20, 50, 200)),
                snapshot_us=(1 * MS, 20 * MS),
                torn_write=0.5,
                max_batch=rng.choice((None, None, 1, 8, 64)),
            ),
            network=NetworkProfile(
                delay_us=(100, rng.choice((2, 10, 30)) * MS),
                drop=rng.choice((0.0, 0.01, 0.05, 0.15)),
                duplicate=rng.choice((0.0, 0.02, 0.1)),
                snapshot_us=(5 * MS, 50 * MS),
                unreachable_reports=0.3,
                straggle=rng.choice((0.0, 0.005, 0.02)),
                straggle_us=1 * SECOND,
            ),
            clients=ClientProfile(
                clients=rng.randint(1, 4),
                propose_us=(2 * MS, 30 * MS),
                read_chance=0.15,
                retry_us=5 * MS,
            ),
            nemesis=NemesisProfile(
                every_us=(20 * MS, 300 * MS),
                downtime_us=(50 * MS, 2 * SECOND),
                partition_us=(100 * MS, 2 * SECOND),
                majority_chance=0.1,
                skew=0.1,
                weights={
                    "crash": 3,
                    "partition": 2,
                    "isolate_leader": 2,
                    "one_way": 1,
                    "skew": 1,
                    "pause": 2,
                    "disk_full": 1,
                    "transfer": 1,
                    "membership": 1,
                },
            ),
        )


def draw_harsh(rng: random.Random) -> Setup:
    """The default draw, then much more trouble: faults every 5-60 ms, a majority down more
    often, more loss, duplication and stragglers, wider clock skew, snapshots every few
    entries. For hunting; seeds found here replay with ``PROFILE=harsh``."""
    setup = Setup.draw(rng)
    nemesis = dataclasses.replace(
        setup.nemesis, every_us=(5 * MS, 60 * MS), majority_chance=0.3, skew=0.2
    )
    network = dataclasses.replace(
        setup.network, drop=rng.choice((0.05, 0.2, 0.3)), duplicate=0.1, straggle=0.03
    )
    timing = dataclasses.replace(setup.timing, snapshot_every=rng.choice((3, 10)))
    return dataclasses.replace(setup, nemesis=nemesis, network=network, timing=timing)


PROFILES: dict[str, Callable[[random.Random], Setup]] = {
    "default": Setup.draw,
    "harsh": draw_harsh,
}
