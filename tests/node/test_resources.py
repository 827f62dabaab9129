"""No connection or client can stall or kill a node: real processes, real sockets, low limits.

Each test starts a node (often under ``prlimit --nofile``, through a ``TASKD_BINARY`` wrapper
script) and attacks one listener the way a hostile or broken client would: floods of idle TCP
and HTTP/2 connections, connections that stay busy, running the node out of descriptors,
slowloris HTTP clients, clients that never read, and oversized gRPC messages announced by
their 5-byte prefix. Throughout, ``/healthz`` must answer within a generous bound (1 s, on a
loaded 2-core machine), the node must not die, and afterwards gRPC and REST must work again.
Waits are on conditions (``wait_until``), never fixed sleeps followed by an assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import stat
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from grpclib.client import Channel

from taskd.api.taskd import v1 as pb
from tests.node.rest import get, post

pytestmark = pytest.mark.slow

MIB = 1 << 20
LIMIT = 2 * MIB + (64 << 10)  # the default gRPC message limit: REST's body limit
# seconds: generous on purpose (2 shared cores whose speed halves from one session to the next:
# 2.4 s was seen under the idle flood on a slow week); the stalls fixed were 5-9 s.
HEALTHZ_BOUND = 4.0


# ---- helpers ------------------------------------------------------------------------------


@pytest.fixture
def limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[int, int], None]:
    """``limited(soft, hard)``: nodes started afterwards run under ``prlimit --nofile``."""

    def apply(soft: int, hard: int) -> None:
        script = tmp_path / f"taskd-nofile-{soft}-{hard}"
        script.write_text(
            f'#!/bin/sh\nexec prlimit --nofile={soft}:{hard} {sys.executable} -m taskd "$@"\n'
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("TASKD_BINARY", str(script))

    return apply


@pytest.fixture(autouse=True)
def _many_client_sockets() -> None:
    """The test process opens thousands of sockets: lift its own soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def healthz_seconds(node: Any) -> float:
    """Time one ``GET /healthz`` on a fresh connection (fails if it does not answer 200)."""
    start = time.monotonic()
    status, body = get(f"{node.http_url}/healthz", timeout=10)
    assert status == 200, body
    return time.monotonic() - start


class HealthProbe:
    """Polls ``/healthz`` in a thread while an attack runs; records the slowest answer."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.latencies.append(healthz_seconds(self.node))
            except Exception as exc:  # collected and reported by check()
                self.errors.append(repr(exc))
            self._stop.wait(0.2)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> None:
        assert not self.errors, self.errors[:3]
        assert self.latencies, "no /healthz answer at all"
        assert max(self.latencies) < HEALTHZ_BOUND, sorted(self.latencies)[-5:]


def node_sockets(node: Any) -> int:
    """Sockets the node process holds open (listeners included)."""
    count = 0
    for fd in Path(f"/proc/{node.pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith("socket:"):
                count += 1
    return count


def rss_bytes(node: Any) -> int:
    for line in Path(f"/proc/{node.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def settle_sockets(node: Any) -> int:
    """The node's socket count once no client connection is left (its idle baseline)."""
    counts: list[int] = []

    def stable() -> bool:
        counts.append(node_sockets(node))
        return len(counts) >= 5 and len(set(counts[-5:])) == 1

    wait_until(stable, 10, "the node's socket count settles")
    return counts[-1]


