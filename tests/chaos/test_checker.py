"""The chaos checker on hand-made histories: a clean one passes, each doctored one fails.

Given a small history in which everything went right (two acknowledged submits, one
dependent on the other, one indeterminate submit that nonetheless landed, a failed submit,
completions, one leader, identical replicas), Expect every check to pass; then doctor one
thing at a time and Expect exactly the check that guards it to flag it.
"""

from __future__ import annotations

import dataclasses

import pytest

from chaos import checker
from chaos.history import (
    ClusterView,
    FinalRead,
    History,
    Lease,
    LogLeader,
    Read,
    Report,
    Submit,
    TaskView,
)

N1, N2, N3 = "127.0.0.1:23001", "127.0.0.1:23002", "127.0.0.1:23003"
R1 = {"w": "w0", "lease": 1, "n": 1}
R2 = {"w": "w0", "lease": 2, "n": 2}
R4 = {"w": "w1", "lease": 4, "n": 1}


def submit(op: str, outcome: str, task_id: str | None, at: float, **kw: object) -> Submit:
    fields = dict(client="c0", node=N1, api="rest", queue="chaos", invoked=at, completed=at + 0.01)
    fields.update(kw)
    return Submit(op=op, outcome=outcome, task_id=task_id, **fields)  # type: ignore[arg-type]


def task(tid: str, op: str | None, state: str = "succeeded", **kw: object) -> TaskView:
    fields: dict[str, object] = dict(queue="chaos", attempt=1, max_retries=3)
    fields.update(kw)
    return TaskView(id=tid, op=op, state=state, **fields)  # type: ignore[arg-type]


def clean() -> History:
    tasks = {
        "t1": task("t1", "c0-1", result=R1),
        "t2": task("t2", "c0-2", depends_on=("t1",), result=R2),
        "t4": task("t4", "c0-4", result=R4),
    }
    h = History(meta={"worker_queues": ["chaos"]})
    h.submits = [
        submit("c0-1", "ok", "t1", 1.0),
        submit("c0-2", "ok", "t2", 2.0, deps=("t1",)),
        submit("c0-3", "fail", None, 3.0, error="HTTP 400"),
        submit("c0-4", "info", None, 4.0, key="k-c0-4"),
        submit("c0-5", "info", None, 4.5),  # never landed: fine too
    ]
    h.leases = [
        Lease("w0", N1, "t1", 1, 1, 1.5, "c0-1"),
        Lease("w0", N1, "t2", 1, 2, 2.6, "c0-2", {"t1": R1}),
        Lease("w1", N2, "t4", 1, 4, 4.6, "c0-4"),
    ]
    h.reports = [
        Report("complete", "w0", N1, "t1", 1, 1.6, 1.7, "ok", R1),
        Report("complete", "w0", N1, "t2", 2, 2.7, 2.8, "ok", R2),
        Report("complete", "w1", N2, "t4", 4, 4.7, 4.8, "info", R4),  # unknown, yet it landed
    ]
    h.views = [
        ClusterView(N1, 1.0, "leader", 1, N1),
        ClusterView(N2, 1.0, "follower", 1, N1),
        ClusterView(N3, 1.0, "follower", 2, None),  # an election in progress: no leader named
        ClusterView(N3, 2.0, "leader", 2, N3),
    ]
    h.log_leaders = [LogLeader(N1, 1, "leading in term 1"), LogLeader(N3, 2, "leading in term 2")]
    h.reads = [
        Read("c0", N2, "t1", 1.01, 1.02, 1.03, 200),
        Read("c0", N3, "t2", 2.01, 2.02, 5.02, 0, "ReadTimeout"),  # no answer: only counted
    ]
    h.truth = FinalRead(N3, 10.0, False, tasks)
    h.replicas = [FinalRead(n, 10.0, True, dict(tasks)) for n in (N1, N2, N3)]
    return h


def flagged(h: History) -> dict[str, list[str]]:
    return {c.name: c.violations for c in checker.account(h).checks if c.violations}


