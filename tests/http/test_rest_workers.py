"""REST queue, HTTP-worker and node endpoints: pause/resume, lease → heartbeat → complete or
fail with fencing epochs, long-polling, cluster errors (503) and unexpected ones (500).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from taskd.errors import NotLeader, Unavailable
from taskd.node.api.http.app import HttpExtras, create_app
from taskd.node.api.present import rfc3339
from taskd.node.app.machine import SchedulerMachine
from taskd.node.app.service import NodeService
from taskd.queue.task import SchedulerConfig
from tests.http.asgi import call
from tests.http.conftest import CLUSTER, WORKERS, Api, FailingStore, make_api


async def lease(api: Api, queue: str, **body: Any) -> dict[str, Any]:
    reply = await api.post(f"/api/v1/queues/{queue}/lease", {"worker": "w1", **body})
    assert reply.status == 200, reply.body
    leased: dict[str, Any] = reply.json
    return leased


# ---- queues ----------------------------------------------------------------------------------


async def test_queues_show_counts_by_state_and_priority(api: Api) -> None:
    await api.submit(queue="a", priority="high")
    await api.submit(queue="a", priority=7)
    await api.submit(queue="b")
    reply = await api.get("/api/v1/queues")
    assert reply.status == 200
    a, b = reply.json["queues"]
    assert (a["name"], a["paused"], a["depth"]) == ("a", False, 2)
    assert a["by_state"]["queued"] == 2 and a["by_state"]["running"] == 0
    assert set(a["by_state"]) == {
        "pending",
        "blocked",
        "queued",
        "running",
        "succeeded",
        "failed",
        "canceled",
    }
    assert a["by_priority"]["7"] == 2 and a["by_priority"]["5"] == 0
    assert b["name"] == "b" and b["by_priority"]["5"] == 1


async def test_a_paused_queue_hands_out_nothing_until_resumed(api: Api) -> None:
    # Given a queued task in a paused queue
    task = await api.submit(queue="p")
    paused = await api.post("/api/v1/queues/p/pause")
    assert paused.status == 200 and paused.json["paused"] is True
    # When a worker asks for work
    # Expect nothing
    assert (await lease(api, "p"))["tasks"] == []
    # When the queue is resumed
    resumed = await api.post("/api/v1/queues/p/resume")
    # Expect the task handed out
    assert resumed.status == 200 and resumed.json["paused"] is False
    assert [t["id"] for t in (await lease(api, "p"))["tasks"]] == [task["id"]]


async def test_a_bad_queue_name_in_the_path_is_400(api: Api) -> None:
    reply = await api.post("/api/v1/queues/bad%20name/pause")
    assert reply.status == 400 and reply.error["field"] == "name"


# ---- HTTP workers ----------------------------------------------------------------------------


async def test_lease_heartbeat_complete_round_trip_and_stale_epochs(api: Api) -> None:
    # Given a task with a JSON payload that depends on a finished task
    dep = await api.submit(queue="w")
    first = (await lease(api, "w"))["tasks"][0]
    done = await api.post(
        f"/api/v1/tasks/{dep['id']}/complete", {"lease": first["lease"], "result": {"rows": 3}}
    )
    assert done.status == 200 and done.json["state"] == "succeeded"
    task = await api.submit(queue="w", name="resize", payload={"n": 1}, depends_on=[dep["id"]])
    # When a worker leases it
    leased = await lease(api, "w", max=5)
    # Expect the work item with its lease epoch and the dependency's result
    assert leased["lease_seconds"] == 30.0
    [item] = leased["tasks"]
    assert item["id"] == task["id"] and item["name"] == "resize" and item["payload"] == {"n": 1}
    assert item["attempt"] == 1 and item["timeout"] == 1800
    assert item["dependency_results"] == {dep["id"]: {"rows": 3}}
    epoch = item["lease"]
    running = (await api.get(f"/api/v1/tasks/{task['id']}")).json
    assert running["state"] == "running" and running["lease"] == epoch
    assert running["worker"] == "w1"
    # When it heartbeats with a wrong epoch, then the right one
    stale_beat = await api.post(f"/api/v1/tasks/{task['id']}/heartbeat", {"lease": epoch + 100})
    beat = await api.post(f"/api/v1/tasks/{task['id']}/heartbeat", {"lease": epoch})
    # Expect 409 for the wrong one, 200 for the right one
    assert stale_beat.status == 409 and stale_beat.error["code"] == "conflict"
    assert beat.status == 200 and beat.json["state"] == "running"
    # When it completes, then completes again with the same (now stale) epoch
    complete = await api.post(
        f"/api/v1/tasks/{task['id']}/complete", {"lease": epoch, "result": ["ok"]}
    )
    twice = await api.post(f"/api/v1/tasks/{task['id']}/complete", {"lease": epoch, "result": 2})
    # Expect one accepted outcome, the second rejected 409
    assert complete.status == 200 and complete.json["state"] == "succeeded"
    assert complete.json["result"] == ["ok"] and complete.json["lease"] is None
    assert twice.status == 409
    assert (await api.get(f"/api/v1/tasks/{task['id']}")).json["result"] == ["ok"]


async def test_fail_retryable_and_final(api: Api) -> None:
    # Given a leased task with one retry left
    task = await api.submit(queue="f", max_retries=1)
    epoch = (await lease(api, "f"))["tasks"][0]["lease"]
    # When the attempt fails retryably
    failed = await api.post(f"/api/v1/tasks/{task['id']}/fail", {"lease": epoch, "error": "boom"})
    # Expect it waiting for a retry (backoff), error recorded
    assert failed.status == 200, failed.body
    assert failed.json["state"] in ("pending", "queued") and failed.json["error"] == "boom"
    # Given another leased task
    other = await api.submit(queue="g", max_retries=3)
    epoch = (await lease(api, "g"))["tasks"][0]["lease"]
    # When it fails as not retryable
    final = await api.post(
        f"/api/v1/tasks/{other['id']}/fail",
        {"lease": epoch, "error": "bad input", "retryable": False},
    )
    # Expect it failed for good
    assert final.status == 200 and final.json["state"] == "failed"


async def test_fail_with_a_retry_delay_requeues_no_earlier_than_asked() -> None:
    # Given a node whose clock stands still, and a leased task with retries left
    now = [1_700_000_000.0]
    api = make_api(clock=lambda: now[0])
    task = await api.submit(queue="d", max_retries=2)
    epoch = (await lease(api, "d"))["tasks"][0]["lease"]
    # When the worker fails it asking for another attempt in 30 s (as a duration string)
    failed = await api.post(
        f"/api/v1/tasks/{task['id']}/fail", {"lease": epoch, "error": "busy", "retry_delay": "30s"}
    )
    # Expect: pending until exactly 30 s later, the attempt counted
    assert failed.status == 200, failed.body
    assert failed.json["state"] == "pending" and failed.json["attempt"] == 1
    assert failed.json["run_at"] == rfc3339(now[0] + 30)
    assert (await lease(api, "d"))["tasks"] == []
    # When another task's attempt fails with a delay in seconds
    other = await api.submit(queue="e", max_retries=2)
    epoch = (await lease(api, "e"))["tasks"][0]["lease"]
    again = await api.post(
        f"/api/v1/tasks/{other['id']}/fail", {"lease": epoch, "error": "x", "retry_delay": 2.5}
    )
    # Expect it pending for exactly that long
    assert again.json["state"] == "pending" and again.json["run_at"] == rfc3339(now[0] + 2.5)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("queues/w/lease", {}, "worker"),
        ("queues/w/lease", {"worker": ""}, "worker"),
        ("queues/w/lease", {"worker": 5}, "worker"),
        ("queues/w/lease", {"worker": "w", "max": 0}, "max"),
        ("queues/w/lease", {"worker": "w", "max": True}, "max"),
        ("queues/w/lease", {"worker": "w", "wait": -1}, "wait"),
        ("queues/w/lease", {"worker": "w", "wait": 61}, "wait"),
        ("queues/w/lease", {"worker": "w", "capacity": 1}, "capacity"),
        ("tasks/x/heartbeat", {}, "lease"),
        ("tasks/x/heartbeat", {"lease": "1"}, "lease"),
        ("tasks/x/heartbeat", {"lease": True}, "lease"),
        ("tasks/x/heartbeat", {"lease": -1}, "lease"),
        ("tasks/x/complete", {"lease": 1, "result": 1, "extra": 1}, "extra"),
        ("tasks/x/fail", {"lease": 1}, "error"),
        ("tasks/x/fail", {"lease": 1, "error": 5}, "error"),
        ("tasks/x/fail", {"lease": 1, "error": "e", "retryable": "no"}, "retryable"),
        ("tasks/x/fail", {"lease": 1, "error": "e", "retry_delay": -1}, "retry_delay"),
        ("tasks/x/fail", {"lease": 1, "error": "e", "retry_delay": 1e12}, "retry_delay"),
        ("tasks/x/fail", {"lease": 1, "error": "e", "retry_delay": "soon"}, "retry_delay"),
        ("tasks/x/fail", {"lease": 1, "error": "e", "retry_delay": True}, "retry_delay"),
    ],
)
async def test_bad_worker_calls_are_400(api: Api, path: str, body: Any, field: str) -> None:
    reply = await api.post(f"/api/v1/{path}", body)
    assert reply.status == 400, reply.body
    assert reply.error["field"] == field


async def test_worker_calls_on_unknown_tasks_are_404(api: Api) -> None:
    for action, body in (
        ("heartbeat", {"lease": 1}),
        ("complete", {"lease": 1}),
        ("fail", {"lease": 1, "error": "x"}),
    ):
        reply = await api.post(f"/api/v1/tasks/nope/{action}", body)
        assert reply.status == 404, (action, reply.body)


async def test_an_oversized_result_is_413(api: Api) -> None:
    task = await api.submit(queue="big")
    epoch = (await lease(api, "big"))["tasks"][0]["lease"]
    reply = await api.post(
        f"/api/v1/tasks/{task['id']}/complete", {"lease": epoch, "result": "x" * (1 << 20)}
    )
    assert reply.status == 413 and reply.error["field"] == "result"


async def test_a_long_poll_returns_empty_when_wait_runs_out(api: Api, autojump_clock: Any) -> None:
    # Given an empty queue
    # When a worker long-polls for 10 seconds
    start = trio.current_time()
    leased = await lease(api, "idle", wait=10)
    # Expect an empty answer exactly when the wait ran out
    assert leased["tasks"] == []
    assert trio.current_time() - start == pytest.approx(10)


async def test_a_long_poll_returns_work_submitted_while_waiting(
    api: Api, autojump_clock: Any
) -> None:
    # Given a worker long-polling an empty queue for up to 30 seconds
    got: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:

        async def poll() -> None:
            got.append(await lease(api, "lp", wait=30))

        nursery.start_soon(poll)
        await trio.sleep(2)
        # When a task is submitted 2 seconds later
        task = await api.submit(queue="lp")
    # Expect the poll answered with it at once
    assert [t["id"] for t in got[0]["tasks"]] == [task["id"]]
    assert trio.current_time() == pytest.approx(2)


async def test_a_long_poll_whose_client_hangs_up_leases_nothing(
    api: Api, autojump_clock: Any
) -> None:
    # Given a worker long-polling an empty queue for up to 30 seconds
    hang_up = trio.Event()
    async with trio.open_nursery() as nursery:

        async def poll() -> None:
            body = {"worker": "w1", "wait": 30}
            await call(api.app, "POST", "/api/v1/queues/gone/lease", body, hang_up=hang_up)

        nursery.start_soon(poll)
        await trio.sleep(1)
        # When the client hangs up, and a task arrives afterwards
        hang_up.set()
        await trio.sleep(1)
        task = await api.submit(queue="gone")
    # Expect the poll over at once and the task still queued for someone else
    assert trio.current_time() == pytest.approx(2)
    assert (await api.get(f"/api/v1/tasks/{task['id']}")).json["state"] == "queued"


# ---- routing, node endpoints, cluster and internal errors ------------------------------------


async def test_unknown_routes_are_404_json(api: Api) -> None:
    reply = await api.get("/api/v1/nothing")
    assert reply.status == 404 and reply.error["code"] == "not_found"


async def test_wrong_methods_are_405_json_with_allow(api: Api) -> None:
    reply = await call(api.app, "DELETE", "/api/v1/tasks")
    assert reply.status == 405 and reply.error["code"] == "method_not_allowed"
    assert "POST" in reply.headers["allow"] and "GET" in reply.headers["allow"]


async def test_node_endpoints(api: Api) -> None:
    assert (await api.get("/healthz")).json == {"status": "ok"}
    assert (await api.get("/readyz")).status == 200
    assert (await api.get("/api/v1/cluster")).json == CLUSTER
    assert (await api.get("/api/v1/workers")).json == {"workers": WORKERS}
    metrics = await api.get("/metrics")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert b"taskd_up 1" in metrics.body
    index = await api.get("/")
    assert index.status == 200 and index.headers["content-type"].startswith("text/html")
    assert (
        b'src="/static/app.js"' in index.body
    )  # the monitor page (tests/http/test_monitor_assets)
    # When the node is not ready
    api.ready[0] = False
    not_ready = await api.get("/readyz")
    # Expect 503 with Retry-After
    assert not_ready.status == 503 and not_ready.headers["retry-after"] == "1"


def _failing_app(error: Exception) -> Any:
    machine = SchedulerMachine(SchedulerConfig())
    service = NodeService(machine, FailingStore(error))  # type: ignore[arg-type]
    extras = HttpExtras(lambda: CLUSTER, lambda: WORKERS, lambda: True, lambda: b"")
    return create_app(service, extras=extras)


async def test_not_leader_is_503_with_the_leader_hint() -> None:
    # Given a node that is not the leader
    app = _failing_app(NotLeader("10.0.0.2:50051"))
    # When a task is submitted
    reply = await call(app, "POST", "/api/v1/tasks", {"payload": 1})
    # Expect 503, Retry-After, and where the leader is
    assert reply.status == 503 and reply.headers["retry-after"] == "1"
    assert reply.error["code"] == "not_leader" and "10.0.0.2:50051" in reply.error["message"]


async def test_an_unavailable_store_is_503() -> None:
    app = _failing_app(Unavailable("disk full"))
    reply = await call(app, "POST", "/api/v1/queues/q/pause")
    assert reply.status == 503 and reply.error["code"] == "unavailable"
    assert "disk full" in reply.error["message"]


async def test_an_unexpected_exception_is_a_logged_500_json(
    api: Api, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a service that breaks in an unforeseen way
    def broken(task_id: str) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(api.service, "get", broken)
    # When a task is read
    with caplog.at_level(logging.ERROR, logger="taskd.http"):
        reply = await api.get("/api/v1/tasks/x")
    # Expect a JSON 500 that leaks nothing, and the traceback in the log
    assert reply.status == 500 and reply.error["code"] == "internal"
    assert "bug" not in reply.body.decode()
    assert any("GET /api/v1/tasks/x" in r.getMessage() and r.exc_info for r in caplog.records)
