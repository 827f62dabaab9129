"""``WatchModel``: the event stream's messages applied to one picture, and the connection's
status with its backoff. No I/O: messages are dicts shaped as a node sends them."""

from __future__ import annotations

import copy

import pytest

from taskd.cli.watch.model import LinkState, WatchModel, backoff
from tests.cli import watch_messages as msg


def live_model(tail: int = 20) -> WatchModel:
    model = WatchModel("http://127.0.0.1:8080", tail=tail)
    model.connecting()
    model.apply(msg.snapshot())
    return model


def test_a_snapshot_gives_the_whole_picture_and_makes_the_link_live() -> None:
    # Given a model connecting for the first time
    model = WatchModel("http://127.0.0.1:8080")
    model.connecting()
    assert model.link.state is LinkState.CONNECTING
    # When the snapshot arrives
    known = model.apply(msg.snapshot([msg.queue("emails", queued=2), msg.queue("a", running=1)]))
    # Expect the node, its queues (by name), totals, workers and cluster, and a live link
    assert known and model.link.state is LinkState.LIVE and model.link.attempt == 0
    assert model.node == {"id": "127.0.0.1:50051", "role": "leader", "version": "0.1.0"}
    assert list(model.queues) == ["a", "emails"]
    assert model.totals["queued"] == 2 and model.totals["running"] == 1
    assert model.totals["succeeded"] == 0
    assert [w["worker"] for w in model.workers] == ["local@n1"]
    assert model.cluster is not None and model.cluster["term"] == 1
    assert model.rates is None and model.snapshots == 1
    assert model.at == "2030-01-02T15:04:05.123Z"


def test_stats_replace_the_queues_totals_and_rates() -> None:
    # Given a live model with queue "emails"
    model = live_model()
    # When stats arrive in which "emails" drained and "reports" appeared
    model.apply(msg.stats([msg.queue("emails", succeeded=2), msg.queue("reports", queued=7)], 3.0))
    # Expect the new queues, totals and rates
    assert list(model.queues) == ["emails", "reports"]
    assert model.queues["emails"]["depth"] == 0 and model.queues["reports"]["depth"] == 7
    assert model.totals["queued"] == 7 and model.totals["succeeded"] == 2
    assert model.rates == {
        "submitted_per_s": 3.0,
        "finished_per_s": 1.5,
        "transitions_per_s": 12.0,
    }
    assert model.at == "2030-01-02T15:04:06.123Z"


def test_totals_are_added_up_when_a_message_has_none() -> None:
    # Given stats from a node that sends no totals
    model = live_model()
    stats = msg.stats([msg.queue("a", queued=1), msg.queue("b", queued=2, failed=1)])
    del stats["totals"]
    # When applied
    model.apply(stats)
    # Expect the sums of the queues
    assert model.totals["queued"] == 3 and model.totals["failed"] == 1


def test_transitions_are_kept_newest_first_in_a_bounded_tail() -> None:
    # Given a model keeping the last 3 transitions
    model = live_model(tail=3)
    # When two messages bring 2 then 4 transitions, some sampled out
    model.apply(msg.transitions(msg.event("t1"), msg.event("t2"), dropped=5))
    assert [e["id"] for e in model.recent] == ["t2", "t1"]
    model.apply(msg.transitions(*(msg.event(f"u{i}") for i in range(4)), dropped=1))
    # Expect only the 3 newest, newest first, and the dropped ones counted
    assert [e["id"] for e in model.recent] == ["u3", "u2", "u1"]
    assert model.dropped == 6


def test_workers_and_cluster_messages_replace_theirs() -> None:
    # Given a live model
    model = live_model()
    # When the workers change and the node becomes a follower in term 2
    model.apply({"type": "workers", "workers": [msg.worker("w2", running=["t1"])]})
    model.apply({"type": "cluster", "cluster": msg.cluster(role="follower", term=2)})
    # Expect the new workers and cluster, and the node's role with them
    assert [(w["worker"], w["running"]) for w in model.workers] == [("w2", ["t1"])]
    assert model.cluster is not None and model.cluster["term"] == 2
    assert model.node is not None and model.node["role"] == "follower"


def test_a_bye_is_the_reason_the_connection_ends() -> None:
    # Given a live model that receives a bye
    model = live_model()
    assert model.apply({"type": "bye", "reason": "the node is shutting down"})
    assert model.bye == "the node is shutting down"
    # When the socket closes
    delay = model.lost("the connection to the node was lost", jitter=0.5)
    # Expect the bye's reason shown, attempt 1, and the first backoff
    assert model.link.state is LinkState.DISCONNECTED
    assert model.link.reason == "the node is shutting down"
    assert model.link.attempt == 1 and delay == 0.25
    # and a new try forgets the old bye
    model.connecting()
    assert model.bye is None
    model.lost("refused")
    assert model.link.reason == "refused" and model.link.attempt == 2


def test_unknown_messages_and_fields_are_ignored() -> None:
    # Given a live model
    model = live_model()
    before = copy.deepcopy(
        (model.queues, model.workers, model.cluster, list(model.recent), model.messages)
    )
    # When a newer node sends a type this model does not know, or things that are not messages
    for message in ({"type": "alerts", "alerts": [1]}, {"no": "type"}, [1, 2], "text", None):
        assert model.apply(message) is False
    # Expect nothing changed
    after = (model.queues, model.workers, model.cluster, list(model.recent), model.messages)
    assert after == before
    # and a known message with unknown fields (or missing ones) still applies
    snapshot = msg.snapshot(future_field={"x": 1})
    del snapshot["workers"], snapshot["interval_ms"]
    assert model.apply(snapshot) and model.workers == [] and model.interval_ms == 1000
    assert model.apply({"type": "transitions", "events": [msg.event("t9"), "junk"]})
    assert [e["id"] for e in model.recent] == ["t9"]


def test_a_reconnect_snapshot_resets_the_attempts_and_the_silence_limit_follows_the_interval() -> (
    None
):
    # Given a model that lost its node three times
    model = live_model()
    for _ in range(3):
        model.connecting()
        model.lost("nothing listens there")
    assert model.link.attempt == 3
    # When a node with a 500 ms interval answers again
    model.connecting()
    model.apply(msg.snapshot(interval_ms=500))
    # Expect a live link, no attempts, no reason, and silence taken for death after 1.5 s
    assert model.link.state is LinkState.LIVE
    assert (model.link.attempt, model.link.reason) == (0, None)
    assert model.snapshots == 2 and model.silence_limit == 1.5


@pytest.mark.parametrize(
    ("attempt", "jitter", "delay"),
    [(1, 0.5, 0.25), (2, 0.5, 0.5), (3, 0.5, 1.0), (4, 0.5, 2.0), (9, 0.5, 2.0), (4, 0.0, 1.6)],
)
def test_the_backoff_doubles_to_two_seconds_with_20_percent_jitter(
    attempt: int, jitter: float, delay: float
) -> None:
    assert backoff(attempt, jitter) == delay
    assert backoff(attempt, 0.999) <= 2.4


def test_a_too_slow_close_is_retried_at_once_the_first_time() -> None:
    # Given a live model closed by the node for reading too slowly (1013)
    model = live_model()
    # When the connection ends with that code, twice in a row
    first = model.lost("too slow", code=1013)
    second = model.lost("too slow", code=1013)
    # Expect an immediate retry, then the usual backoff
    assert first == 0.0 and second == 0.5