def test_a_clean_history_passes_every_check():
    account = checker.account(clean())
    assert account.ok, flagged(clean())
    counts = {c.name: c.counts for c in account.checks}
    assert counts["submits"]["acknowledged"] == 2
    assert counts["submits"]["indeterminate but present"] == 1
    assert counts["leaders"]["terms with a leader"] == 2


def test_a_lost_acknowledged_submit_is_flagged():
    h = clean()
    del h.truth.tasks["t1"]  # type: ignore[union-attr]
    got = flagged(h)
    assert any("lost: op c0-1" in v for v in got["submits"])


def test_an_acknowledged_id_holding_another_op_is_lost():
    h = clean()
    h.truth.tasks["t1"] = task("t1", "c0-5", result=R1)  # type: ignore[union-attr]
    assert any("which is op c0-5" in v for v in flagged(h)["submits"])


def test_an_unexpected_task_is_flagged():
    h = clean()
    h.truth.tasks["t9"] = task("t9", "nobody-1")  # type: ignore[union-attr]
    assert any("unexpected: task t9" in v for v in flagged(h)["submits"])


def test_one_op_making_two_tasks_is_a_duplicated_submit():
    h = clean()
    h.truth.tasks["t5"] = task("t5", "c0-1", result=R1)  # type: ignore[union-attr]
    assert any("duplicated submit: op c0-1" in v for v in flagged(h)["submits"])


def test_an_idempotent_retry_answered_with_another_task_is_flagged():
    h = clean()
    h.submits.append(submit("c0-4", "ok", "t4", 5.0, key="k-c0-4"))
    assert checker.account(h).ok  # the retry named the task the first try made: fine
    h.submits.append(submit("c0-4", "ok", "t6", 6.0, key="k-c0-4"))
    assert any("idempotency: op c0-4" in v for v in flagged(h)["submits"])


def test_two_accepted_completions_of_one_task_are_flagged():
    h = clean()
    h.leases.append(Lease("w1", N2, "t1", 2, 7, 1.8, "c0-1"))
    h.reports.append(Report("complete", "w1", N2, "t1", 7, 1.9, 2.0, "ok", {"n": 99}))
    assert any("duplicated completion: task t1" in v for v in flagged(h)["completions"])


def test_an_accepted_completion_the_cluster_forgot_is_flagged():
    h = clean()
    for read in (h.truth, *h.replicas):
        read.tasks["t1"] = task("t1", "c0-1", "running", result=None)  # type: ignore[union-attr]
    assert any("completion lost: task t1" in v for v in flagged(h)["completions"])


def test_a_result_no_worker_sent_is_flagged():
    h = clean()
    for read in (h.truth, *h.replicas):
        read.tasks["t4"] = task("t4", "c0-4", result={"forged": True})  # type: ignore[union-attr]
    assert any("phantom result: task t4" in v for v in flagged(h)["completions"])


def test_an_attempt_beyond_max_retries_plus_one_is_flagged():
    h = clean()
    h.leases.append(Lease("w0", N1, "t1", 5, 9, 1.55, "c0-1"))
    assert any("attempt 5 with max_retries 3" in v for v in flagged(h)["attempts"])
    h = clean()
    for read in (h.truth, *h.replicas):
        read.tasks["t1"] = dataclasses.replace(read.tasks["t1"], attempt=2, max_retries=0)  # type: ignore[union-attr]
    assert any("ended at attempt 2" in v for v in flagged(h)["attempts"])


def test_a_dependent_leased_before_its_dependency_completed_is_flagged():
    h = clean()
    h.leases[1] = dataclasses.replace(h.leases[1], received=1.55)  # before t1's complete (1.6)
    assert any("leased before t1 was completed" in v for v in flagged(h)["dependencies"])


def test_a_dependent_leased_without_its_dependency_result_is_flagged():
    h = clean()
    h.leases[1] = dataclasses.replace(h.leases[1], dependency_results={})
    assert any("without the result of t1" in v for v in flagged(h)["dependencies"])


def test_a_dependent_that_ran_although_its_dependency_failed_is_flagged():
    h = clean()
    for read in (h.truth, *h.replicas):
        read.tasks["t1"] = task("t1", "c0-1", "failed", attempt=4)  # type: ignore[union-attr]
    got = flagged(h)["dependencies"]
    assert any("early start: task t2 is succeeded" in v for v in got)
    assert any("not canceled: task t2" in v for v in got)


