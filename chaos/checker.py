"""The account of a chaos run: pure checks over a recorded ``History`` (design.md §5).

Theory of operation: each ``check_*`` function reads the history and returns a ``Check`` — a
name, counts for the table, and a list of violations (each a sentence naming the task, op or
node). ``account(history)`` runs them all; the run fails if any check has a violation. No
check does I/O or reads a clock, so they are unit-tested with hand-made histories, including
ones that must fail.

What "the healed cluster" holds is ``history.truth`` (a linearizable read after healing), and
each node's own replica is ``history.replicas`` (stale reads after a quiet period). The checks:

- submits: every acknowledged submit's task is on the healed cluster, carrying its op (else
  *lost*); no op made two tasks (*duplicated submit*); every acknowledgement of one op named
  the same task (*idempotency*); no task of the chaos queues came from an op nobody invoked
  (*unexpected*). Indeterminate (``info``) submits may or may not be there: both are fine.
- completions: at most one accepted completion per task; an accepted completion's task is
  ``succeeded`` with that result; a succeeded task's result was sent by a completion call that
  was not refused (a refused request must change nothing).
- attempts: no leased attempt and no final ``attempt`` beyond ``max_retries + 1``.
- dependencies: a dependent was leased only with every dependency's result, each one a result
  a worker sent before the lease arrived; in the final state a dependent past ``blocked`` has
  only succeeded dependencies, a dependent of a failed or canceled task is canceled, and one
  whose dependencies all succeeded is no longer blocked.
- reads: a linearizable read (the default) of a task, sent to another member after its submit
  was acknowledged, found it (else *stale read*); 503s and timeouts are only counted.
- delays: no attempt was leased before its submit's invocation time plus its delay.
- leaders: at most one leader per term, from every polled cluster view (a node saying it
  leads, or naming the leader) and every "leading in term N" log line.
- convergence: every node's replica holds the same tasks in the same states as the truth.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from chaos.history import FAIL, INFO, OK, FinalRead, History, TaskView

MAX_LISTED = 10  # violations listed per check in the table (all of them are in account.json)
_EARLY_TOLERANCE = 0.01  # seconds: float rounding of stamped times


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    counts: dict[str, int | str]
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(frozen=True, slots=True)
class Account:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def violations(self) -> int:
        return sum(len(c.violations) for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "violations": self.violations,
            "checks": [
                {"name": c.name, "ok": c.ok, "counts": c.counts, "violations": c.violations}
                for c in self.checks
            ],
        }


def _truth(h: History) -> dict[str, TaskView] | None:
    return h.truth.tasks if h.truth is not None and not h.truth.error else None


def _no_truth(name: str, h: History) -> Check:
    why = h.truth.error if h.truth is not None else "no final read was recorded"
    return Check(name, {}, [f"the healed cluster could not be read: {why}"])


def check_submits(h: History) -> Check:
    truth = _truth(h)
    if truth is None:
        return _no_truth("submits", h)
    outcomes = Counter(s.outcome for s in h.submits)
    ops = {s.op for s in h.submits}
    acked: dict[str, set[str]] = defaultdict(set)  # op -> task ids its ok answers named
    for s in h.submits:
        if s.outcome == OK and s.task_id:
            acked[s.op].add(s.task_id)
    violations: list[str] = []
    lost = 0
    for op, ids in sorted(acked.items()):
        if len(ids) > 1:
            violations.append(f"idempotency: op {op} was acknowledged as tasks {sorted(ids)}")
        for tid in sorted(ids):
            task = truth.get(tid)
            if task is None:
                lost += 1
                violations.append(f"lost: op {op} was acknowledged as {tid}, which is gone")
            elif task.op != op:
                lost += 1
                violations.append(f"lost: op {op} was acknowledged as {tid}, which is op {task.op}")
    by_op: dict[str, list[str]] = defaultdict(list)
    unexpected = 0
    for tid, task in sorted(truth.items()):
        if task.op is None or task.op not in ops:
            unexpected += 1
            violations.append(f"unexpected: task {tid} (op {task.op}) was never submitted")
        else:
            by_op[task.op].append(tid)
    duplicated = 0
    for op, tids in sorted(by_op.items()):
        if len(tids) > 1:
            duplicated += 1
            violations.append(f"duplicated submit: op {op} made tasks {tids}")
    recovered = sum(1 for op in by_op if op not in acked)
    ack_times = sorted(s.completed for s in h.submits if s.outcome == OK)
    gap = max((b - a for a, b in itertools.pairwise(ack_times)), default=0.0)
    counts: dict[str, int | str] = {
        "calls": len(h.submits),
        "acknowledged": len(acked),
        "failed": outcomes[FAIL],
        "indeterminate": outcomes[INFO],
        "indeterminate but present": recovered,
        "lost": lost,
        "duplicated": duplicated,
        "unexpected": unexpected,
        "longest wait between acks": f"{gap:.2f} s",
    }
    return Check("submits", counts, violations)


def check_completions(h: History) -> Check:
    truth = _truth(h)
    if truth is None:
        return _no_truth("completions", h)
    accepted: dict[str, list[Any]] = defaultdict(list)
    sent: dict[str, list[Any]] = defaultdict(list)  # every result any complete call carried
    for r in h.reports:
        if r.kind != "complete":
            continue
        if r.outcome != FAIL:
            sent[r.task_id].append(r.result)
        if r.outcome == OK:
            accepted[r.task_id].append(r.result)
    worker_queues = set(h.meta.get("worker_queues", ()))  # completed only by our workers
    violations: list[str] = []
    for tid, results in sorted(accepted.items()):
        if len(results) > 1:
            violations.append(f"duplicated completion: task {tid} had {len(results)} accepted")
        task = truth.get(tid)
        if task is None:
            continue  # reported by the submits check if it was acknowledged
        if task.state != "succeeded":
            violations.append(f"completion lost: task {tid} was completed but is {task.state}")
        elif task.result not in results:
            violations.append(f"completion lost: task {tid} holds a result no accepted call sent")
    refused = {
        (r.task_id, orjson.dumps(r.result, option=orjson.OPT_SORT_KEYS)): r
        for r in h.reports
        if r.kind == "complete" and r.outcome == FAIL
    }
    for tid, task in sorted(truth.items()):
        if task.queue in worker_queues and task.state == "succeeded":
            if task.result in sent.get(tid, []):
                continue
            call = refused.get((tid, orjson.dumps(task.result, option=orjson.OPT_SORT_KEYS)))
            if call is not None:
                violations.append(
                    f"refused yet applied: task {tid} succeeded with the result of a complete "
                    f"call that {call.node} refused ({call.error[:120]})"
                )
            else:
                violations.append(
                    f"phantom result: task {tid} succeeded with a result no worker sent"
                )
    counts: dict[str, int | str] = {
        "complete calls": sum(1 for r in h.reports if r.kind == "complete"),
        "fail calls": sum(1 for r in h.reports if r.kind == "fail"),
        "accepted completions": sum(len(v) for v in accepted.values()),
        "tasks completed twice": sum(1 for v in accepted.values() if len(v) > 1),
    }
    return Check("completions", counts, violations)


def _max_retries(h: History) -> dict[str, int]:
    """Task id -> max_retries, from the final read, else from its acknowledged submit."""
    limits = {s.task_id: s.max_retries for s in h.submits if s.outcome == OK and s.task_id}
    truth = _truth(h) or {}
    limits.update({tid: t.max_retries for tid, t in truth.items()})
    return limits


def check_attempts(h: History) -> Check:
    limits = _max_retries(h)
    violations: list[str] = []
    highest = 0
    for lease in h.leases:
        highest = max(highest, lease.attempt)
        limit = limits.get(lease.task_id)
        if limit is not None and lease.attempt > limit + 1:
            violations.append(
                f"too many attempts: task {lease.task_id} was leased for attempt "
                f"{lease.attempt} with max_retries {limit}"
            )
    for tid, task in sorted((_truth(h) or {}).items()):
        highest = max(highest, task.attempt)
        if task.attempt > task.max_retries + 1:
            violations.append(
                f"too many attempts: task {tid} ended at attempt {task.attempt} "
                f"with max_retries {task.max_retries}"
            )
    per_task = Counter(lease.task_id for lease in h.leases)
    counts: dict[str, int | str] = {
        "leased attempts": len(h.leases),
        "tasks leased": len(per_task),
        "highest attempt": highest,
    }
    return Check("attempts", counts, violations)


def check_dependencies(h: History) -> Check:
    truth = _truth(h)
    if truth is None:
        return _no_truth("dependencies", h)
    deps = {tid: t.depends_on for tid, t in truth.items() if t.depends_on}
    sent_at: dict[str, list[tuple[Any, float]]] = defaultdict(list)
    for r in h.reports:
        if r.kind == "complete" and r.outcome != FAIL:
            sent_at[r.task_id].append((r.result, r.invoked))
    violations: list[str] = []
    leased_dependents = 0
    for lease in h.leases:
        wanted = deps.get(lease.task_id, ())
        if not wanted:
            continue
        leased_dependents += 1
        for dep in wanted:
            if dep not in lease.dependency_results:
                violations.append(
                    f"early start: task {lease.task_id} was leased without the result of {dep}"
                )
                continue
            value = lease.dependency_results[dep]
            times = [at for result, at in sent_at.get(dep, []) if result == value]
            if not times:
                violations.append(
                    f"early start: task {lease.task_id} was given a result of {dep} "
                    "that no worker sent"
                )
            elif min(times) > lease.received:
                violations.append(
                    f"early start: task {lease.task_id} was leased before {dep} was completed"
                )
    for tid, wanted in sorted(deps.items()):
        state = truth[tid].state
        dep_states = {d: truth[d].state if d in truth else "absent" for d in wanted}
        broken = [d for d, s in dep_states.items() if s in ("failed", "canceled")]
        if state not in ("blocked", "canceled") or truth[tid].attempt > 0:
            if any(s != "succeeded" for s in dep_states.values()):
                violations.append(
                    f"early start: task {tid} is {state} (attempt {truth[tid].attempt}) "
                    f"but its dependencies are {dep_states}"
                )
        if broken and state != "canceled":
            violations.append(
                f"not canceled: task {tid} is {state} but {broken[0]} did not succeed"
            )
        if state == "blocked" and all(s == "succeeded" for s in dep_states.values()):
            violations.append(f"stuck: task {tid} is blocked although every dependency succeeded")
    counts: dict[str, int | str] = {"dependents": len(deps), "dependent leases": leased_dependents}
    return Check("dependencies", counts, violations)


def check_reads(h: History) -> Check:
    """A linearizable read sent after a submit was acknowledged must find the task."""
    statuses = Counter(r.status for r in h.reads)
    violations = [
        f"stale read: {r.node} answered 404 for task {r.task_id}, "
        f"{r.invoked - r.acked:.3f} s after its submit was acknowledged"
        for r in h.reads
        if r.status == 404 and r.invoked >= r.acked
    ]
    counts: dict[str, int | str] = {
        "reads": len(h.reads),
        "found": statuses[200],
        "unavailable": sum(n for s, n in statuses.items() if s not in (200, 404)),
        "stale": len(violations),
    }
    return Check("reads", counts, violations)


def check_delays(h: History) -> Check:
    not_before = {
        s.task_id: s.invoked + s.delay
        for s in h.submits
        if s.outcome == OK and s.task_id and s.delay > 0
    }
    violations = [
        f"early start: task {lease.task_id} was leased "
        f"{not_before[lease.task_id] - lease.received:.3f} s before its delay ended"
        for lease in h.leases
        if lease.task_id in not_before
        and lease.received + _EARLY_TOLERANCE < not_before[lease.task_id]
    ]
    return Check("delays", {"delayed tasks": len(not_before)}, violations)


def check_leaders(h: History) -> Check:
    claims: dict[int, set[str]] = defaultdict(set)
    for v in h.views:
        if v.role == "leader":
            claims[v.term].add(v.node)
        if v.leader:
            claims[v.term].add(v.leader)
    for line in h.log_leaders:
        claims[line.term].add(line.node)
    violations = [
        f"split brain: term {term} had leaders {sorted(nodes)}"
        for term, nodes in sorted(claims.items())
        if len(nodes) > 1
    ]
    led = [t for t, nodes in claims.items() if nodes]
    counts: dict[str, int | str] = {
        "cluster polls": len(h.views),
        "terms with a leader": len(led),
        "highest term": max(led, default=0),
        "leadership log lines": len(h.log_leaders),
    }
    return Check("leaders", counts, violations)


def differences(a: FinalRead, b: FinalRead) -> Iterable[str]:
    """How replica ``b`` differs from ``a``: tasks missing on either side, or in other states."""
    for tid in sorted(a.tasks.keys() - b.tasks.keys()):
        yield f"diverged: {b.node} lacks task {tid} that {a.node} holds"
    for tid in sorted(b.tasks.keys() - a.tasks.keys()):
        yield f"diverged: {b.node} holds task {tid} that {a.node} lacks"
    for tid in sorted(a.tasks.keys() & b.tasks.keys()):
        x, y = a.tasks[tid], b.tasks[tid]
        if (x.state, x.attempt, x.result) != (y.state, y.attempt, y.result):
            yield (
                f"diverged: task {tid} is {x.state}/attempt {x.attempt} on {a.node} "
                f"but {y.state}/attempt {y.attempt} on {b.node}"
            )


def check_convergence(h: History) -> Check:
    if h.truth is None or h.truth.error:
        return _no_truth("convergence", h)
    violations: list[str] = []
    for replica in h.replicas:
        if replica.error:
            violations.append(f"unreadable: {replica.node}: {replica.error}")
            continue
        violations.extend(differences(h.truth, replica))
    if not h.replicas:
        violations.append("no replica was read after healing")
    settled = h.meta.get("settled") or {}
    if "settled" in h.meta and not settled.get("leader"):
        violations.append("no leader: none was elected within the settle time after healing")
    for url in settled.get("not_ready", ()):
        violations.append(f"not ready: {url} still answered /readyz 503 well after healing")
    counts: dict[str, int | str] = {
        "nodes read": sum(1 for r in h.replicas if not r.error),
        "tasks": len(h.truth.tasks),
        "by state": ", ".join(
            f"{s} {n}" for s, n in sorted(Counter(t.state for t in h.truth.tasks.values()).items())
        ),
    }
    return Check("convergence", counts, violations)


CHECKS: tuple[Callable[[History], Check], ...] = (
    check_submits,
    check_completions,
    check_attempts,
    check_dependencies,
    check_reads,
    check_delays,
    check_leaders,
    check_convergence,
)


def account(h: History) -> Account:
    return Account([check(h) for check in CHECKS])
