"""A user application written against the installed taskd-client distribution, and nothing else.

Run by ``test_client_wheel.py`` with the Python of a fresh virtualenv that has only the
taskd-client wheel (and its dependencies): ``python -I sdk_app.py HOST:PORT QUEUE``. It
submits tasks with ``TaskSchedulerClient``, runs a ``Worker`` that completes them, waits for
their results, and prints what it saw as one JSON object on stdout.
"""

import json
import sys
import threading

from taskd.client import Priority, TaskSchedulerClient, Worker

TIMEOUT = 30


def main(target: str, queue: str) -> None:
    loaded_by_import = sorted(sys.modules)
    with TaskSchedulerClient(target) as client:
        submitted = [
            client.submit_task(
                payload=json.dumps({"n": n}),
                name="double",
                queue=queue,
                priority=Priority.HIGH,
                timeout=60,
            )
            for n in (1, 21)
        ]

        worker = Worker(queues=[queue], concurrency=2, servers=target, name="fresh-venv-worker")

        @worker.task("double")
        def double(task):
            return {"doubled": task.json()["n"] * 2, "python": sys.prefix}

        runner = threading.Thread(target=worker.run, name="worker")
        runner.start()
        try:
            done = [client.wait(task, timeout=TIMEOUT) for task in submitted]
        finally:
            worker.stop()
            runner.join(TIMEOUT)
        print(
            json.dumps(
                {
                    "loaded_by_import": loaded_by_import,
                    "loaded_at_end": sorted(sys.modules),
                    "submitted": [{"id": t.id, "state": t.state} for t in submitted],
                    "done": [
                        {"id": t.id, "state": t.state, "result": t.result, "worker": t.worker}
                        for t in done
                    ],
                    "worker_stopped": not runner.is_alive(),
                    "worker_acked": worker.stats.acked,
                }
            )
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