def test_a_dependent_still_blocked_after_its_dependency_succeeded_is_flagged():
    h = clean()
    h.leases = h.leases[:1] + h.leases[2:]
    h.reports = h.reports[:1] + h.reports[2:]
    for read in (h.truth, *h.replicas):
        read.tasks["t2"] = task("t2", "c0-2", "blocked", attempt=0, depends_on=("t1",))  # type: ignore[union-attr]
    assert any("stuck: task t2" in v for v in flagged(h)["dependencies"])


def test_a_delayed_task_leased_early_is_flagged():
    h = clean()
    h.submits[0] = dataclasses.replace(h.submits[0], delay=1.0)  # not before 2.0; leased at 1.5
    assert any("task t1 was leased 0.500 s before" in v for v in flagged(h)["delays"])


def test_two_leaders_in_one_term_are_flagged_from_views_and_from_logs():
    h = clean()
    h.views.append(ClusterView(N2, 1.2, "leader", 1, N2))
    assert any("term 1 had leaders" in v for v in flagged(h)["leaders"])
    h = clean()
    h.views.append(ClusterView(N2, 2.5, "follower", 2, N1))  # N2 thinks N1 leads term 2
    assert any("term 2 had leaders" in v for v in flagged(h)["leaders"])
    h = clean()
    h.log_leaders.append(LogLeader(N2, 2, "leading in term 2"))
    assert any("term 2 had leaders" in v for v in flagged(h)["leaders"])


def test_a_diverged_or_unreadable_replica_is_flagged():
    h = clean()
    h.replicas[1].tasks["t2"] = task("t2", "c0-2", "running", depends_on=("t1",))
    h.replicas[2].tasks.pop("t4")
    h.replicas[0] = FinalRead(N1, 10.0, True, {}, "HTTP 503: no leader")
    got = flagged(h)["convergence"]
    assert any("task t2 is succeeded/attempt 1" in v and N2 in v for v in got)
    assert any(f"{N3} lacks task t4" in v for v in got)
    assert any(f"unreadable: {N1}" in v for v in got)


@pytest.mark.parametrize("truth", [None, FinalRead(N1, 10.0, False, {}, "timeout")])
def test_no_readable_healed_cluster_fails_the_run(truth):
    h = clean()
    h.truth = truth
    got = flagged(h)
    assert {"submits", "completions", "dependencies", "convergence"} <= got.keys()


def test_a_history_survives_its_json_form_and_is_judged_the_same():
    h = clean()
    del h.truth.tasks["t4"]  # type: ignore[union-attr]
    again = History.from_json(h.to_json())
    assert again == h
    assert checker.account(again).to_json() == checker.account(h).to_json()


def test_a_refused_completion_that_took_effect_is_flagged():
    h = clean()
    h.reports[2] = dataclasses.replace(h.reports[2], outcome="fail", error="HTTP 409: stale lease")
    assert any("refused yet applied: task t4" in v for v in flagged(h)["completions"])


def test_a_cluster_that_did_not_recover_after_healing_is_flagged():
    h = clean()
    h.meta["settled"] = {"leader": None, "not_ready": ["http://127.0.0.1:23005"], "at": 9.0}
    got = flagged(h)["convergence"]
    assert any("no leader" in v for v in got)
    assert any("not ready: http://127.0.0.1:23005" in v for v in got)
    h.meta["settled"] = {"leader": N3, "not_ready": [], "at": 9.0}
    assert checker.account(h).ok


def test_a_linearizable_read_missing_an_acknowledged_task_is_a_stale_read():
    h = clean()
    h.reads.append(Read("c0", N3, "t4", 4.81, 4.82, 4.83, 404, "no such task"))
    assert any(
        "stale read: 127.0.0.1:23003 answered 404 for task t4" in v for v in flagged(h)["reads"]
    )
    h = clean()
    h.reads.append(Read("c0", N3, "t4", 4.81, 4.80, 4.83, 404))  # sent before the ack: fine
    assert checker.account(h).ok
