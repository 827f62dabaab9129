"""Nothing acknowledged is lost: SIGKILL the node during concurrent submits, restart, check.

Given a node taking submits from 8 concurrent clients (single tasks and batches over REST),
When it is SIGKILLed while the submits are in flight, and started again on the same data dir,
Expect every task whose submit was acknowledged (201) to be there, in a state its last
acknowledged transition allows.
"""

from __future__ import annotations

import http.client
import threading
import time

import pytest

from tests.node.rest import get, post

pytestmark = pytest.mark.slow


def test_every_acknowledged_submit_survives_sigkill(node_factory):
    node = node_factory()
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if i % 2:
                    status, body = post(
                        f"{node.http_url}/api/v1/tasks",
                        {"queue": f"q{n % 3}", "payload": {"c": n, "i": i}},
                        timeout=5,
                    )
                    ids = [body["id"]] if status == 201 else []
                else:
                    status, body = post(
                        f"{node.http_url}/api/v1/tasks/batch",
                        {
                            "tasks": [
                                {"queue": f"q{n % 3}", "payload": {"c": n, "i": i, "j": j}}
                                for j in range(10)
                            ]
                        },
                        timeout=5,
                    )
                    ids = [t["id"] for t in body["tasks"]] if status == 201 else []
            except (OSError, http.client.HTTPException):
                return  # the node is gone: this submit's answer never arrived whole
            with lock:
                acked.extend(ids)
                if len(acked) >= 3000:
                    enough.set()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(8)]
    for t in threads:
        t.start()
    assert enough.wait(60), "clients could not submit 3000 tasks within 60 s"
    node.kill()  # SIGKILL while clients are mid-request
    stop.set()
    for t in threads:
        t.join(10)
    with lock:
        acknowledged = list(acked)

    node.restart()
    missing = []
    for task_id in acknowledged:
        status, task = get(f"{node.http_url}/api/v1/tasks/{task_id}")
        if status != 200:
            missing.append(task_id)
        else:
            assert task["state"] == "queued", task
    assert not missing, (
        f"{len(missing)} of {len(acknowledged)} acknowledged tasks lost: {missing[:5]}"
    )
    # and the node keeps working after recovery
    status, task = post(f"{node.http_url}/api/v1/tasks", {"payload": "after restart"})
    assert status == 201


def test_restart_keeps_state_transitions(node_factory):
    # Given tasks in several states
    node = node_factory()
    base = node.http_url
    _, a = post(f"{base}/api/v1/tasks", {"queue": "w"})
    _, b = post(f"{base}/api/v1/tasks", {"queue": "w"})
    _, c = post(f"{base}/api/v1/tasks", {"queue": "w"})
    assert post(f"{base}/api/v1/tasks/{c['id']}/cancel")[0] == 200
    status, leased = post(f"{base}/api/v1/queues/w/lease", {"worker": "w1", "max": 1, "wait": 0})
    assert status == 200 and leased["tasks"][0]["id"] == a["id"]
    lease = leased["tasks"][0]["lease"]
    assert (
        post(f"{base}/api/v1/tasks/{a['id']}/complete", {"lease": lease, "result": {"ok": 1}})[0]
        == 200
    )
    # When the node is SIGKILLed and restarted
    node.kill()
    start = time.monotonic()
    node.restart()
    # Expect each task as its last acknowledged transition left it
    assert get(f"{base}/api/v1/tasks/{a['id']}")[1]["state"] == "succeeded"
    assert get(f"{base}/api/v1/tasks/{a['id']}")[1]["result"] == {"ok": 1}
    assert get(f"{base}/api/v1/tasks/{b['id']}")[1]["state"] == "queued"
    assert get(f"{base}/api/v1/tasks/{c['id']}")[1]["state"] == "canceled"
    assert time.monotonic() - start < 15
