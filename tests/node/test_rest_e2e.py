"""REST against a real node process: the founding document's example, and bad input.

Every bad request gets a 4xx with ``{"error": {"code", "message", "field"}}`` naming the field,
never a 500, a hang or a half-applied change.
"""

from __future__ import annotations

import pytest

from tests.node.rest import call, get, post

pytestmark = pytest.mark.slow


def test_the_founding_documents_curl_example(node_factory_shared):
    # curl -X POST .../api/v1/tasks -H 'Content-Type: application/json'
    #      -d '{"priority": "high", "payload": {"job": "process-data"}}'
    status, task = post(
        f"{node_factory_shared.http_url}/api/v1/tasks",
        {"priority": "high", "payload": {"job": "process-data"}},
    )
    assert status == 201
    assert task["priority"] == 7 and task["state"] == "queued" and task["queue"] == "default"
    assert task["payload"] == {"job": "process-data"}
    assert get(f"{node_factory_shared.http_url}/api/v1/tasks/{task['id']}") == (200, task)


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        (b'{"priority": "high",', 400, None),  # malformed JSON
        (b'{"queue": "\xff\xfe"}', 400, None),  # invalid UTF-8
        (b'{"priority": true}', 400, "priority"),  # a bool is not an int
        (b'{"priority": 12}', 400, "priority"),  # out of range
        (b'{"max_retries": "three"}', 400, "max_retries"),  # wrong type
        (b'{"timeout": "forever"}', 400, "timeout"),
        (b'{"priorty": 5}', 400, "priorty"),  # unknown field, named
        (b"[1, 2, 3]", 400, None),  # not an object
        (b'{"depends_on": ["01NOSUCHTASK0000000000000"]}', 400, "depends_on[0]"),
    ],
)
def test_bad_submits_are_4xx_naming_the_field(node_factory_shared, raw, status, field):
    got, body = call("POST", f"{node_factory_shared.http_url}/api/v1/tasks", raw=raw)
    assert got == status, body
    assert set(body["error"]) >= {"code", "message"}
    if field:
        assert body["error"]["field"] == field, body


def test_oversized_payload_is_413_and_nothing_is_created(node_factory_shared):
    base = node_factory_shared.http_url
    before = get(f"{base}/api/v1/tasks?queue=big")[1]["tasks"]
    status, body = post(f"{base}/api/v1/tasks", {"queue": "big", "payload": "x" * (1 << 20)})
    assert status == 413 and body["error"]["field"] == "payload"
    assert get(f"{base}/api/v1/tasks?queue=big")[1]["tasks"] == before


def test_unknown_ids_are_404_and_illegal_transitions_409(node_factory_shared):
    base = node_factory_shared.http_url
    assert get(f"{base}/api/v1/tasks/01NOSUCHTASK0000000000000")[0] == 404
    assert post(f"{base}/api/v1/tasks/01NOSUCHTASK0000000000000/cancel")[0] == 404
    _, task = post(f"{base}/api/v1/tasks", {"queue": "trans"})
    status, body = post(f"{base}/api/v1/tasks/{task['id']}/retry")
    assert status == 409, body


def test_stale_lease_epochs_are_409(node_factory_shared):
    base = node_factory_shared.http_url
    _, task = post(f"{base}/api/v1/tasks", {"queue": "fenced"})
    status, leased = post(f"{base}/api/v1/queues/fenced/lease", {"worker": "w1", "max": 1})
    assert status == 200
    lease = leased["tasks"][0]["lease"]
    for path, body in (
        ("heartbeat", {"lease": lease + 1}),
        ("complete", {"lease": lease + 1, "result": 1}),
        ("fail", {"lease": lease - 1, "error": "x"}),
    ):
        status, answer = post(f"{base}/api/v1/tasks/{task['id']}/{path}", body)
        assert status == 409, (path, answer)
        assert answer["error"]["field"] == "lease"
    assert (
        post(f"{base}/api/v1/tasks/{task['id']}/complete", {"lease": lease, "result": 1})[0] == 200
    )
    # a second completion of the same attempt is rejected: at most one terminal outcome
    assert (
        post(f"{base}/api/v1/tasks/{task['id']}/complete", {"lease": lease, "result": 2})[0] == 409
    )
    assert get(f"{base}/api/v1/tasks/{task['id']}")[1]["result"] == 1


def test_queue_full_is_429(node_factory):
    node = node_factory("--max-queue-depth", "2")
    base = node.http_url
    assert post(f"{base}/api/v1/tasks", {"queue": "tiny"})[0] == 201
    assert post(f"{base}/api/v1/tasks", {"queue": "tiny"})[0] == 201
    status, body = post(f"{base}/api/v1/tasks", {"queue": "tiny"})
    assert status == 429 and body["error"]["code"] == "queue_full"
    assert post(f"{base}/api/v1/tasks", {"queue": "other"})[0] == 201


def test_health_readiness_and_metrics(node_factory_shared):
    base = node_factory_shared.http_url
    assert get(f"{base}/healthz")[0] == 200
    assert get(f"{base}/readyz")[0] == 200
    post(f"{base}/api/v1/tasks", {"queue": "metered"})
    status, text = get(f"{base}/metrics")
    assert status == 200
    assert 'taskd_queue_tasks{queue="metered",state="queued"}' in text
    assert "taskd_commands_total" in text
    status, queues = get(f"{base}/api/v1/queues")
    [metered] = [q for q in queues["queues"] if q["name"] == "metered"]
    assert metered["by_state"]["queued"] == 1 and metered["rates"]["submitted_per_second"] > 0
    status, cluster = get(f"{base}/api/v1/cluster")
    assert status == 200 and cluster["role"] == "leader" and cluster["commit_index"] > 0


def test_http_workers_are_listed_with_their_running_tasks(node_factory_shared):
    base = node_factory_shared.http_url
    _, task = post(f"{base}/api/v1/tasks", {"queue": "listed"})
    status, leased = post(f"{base}/api/v1/queues/listed/lease", {"worker": "hw-1", "max": 2})
    assert status == 200 and leased["tasks"][0]["id"] == task["id"]
    workers = {w["worker"]: w for w in get(f"{base}/api/v1/workers")[1]["workers"]}
    assert workers["hw-1"]["kind"] == "http"
    assert workers["hw-1"]["queues"] == ["listed"]
    assert workers["hw-1"]["running"] == [task["id"]]
    lease = leased["tasks"][0]["lease"]
    assert post(f"{base}/api/v1/tasks/{task['id']}/complete", {"lease": lease})[0] == 200
    workers = {w["worker"]: w for w in get(f"{base}/api/v1/workers")[1]["workers"]}
    assert workers["hw-1"]["running"] == []
