"""Unit tests of ``validate`` (durations, priorities, times, protobuf specs) and ``present``."""

from __future__ import annotations

from typing import Any

import pytest

from taskd.api.taskd import v1 as pb
from taskd.errors import CallerError
from taskd.node import validate
from taskd.node.present import decode_bytes, rfc3339, task_to_json, task_to_proto
from taskd.queue.commands import State, TaskSpec
from taskd.queue.task import Task

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300s", 300),
        ("5m", 300),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("1.5h", 5400),
        ("2h0m1s", 7201),
        ("1m500ms", 60.5),
        ("168h", 7 * 86400),
    ],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert validate.parse_duration(text) == pytest.approx(seconds)
    assert validate.check_timeout(text, "timeout") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "300", "5 m", "m5", "1d", "-5s", "5M", "1h30", "1.s", "s"])
def test_bad_durations_are_refused(text: str) -> None:
    assert validate.parse_duration(text) is None
    with pytest.raises(CallerError) as info:
        validate.check_timeout(text, "tasks[2].timeout")
    assert info.value.field == "tasks[2].timeout" and "duration" in info.value.message


@pytest.mark.parametrize(
    "value",
    [
        0,
        0.0,
        -1,
        "0s",
        "169h",
        7 * 86400 + 1,
        float("inf"),
        float("nan"),
        True,
        None.__class__,
        [],
        {},
    ],
)
def test_timeouts_out_of_range_or_of_the_wrong_type_are_refused(value: Any) -> None:
    with pytest.raises(CallerError):
        validate.check_timeout(value, "timeout")


@pytest.mark.parametrize(
    ("value", "expect"),
    [(None, 5), (0, 0), (9, 9), ("low", 2), ("normal", 5), ("high", 7), ("critical", 9)],
)
def test_priorities(value: Any, expect: int) -> None:
    assert validate.check_priority(value, "priority") == expect


@pytest.mark.parametrize("value", [True, False, 10, -1, 5.0, "5", "High", "", [], {}])
def test_bad_priorities_say_what_is_expected(value: Any) -> None:
    with pytest.raises(CallerError) as info:
        validate.check_priority(value, "priority")
    assert info.value.code == "invalid" and info.value.field == "priority"
    assert info.value.message == (
        "priority must be an integer 0-9 or one of low, normal, high, critical"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1970-01-01T00:00:01Z", 1.0),
        ("2023-11-14T22:13:20Z", NOW),
        ("2023-11-14T23:13:20.5+01:00", NOW + 0.5),
        ("2023-11-14t22:13:20z", NOW),
    ],
)
def test_rfc3339_times(text: str, seconds: float) -> None:
    assert validate.parse_rfc3339(text, "run_at") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "2023-11-14",
        "2023-11-14T22:13:20",
        "yesterday",
        "1969-12-31T23:59:59Z",
        "2023-13-01T00:00:00Z",
        5,
    ],
)
def test_bad_rfc3339_times(text: Any) -> None:
    with pytest.raises(CallerError):
        validate.parse_rfc3339(text, "run_at")


def test_delay_becomes_an_absolute_run_at() -> None:
    assert validate.spec_from_json({"delay": 30}, now=NOW).run_at == NOW + 30
    assert validate.spec_from_json({"delay": 0}, now=NOW).run_at == 0.0


def test_a_json_spec_becomes_a_canonical_task_spec() -> None:
    # Given a spec with labels out of order and a nested payload
    spec = validate.spec_from_json(
        {
            "payload": {"b": [1, 2.5, None], "a": "é"},
            "labels": {"z": "1", "a": "2"},
            "priority": "critical",
            "timeout": "5m",
        },
        now=NOW,
    )
    # Expect compact JSON bytes, sorted label pairs and plain numbers
    assert spec == TaskSpec(
        payload='{"b":[1,2.5,null],"a":"é"}'.encode(),
        labels=(("a", "2"), ("z", "1")),
        priority=9,
        timeout=300.0,
    )


def test_batch_fields_carry_their_index() -> None:
    with pytest.raises(CallerError) as info:
        validate.batch_from_json({"tasks": [{}, {}, {"labels": {"k": None}}]}, now=NOW)
    assert info.value.field == "tasks[2].labels.k"


def test_an_oversized_payload_is_too_large() -> None:
    with pytest.raises(CallerError) as info:
        validate.spec_from_json({"payload": "xxxxxxxxx"}, now=NOW, max_payload=10)
    assert (info.value.code, info.value.field) == ("too_large", "payload")


