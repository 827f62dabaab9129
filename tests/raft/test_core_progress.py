"""The leader's per-follower flow control, state by state."""

from __future__ import annotations

from taskd.raft.progress import Progress, ProgressState


def replicating(match: int, sent_up_to: int) -> Progress:
    progress = Progress(match + 1, max_inflight=3)
    progress.update(match)
    progress.become_replicate()
    for last in range(match + 1, sent_up_to + 1):
        progress.sent(last)
    return progress


def test_replicate_pipelines_until_the_window_is_full_and_acks_free_it() -> None:
    progress = replicating(5, 8)
    assert progress.next == 9 and progress.paused()
    progress.update(6)
    progress.inflights.free_to(6)
    assert not progress.paused() and progress.next == 9


def test_a_refusal_at_a_known_agreement_rewinds_and_keeps_streaming() -> None:
    progress = replicating(5, 8)
    assert progress.rejected(7, hint=6, agreed=True)
    assert (progress.state, progress.next, len(progress.inflights)) == (
        ProgressState.REPLICATE,
        7,
        0,
    )


def test_any_other_refusal_falls_back_to_probing_from_the_hint() -> None:
    progress = replicating(5, 8)
    assert progress.rejected(8, hint=6, agreed=False)
    assert (progress.state, progress.next, progress.paused()) == (ProgressState.PROBE, 7, False)
    progress.sent(8)
    assert progress.paused()  # one probe in flight at a time
    assert not progress.rejected(3, hint=2, agreed=False)  # not the probe in flight: stale
    assert progress.rejected(6, hint=4, agreed=False)
    assert progress.next == 6  # never below match + 1
    assert progress.rejected(5, hint=5, agreed=True)
    assert (progress.state, progress.next) == (ProgressState.REPLICATE, 6)


def test_a_stale_refusal_in_replicate_changes_nothing() -> None:
    progress = replicating(5, 8)
    assert not progress.rejected(5, hint=1, agreed=False)
    assert (progress.state, progress.next) == (ProgressState.REPLICATE, 9)


def test_snapshot_state_waits_then_probes_after_it() -> None:
    progress = Progress(3, max_inflight=3)
    progress.become_snapshot(40)
    assert progress.paused()
    progress.become_probe()
    assert (progress.state, progress.next) == (ProgressState.PROBE, 41)
