"""Server addresses and the failover rotation (I/O-free: no sockets, a seeded random)."""

from __future__ import annotations

import random

import pytest

from taskd.client.errors import InvalidArgument
from taskd.client.targets import Rotation, Target, parse_targets


def test_default_is_localhost_50051_and_env_overrides():
    assert parse_targets(None, environ={}) == (Target("127.0.0.1", 50051),)
    assert parse_targets(None, environ={"TASKD_SERVER": "a:1,b:2"}) == (
        Target("a", 1),
        Target("b", 2),
    )
    # an argument wins over the environment
    assert parse_targets("c:3", environ={"TASKD_SERVER": "a:1"}) == (Target("c", 3),)


@pytest.mark.parametrize(
    ("given", "expect"),
    [
        ("host", [Target("host", 50051)]),
        ("grpc://h:7", [Target("h", 7)]),
        ("grpc://h:7/", [Target("h", 7)]),
        (" a:1 , a:1 ,b", [Target("a", 1), Target("b", 50051)]),
        (["x:1", "y:2"], [Target("x", 1), Target("y", 2)]),
        ("[::1]:9", [Target("::1", 9)]),
        ("[::1]", [Target("::1", 50051)]),
    ],
)
def test_accepted_forms(given, expect):
    assert list(parse_targets(given, environ={})) == expect


def test_rest_url_is_refused_saying_the_sdk_speaks_grpc():
    with pytest.raises(InvalidArgument) as info:
        parse_targets("http://127.0.0.1:8080", environ={})
    assert "gRPC" in str(info.value) and "50051" in str(info.value)
    assert info.value.field == "servers"


def test_env_errors_name_the_variable():
    with pytest.raises(InvalidArgument) as info:
        parse_targets(None, environ={"TASKD_SERVER": "https://x"})
    assert info.value.field == "TASKD_SERVER"


@pytest.mark.parametrize("bad", ["a:99999", "a:0", "a:x", "a:", "ftp://a:1", "::1", "a/b", ","])
def test_bad_addresses_name_the_value(bad):
    with pytest.raises(InvalidArgument) as info:
        parse_targets(bad, environ={})
    assert bad.strip(",") in str(info.value) or bad == ","


def test_rotation_moves_to_next_member_then_backs_off_after_a_full_round():
    a, b, c = Target("a", 1), Target("b", 1), Target("c", 1)
    rot = Rotation([a, b, c], random.Random(1), base=0.1, cap=1.0)
    # Given three members, When each fails in turn, Expect the next at once, then a backoff
    assert rot.current == a
    assert rot.failed(a) == 0.0 and rot.current == b
    assert rot.failed(b) == 0.0 and rot.current == c
    delay = rot.failed(c)
    assert 0.0 <= delay <= 0.2 and rot.current == a
    # a success resets the count
    rot.succeeded(a)
    assert rot.failed(a) == 0.0


def test_rotation_follows_the_leader_hint_even_a_new_member():
    a, b = Target("a", 1), Target("b", 1)
    rot = Rotation([a, b], random.Random(1))
    assert rot.failed(a, "b:1") == 0.0 and rot.current == b
    rot.failed(b, "z:9")
    assert rot.current == Target("z", 9) and Target("z", 9) in rot.members


def test_a_stale_failure_report_does_not_move_twice():
    a, b, c = Target("a", 1), Target("b", 1), Target("c", 1)
    rot = Rotation([a, b, c], random.Random(1))
    rot.failed(a)
    rot.failed(a)  # a second caller that also used a
    assert rot.current == b


def test_backoff_is_capped_with_full_jitter():
    a = Target("a", 1)
    rot = Rotation([a], random.Random(7), base=0.05, cap=0.5)
    delays = [rot.failed(a) for _ in range(50)]
    assert all(0.0 <= d <= 0.5 for d in delays)
    assert len(set(delays)) > 10  # jittered, not fixed