# ---- protobuf specs --------------------------------------------------------------------------


def test_an_empty_proto_spec_takes_the_defaults() -> None:
    assert validate.spec_from_proto(pb.TaskSpec(), now=NOW) == TaskSpec()


def test_a_full_proto_spec() -> None:
    spec = validate.spec_from_proto(
        pb.TaskSpec(
            queue="q",
            name="n",
            priority=0,
            payload=b"\x00\xff",
            timeout_seconds=2.5,
            max_retries=0,
            run_at_ms=1_800_000_000_000,
            depends_on=["a"],
            idempotency_key="k",
            labels={"b": "1", "a": "2"},
            ref="r",
        ),
        now=NOW,
    )
    assert spec == TaskSpec(
        queue="q",
        name="n",
        priority=0,
        payload=b"\x00\xff",
        timeout=2.5,
        max_retries=0,
        run_at=1_800_000_000.0,
        depends_on=("a",),
        idempotency_key="k",
        labels=(("a", "2"), ("b", "1")),
        ref="r",
    )


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (pb.TaskSpec(priority=10), "task.priority"),
        (pb.TaskSpec(max_retries=101), "task.max_retries"),
        (pb.TaskSpec(timeout_seconds=-5), "task.timeout"),
        (pb.TaskSpec(timeout_seconds=0), "task.timeout"),
        (pb.TaskSpec(queue="bad queue!"), "task.queue"),
        (pb.TaskSpec(idempotency_key="k" * 256), "task.idempotency_key"),
        (pb.TaskSpec(delay_seconds=-1), "task.delay_seconds"),
        (pb.TaskSpec(delay_seconds=1, run_at_ms=5), "task.run_at_ms"),
        (pb.TaskSpec(labels={"": "x"}), "task.labels."),
        (pb.TaskSpec(payload=b"x" * 11), "task.payload"),
    ],
)
def test_bad_proto_specs_name_the_field(msg: Any, field: str) -> None:
    with pytest.raises(CallerError) as info:
        validate.spec_from_proto(msg, now=NOW, max_payload=10, field_prefix="task.")
    assert info.value.field == field


# ---- present ---------------------------------------------------------------------------------


def _task(**changes: Any) -> Task:
    fields: dict[str, Any] = dict(
        id="01J",
        queue="q",
        name="",
        priority=5,
        payload=b"",
        timeout=1800.0,
        max_retries=3,
        run_at=0.0,
        depends_on=(),
        idempotency_key="",
        labels={},
        created_at=NOW,
        seq=1,
    )
    fields.update(changes)
    return Task(**fields)


@pytest.mark.parametrize(
    ("data", "value", "base64"),
    [
        (b"", None, False),
        (None, None, False),
        (b'{"a":1}', {"a": 1}, False),
        (b"ok on 2\n", "ok on 2\n", False),
        (b"null", None, False),
        (b"\xff\x00", "/wA=", True),
    ],
)
def test_bytes_are_shown_as_json_text_or_base64(
    data: bytes | None, value: Any, base64: bool
) -> None:
    assert decode_bytes(data) == (value, base64)


def test_binary_payloads_and_results_carry_an_encoding_marker() -> None:
    view = task_to_json(_task(payload=b"\xff", result=b"\xfe", state=State.SUCCEEDED))
    assert view["payload"] == "/w==" and view["payload_encoding"] == "base64"
    assert view["result"] == "/g==" and view["result_encoding"] == "base64"
    assert "payload_encoding" not in task_to_json(_task(payload=b"1"))


def test_times_are_rfc3339_utc_with_milliseconds() -> None:
    assert rfc3339(NOW + 0.0123) == "2023-11-14T22:13:20.012Z"
    assert rfc3339(0.0) is None


def test_a_running_task_shows_its_lease_epoch() -> None:
    view = task_to_json(_task(state=State.RUNNING, epoch=7, worker="w", attempt=1, started_at=NOW))
    assert view["lease"] == 7 and view["worker"] == "w" and view["state"] == "running"
    proto = task_to_proto(_task(state=State.RUNNING, epoch=7, started_at=NOW))
    assert proto.lease == 7 and proto.state == pb.TaskState.RUNNING
    assert proto.started_at_ms == int(NOW * 1000) and proto.run_at_ms == 0
