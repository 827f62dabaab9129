"""``taskd bench --server A,B,C`` against a real 3-node cluster, at toy sizes.

Given a fresh 3-node cluster on loopback, When ``taskd bench --workload w1b,w2`` runs with every
member's REST URL in ``--server`` (gRPC addresses discovered from each member's
``/api/v1/cluster``), or with one URL and ``--cluster``, Expect the workloads to finish with
nothing lost and the header to name all three members; skipped only where the cluster is
absent from the branch.
"""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from bench.nodes import BenchCluster
from tests.chaos.presence import ROOT, cluster_absent

pytestmark = pytest.mark.slow


def test_bench_spreads_over_every_member_of_a_cluster():
    if (why := cluster_absent()) is not None:
        pytest.skip(why)
    with BenchCluster(3) as cluster:
        urls = [cluster.url(m) for m in cluster.members]
        argv = [sys.executable, "-m", "taskd", "bench", "--server", ",".join(urls)]
        argv += ["--workload", "w1b,w2", "--tasks", "600", "--batch", "50", "--json"]
        done = subprocess.run(argv, capture_output=True, cwd=ROOT, timeout=180)
        # and with one URL and --cluster: the members come from its /api/v1/cluster
        argv = [sys.executable, "-m", "taskd", "bench", "--server", urls[1], "--cluster"]
        argv += ["--workload", "w1b", "--tasks", "300", "--batch", "50", "--json"]
        discovered = subprocess.run(argv, capture_output=True, cwd=ROOT, timeout=180)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert discovered.returncode == 0, discovered.stderr.decode()[-3000:]
    again = orjson.loads(discovered.stdout)
    assert sorted(m["grpc"] for m in again["members"]) == sorted(cluster.members)
    assert again["workloads"][0]["tasks"] == 300 and again["workloads"][0]["lost"] == 0
    body = orjson.loads(done.stdout)
    assert sorted(m["grpc"] for m in body["members"]) == sorted(cluster.members)
    results = {w["workload"]: w for w in body["workloads"]}
    assert results["w1b"]["tasks"] == 600 and results["w1b"]["lost"] == 0
    assert results["w2"]["tasks"] == 600 and results["w2"]["lost"] == 0
