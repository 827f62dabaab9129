"""Transition filters: what they let through, and bad input refused naming the field."""

from __future__ import annotations

import pytest

from taskd.errors import CallerError
from taskd.node.api import validate
from taskd.queue.commands import State, StateChanged
from taskd.web.filters import MAX_VALUES, TransitionFilter, from_query, from_subscribe

CHECKS = {"check_queue": validate.check_queue, "check_id": validate.check_id}


def change(task_id: str = "t1", queue: str = "q", to: State = State.QUEUED) -> StateChanged:
    return StateChanged(task_id, queue, None, to, 0)


def test_an_empty_filter_takes_everything():
    assert TransitionFilter().everything
    assert TransitionFilter().wants(change())


def test_fields_combine_with_and_and_values_with_or():
    # Given a filter on two queues and the running state
    f = TransitionFilter(queues=frozenset({"a", "b"}), states=frozenset({State.RUNNING}))
    # Expect: a matching queue AND the state it moved to
    assert f.wants(change(queue="a", to=State.RUNNING))
    assert f.wants(change(queue="b", to=State.RUNNING))
    assert not f.wants(change(queue="c", to=State.RUNNING))
    assert not f.wants(change(queue="a", to=State.QUEUED))


def test_query_parameters_repeat_and_carry_a_token():
    # Given a query with repeated queues, a state, an id and a token
    pairs = [("queue", "a"), ("queue", "b"), ("state", "failed"), ("id", "X1"), ("token", "s3")]
    # When parsed
    f, token = from_query(pairs, **CHECKS)
    # Expect every value, and the token apart
    assert f == TransitionFilter(
        frozenset({"a", "b"}), frozenset({State.FAILED}), frozenset({"X1"})
    )
    assert token == "s3"


@pytest.mark.parametrize(
    ("pairs", "field", "words"),
    [
        ([("queues", "a")], "queues", "unknown query parameter"),
        ([("state", "done")], "state", "pending, blocked"),
        ([("queue", "")], "queue", "characters"),
        ([("queue", "a b")], "queue", "characters"),
        ([("id", "x" * 300)], "id", "task id"),
        ([("token", "a"), ("token", "b")], "token", "at most once"),
        ([("queue", f"q{i}") for i in range(MAX_VALUES + 1)], "queue", "at most"),
    ],
)
def test_bad_query_parameters_name_the_field(pairs, field, words):
    # When a bad query is parsed
    with pytest.raises(CallerError) as caught:
        from_query(pairs, **CHECKS)
    # Expect an "invalid" error naming the field and saying what is expected
    assert caught.value.code == "invalid"
    assert caught.value.field == field
    assert words in caught.value.message


def test_subscribe_replaces_with_lists_and_names_the_bad_element():
    # Given a subscribe message
    f = from_subscribe({"type": "subscribe", "queues": ["a"], "states": ["running"]}, **CHECKS)
    assert f == TransitionFilter(frozenset({"a"}), frozenset({State.RUNNING}))
    # Expect a bad element named by its index, a non-list and an unknown field refused
    with pytest.raises(CallerError) as caught:
        from_subscribe({"type": "subscribe", "states": ["running", "nope"]}, **CHECKS)
    assert caught.value.field == "states[1]"
    with pytest.raises(CallerError) as caught:
        from_subscribe({"type": "subscribe", "ids": "X1"}, **CHECKS)
    assert caught.value.field == "ids"
    with pytest.raises(CallerError) as caught:
        from_subscribe({"type": "subscribe", "queue": ["a"]}, **CHECKS)
    assert caught.value.field == "queue"
