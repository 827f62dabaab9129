"""Event-stream messages shaped as a node sends them (taskd/web/messages.py), for the watch
tests: each builder takes only what a test cares about."""

from __future__ import annotations

from typing import Any

STATES = ("pending", "blocked", "queued", "running", "succeeded", "failed", "canceled")


def queue(
    name: str,
    *,
    paused: bool = False,
    consumers: int = 1,
    submitted: float = 0.0,
    finished: float = 0.0,
    pickup_p50: float | None = None,
    pickup_p95: float | None = None,
    by_priority: dict[str, int] | None = None,
    **by_state: int,
) -> dict[str, Any]:
    states = {state: by_state.get(state, 0) for state in STATES}
    return {
        "name": name,
        "paused": paused,
        "consumers": consumers,
        "depth": sum(states[s] for s in ("pending", "blocked", "queued", "running")),
        "by_state": states,
        "by_priority": by_priority or {str(p): 0 for p in range(10)},
        "rates": {"submitted_per_second": submitted, "finished_per_second": finished},
        "latency": {
            "pickup_ms": {"p50": pickup_p50, "p95": pickup_p95, "p99": pickup_p95},
            "run_ms": {"p50": None, "p95": None, "p99": None},
        },
    }


def totals(queues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"by_state": {s: sum(q["by_state"][s] for q in queues) for s in STATES}}


def cluster(role: str = "leader", term: int = 1, commit: int = 4) -> dict[str, Any]:
    return {
        "id": "127.0.0.1:50051",
        "role": role,
        "term": term,
        "leader": "127.0.0.1:50051" if role == "leader" else "127.0.0.1:50052",
        "commit_index": commit,
        "members": [
            {"address": "127.0.0.1:50051", "role": role, "match_index": commit, "reachable": True},
            {
                "address": "127.0.0.1:50052",
                "role": "follower",
                "match_index": commit - 3,
                "reachable": False,
            },
        ],
    }


def worker(name: str = "local@n1", running: list[str] | None = None) -> dict[str, Any]:
    return {
        "worker": name,
        "kind": "local",
        "queues": ["emails"],
        "capacity": 4,
        "running": running or [],
    }


def snapshot(
    queues: list[dict[str, Any]] | None = None, *, interval_ms: int = 1000, **extra: Any
) -> dict[str, Any]:
    listed = queues if queues is not None else [queue("emails", queued=2)]
    return {
        "type": "snapshot",
        "at": "2030-01-02T15:04:05.123Z",
        "node": {"id": "127.0.0.1:50051", "role": "leader", "version": "0.1.0"},
        "queues": listed,
        "queues_omitted": 0,
        "workers": [worker()],
        "cluster": cluster(),
        "totals": totals(listed),
        "interval_ms": interval_ms,
        "subscription": {"queues": [], "states": [], "ids": []},
        **extra,
    }


def stats(queues: list[dict[str, Any]], submitted: float = 0.0) -> dict[str, Any]:
    return {
        "type": "stats",
        "at": "2030-01-02T15:04:06.123Z",
        "queues": queues,
        "queues_omitted": 0,
        "totals": totals(queues),
        "rates": {"submitted_per_s": submitted, "finished_per_s": 1.5, "transitions_per_s": 12.0},
        "counts": {"seconds": 1.0, "transitions": 12, "submitted": 3, "finished": 1},
    }


def event(task_id: str, to: str = "queued", previous: str | None = None) -> dict[str, Any]:
    return {
        "id": task_id,
        "queue": "emails",
        "name": "send",
        "from": previous,
        "to": to,
        "at": "2030-01-02T15:04:05.456Z",
        "attempt": 1,
        "priority": 5,
    }


def transitions(*events: dict[str, Any], dropped: int = 0) -> dict[str, Any]:
    return {"type": "transitions", "events": list(events), "dropped": dropped}
