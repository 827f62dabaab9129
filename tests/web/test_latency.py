"""The latency window: percentiles within a bucket's precision, forgetting exactly one minute."""

from __future__ import annotations

import pytest

from taskd.web.latency import GROWTH, WINDOW, LatencyWindow, bucket_of, value_of


def test_every_value_is_shown_within_half_a_bucket():
    # Given values from 20 µs to a day
    for ms in (0.02, 0.5, 1.0, 7.3, 42.0, 999.0, 12_345.0, 86_400_000.0):
        # When it is bucketed and shown
        shown = value_of(bucket_of(ms))
        # Expect the shown value within 2.5 % of the true one
        assert abs(shown - ms) / ms <= (GROWTH - 1) / 2 + 1e-9


def test_percentiles_rank_the_samples_of_the_window():
    # Given 100 samples 1..100 ms in one second
    window = LatencyWindow()
    for ms in range(1, 101):
        window.add(float(ms), now=1000.2)
    # When percentiles are asked for
    p = window.percentiles(now=1000.5)
    # Expect the 50th, 95th and 99th smallest values, to a bucket's precision
    assert p["p50"] == pytest.approx(50, rel=0.03)
    assert p["p95"] == pytest.approx(95, rel=0.03)
    assert p["p99"] == pytest.approx(99, rel=0.03)


def test_a_sample_counts_for_one_minute_and_then_not_at_all():
    # Given a slow sample at t=1000 and fast ones 30 s later
    window = LatencyWindow()
    window.add(5000.0, now=1000.0)
    for _ in range(3):
        window.add(1.0, now=1030.0)
    # When asked just before and just after the slow one leaves the window
    before = window.percentiles(now=1000.0 + WINDOW - 0.5)
    after = window.percentiles(now=1000.0 + WINDOW)
    # Expect the slow sample in p99 before, gone after; nothing at all a minute after the last
    assert before["p99"] == pytest.approx(5000, rel=0.03)
    assert after["p99"] == pytest.approx(1, rel=0.03)
    assert window.percentiles(now=1030.0 + WINDOW) == {"p50": None, "p95": None, "p99": None}
    assert window.count == 0


def test_memory_is_bounded_by_the_window_not_the_rate():
    # Given 200 seconds of samples at many rates and values
    window = LatencyWindow()
    for second in range(200):
        for i in range(500):
            window.add(0.01 * (i + 1) * (second + 1), now=float(second))
    # Expect at most one histogram per second of the window, each at most the bucket count
    assert len(window._seconds) <= WINDOW
    assert window.count == 500 * len(window._seconds)
    assert len(window._total) <= bucket_of(0.01 * 500 * 200) + 1


def test_nan_and_negative_values_land_in_the_first_bucket():
    # Given nonsense values (a clock that stepped back)
    window = LatencyWindow()
    window.add(float("nan"), now=1.0)
    window.add(-5.0, now=1.0)
    # Expect them counted at the floor, not raising
    assert window.percentiles(now=1.0)["p99"] == value_of(0)
