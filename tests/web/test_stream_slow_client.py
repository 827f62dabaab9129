"""A real node under a flood of submits, with a subscriber that never reads: the node lets go
of it (1013 and a bye, then the socket closed under it) ``slow_after`` + ``BYE_GRACE``
seconds after its send got stuck, and meanwhile answers ``/readyz`` quickly and keeps
serving a subscriber that reads. The node has no flag for the stream's timing, so this takes
the defaults: about 8 s."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from taskd.node.api.http.events import BYE_GRACE
from taskd.web.stream import StreamConfig
from tests.conftest import NodeFactory
from tests.web.streamclients import RawSubscriber, frames, rss_bytes, submit_batch

pytestmark = pytest.mark.slow

SLOW_AFTER = StreamConfig().slow_after  # what the node runs with
MARGIN = 3.0  # seconds for a loaded 2-core machine: the flood, the pumps, the polls
READY_LIMIT = 1.0  # seconds a /readyz may take while the node is flooded
BATCH, EVERY = 500, 0.1  # the flood: 5,000 submits/s


class Flood:
    """Batches of submits on a thread until stopped."""

    def __init__(self, http_url: str) -> None:
        self.http_url = http_url
        self.submitted = 0
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Flood:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        due = time.monotonic()
        try:
            while not self._stop.is_set():
                self.submitted += len(submit_batch(self.http_url, "flood", BATCH))
                due += EVERY
                self._stop.wait(max(0.0, due - time.monotonic()))
        except BaseException as exc:  # shown by the test, not lost in the thread
            self.failure = exc


class Reader:
    """A subscriber that reads everything, on a thread."""

    def __init__(self, port: int) -> None:
        self.client = RawSubscriber(port, receive_buffer=1 << 20)
        self.received = 0
        self.client.sock.settimeout(30)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while chunk := self.client.sock.recv(1 << 16):
                self.received += len(chunk)
        except OSError:
            pass


def test_a_subscriber_that_never_reads_is_dropped_and_the_node_stays_responsive(
    node_factory: NodeFactory,
) -> None:
    # Given a node, a subscriber that never reads (4 KiB receive buffer) and one that reads
    node = node_factory()
    stuck = RawSubscriber(node.http_port)
    subscribed = time.monotonic()
    reader = Reader(node.http_port)
    assert stuck.status == 101 and reader.client.status == 101
    rss_before = rss_bytes(node.pid)
    slowest_ready = 0.0
    # When the node gets 5,000 submits/s, until it lets go of the stuck subscriber
    with Flood(node.http_url) as flood:
        deadline = flood.started + SLOW_AFTER + BYE_GRACE + MARGIN
        while stuck.held_by_node() and time.monotonic() < deadline and flood.failure is None:
            asked = time.monotonic()
            with urllib.request.urlopen(f"{node.http_url}/readyz", timeout=5) as reply:
                assert reply.status == 200
            slowest_ready = max(slowest_ready, time.monotonic() - asked)
            time.sleep(0.1)
        released = time.monotonic()
        held = stuck.held_by_node()
        reader_bytes = reader.received
    assert flood.failure is None, flood.failure
    # Expect the socket closed by the node: not before slow_after + BYE_GRACE (the client
    # had its grace), and not long after
    assert not held, f"still held {released - flood.started:.1f} s into the flood"
    assert released - subscribed >= SLOW_AFTER + BYE_GRACE - 0.1
    # and /readyz quick throughout, the reader still served, the node's memory modest
    assert slowest_ready < READY_LIMIT
    assert reader.client.held_by_node()
    assert reader_bytes > 100_000  # it got the transitions the stuck one could not take
    rss_after = rss_bytes(node.pid)
    assert rss_after - rss_before < 2_000 * flood.submitted + (64 << 20), (
        rss_before,
        rss_after,
        flood.submitted,
    )
    # and what the stuck client finally reads: its snapshot first, then the connection ends
    data, ending = stuck.drain()
    assert ending in ("eof", "reset")
    got = frames(data)
    assert got and got[0][0] == 0x1 and got[0][1].startswith(b'{"type":"snapshot"')
    reader.client.close()
    stuck.close()
