"""Outcomes and the handler registry: what a handler's return or raise becomes."""

from __future__ import annotations

import pytest

from taskd.client import Retry, Worker
from taskd.client.errors import InvalidArgument
from taskd.client.worker.handlers import Handlers
from taskd.client.worker.outcome import MAX_ERROR, encode_result, failure


def test_a_json_able_value_is_the_result_and_bytes_go_as_they_are() -> None:
    assert encode_result({"ok": True}).result == b'{"ok":true}'
    assert encode_result(None).result == b"null"
    assert encode_result(b"\x00raw").result == b"\x00raw"


def test_a_result_that_cannot_be_sent_fails_the_attempt_saying_why() -> None:
    outcome = encode_result({1, 2})
    assert not outcome.success
    assert "not JSON-serializable" in outcome.error
    big = encode_result(b"x" * 11, limit=10)
    assert not big.success and "11 bytes; the limit is 10" in big.error


def test_an_exception_fails_with_its_traceback_and_a_long_one_keeps_its_tail() -> None:
    def handler() -> None:
        raise ValueError("kaboom " + "x" * (2 * MAX_ERROR))

    try:
        handler()
    except ValueError as exc:
        outcome = failure(exc)
    assert not outcome.success
    assert len(outcome.error) <= MAX_ERROR
    assert outcome.error.startswith("...\n")
    assert outcome.error.rstrip().endswith("x")


def test_retry_carries_its_delay_and_refuses_a_bad_one() -> None:
    outcome = failure(Retry("later", delay=30))
    assert (outcome.success, outcome.retry_delay) == (False, 30.0)
    assert "later" in outcome.error
    assert encode_result(Retry(delay=5)).retry_delay == 5.0  # returned, not raised
    with pytest.raises(ValueError, match="delay"):
        Retry(delay=-1)


def test_handlers_by_name_and_one_for_unnamed_tasks() -> None:
    handlers = Handlers()
    handlers.add("a", lambda t: 1)
    handlers.add("", lambda t: 2)
    with pytest.raises(ValueError, match="already registered"):
        handlers.add("a", lambda t: 3)
    assert handlers.find("b") is None
    assert "no handler named 'b'" in handlers.missing("b")
    assert "(unnamed)" in handlers.missing("b")


def test_worker_arguments_are_checked_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as info:
        Worker(concurrency=0)
    assert info.value.field == "concurrency"
    with pytest.raises(InvalidArgument) as info:
        Worker(queues=[])
    assert info.value.field == "queues"
    with pytest.raises(InvalidArgument):
        Worker(servers="http://127.0.0.1:8080")
    worker = Worker()
    with pytest.raises(TypeError, match="parentheses"):
        worker.task(lambda t: 1)  # type: ignore[arg-type]  # the mistake under test


def test_a_worker_without_handlers_refuses_to_run() -> None:
    with pytest.raises(InvalidArgument, match="register a handler"):
        Worker().run()
