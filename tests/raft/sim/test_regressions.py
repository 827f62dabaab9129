"""Every seed that once failed the simulation, with the bug it found, replayed on each run.

Add a seed here once the bug it found is fixed (see /work/wt/sim-findings.md for the
diagnosis of each): ``(seed, steps, "one line: the bug")``.
"""

from __future__ import annotations

import pytest

from tests.raft.sim.cluster import Simulation

REGRESSIONS: list[tuple[int, int, str]] = [
    (1049, 30000, "harness: a SNAPSHOT dropped when sent was never reported to the leader"),
]


@pytest.mark.parametrize(
    ("seed", "steps", "bug"), REGRESSIONS, ids=[f"seed{s}" for s, _, _ in REGRESSIONS]
)
def test_regression(seed: int, steps: int, bug: str) -> None:
    result = Simulation(seed, steps=steps).run()
    assert result.ok, f"{bug}\n{result.report()}"