def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` TCP connections (non-blocking connects: the kernel completes what it can)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the node closed ``sock`` (EOF or reset after whatever it had sent)."""
    try:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def grpc_works(node: Any) -> None:
    async def body() -> None:
        channel = Channel("127.0.0.1", node.grpc_port)
        try:
            stub = pb.TaskServiceStub(channel)
            reply = await stub.submit(pb.SubmitRequest(task=pb.TaskSpec(queue="after")))
            assert reply.task.id
            status = await pb.ClusterServiceStub(channel).status(pb.ClusterStatusRequest())
            assert status.role
        finally:
            channel.close()

    asyncio.run(asyncio.wait_for(body(), 10))


def rest_works(node: Any) -> None:
    status, body = get(f"{node.http_url}/api/v1/tasks?limit=5")
    assert status == 200, body


def frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


class H2Call:
    """One gRPC call on a raw HTTP/2 connection, every byte under the test's control."""

    def __init__(
        self, port: int, path: str, *, timeout: float = 15.0, consume: bool = True
    ) -> None:
        self.consume = consume  # False: never grant the node flow-control window back
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        self.stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            self.stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "127.0.0.1"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        self.flush()
        self.headers: dict[str, str] = {}
        self.data = b""
        self.done = False  # the stream ended or was reset, or the connection closed

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send(self, data: bytes, *, end: bool = False) -> int:
        """Send within flow control; stop early when the node ends the stream. Returns the
        bytes sent."""
        sent = 0
        while sent < len(data) and not self.done:
            try:
                window = min(
                    self.conn.local_flow_control_window(self.stream_id),
                    self.conn.max_outbound_frame_size,
                )
                if window <= 0:
                    self.pump()
                    continue
                chunk = data[sent : sent + window]
                self.conn.send_data(self.stream_id, chunk)
                self.flush()
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, OSError):
                self.done = True
                break
            sent += len(chunk)
        if end and not self.done:
            with contextlib.suppress(h2.exceptions.StreamClosedError, OSError):
                self.conn.end_stream(self.stream_id)
                self.flush()
        return sent

    def pump(self) -> None:
        """Read once and handle what arrived (a socket timeout propagates)."""
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            raise
        except OSError:
            data = b""
        if not data:
            self.done = True
            return
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                self.headers.update(dict(event.headers))
            elif isinstance(event, h2.events.DataReceived):
                self.data += event.data
                if self.consume:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            elif isinstance(
                event,
                h2.events.StreamEnded | h2.events.StreamReset | h2.events.ConnectionTerminated,
            ):
                self.done = True
        self.flush()

    def finish(self) -> tuple[str | None, str]:
        """Wait for the end of the call; its grpc-status and grpc-message."""
        while not self.done and "grpc-status" not in self.headers:
            self.pump()
        return self.headers.get("grpc-status"), urllib.parse.unquote(
            self.headers.get("grpc-message", "")
        )

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def closing_all(sockets: list[Any]) -> Iterator[list[Any]]:
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


# ---- start-up ----------------------------------------------------------------------------


def test_startup_raises_the_soft_open_files_limit_to_the_hard_one(node_factory, limited):
    limited(256, 1024)
    node = node_factory()
    limits = Path(f"/proc/{node.pid}/limits").read_text()
    [line] = [row for row in limits.splitlines() if row.startswith("Max open files")]
    assert line.split()[3:5] == ["1024", "1024"], line
    assert "at most 448 per listener" in node.stderr_text()  # (1024 - 128) / 2


def test_connection_flags_are_validated(node_factory):
    node = node_factory("--idle-timeout", "0", wait=False)
    assert node.proc is not None
    assert node.proc.wait(15) != 0
    assert "--idle-timeout must be > 0 seconds" in node.stderr_text()


# ---- floods ------------------------------------------------------------------------------


def test_flood_of_idle_tcp_and_http2_connections_at_a_low_descriptor_limit(node_factory, limited):
    # Given a node with 256 descriptors (so 64 connections per listener) and a 2 s idle timeout
    limited(256, 256)
    node = node_factory("--idle-timeout", "2")
    baseline = settle_sockets(node)
    with HealthProbe(node) as probe:
        # When 2,000 TCP connections hit each listener, and 1,000 more per listener complete
        # an HTTP/2 handshake (gRPC, and REST's h2c with prior knowledge)
        with closing_all(open_idle(node.grpc_port, 2000) + open_idle(node.http_port, 2000)) as tcp:
            h2_clients = []
            for i in range(2000):
                port = node.grpc_port if i % 2 else node.http_port
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
                conn.initiate_connection()
                sock.sendall(conn.data_to_send())
                h2_clients.append(sock)
            with closing_all(h2_clients):
                # Expect: the node lives, holds no more than its caps, and sheds every idle
                # connection within the timeout, while we still hold ours open
                assert node.proc is not None and node.proc.poll() is None
                assert node_sockets(node) <= baseline + 2 * 64 + 16  # caps, closes under way
                # Connections queued behind the cap (as many as the kernel's somaxconn lets
                # the listen backlog hold: 4096 on some machines) are accepted and shed in
                # waves of the 2 s idle timeout, so the bound is several timeouts, not one.
                wait_until(
                    lambda: node_sockets(node) <= baseline + 2,
                    30,
                    "idle connections closed by the node",
                )
                assert sum(closed_by_peer(s) for s in h2_clients) == len(h2_clients)
                assert closed_by_peer(tcp[-1])
    probe.check()
    assert node.proc.poll() is None
    # Expect: the node serves again after the flood
    grpc_works(node)
    rest_works(node)


def test_busy_connections_beyond_the_cap_are_refused_not_fatal(node_factory, limited):
    # Given a node capped at 20 connections per listener
    limited(256, 256)
    node = node_factory("--max-connections", "20")
    baseline = settle_sockets(node)
    # When 40 clients each keep a Watch call open (busy connections are never shed)
    watchers = [
        H2Call(node.grpc_port, "/taskd.v1.TaskService/Watch", timeout=10) for _ in range(40)
    ]
    with closing_all([w.sock for w in watchers]):
        for watcher in watchers:
            with contextlib.suppress(OSError):
                watcher.send(frame(bytes(pb.WatchRequest(queue="busy"))), end=True)
        # Expect: 20 are served, the 20 newest refused (closed), the node fine
        for watcher in watchers:
            watcher.sock.settimeout(0.2)
        refused = 0
        for watcher in watchers:
            with contextlib.suppress(TimeoutError):
                while not watcher.done:
                    watcher.pump()
            refused += watcher.done
        assert refused == 20
        assert healthz_seconds(node) < HEALTHZ_BOUND
    # Expect: once they leave, new calls are served
    wait_until(lambda: node_sockets(node) <= baseline, 10, "watchers gone")
    grpc_works(node)


def test_running_out_of_descriptors_backs_off_sheds_idle_and_recovers(node_factory, limited):
    # Given a node with 256 descriptors but a cap far above it: accept() will hit EMFILE
    limited(256, 256)
    node = node_factory("--max-connections", "5000", "--idle-timeout", "30")
    baseline = settle_sockets(node)
    with HealthProbe(node) as probe:
        # When 1,500 connections arrive at each listener, far more than there are descriptors
        with closing_all(open_idle(node.grpc_port, 1500) + open_idle(node.http_port, 1500)):
            wait_until(
                lambda: "cannot accept connections" in node.stderr_text(),
                10,
                "the node runs out of descriptors",
            )
            time.sleep(2)  # let it sit at the limit a while (for the probe and the log)
            assert node.proc is not None and node.proc.poll() is None
            grpc_works(node)  # a busy client gets a descriptor from a shed idle one
    probe.check()
    # Expect: logged once per interval, not once per attempt
    reports = node.stderr_text().count("cannot accept connections")
    assert 1 <= reports <= 4, reports
    assert "Traceback" not in node.stderr_text()
    # Expect: once descriptors return, the node serves as before
    wait_until(lambda: node_sockets(node) <= baseline, 40, "flood connections gone")
    grpc_works(node)
    rest_works(node)


# ---- slow and never-reading clients -------------------------------------------------------


def test_slowloris_http_clients_are_closed_after_the_idle_timeout(node_factory):
    # Given a node that closes connections it sent nothing to for 1 s
    node = node_factory("--idle-timeout", "1")
    baseline = settle_sockets(node)
    halves = []
    for _ in range(30):  # half a request, then silence
        sock = socket.create_connection(("127.0.0.1", node.http_port))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        halves.append(sock)
    posts = []
    for _ in range(10):  # headers of a body that never comes
        sock = socket.create_connection(("127.0.0.1", node.http_port))
        sock.sendall(
            b"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        )
        posts.append(sock)
    tricklers = [socket.create_connection(("127.0.0.1", node.http_port)) for _ in range(10)]
    stop = threading.Event()

    def trickle() -> None:  # one byte every 0.2 s: never silent long enough for a read timeout
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
        for byte in request:
            for sock in tricklers:
                with contextlib.suppress(OSError):
                    sock.send(bytes([byte]))
            if stop.wait(0.2):
                return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    clients = halves + posts + tricklers
    try:
        with HealthProbe(node) as probe:
            for sock in clients:
                sock.setblocking(False)
            # Expect: every one of them closed by the node within a few timeouts
            wait_until(lambda: all(closed_by_peer(s) for s in clients), 10, "slow clients closed")
            wait_until(lambda: node_sockets(node) <= baseline, 10, "node released them")
        probe.check()
    finally:
        stop.set()
        thread.join()
        for sock in clients:
            sock.close()
    rest_works(node)


def test_a_long_poll_is_not_idle(node_factory):
    # Given a node that closes idle connections after 1 s
    node = node_factory("--idle-timeout", "1")
    # When a lease long-polls 3 s for work that never comes
    start = time.monotonic()
    status, body = post(
        f"{node.http_url}/api/v1/queues/poll/lease", {"worker": "poller", "wait": 3}, timeout=15
    )
    # Expect: it is answered (empty) when its wait ends, not cut at the idle timeout
    assert status == 200, body
    assert time.monotonic() - start >= 2.5
    rest_works(node)


def test_rest_client_that_never_reads_cannot_hold_the_node(node_factory):
    node = node_factory("--idle-timeout", "1")

    async def fill() -> None:
        channel = Channel("127.0.0.1", node.grpc_port)
        try:
            stub = pb.TaskServiceStub(channel)
            for _ in range(5):
                tasks = [pb.TaskSpec(queue="pile", payload=b"x" * 200) for _ in range(1000)]
                await stub.submit_batch(pb.SubmitBatchRequest(tasks=tasks))
        finally:
            channel.close()

    asyncio.run(fill())
    baseline = settle_sockets(node)
    rss_before = rss_bytes(node)
    # When a client pipelines 300 large listings and never reads a byte of the answers
    sock = socket.create_connection(("127.0.0.1", node.http_port))
    request = b"GET /api/v1/tasks?queue=pile&limit=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        for _ in range(300):
            sock.send(request)
    try:
        with HealthProbe(node) as probe:
            # Expect: the node drops it (nothing it sent was read) and buffers little
            wait_until(lambda: node_sockets(node) <= baseline, 15, "non-reader closed")
        probe.check()
        assert rss_bytes(node) - rss_before < 64 * MIB
    finally:
        sock.close()
    rest_works(node)


@pytest.mark.parametrize("kind", ["watch", "worker"])
def test_grpc_stream_that_never_reads_is_closed_by_keepalive(node_factory, kind):
    # Given a node pinging gRPC connections with open calls every second
    node = node_factory("--grpc-keepalive", "1")
    baseline = settle_sockets(node)
    if kind == "watch":
        call = H2Call(node.grpc_port, "/taskd.v1.TaskService/Watch")
        call.send(frame(bytes(pb.WatchRequest(queue="deaf"))), end=True)
    else:
        call = H2Call(node.grpc_port, "/taskd.v1.WorkerService/Work")
        hello = pb.WorkerHello(worker="deaf-worker", queues=["deaf"], capacity=500)
        call.send(frame(bytes(pb.WorkerMessage(hello=hello))))
        wait_until(
            lambda: any(
                w["worker"] == "deaf-worker"
                for w in get(f"{node.http_url}/api/v1/workers")[1]["workers"]
            ),
            10,
            "the worker registered",
        )
    try:
        # When the node has far more to send it than its flow-control window, and it never
        # reads (so it answers no ping either)
        rss_before = rss_bytes(node)

        async def produce() -> None:
            channel = Channel("127.0.0.1", node.grpc_port)
            try:
                stub = pb.TaskServiceStub(channel)
                for _ in range(4):
                    tasks = [pb.TaskSpec(queue="deaf", payload=b"y" * 1000) for _ in range(500)]
                    await stub.submit_batch(pb.SubmitBatchRequest(tasks=tasks))
            finally:
                channel.close()

        with HealthProbe(node) as probe:
            asyncio.run(asyncio.wait_for(produce(), 30))
            # Expect: the node closes the connection (unanswered ping), stays responsive
            wait_until(lambda: node_sockets(node) <= baseline, 15, "deaf client closed")
        probe.check()
        assert rss_bytes(node) - rss_before < 64 * MIB
        if kind == "worker":
            # Expect: what the deaf worker held is released for others
            wait_until(
                lambda: not get(f"{node.http_url}/api/v1/workers")[1]["workers"],
                15,
                "the deaf worker's leases released",
            )
    finally:
        call.close()
    grpc_works(node)


def test_active_streams_with_traffic_are_not_idle(node_factory):
    # Given a 1 s idle timeout and 1 s keepalive
    node = node_factory("--idle-timeout", "1", "--grpc-keepalive", "1")
    # When a Watch call and a worker stream (heartbeating) stay open for several timeouts,
    # answering pings
    watch = H2Call(node.grpc_port, "/taskd.v1.TaskService/Watch")
    watch.send(frame(bytes(pb.WatchRequest(queue="after"))), end=True)
    worker = H2Call(node.grpc_port, "/taskd.v1.WorkerService/Work")
    hello = pb.WorkerHello(worker="steady", queues=["after"], capacity=1)
    worker.send(frame(bytes(pb.WorkerMessage(hello=hello))))
    heartbeat = frame(bytes(pb.WorkerMessage(heartbeat=pb.WorkerHeartbeat())))
    for call in (watch, worker):
        call.sock.settimeout(0.2)
    end = time.monotonic() + 4
    try:
        while time.monotonic() < end:
            worker.send(heartbeat)
            for call in (watch, worker):
                with contextlib.suppress(TimeoutError):
                    call.pump()
                # Expect: neither is ever closed
                assert not call.done, call.headers
        # and both still work: the watch sees the task, the worker is handed it
        grpc_works(node)  # submits to queue "after"
        end = time.monotonic() + 10
        while time.monotonic() < end and not (b"after" in watch.data and worker.data):
            for call in (watch, worker):
                with contextlib.suppress(TimeoutError):
                    call.pump()
        assert b"after" in watch.data
        assert b"after" in worker.data  # the assignment names its queue
    finally:
        watch.close()
        worker.close()


# ---- oversized gRPC messages ------------------------------------------------------------

UNARY = [
    "/taskd.v1.TaskService/Submit",
    "/taskd.v1.TaskService/SubmitBatch",
    "/taskd.v1.TaskService/Get",
    "/taskd.v1.TaskService/List",
    "/taskd.v1.TaskService/Cancel",
    "/taskd.v1.TaskService/Retry",
    "/taskd.v1.TaskService/Watch",
    "/taskd.v1.ClusterService/PauseQueue",
    "/taskd.v1.ClusterService/Status",
]


@pytest.mark.parametrize("size", [LIMIT + 1, 40 * MIB, 300 * MIB, 2**32 - 1])
def test_oversized_messages_are_refused_before_they_are_buffered(node_factory_shared, size):
    node = node_factory_shared
    rss_before = rss_bytes(node)
    for path in UNARY:
        # When a client announces a message over the limit and pushes all it can
        call = H2Call(node.grpc_port, path)
        try:
            sent = call.send(b"\x00" + struct.pack(">I", size) + bytes(8 * MIB))
            status, message = call.finish()
        finally:
            call.close()
        # Expect: RESOURCE_EXHAUSTED naming the size and the limit, after at most about a
        # flow-control window of it
        assert status == "8", (path, status, message)
        assert f"{size} bytes" in message and f"limit of {LIMIT} bytes" in message, message
        assert path in message
        assert sent <= LIMIT + 2 * (64 << 10), (path, sent)
    assert rss_bytes(node) - rss_before < 48 * MIB
    assert healthz_seconds(node) < HEALTHZ_BOUND


def test_worker_stream_refuses_an_oversized_message_and_releases_its_worker(
    node_factory_shared,
):
    node = node_factory_shared
    hello = frame(bytes(pb.WorkerMessage(hello=pb.WorkerHello(worker="big", queues=["b"]))))
    for prefix in (b"", hello):  # oversized as the first message, and after the hello
        call = H2Call(node.grpc_port, "/taskd.v1.WorkerService/Work")
        try:
            call.send(prefix + b"\x00" + struct.pack(">I", 300 * MIB) + bytes(4 * MIB))
            status, message = call.finish()
        finally:
            call.close()
        assert status == "8", (status, message)
        assert "larger than the limit" in message
    wait_until(
        lambda: not get(f"{node.http_url}/api/v1/workers")[1]["workers"], 10, "worker released"
    )


def test_real_clients_get_resource_exhausted_and_the_limit_follows_max_payload(node_factory):
    # Given a node with 64 KiB payloads: its message limit is 2 * 64 KiB + 64 KiB
    node = node_factory("--max-payload", "65536")
    limit = 3 * (64 << 10)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{node.grpc_port}", options=[("grpc.max_send_message_length", -1)]
    )
    try:
        submit_batch = channel.unary_unary(
            "/taskd.v1.TaskService/SubmitBatch",
            request_serializer=bytes,
            response_deserializer=pb.SubmitBatchResponse.FromString,
        )
        # When a SubmitBatch of 40 MiB (every task within its own limit) is sent
        big = pb.SubmitBatchRequest(
            tasks=[pb.TaskSpec(queue="q", payload=b"z" * 60_000) for _ in range(700)]
        )
        assert len(bytes(big)) > 40 * MIB
        with pytest.raises(grpc.RpcError) as info:
            submit_batch(big, timeout=30)
        # Expect: RESOURCE_EXHAUSTED with the size and the limit
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"limit of {limit} bytes" in info.value.details()
        # Expect: a batch under the limit (and under the batch's payload total, 2 x 64 KiB)
        # is accepted
        fits = pb.SubmitBatchRequest(
            tasks=[pb.TaskSpec(queue="q", payload=b"z" * 60_000) for _ in range(2)]
        )
        assert len(bytes(fits)) <= limit
        reply = submit_batch(fits, timeout=30)
        assert len(reply.ids) == 2
    finally:
        channel.close()
    rest_works(node)


def test_worker_that_sends_but_never_reads_is_ended_not_buffered(node_factory):
    # Given a worker stream whose client sends results and never reads the node's acks
    node = node_factory()
    call = H2Call(node.grpc_port, "/taskd.v1.WorkerService/Work", consume=False)
    hello = pb.WorkerHello(worker="chatty", queues=["c"], capacity=1)
    result = frame(bytes(pb.WorkerMessage(result=pb.TaskResult(id="nope", lease=1, success=True))))
    try:
        call.send(frame(bytes(pb.WorkerMessage(hello=hello))))
        rss_before = rss_bytes(node)
        # When it sends 30,000 results (each answered by an ack the node must hold)
        with HealthProbe(node) as probe:
            for _ in range(30):
                if call.send(result * 1000) == 0:
                    break
            # Expect: the node ends the stream with RESOURCE_EXHAUSTED instead of piling up
            status, message = call.finish()
        probe.check()
        assert status == "8", (status, message)
        assert "unread" in message, message
        assert rss_bytes(node) - rss_before < 32 * MIB
    finally:
        call.close()
    wait_until(
        lambda: not get(f"{node.http_url}/api/v1/workers")[1]["workers"], 10, "worker released"
    )
    grpc_works(node)


def test_grpc_call_whose_request_never_arrives_ends_after_the_idle_timeout(node_factory):
    # Given a node with a 1 s idle timeout
    node = node_factory("--idle-timeout", "1")
    partial_requests = {
        "headers only": b"",
        "half a prefix": b"\x00\x00\x00",
        "half a message": b"\x00" + struct.pack(">I", 100) + b"x" * 10,
    }
    calls = {}
    for what, sent in partial_requests.items():
        for path in ("/taskd.v1.TaskService/Submit", "/taskd.v1.TaskService/Watch"):
            # When a unary-request call sends only part of its request and stalls
            call = H2Call(node.grpc_port, path)
            call.send(sent)
            calls[what, path] = call
    try:
        with HealthProbe(node) as probe:
            for (what, path), call in calls.items():
                # Expect: DEADLINE_EXCEEDED naming the method and the flag, within a few s
                status, message = call.finish()
                assert status == "4", (what, path, status, message)
                assert path in message and "--idle-timeout" in message, message
        probe.check()
    finally:
        for call in calls.values():
            call.close()
    grpc_works(node)
