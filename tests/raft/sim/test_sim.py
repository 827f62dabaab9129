"""Many seeds of the whole-cluster simulation: every one must keep every invariant.

Given a seed, the cluster runs ``TASKD_SIM_STEPS`` events (default 10000) of faults, then heals;
expect no safety violation after any event, liveness after healing and no acknowledged write
lost. ``TASKD_SIM_SEEDS`` (default 200) sets how many seeds run; a failure prints the trace
tail and the ``make sim`` command that replays it.
"""

from __future__ import annotations

import os

import pytest

from tests.raft.sim.cluster import Simulation

SEEDS = int(os.environ.get("TASKD_SIM_SEEDS", "200"))
STEPS = int(os.environ.get("TASKD_SIM_STEPS", "10000"))


@pytest.mark.parametrize("seed", range(1, SEEDS + 1))
def test_seed_keeps_every_invariant(seed: int) -> None:
    result = Simulation(seed, steps=STEPS).run()
    assert result.ok, result.report()


def test_a_seed_replays_exactly() -> None:
    # Given one seed run twice, expect the very same run: same events, same outcome.
    first = Simulation(7, steps=2000, trace_lines=5000)
    second = Simulation(7, steps=2000, trace_lines=5000)
    a, b = first.run(), second.run()
    assert (a.events, a.sim_time_us, a.stats) == (b.events, b.sim_time_us, b.stats)
    assert first.trace.tail() == second.trace.tail()
