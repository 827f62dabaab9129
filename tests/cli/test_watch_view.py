"""``render(model)``: what a person sees, read back as text from a recording rich Console."""

from __future__ import annotations

import io

from rich.console import Console

from taskd.cli.watch.model import WatchModel
from taskd.cli.watch.view import render
from tests.cli import watch_messages as msg


def text_of(model: WatchModel, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(render(model))
    return console.export_text()


def busy_model() -> WatchModel:
    model = WatchModel("http://127.0.0.1:8080", tail=5)
    model.connecting()
    queues = [
        msg.queue(
            "emails",
            queued=12,
            running=3,
            succeeded=40,
            consumers=2,
            submitted=4.5,
            pickup_p50=2.5,
            pickup_p95=1500.0,
            by_priority={"9": 2, "5": 10},
        ),
        msg.queue("reports", paused=True, consumers=0, failed=6),
    ]
    model.apply(msg.snapshot(queues))
    model.apply(msg.stats(queues, submitted=7.25))
    model.apply({"type": "workers", "workers": [msg.worker("local@n1", running=["t-run-1"])]})
    model.apply(msg.transitions(msg.event("t-new-1"), msg.event("t-new-2", "running", "queued")))
    return model


def test_the_view_shows_the_node_totals_rates_and_every_queue() -> None:
    # Given a model with two queues, stats, a busy worker and two transitions
    text = text_of(busy_model())
    lines = text.splitlines()
    # Expect the connection and the node
    assert lines[0].startswith("● live  http://127.0.0.1:8080")
    assert "node 127.0.0.1:50051 (leader, v0.1.0)" in lines[1]
    # the totals and the rates
    assert "queued 12" in text and "running 3" in text and "failed 6" in text
    assert "submitted/s 7.2" in text and "transitions/s 12.0" in text
    # each queue's row: depth 15, its states, priorities, consumers, rate, pickup p50/p95
    [emails] = [line for line in lines if line.startswith("emails ")]
    assert emails.split()[:9] == ["emails", "15", "12", "3", "0", "0", "40", "0", "0"]
    assert "9:2 5:10" in emails and "4.5" in emails and "2.5ms/1.5s" in emails
    [reports] = [line for line in lines if line.startswith("reports")]
    assert "paused" in reports and reports.split()[2] == "0"


def test_the_view_shows_workers_cluster_and_the_transitions_tail() -> None:
    text = text_of(busy_model())
    # the worker with its capacity and running task
    [worker] = [line for line in text.splitlines() if line.startswith("local@n1")]
    assert worker.split() == ["local@n1", "local", "emails", "4", "1", "t-run-1"]
    # the cluster: term, leader, commit, each member with its lag and reachability
    assert "term 1" in text and "leader 127.0.0.1:50051" in text and "commit 4" in text
    [member] = [line for line in text.splitlines() if line.startswith("127.0.0.1:50052")]
    assert member.split() == ["127.0.0.1:50052", "follower", "1", "3", "no"]
    # the transitions, newest first
    assert text.index("t-new-2") < text.index("t-new-1")
    assert "queued → running" in text and "new → queued" in text


def test_a_disconnected_view_says_why_and_which_attempt() -> None:
    # Given a model that lost its node twice
    model = busy_model()
    model.lost("the node is gone")
    model.connecting()
    model.lost("cannot reach taskd at http://127.0.0.1:8080: nothing listens there")
    # When drawn
    text = text_of(model, width=200)
    # Expect the reason, the attempt, and the picture as last seen
    assert text.splitlines()[0] == (
        "disconnected: cannot reach taskd at http://127.0.0.1:8080: nothing listens there "
        "— reconnecting (attempt 2)"
    )
    assert "(as last seen)" in text and "emails" in text


def test_before_any_snapshot_only_the_connection_is_shown() -> None:
    model = WatchModel("http://10.1.2.3:8080")
    model.connecting()
    assert text_of(model).strip() == "○ connecting to http://10.1.2.3:8080"


def test_names_from_the_node_are_shown_literally_never_as_markup_or_control() -> None:
    # Given a queue whose name looks like rich markup and holds an escape character
    model = WatchModel("http://127.0.0.1:8080")
    model.apply(msg.snapshot([msg.queue("[bold]q\x1b[31m", queued=1)]))
    # When drawn
    text = text_of(model)
    # Expect the brackets kept and the escape shown escaped
    assert "[bold]q\\x1b[31m" in text and "\x1b" not in text


def test_empty_parts_say_so() -> None:
    model = WatchModel("http://127.0.0.1:8080")
    snapshot = msg.snapshot([])
    snapshot["workers"] = []
    model.apply(snapshot)
    text = text_of(model)
    assert "queues  none yet" in text
    assert "workers  none connected" in text
    assert "transitions  none since we connected" in text
