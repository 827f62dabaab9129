"""The nemesis schedule is a pure function of the seed.

Given a seed, a duration and a cluster size, Expect the same faults every time, every fault
healed before the run ends and before the next one starts, several kinds over a long run, and
only process faults (kill, pause) for a single node, which has no network to cut.
"""

from __future__ import annotations

import itertools

from chaos.nemesis import WARMUP, schedule


def test_the_same_seed_gives_the_same_schedule():
    assert schedule(7, 60, 3) == schedule(7, 60, 3)
    assert schedule(7, 60, 3) != schedule(8, 60, 3)


def test_faults_do_not_overlap_and_end_before_the_run_does():
    faults = schedule(3, 120, 3)
    assert faults[0].at >= WARMUP
    for before, after in itertools.pairwise(faults):
        assert before.at + before.hold < after.at
    assert faults[-1].at + faults[-1].hold <= 120
    assert len({f.kind for f in faults}) >= 4


def test_a_single_node_gets_only_process_faults():
    kinds = {f.kind for seed in range(20) for f in schedule(seed, 60, 1)}
    assert kinds <= {"kill", "pause", "kill-all"}
    assert "kill" in kinds
