"""The PostgreSQL store's projection: a round's results become rows of the tasks they changed,
as the tasks stand after the round; a task the scheduler forgot becomes a deletion."""

from __future__ import annotations

from taskd.node.app import taskrows
from taskd.queue.commands import Cancel, Submit, TaskSpec, Tick
from taskd.queue.scheduler import Scheduler
from taskd.queue.task import SchedulerConfig


def test_changed_tasks_become_rows_and_forgotten_ones_deletions() -> None:
    # Given a scheduler keeping finished tasks 60 s, and its projection
    scheduler = Scheduler(SchedulerConfig(retention=60.0))
    rows = taskrows.projection(lambda: scheduler)
    # When two tasks are submitted (one with labels), one is canceled, then retention passes
    submitted = scheduler.apply(
        Submit(
            (TaskSpec(queue="q", labels=(("team", "a"),)), TaskSpec(queue="q", priority=9)),
            ("01A", "01B"),
        ),
        100.0,
        0,
    )
    canceled = scheduler.apply(Cancel("01B"), 101.0, 0)
    first = rows([submitted, canceled])
    forgotten = scheduler.apply(Tick(), 200.0, 0)
    later = rows([forgotten])
    # Expect one row per task as it stands after the round, then the canceled one deleted
    assert [(r["id"], r["state"], r["priority"], r["labels"]) for r in first] == [
        ("01A", "queued", 5, {"team": "a"}),
        ("01B", "canceled", 9, {}),
    ]
    assert first[0]["created_at"] == 100.0 and first[1]["finished_at"] == 101.0
    assert later == [{"id": "01B", "deleted": True}]
