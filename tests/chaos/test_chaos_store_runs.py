"""Short chaos runs on a shared database in CI: PostgreSQL and Redis, a clean account each.

Given 3 nodes on a fresh database of the machine's PostgreSQL (or a fresh key prefix of its
Redis), each node behind its own proxy to it, clients, HTTP workers and ``--exec`` executors,
and a seeded nemesis for 18 seconds aimed at the leader — PostgreSQL seed 1: a kill, a pause,
its database answers lost; Redis seed 197: cut off the database, a kill, its answers lost —
Expect ``python -m chaos --store ...`` to exit 0 with a substantial history: acknowledged
submits, leased attempts, those faults applied, more than one lease term, local commands run,
every node read back. And Expect the database (or every key of the prefix) gone afterwards.

Never skipped: the servers are the ones every shared-store test needs.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from chaos import checker
from chaos.history import History
from tests.chaos.presence import ROOT
from tests.store.shared import pgserver, redisserver

pytestmark = pytest.mark.slow

DURATION = 18


def _gone(store: str, name: str) -> bool:
    if store == "postgres":
        with pgserver.admin() as conn:
            row = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name])
            return row.fetchone() == (0,)
    with redisserver.admin() as client:
        return not redisserver.keys_of(client, name)


FAULTS = ("kill leader", "lose-db-answers leader")  # both seeds, at the leader of the time


@pytest.mark.parametrize(
    ("store", "seed", "fault"), [("postgres", 1, "pause leader"), ("redis", 197, "cut-db leader")]
)
def test_a_short_chaos_run_on_a_shared_database_is_clean(tmp_path, store, seed, fault):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "chaos", "--store", store, "--duration", str(DURATION)]
    proc = subprocess.run(
        [*argv, "--seed", str(seed), "--exec", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]

    history = History.from_json((out / "history.json").read_bytes())
    assert checker.account(history).ok
    assert history.meta["store"] == store
    assert all("--peers" not in a for a in history.meta["node_args"])
    acked = [s for s in history.submits if s.outcome == "ok"]
    assert len(acked) > 50
    assert history.leases and history.reports and history.reads
    details = [e.detail for e in history.nemesis]
    for kind in (*FAULTS, fault):
        assert any(d.startswith(kind) for d in details), (kind, details)
    terms = {v.term for v in history.views if v.role == "leader"}
    assert len(terms) >= 2  # the killed leader's lease was taken over in a new term
    assert len(history.replicas) == 3 and history.truth is not None
    ran_locally = [t for t in history.truth.tasks.values() if t.queue == "chaos-exec"]
    assert any(t.state == "succeeded" for t in ran_locally)
    assert _gone(store, history.meta["database"])
