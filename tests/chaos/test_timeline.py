"""The timeline of a run: faults, leader changes and writes per second, in time order.

Given the clean hand-made history of the checker tests plus two nemesis actions, Expect one line
per action, one per change in what a node says about the leader (not one per poll), and one
per second of writes, all sorted by time from the start of the run.
"""

from __future__ import annotations

from chaos.history import ClusterView, NemesisEvent
from chaos.timeline import timeline
from tests.chaos.test_checker import N1, clean


def test_the_timeline_tells_faults_leaders_and_writes_in_order():
    h = clean()
    h.meta["started"] = 0.5
    h.nemesis = [NemesisEvent(3.2, "kill", "kill leader n1"), NemesisEvent(5.0, "restart", "x")]
    h.views.append(ClusterView(N1, 1.5, "leader", 1, N1))  # the same opinion again: no line
    lines = timeline(h)
    assert sum(" nemesis " in line for line in lines) == 2
    assert sum(" view " in line for line in lines) == 4
    assert sum(" writes " in line for line in lines) == 5  # answered in seconds 0, 1, 2, 3, 4
    times = [float(line.split(" s ")[0]) for line in lines]
    assert times == sorted(times)
    assert any("kill leader n1" in line and line.startswith("   2.70 s") for line in lines)
