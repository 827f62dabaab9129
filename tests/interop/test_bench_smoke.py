"""``taskd bench`` against a real node, at toy sizes: every workload runs, nothing is lost.

Given a fresh node, when ``python -m taskd bench --json`` runs every workload with a few
hundred tasks, expect each workload to report a positive rate, no errors and zero lost tasks,
and W2's queue to hold every submitted task as ``succeeded``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from taskd.bench.main import run_bench
from tests.conftest import free_ports

TASKS = 500


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskd", "bench", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.slow
def test_every_workload_runs_and_loses_nothing(node_factory):
    # Given
    node = node_factory()

    # When
    done = bench(
        "--server-grpc",
        node.grpc_address,
        "--server-http",
        node.http_url,
        "--tasks",
        str(TASKS),
        "--duration",
        "2",
        "--rate",
        "200",
        "--json",
    )

    # Expect
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    by_name = {w["workload"]: w for w in report["workloads"]}
    assert set(by_name) == {"w1a", "w1a@200", "w1b", "w1c", "w2", "w3"}, done.stderr
    for name, w in by_name.items():
        assert w["tasks_per_second"] > 0, (name, w)
        assert w["lost"] == 0, (name, w)
        assert w["errors"] == {}, (name, w)
        assert w["client_processes"] >= 1, (name, w)
    for name in ("w1a", "w1b", "w1c"):
        assert by_name[name]["tasks"] == TASKS
        assert by_name[name]["p50_ms"] > 0
        assert sum(by_name[name]["states"].values()) == TASKS
    w2 = by_name["w2"]
    assert w2["submitted"] == w2["tasks"] == TASKS
    assert w2["states"]["succeeded"] == TASKS
    w3 = by_name["w3"]
    assert w3["tasks"] == w3["submitted"] == 400  # 200/s for 2 s
    assert 0 < w3["p50_ms"] <= w3["p95_ms"] <= w3["p99_ms"]


@pytest.mark.slow
def test_rest_address_alone_finds_the_grpc_port(node_factory):
    # Given a node on non-default ports, and only its REST address (as `make bench` passes it)
    node = node_factory()

    # When
    done = bench("--server", node.http_url, "--workload", "w1b", "--tasks", "200", "--json")

    # Expect
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["server_grpc"] == node.grpc_address
    [w1b] = report["workloads"]
    assert w1b["tasks"] == 200 and w1b["lost"] == 0


def test_unreachable_node_gets_a_clear_message(capsys):
    # Given a port nothing listens on
    [port] = free_ports(1)

    # When
    code = run_bench(["--server-grpc", f"127.0.0.1:{port}", "--workload", "w1a"])

    # Expect
    assert code == 1
    err = capsys.readouterr().err
    assert f"cannot reach taskd at 127.0.0.1:{port}" in err
    assert "start a node with `taskd` or pass --server-grpc" in err


@pytest.mark.slow
def test_the_sdk_workloads_run_and_lose_nothing(node_factory):
    # Given a fresh node
    node = node_factory()

    # When the SDK's workloads run at toy sizes
    done = bench(
        "--server-grpc", node.grpc_address, "--server-http", node.http_url,
        "--workload", "sdk-submit,w2-sdk,w3-sdk", "--tasks", str(TASKS),
        "--duration", "2", "--rate", "100", "--json",
    )  # fmt: skip

    # Expect each to finish every task through the SDK, the submits coalesced
    assert done.returncode == 0, done.stderr
    by_name = {w["workload"]: w for w in json.loads(done.stdout)["workloads"]}
    assert set(by_name) == {"sdk-submit", "w2-sdk", "w3-sdk"}, done.stderr
    for name, w in by_name.items():
        assert w["lost"] == 0 and w["errors"] == {}, (name, w)
    submit = by_name["sdk-submit"]
    assert submit["tasks"] == TASKS and sum(submit["states"].values()) == TASKS
    assert 0 < submit["submit_batch_calls"] < TASKS
    w2 = by_name["w2-sdk"]
    assert w2["tasks"] == w2["submitted"] == w2["states"]["succeeded"] == TASKS
    w3 = by_name["w3-sdk"]
    assert w3["tasks"] == w3["submitted"] == 200  # 100/s for 2 s
    assert 0 < w3["p50_ms"] <= w3["p99_ms"]
