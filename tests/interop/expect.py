"""What every foreign client of the interop tests must have seen (grpcio, Node's grpc-js).

Each client runs the same script against a fresh node and prints one JSON object:
``submit`` (Submit, priority 7, labels), ``get`` (Get of it), ``batch`` (SubmitBatch of three),
``list`` (List of the queue), ``cancel`` (Cancel of the first batch task), ``bad_priority`` and
``unknown_id`` (the gRPC status of a bad Submit and of a Get of an unknown id), then ``work``
and ``worked``: a worker loop over one WorkerService.Work stream with capacity 2 that is given
five tasks ``{"n": 1..5}`` — the fifth asks to fail and has max_retries 0 — and reports
``{"doubled": 2n, "by": CLIENT}`` for each of the others, until the node acked every result;
``worked`` is each of the five as Get returns it afterwards.
"""

from __future__ import annotations

import json
from typing import Any

CAPACITY = 2


def check_client_output(out: dict[str, Any], *, worker: str, by: str) -> None:
    submitted = out["submit"]
    assert submitted["id"] and not submitted["duplicate"]
    assert submitted["priority"] == 7
    assert submitted["payload"] == f'{{"hello": "{by}"}}'
    assert submitted["labels"] == {"client": by}
    assert submitted["state"] == "TASK_STATE_QUEUED"
    assert out["get"] == {k: v for k, v in submitted.items() if k != "duplicate"}

    batch = out["batch"]
    assert len(batch["ids"]) == 3 and len(set(batch["ids"])) == 3
    assert batch["duplicate"] == [False, False, False]

    listed = out["list"]["ids"]
    assert set(listed) == {submitted["id"], *batch["ids"]}
    assert listed[0] == batch["ids"][-1]  # newest first

    assert out["cancel"]["id"] == batch["ids"][0]
    assert out["cancel"]["state"] == "TASK_STATE_CANCELED"

    assert out["bad_priority"]["code"] == "INVALID_ARGUMENT"
    assert "priority" in out["bad_priority"]["details"]
    assert out["unknown_id"]["code"] == "NOT_FOUND"

    work = out["work"]
    ids = work["submitted"]
    assert len(ids) == 5 and len(set(ids)) == 5
    # every task handed out once, as its first attempt, with a lease; never more than capacity
    assert sorted(a["id"] for a in work["assigned"]) == sorted(ids)
    assert all(a["attempt"] == 1 and int(a["lease"]) > 0 for a in work["assigned"])
    assert 1 <= work["largest_assignment"] <= CAPACITY
    payloads = {a["id"]: json.loads(a["payload"]) for a in work["assigned"]}
    assert [payloads[i]["n"] for i in ids] == [1, 2, 3, 4, 5]
    # every result accepted, none refused
    assert sorted(work["acked"]) == sorted(ids) and work["rejected"] == []

    worked = out["worked"]
    assert [t["id"] for t in worked] == ids
    assert [t["state"] for t in worked] == ["TASK_STATE_SUCCEEDED"] * 4 + ["TASK_STATE_FAILED"]
    assert [json.loads(t["result"]) for t in worked[:4]] == [
        {"doubled": 2 * n, "by": by} for n in (1, 2, 3, 4)
    ]
    assert worked[4]["error"] == "n=5 refused on purpose"
    assert {t["worker"] for t in worked} == {worker}
