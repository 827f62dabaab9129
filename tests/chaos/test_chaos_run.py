"""A short chaos run in CI: a real 3-node cluster, load, a seeded nemesis, a clean account.

Given a 3-node cluster on loopback behind per-link proxies, clients, HTTP workers and ``--exec``
executors on every node, and the nemesis of seed 1 (a kill, a pause, a one-way cut, a split) for
20 seconds, Expect ``python -m chaos`` to exit 0 with a substantial history (acknowledged
submits, leased attempts, faults applied, a leader seen, local commands run); then, with one
acknowledged task removed from the healed cluster's read, Expect ``python -m chaos check`` to
exit 1 naming it lost.

Skipped only where the cluster itself is absent from the branch: no ``--peer-route`` flag, or
a Raft core whose membership is still a stub.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from chaos import checker
from chaos.history import History
from tests.chaos.presence import ROOT, cluster_absent

pytestmark = pytest.mark.slow

DURATION = 20


def test_a_short_chaos_run_is_clean_and_a_doctored_copy_is_not(tmp_path):
    if (why := cluster_absent()) is not None:
        pytest.skip(why)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "chaos", "--duration", str(DURATION), "--seed", "1", "--exec"]
    proc = subprocess.run(
        [*argv, "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]

    history = History.from_json((out / "history.json").read_bytes())
    assert checker.account(history).ok
    acked = [s for s in history.submits if s.outcome == "ok"]
    assert len(acked) > 50
    assert history.leases and history.reports and history.reads
    assert {e.kind for e in history.nemesis} - {"heal", "restart", "resume"}
    assert any(v.role == "leader" for v in history.views)
    assert len(history.replicas) == 3
    assert history.truth is not None
    ran_locally = [t for t in history.truth.tasks.values() if t.queue == "chaos-exec"]
    assert any(t.state == "succeeded" for t in ran_locally)

    victim = acked[0].task_id
    assert victim is not None
    tasks = {tid: t for tid, t in history.truth.tasks.items() if tid != victim}
    history.truth = dataclasses.replace(history.truth, tasks=tasks)
    doctored = tmp_path / "doctored.json"
    doctored.write_bytes(history.to_json())
    check = subprocess.run(
        [sys.executable, "-m", "chaos", "check", str(doctored)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert check.returncode == 1
    assert f"was acknowledged as {victim}" in check.stdout
