"""A taskd client written with nothing but grpcio and protoc's output (no taskd code at all).

Run as a separate process by ``test_grpcio_interop.py``, with the directory holding the
generated ``tasks_pb2.py`` and ``tasks_pb2_grpc.py`` as its working directory:
``python grpcio_client.py HOST:PORT``. It drives TaskService, then runs a worker loop over
one WorkerService.Work stream that completes five tasks (one of them reported as failed), and
prints what it saw as one JSON object on stdout (the test asserts on it).
"""

import json
import queue
import sys

import grpc
import tasks_pb2 as pb
import tasks_pb2_grpc as rpc

TIMEOUT = 15


def state(task):
    return pb.TaskState.Name(task.state)


def view(task):
    return {
        "id": task.id,
        "queue": task.queue,
        "priority": task.priority,
        "payload": task.payload.decode(),
        "labels": dict(task.labels),
        "state": state(task),
        "created_at_ms": task.created_at_ms,
    }


def error_of(call):
    try:
        call()
    except grpc.RpcError as exc:
        return {"code": exc.code().name, "details": exc.details()}
    return None


CAPACITY = 2


def handle(item):
    """The worker's "handler": double ``n``; refuse the task that asks for a failure."""
    job = json.loads(item.payload)
    if job.get("fail"):
        return False, b"", f"n={job['n']} refused on purpose"
    return True, json.dumps({"doubled": job["n"] * 2, "by": "grpcio"}).encode(), ""


def work_loop(channel, queue_name, expected):
    """Run a worker over one Work stream until the node has acked a result for each of
    ``expected`` task ids: take assignments, run each item, report it, read the acks."""
    outbox = queue.Queue()
    outbox.put(
        pb.WorkerMessage(
            hello=pb.WorkerHello(worker="grpcio-interop", queues=[queue_name], capacity=CAPACITY)
        )
    )
    replies = rpc.WorkerServiceStub(channel).Work(iter(outbox.get, None), timeout=TIMEOUT)
    seen = {"assigned": [], "largest_assignment": 0, "acked": [], "rejected": []}
    try:
        for message in replies:
            kind = message.WhichOneof("kind")
            if kind == "assignment":
                items = message.assignment.items
                seen["largest_assignment"] = max(seen["largest_assignment"], len(items))
                for item in items:
                    seen["assigned"].append(
                        {
                            "id": item.id,
                            "payload": item.payload.decode(),
                            "attempt": item.attempt,
                            "lease": item.lease,
                        }
                    )
                    success, result, error = handle(item)
                    outbox.put(
                        pb.WorkerMessage(
                            result=pb.TaskResult(
                                id=item.id,
                                lease=item.lease,
                                success=success,
                                result=result,
                                error=error,
                            )
                        )
                    )
            elif kind == "ack":
                ack = message.ack
                (seen["acked"] if ack.accepted else seen["rejected"]).append(ack.id)
            elif kind == "acks":
                seen["acked"].extend(message.acks.ids)
                seen["rejected"].extend(r.id for r in message.acks.rejected)
            if set(seen["acked"]) >= set(expected):
                break
    finally:
        outbox.put(None)  # end our side of the stream
        replies.cancel()
    return seen


def main(target):
    out = {}
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        tasks = rpc.TaskServiceStub(channel)

        submitted = tasks.Submit(
            pb.SubmitRequest(
                task=pb.TaskSpec(
                    queue="interop",
                    priority=7,
                    payload=b'{"hello": "grpcio"}',
                    labels={"client": "grpcio"},
                    timeout_seconds=60,
                )
            ),
            timeout=TIMEOUT,
        )
        out["submit"] = {**view(submitted.task), "duplicate": submitted.duplicate}

        batch = tasks.SubmitBatch(
            pb.SubmitBatchRequest(
                tasks=[
                    pb.TaskSpec(queue="interop", priority=p, payload=b'"batch"') for p in (1, 5, 9)
                ]
            ),
            timeout=TIMEOUT,
        )
        out["batch"] = {"ids": list(batch.ids), "duplicate": list(batch.duplicate)}

        out["get"] = view(tasks.Get(pb.GetRequest(id=submitted.task.id), timeout=TIMEOUT))
        page = tasks.List(pb.ListRequest(queue="interop", limit=10), timeout=TIMEOUT)
        out["list"] = {"ids": [t.id for t in page.tasks], "next": page.next}
        out["cancel"] = view(tasks.Cancel(pb.CancelRequest(id=batch.ids[0]), timeout=TIMEOUT))

        out["bad_priority"] = error_of(
            lambda: tasks.Submit(
                pb.SubmitRequest(task=pb.TaskSpec(queue="interop", priority=42)), timeout=TIMEOUT
            )
        )
        out["unknown_id"] = error_of(
            lambda: tasks.Get(pb.GetRequest(id="no-such-task"), timeout=TIMEOUT)
        )

        jobs = [{"n": n} for n in (1, 2, 3, 4)] + [{"n": 5, "fail": True}]
        worked = tasks.SubmitBatch(
            pb.SubmitBatchRequest(
                tasks=[
                    pb.TaskSpec(
                        queue="interop-work",
                        payload=json.dumps(job).encode(),
                        max_retries=0 if job.get("fail") else 3,
                    )
                    for job in jobs
                ]
            ),
            timeout=TIMEOUT,
        )
        ids = list(worked.ids)
        out["work"] = {"submitted": ids, **work_loop(channel, "interop-work", ids)}
        out["worked"] = [
            {**view(t), "result": t.result.decode(), "error": t.error, "worker": t.worker}
            for t in (tasks.Get(pb.GetRequest(id=i), timeout=TIMEOUT) for i in ids)
        ]

    out["taskd_imported"] = sorted(m for m in sys.modules if m == "taskd" or m.startswith("taskd."))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
