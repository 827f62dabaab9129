"""The everyday path against its floor: unary Submit, Get and pickup latency of a taskd node
next to a bare grpclib echo server, both called the same way (issue 10's targets).

    .venv/bin/python -m bench.floor                      # 2000 sequential calls each, 3 runs
    .venv/bin/python -m bench.floor --calls 500 --runs 1 --pickup-rate 100 --pickup-seconds 5

Theory of operation: one run starts, each in its own process,

- **echo**: a grpclib ``Server`` on plain asyncio with the generated ``TaskService`` whose
  ``Submit`` decodes the request and answers a ``SubmitResponse`` holding a Task with a fresh
  ULID, and whose ``Get`` answers a Task: the framework's floor (HTTP/2, protobuf, asyncio);
- **taskd**: a node with a fresh data dir (fsync on, as always), and for pickup a protocol-only
  stream worker process (``worker`` mode below) with capacity 64 that stamps each item's
  arrival;

then a **grpcio** client (the reference C-core stack, a different one from the servers') makes
sequential calls on one channel, pre-encoded requests and raw response bytes, so the client
costs the same for both servers:

- ``submit``: N unary Submits, one at a time;
- ``get``: N unary Gets of one task;
- ``pickup``: Submits offered at ``--pickup-rate`` per second for ``--pickup-seconds``, each
  payload carrying its send time; the worker records arrival - send (same machine clock).

It prints p50/p95/p99 per call and the ratios the issue sets targets on: taskd Submit p50 ÷
echo Submit p50 (≤ 2.0) and pickup p50 ÷ echo Submit p50 (≤ 3.0), and with ``--runs`` the
median of each ratio over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import betterproto2
import grpc
import orjson
from grpclib.client import Channel
from grpclib.server import Server
from ulid import ULID

from taskd.api.taskd import v1 as pb

REPO = Path(__file__).resolve().parents[1]
SUBMIT = "/taskd.v1.TaskService/Submit"
GET = "/taskd.v1.TaskService/Get"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ---- the echo server (a child process) -----------------------------------------------------


def serve_echo(port: int) -> None:
    class Echo(pb.TaskServiceBase):
        async def submit(self, message: pb.SubmitRequest) -> pb.SubmitResponse:
            spec = message.task or pb.TaskSpec()
            task = pb.Task(
                id=str(ULID()),
                queue=spec.queue,
                payload=spec.payload,
                priority=spec.priority or 0,
                state=pb.TaskState.QUEUED,
            )
            return pb.SubmitResponse(task=task)

        async def get(self, message: pb.GetRequest) -> pb.Task:
            return pb.Task(id=message.id, queue="floor", state=pb.TaskState.QUEUED)

    async def main() -> None:
        server = Server([Echo()])
        await server.start("127.0.0.1", port)
        print("ready", flush=True)
        await server.wait_closed()

    asyncio.run(main())


# ---- the stream worker (a child process) ---------------------------------------------------


def serve_worker(grpc: str, queue: str, out: Path) -> None:
    host, port = grpc.rsplit(":", 1)
    pickups: list[float] = []
    stop = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        outbox: asyncio.Queue[pb.WorkerMessage | None] = asyncio.Queue()

        async def messages() -> Any:
            yield pb.WorkerMessage(
                hello=pb.WorkerHello(worker="floor-worker", queues=[queue], capacity=64)
            )
            while (message := await outbox.get()) is not None:
                yield message

        async def stopper() -> None:
            await stop.wait()
            outbox.put_nowait(None)

        channel = Channel(host, int(port))
        watch = asyncio.create_task(stopper())
        print("ready", flush=True)
        async for message in pb.WorkerServiceStub(channel).work(messages()):
            _, value = betterproto2.which_one_of(message, "kind")
            if isinstance(value, pb.Assignment):
                now = time.time()
                for item in value.items:
                    pickups.append((now - orjson.loads(item.payload)["t"]) * 1000.0)
                outbox.put_nowait(
                    pb.WorkerMessage(
                        results=pb.TaskResults(
                            ids=[i.id for i in value.items],
                            leases=[i.lease for i in value.items],
                            success=[True] * len(value.items),
                        )
                    )
                )
        watch.cancel()
        channel.close()

    asyncio.run(main())
    out.write_text(json.dumps(pickups))


# ---- the grpcio client ---------------------------------------------------------------------


def _spec(queue: str, payload: bytes) -> bytes:
    return bytes(pb.SubmitRequest(task=pb.TaskSpec(queue=queue, payload=payload, priority=5)))


def sequential(target: str, method: str, request: bytes, calls: int) -> list[float]:
    """Milliseconds of each of ``calls`` sequential unary calls (after 50 warm-up calls)."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        for _ in range(50):
            call(request, timeout=10)
        took = []
        for _ in range(calls):
            t0 = time.perf_counter()
            call(request, timeout=10)
            took.append((time.perf_counter() - t0) * 1000.0)
    return took


def submit_id(target: str, request: bytes) -> str:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            SUBMIT, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        reply = pb.SubmitResponse.parse(call(request, timeout=10))
    assert reply.task is not None
    return reply.task.id


def offered(target: str, queue: str, rate: float, seconds: float) -> int:
    """Submits at ``rate`` per second (each carrying its send time) for ``seconds``."""
    count = int(rate * seconds)
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            SUBMIT, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        call(_spec(queue + "-warm", b"{}"), timeout=10)
        start = time.monotonic()
        for i in range(count):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            call(_spec(queue, json.dumps({"t": time.time()}).encode()), timeout=10)
    return count


