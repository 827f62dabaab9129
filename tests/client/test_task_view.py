"""The Task view and the error translation (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from grpclib.const import Status

from taskd.api.taskd import v1 as pb
from taskd.client import errors
from taskd.client.task import Priority, Task, TaskState


def test_task_from_proto():
    msg = pb.Task(
        id="01J",
        queue="q",
        name="n",
        priority=7,
        payload=b'{"a": 1}',
        state=pb.TaskState.SUCCEEDED,
        result=b'{"ok": true}',
        attempt=1,
        max_retries=2,
        created_at_ms=1_700_000_000_000,
        depends_on=["x"],
        labels={"k": "v"},
        idempotency_key="key",
    )
    task = Task.from_proto(msg)
    assert task.priority is Priority.HIGH
    assert task.state == "succeeded" and task.state is TaskState.SUCCEEDED and task.done
    assert task.json() == {"a": 1}
    assert task.result == {"ok": True} and task.result_json() == {"ok": True}
    assert task.created_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert task.started_at is None
    assert task.depends_on == ("x",) and task.labels == {"k": "v"}


def test_result_that_is_not_json_is_text_or_bytes():
    text = Task.from_proto(pb.Task(id="a", result=b"hello", state=pb.TaskState.SUCCEEDED))
    assert text.result == "hello"
    raw = Task.from_proto(pb.Task(id="a", result=b"\xff\x00", state=pb.TaskState.SUCCEEDED))
    assert raw.result == b"\xff\x00"
    with pytest.raises(ValueError):
        raw.result_json()
    assert not Task.from_proto(pb.Task(id="a", state=pb.TaskState.QUEUED)).done


def test_odd_priority_stays_an_int():
    assert Task.from_proto(pb.Task(id="a", priority=3)).priority == 3


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (Status.INVALID_ARGUMENT, "priority: must be 0..9", errors.InvalidArgument),
        (Status.INVALID_ARGUMENT, "payload: payload is 9 bytes; the limit is 1", errors.TooLarge),
        (Status.NOT_FOUND, "no task x", errors.NotFound),
        (Status.FAILED_PRECONDITION, "already done", errors.Conflict),
        (Status.RESOURCE_EXHAUSTED, "queue full", errors.Overloaded),
        (Status.UNAVAILABLE, "no leader", errors.Unavailable),
        (Status.DEADLINE_EXCEEDED, None, errors.DeadlineExceeded),
        (Status.INTERNAL, "bug", errors.TaskdClientError),
    ],
)
def test_statuses_translate(status, message, kind):
    exc = errors.from_status(status, message)
    assert type(exc) is kind


def test_invalid_argument_names_the_field():
    exc = errors.from_status(Status.INVALID_ARGUMENT, "tasks[1].priority: must be 0..9")
    assert isinstance(exc, errors.InvalidArgument)
    assert exc.field == "tasks[1].priority" and exc.message == "must be 0..9"


def test_leader_hint_from_trailer_or_text():
    exc = errors.from_status(Status.UNAVAILABLE, "x", {"x-taskd-leader": "h:1"})
    assert isinstance(exc, errors.Unavailable) and exc.leader_hint == "h:1"
    text = "this node is not the leader; retry, or send it to the leader at h:2"
    exc = errors.from_status(Status.UNAVAILABLE, text)
    assert isinstance(exc, errors.Unavailable) and exc.leader_hint == "h:2"
