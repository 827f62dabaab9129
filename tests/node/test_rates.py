"""Queue rates: tasks submitted and finished per second over the last minute."""

from __future__ import annotations

from taskd.node.observe.rates import QueueRates
from taskd.queue.commands import Outcome, State, StateChanged, Tick


def _changes(*events: tuple[str, State | None, State]) -> Outcome:
    return Outcome(events=[StateChanged(f"t{i}", q, p, c, 0) for i, (q, p, c) in enumerate(events)])


def test_rates_count_submits_and_finishes_per_queue_over_a_minute() -> None:
    now = [1000.0]
    rates = QueueRates(clock=lambda: now[0])
    # Given replayed history, which must not count
    rates.on_applied(Tick(), _changes(("a", None, State.QUEUED)))
    rates.start()
    # When 30 tasks are submitted to "a" over 10 s and 10 of them finish, 5 more fail in "b"
    for second in range(10):
        now[0] = 1000.0 + second
        rates.on_applied(Tick(), _changes(*[("a", None, State.QUEUED)] * 3))
        rates.on_applied(Tick(), _changes(("a", State.RUNNING, State.SUCCEEDED)))
    rates.on_applied(Tick(), _changes(*[("b", State.RUNNING, State.FAILED)] * 5))
    now[0] = 1010.0
    # Expect rates over the 10 s the node has counted, per queue
    assert rates.of("a") == (3.0, 1.0)
    assert rates.of("b") == (0.0, 0.5)
    assert rates.of("unknown") == (0.0, 0.0)
    # and a minute after the last event, nothing is left in the window
    now[0] = 1075.0
    assert rates.of("a") == (0.0, 0.0)