# ---- one run -------------------------------------------------------------------------------


def quantiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "n": len(ordered)}


def _start(args: list[str], log: Path, ready: str | None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log.open("wb"), cwd=REPO)
    if ready is not None:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if line != ready:
            proc.kill()
            raise RuntimeError(f"{args[:4]} did not start: see {log}")
    return proc


def _wait_ready(http: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{http}/readyz", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the node was not ready within 30 s: see {log}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def one_run(calls: int, rate: float, seconds: float, node_args: list[str]) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="taskd-floor-"))
    me = [sys.executable, "-m", "bench.floor"]
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {}
    try:
        echo_port = _free_port()
        procs.append(_start([*me, "echo", str(echo_port)], root / "echo.log", "ready"))
        echo = f"127.0.0.1:{echo_port}"
        grpc_port, http_port = _free_port(), _free_port()
        grpc, http = f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}"
        node = [sys.executable, "-m", "taskd", "--data-dir", str(root / "data")]
        node += ["--grpc", grpc, "--http", f"127.0.0.1:{http_port}", *node_args]
        procs.append(_start(node, root / "node.log", None))
        _wait_ready(http, root / "node.log")

        request = _spec("floor", b"x" * 100)
        _progress("echo: sequential Submit, Get")
        results["echo_submit"] = quantiles(sequential(echo, SUBMIT, request, calls))
        get = bytes(_get_request("01M8XVHH0RAXXQB8CE2C3RNPDX"))
        results["echo_get"] = quantiles(sequential(echo, GET, get, calls))

        _progress("taskd: sequential Submit, Get")
        results["taskd_submit"] = quantiles(sequential(grpc, SUBMIT, request, calls))
        task_id = submit_id(grpc, request)
        results["taskd_get"] = quantiles(sequential(grpc, GET, bytes(_get_request(task_id)), calls))

        _progress(f"taskd: pickup at {rate:g}/s for {seconds:g} s")
        out = root / "pickups.json"
        worker = _start(
            [*me, "worker", grpc, "floor-pickup", str(out)], root / "worker.log", "ready"
        )
        procs.append(worker)
        time.sleep(0.5)  # the stream's hello reaches the node
        sent = offered(grpc, "floor-pickup", rate, seconds)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _succeeded(http, "floor-pickup") < sent:
            time.sleep(0.1)
        _stop(worker)
        pickups = json.loads(out.read_text())
        results["taskd_pickup"] = quantiles(pickups)
        results["pickup_lost"] = sent - len(pickups)
    finally:
        for proc in procs:
            _stop(proc)
        shutil.rmtree(root, ignore_errors=True)
    floor = results["echo_submit"]["p50"]
    results["ratio_submit"] = results["taskd_submit"]["p50"] / floor
    results["ratio_get"] = results["taskd_get"]["p50"] / results["echo_get"]["p50"]
    results["ratio_pickup"] = results["taskd_pickup"]["p50"] / floor
    return results


def _get_request(task_id: str) -> Any:
    return pb.GetRequest(id=task_id)


def _succeeded(http: str, queue: str) -> int:
    with urllib.request.urlopen(f"{http}/api/v1/queues", timeout=5) as reply:
        body = json.load(reply)
    return sum(q["by_state"]["succeeded"] for q in body["queues"] if q["name"] == queue)


def _progress(text: str) -> None:
    print(f"  {text} ...", file=sys.stderr, flush=True)


def report(runs: list[dict[str, Any]]) -> str:
    lines = ["call            p50 ms   p95 ms   p99 ms      n"]
    last = runs[-1]
    for key in ("echo_submit", "echo_get", "taskd_submit", "taskd_get", "taskd_pickup"):
        q = last[key]
        lines.append(f"{key:<14} {q['p50']:8.2f} {q['p95']:8.2f} {q['p99']:8.2f} {q['n']:6d}")
    lines.append(f"pickup lost: {last['pickup_lost']}")
    for key, target in (("ratio_submit", 2.0), ("ratio_get", None), ("ratio_pickup", 3.0)):
        values = [r[key] for r in runs]
        median = statistics.median(values)
        shown = ", ".join(f"{v:.2f}" for v in values)
        goal = (
            f"  (target <= {target:g}: {'met' if median <= target else 'missed'})" if target else ""
        )
        lines.append(f"{key:<13} median {median:.2f} of [{shown}]{goal}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["echo"]:
        serve_echo(int(argv[1]))
        return 0
    if argv[:1] == ["worker"]:
        serve_worker(argv[1], argv[2], Path(argv[3]))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m bench.floor", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per kind")
    parser.add_argument("--runs", type=int, default=3, help="runs; ratios are their medians")
    parser.add_argument("--pickup-rate", type=float, default=100.0, help="submits/s for pickup")
    parser.add_argument("--pickup-seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="print every run as JSON")
    parser.add_argument("node_args", nargs="*", help="extra node flags (after --)")
    args = parser.parse_args(argv)
    runs = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs}", file=sys.stderr, flush=True)
        runs.append(one_run(args.calls, args.pickup_rate, args.pickup_seconds, args.node_args))
    print(json.dumps(runs, indent=1) if args.json else report(runs))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
