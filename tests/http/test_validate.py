"""Unit tests of ``validate`` (durations, priorities, times, protobuf specs) and ``present``."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import pytest

from taskd.api.taskd import v1 as pb
from taskd.errors import CallerError
from taskd.node import limits
from taskd.node.api import jsonnum, validate
from taskd.node.api.grpc import wire
from taskd.node.api.present import (
    decode_bytes,
    printable_json,
    rfc3339,
    task_to_json,
    task_to_proto,
)
from taskd.queue.commands import State, TaskSpec
from taskd.queue.task import Task

NOW = 1_700_000_000.0
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


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


@pytest.mark.parametrize("text", ["", "300", "5 m", "m5", "1w", "-5s", "5M", "1h30", "1.s", "s"])
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
    assert validate.spec_from_json({"delay": "5m"}, now=NOW).run_at == NOW + 300
    assert validate.spec_from_json({"delay": "500ms"}, now=NOW).run_at == NOW + 0.5
    assert validate.spec_from_json({"delay": "1d"}, now=NOW).run_at == NOW + 86400
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


# ---- the shared field checks (both APIs call these) -----------------------------------------


QUEUE_NAMES_REFUSED = ["", "é\x00", "a b/../\n", "a b", "q/", "q\x00", "é", "x" * 129, "q\n"]


@pytest.mark.parametrize("name", QUEUE_NAMES_REFUSED)
def test_one_queue_rule_everywhere(name: str) -> None:
    with pytest.raises(CallerError) as info:
        validate.check_queue(name, "name")
    assert info.value.field == "name" and "letters, digits" in info.value.message
    # the same rule for a worker's queues and a spec's queue
    with pytest.raises(CallerError):
        validate.check_worker_queues(["ok", name], "hello.queues")
    with pytest.raises(CallerError):
        validate.spec_from_proto(pb.TaskSpec(queue=name or "\x00"), now=NOW)
    assert validate.check_queue("a-Z_0.9:x" * 14, "q") == "a-Z_0.9:x" * 14  # 126 characters


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (validate.check_id, "x" * 255, ["", "x" * 256, 5, None]),
        (validate.check_cursor, "01ARZ3NDEKTSV4RRFFQ69G5FAV", ["", "x" * 256, 5, "garbage"]),
        (validate.check_worker, "w-1@host", ["", "w" * 256, "a\x00b", "a\nb", "\u202e", 1]),
        (validate.check_error_text, "", ["e" * ((64 << 10) + 1), b"bytes"]),
    ],
)
def test_field_checks_bound_every_string(check: Any, good: str, bad: list[Any]) -> None:
    assert check(good, "f") == good
    for value in bad:
        with pytest.raises(CallerError) as info:
            check(value, "f")
        assert info.value.field == "f" and len(info.value.message) < 200


@pytest.mark.parametrize("value", ["x" * 300_000, b"y" * 300_000, ["z"] * 100_000])
def test_error_messages_never_echo_more_than_a_short_prefix(value: Any) -> None:
    assert len(validate.echo(value)) <= limits.ECHO + 8
    with pytest.raises(CallerError) as info:
        validate.check_queue(value if isinstance(value, str) else "a b", "queue")
    assert len(info.value.message) < 300
    with pytest.raises(CallerError) as info:
        validate.spec_from_json({"x" * 300_000: 1}, now=NOW)
    assert len(info.value.message) < 300 and len(info.value.field) < 300
    with pytest.raises(CallerError) as info:
        validate.spec_from_json({"labels": {"k" * 300_000: "v"}}, now=NOW)
    assert len(info.value.field) < 300


@pytest.mark.parametrize(
    "msg",
    [
        pb.TaskSpec(run_at_ms=(1 << 63) - 1),
        pb.TaskSpec(run_at_ms=253402300800_000),  # 10000-01-01
        pb.TaskSpec(run_at_ms=-1),
        pb.TaskSpec(delay_seconds=float("inf")),
        pb.TaskSpec(delay_seconds=float("nan")),
        pb.TaskSpec(delay_seconds=1e300),
        pb.TaskSpec(timeout_seconds=float("nan")),
        pb.TaskSpec(timeout_seconds=float("inf")),
        pb.TaskSpec(timeout_seconds=1e12),
    ],
)
def test_times_are_bounded_on_grpc(msg: Any) -> None:
    with pytest.raises(CallerError) as info:
        validate.spec_from_proto(msg, now=NOW)
    assert info.value.field in ("run_at_ms", "delay_seconds", "timeout")


@pytest.mark.parametrize(
    "spec",
    [
        {"run_at": "10000-01-01T00:00:00Z"},
        {"delay": 1e300},
        {"delay": 366 * 86400 + 1},
        {"timeout": "999999999999h"},
        {"timeout": 1e12},
        {"timeout": "1" * 400 + "s"},
    ],
)
def test_times_are_bounded_on_rest(spec: dict[str, Any]) -> None:
    with pytest.raises(CallerError):
        validate.spec_from_json(spec, now=NOW)


def test_the_latest_run_at_accepted_is_still_shown() -> None:
    spec = validate.spec_from_proto(pb.TaskSpec(run_at_ms=253402300799_000), now=NOW)
    assert rfc3339(spec.run_at) == "9999-12-31T23:59:59.000Z"
    spec = validate.spec_from_json({"run_at": "9999-12-31T23:59:59.999Z"}, now=NOW)
    assert rfc3339(spec.run_at) == "9999-12-31T23:59:59.999Z"


def test_batch_totals_refuse_a_costly_batch_before_walking_it() -> None:
    deps = [f"{j:026d}" for j in range(1000)]
    batch = {"tasks": [{"depends_on": deps} for _ in range(1000)]}
    started = time.perf_counter()
    with pytest.raises(CallerError) as info:
        validate.batch_from_json(batch, now=NOW)
    assert time.perf_counter() - started < 1.0
    assert info.value.field == "tasks" and "1000000 depends_on" in info.value.message
    assert "10000 per batch" in info.value.message
    labels = {f"k{i}": "v" for i in range(64)}
    with pytest.raises(CallerError) as info:
        validate.batch_from_json({"tasks": [{"labels": labels}] * 200}, now=NOW)
    assert "labels in total" in info.value.message
    # the same totals for specs however they arrived (gRPC calls check_batch)
    specs = [TaskSpec(depends_on=tuple(deps))] * 11
    with pytest.raises(CallerError):
        validate.check_batch(specs, max_payload=1 << 20)
    big = [TaskSpec(payload=b"x" * (1 << 20))] * 3
    with pytest.raises(CallerError) as info:
        validate.check_batch(big, max_payload=1 << 20)
    assert info.value.code == "too_large"
    validate.check_batch([TaskSpec(depends_on=tuple(deps))] * 10, max_payload=1 << 20)


# ---- JSON numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "literal",
    [
        "18446744073709551616",
        "-9223372036854775809",
        "1" * 5000,
        "0.1e-400",
        "1e-400",
        "0.30000000000000000444",
        "12345678.123456789",
        "123456789012345678901234567890.5",
        "2.5e-324",
    ],
)
def test_json_numbers_that_would_change_are_found_with_their_path(literal: str) -> None:
    body = f'{{"payload": {{"a": [1, {literal}]}}, "x": "y"}}'.encode()
    assert jsonnum.inexact_number(body) == ("payload.a[1]", literal)


@pytest.mark.parametrize(
    "literal",
    [
        "18446744073709551615",
        "-9223372036854775808",
        "0.1",
        "1e2",
        "1.5E+300",
        "-0.0",
        "0.30000000000000004",
        "5e-324",
        "123456789012345",
        "1.7976931348623157e308",
    ],
)
def test_json_numbers_kept_exactly_pass(literal: str) -> None:
    body = f'{{"payload": [{literal}], "s": "12345678901234567890e5"}}'.encode()
    assert jsonnum.inexact_number(body) is None
    assert orjson.loads(orjson.dumps(orjson.loads(body))) == orjson.loads(body)


def test_ordinary_bodies_skip_the_slow_path() -> None:
    assert jsonnum.RISKY.search(b'{"queue": "q1e", "payload": {"n": 123456789, "f": 2.5}}') is None


# ---- total presenters ---------------------------------------------------------------------------


HOSTILE_TIMES = [
    (1 << 63) - 1,
    float((1 << 63) - 1) / 1000,
    1e300,
    -1e300,
    float("inf"),
    float("-inf"),
    float("nan"),
    -1.0,
    253402300800.0,
]


@pytest.mark.parametrize("seconds", HOSTILE_TIMES)
def test_no_stored_time_makes_a_read_fail(seconds: float) -> None:
    task = _task(run_at=seconds, created_at=seconds, started_at=seconds, finished_at=seconds)
    view = task_to_json(task)
    orjson.dumps(view)
    for key in ("run_at", "created_at"):
        assert view[key] is None or RFC3339.fullmatch(view[key]), view[key]
    proto = task_to_proto(task)
    assert pb.Task.FromString(bytes(proto)) == proto


def test_no_stored_number_or_text_makes_a_read_fail() -> None:
    task = _task(
        priority=1 << 40,
        max_retries=-(1 << 40),
        attempt=1 << 70,
        epoch=1 << 70,
        state=State.RUNNING,
        timeout=float("inf"),
        payload=b"18446744073709551616",
        name="\ud800",
    )
    bytes(task_to_proto(_task(priority=1 << 40, attempt=1 << 70, epoch=-5, state=State.RUNNING)))
    view = task_to_json(task)
    assert view["payload"] == "18446744073709551616"  # shown as its text, not as 1.8e19
    orjson.dumps(printable_json(view))


def test_decode_bytes_shows_numbers_it_cannot_keep_as_text() -> None:
    assert decode_bytes(b"[1e-400]") == ("[1e-400]", False)
    assert decode_bytes(b"[1e2]") == ([100.0], False)


# ---- one rule per field on both APIs ------------------------------------------------------------

_PARITY: list[tuple[str, str, list[Any]]] = [
    ("queue", "queue", ["q", "a:b.c-d_e", "x" * 128, "x" * 129, "a b", "é", "q\x00"]),
    ("name", "name", ["n", "x" * 255, "x" * 256, "é\x00"]),
    ("idempotency_key", "idempotency_key", ["k", "x" * 255, "x" * 256]),
    ("ref", "ref", ["r", "x" * 255, "x" * 256]),
    ("priority", "priority", [0, 9, 10, -1]),
    ("max_retries", "max_retries", [0, 100, 101, -1]),
    ("timeout", "timeout_seconds", [0.001, 7 * 86400, 7 * 86400 + 1, 0, -1]),
    ("delay", "delay_seconds", [0.5, 366 * 86400, 366 * 86400 + 1, -1]),
]


@pytest.mark.parametrize(("json_name", "proto_name", "values"), _PARITY)
def test_rest_and_grpc_accept_and_refuse_the_same_values(
    json_name: str, proto_name: str, values: list[Any]
) -> None:
    for value in values:
        outcomes = []
        for make in (
            lambda v: validate.spec_from_json({json_name: v}, now=NOW, allow_ref=True),
            lambda v: validate.spec_from_proto(pb.TaskSpec(**{proto_name: v}), now=NOW),
        ):
            try:
                make(value)
                outcomes.append("ok")
            except CallerError:
                outcomes.append("refused")
        assert outcomes[0] == outcomes[1], (json_name, value, outcomes)


@pytest.mark.parametrize(
    "labels",
    [{"k": "v"}, {"": "v"}, {"k" * 128: ""}, {"k" * 129: "v"}, {"k": "v" * 1025}],
)
def test_labels_follow_one_rule_on_both_apis(labels: dict[str, str]) -> None:
    outcomes = []
    for make in (
        lambda: validate.spec_from_json({"labels": labels}, now=NOW),
        lambda: validate.spec_from_proto(pb.TaskSpec(labels=labels), now=NOW),
    ):
        try:
            make()
            outcomes.append("ok")
        except CallerError:
            outcomes.append("refused")
    assert outcomes[0] == outcomes[1]


def test_the_wire_limits_are_the_validation_limits() -> None:
    assert wire.STRING_LIMITS["queue"] == limits.MAX_QUEUE == validate.MAX_QUEUE
    assert wire.STRING_LIMITS["TaskSpec.name"] == limits.MAX_NAME
    assert wire.STRING_LIMITS["worker"] == limits.MAX_WORKER_NAME
    assert wire.COUNT_LIMITS["tasks"] == limits.MAX_BATCH
    assert wire.COUNT_LIMITS["depends_on"] == limits.MAX_DEPENDENCIES


@pytest.mark.parametrize("text", ["5", "5x", "m", "", "-5m", "5m "])
def test_a_delay_that_is_no_duration_is_refused_naming_delay(text: str) -> None:
    with pytest.raises(CallerError) as info:
        validate.spec_from_json({"delay": text}, now=NOW)
    assert info.value.field == "delay"


def test_durations_take_every_unit_the_cli_documents() -> None:
    assert [validate.parse_duration(t) for t in ("500ms", "30s", "5m", "2h", "1d", "1h30m")] == [
        0.5, 30.0, 300.0, 7200.0, 86400.0, 5400.0,
    ]  # fmt: skip
