"""Every seed that once failed the simulation, with the bug it found, replayed on each run.

Add a seed here once the bug it found is fixed (see /work/wt/sim-findings.md for the
diagnosis of each): ``(seed, steps, profile, "one line: the bug")``. A seed stands for a run only as
long as the harness draws the same numbers from it: a change to the simulation that draws
differently (a new fault, another latency) can turn a seed into a different run. After such
a change, re-derive the seeds: run the new harness against the core from before the fix
(``git archive <commit> taskd`` into a scratch directory beside a copy of ``tests/raft/sim``)
and take seeds that fail there with the same invariant.
"""

from __future__ import annotations

import pytest

from tests.raft.sim.cluster import Simulation
from tests.raft.sim.setup import PROFILES

REGRESSIONS: list[tuple[int, int, str, str]] = [
    # Finding 1 (fixed in h7-core ff5a063): a late SNAPSHOT the log already held was
    # installed, dropping entries the follower had acknowledged. Fail at h7-core 7b2eae5.
    (9, 12000, "default", "core: a stale snapshot made a follower forget acknowledged entries"),
    (26, 12000, "default", "core: a stale snapshot made a follower forget acknowledged entries"),
    # Finding 2 (fixed in h7-core e97d8b9): after a disk-full discard a follower's commit
    # index stayed past its log (false acks, then an endless empty Ready). Fail at 3192f57.
    (10, 12000, "default", "core: discard_unpersisted left commit past the log"),
    (40, 12000, "default", "core: discard_unpersisted left commit past the log"),
    # Finding 3 (fixed in h7-core a3308ec): APPENDs carried entries not yet handed out to
    # persist; a failed write then told their proposers "not applied", yet they committed.
    (362, 10000, "default", "core: entries of a failed write reached a follower"),
    (345, 15000, "harsh", "core: entries of a failed write reached a follower"),
]


@pytest.mark.parametrize(
    ("seed", "steps", "profile", "bug"),
    REGRESSIONS,
    ids=[f"{profile}-seed{seed}" for seed, _, profile, _ in REGRESSIONS],
)
def test_regression(seed: int, steps: int, profile: str, bug: str) -> None:
    result = Simulation(seed, steps=steps, setup=PROFILES[profile], profile=profile).run()
    assert result.ok, f"{bug}\n{result.report()}"
