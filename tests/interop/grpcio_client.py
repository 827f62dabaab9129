"""A taskd client written with nothing but grpcio and protoc's output (no taskd code at all).

Run as a separate process by ``test_grpcio_interop.py``, with the directory holding the
generated ``tasks_pb2.py`` and ``tasks_pb2_grpc.py`` as its working directory:
``python grpcio_client.py HOST:PORT``. It drives TaskService and one WorkerService.Work
stream, and prints what it saw as one JSON object on stdout (the test asserts on it).
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


def work_one(channel, queue_name):
    """Take one task over a Work stream, report success, read the node's ack."""
    outbox = queue.Queue()
    outbox.put(
        pb.WorkerMessage(
            hello=pb.WorkerHello(worker="grpcio-interop", queues=[queue_name], capacity=1)
        )
    )
    replies = rpc.WorkerServiceStub(channel).Work(iter(outbox.get, None), timeout=TIMEOUT)
    seen = {}
    try:
        for message in replies:
            kind = message.WhichOneof("kind")
            if kind == "assignment":
                item = message.assignment.items[0]
                seen["assigned"] = {
                    "id": item.id,
                    "payload": item.payload.decode(),
                    "attempt": item.attempt,
                    "lease": item.lease,
                }
                outbox.put(
                    pb.WorkerMessage(
                        result=pb.TaskResult(
                            id=item.id, lease=item.lease, success=True, result=b'{"ok": true}'
                        )
                    )
                )
            elif kind == "ack":
                seen["ack"] = {"id": message.ack.id, "accepted": message.ack.accepted}
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

        worked = tasks.Submit(
            pb.SubmitRequest(task=pb.TaskSpec(queue="interop-work", payload=b'{"n": 1}')),
            timeout=TIMEOUT,
        )
        out["work"] = {"submitted": worked.task.id, **work_one(channel, "interop-work")}
        out["worked"] = view(tasks.Get(pb.GetRequest(id=worked.task.id), timeout=TIMEOUT))

    out["taskd_imported"] = sorted(m for m in sys.modules if m == "taskd" or m.startswith("taskd."))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
