"""``taskd bench`` spreads clients and worker streams over every member, round robin.

Given three members and 8 clients in 2 child processes (4 + 4), Expect the connections to go
3, 3, 2 to the members, each child continuing the rotation where the previous one stopped; and
given explicit gRPC addresses, Expect them paired with the URLs in order (or a clear error
when the counts differ).
"""

from __future__ import annotations

from collections import Counter

import pytest

from taskd.bench import members
from taskd.bench.admin import Target
from taskd.bench.submit import Producer
from taskd.bench.worker import WorkerPlan
from taskd.bench.workloads import split, starts

A, B, C = (Target("127.0.0.1", p, f"http://127.0.0.1:{p + 1}") for p in (23100, 23110, 23120))


def test_clients_and_streams_are_spread_round_robin():
    shares = split(8, 2)
    producers = [
        Producer((A, B, C), "q", "unary", n, first=f)
        for n, f in zip(shares, starts(shares), strict=True)
    ]
    used = Counter(p.target_for(k) for p in producers for k in range(p.clients))
    assert used == {A: 3, B: 3, C: 2}
    plans = [WorkerPlan((A, B), "q", 2, 16, False, first=f) for f in starts([2, 2])]
    assert [p.target_for(k) for p in plans for k in range(2)] == [A, B, A, B]


def test_explicit_grpc_addresses_pair_with_the_urls_in_order():
    got = members.resolve(
        ["127.0.0.1:23001", "http://127.0.0.1:23002/"], ["127.0.0.1:23101", "127.0.0.1:23102"]
    )
    assert [(t.grpc_address, t.http_url) for t in got] == [
        ("127.0.0.1:23101", "http://127.0.0.1:23001"),
        ("127.0.0.1:23102", "http://127.0.0.1:23002"),
    ]
    with pytest.raises(ValueError, match="one --server-grpc address per --server URL"):
        members.resolve(["a:1", "b:2"], ["c:3", "d:4", "e:5"])
