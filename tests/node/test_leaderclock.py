"""Leader time follows the monotonic clock, and never runs behind what the log holds."""

from __future__ import annotations

from taskd.node.app.leaderclock import LeaderClock


def test_a_wall_clock_step_does_not_move_leader_time() -> None:
    wall, mono = [1_000_000.0], [50.0]
    clock = LeaderClock(wall=lambda: wall[0], monotonic=lambda: mono[0])
    assert clock() == 1_000_000.0
    # When the wall clock jumps an hour back (or forward) while 2 s pass
    wall[0] -= 3600
    mono[0] += 2.0
    # Expect leader time to have moved by exactly those 2 s
    assert clock() == 1_000_002.0
    wall[0] += 7200
    assert clock() == 1_000_002.0


def test_a_restart_with_the_wall_clock_set_back_stays_after_the_log() -> None:
    # Given a log whose newest command was stamped at t=2,000,000
    clock = LeaderClock(wall=lambda: 1_000_000.0, monotonic=lambda: 10.0)
    # When the node starts with a wall clock far behind it
    clock.not_before(2_000_000.0)
    # Expect every new stamp to come after the log's newest
    assert clock() > 2_000_000.0
    before = clock()
    clock.not_before(1_000.0)  # an older time changes nothing
    assert clock() == before
