"""``follow`` and the sinks against an in-process fake event stream (trio-websocket's server
on a loopback port): reconnects after a bye, a silence or a 503; refusals that are final; a
node that is not there; the JSON lines; a redraw rate bounded however fast messages come."""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio
from rich.console import RenderableType
from trio_websocket import WebSocketConnection, WebSocketRequest, serve_websocket

from taskd.cli.rest import ClientError, Exit
from taskd.cli.watch.model import LinkState, WatchModel
from taskd.cli.watch.shell import follow
from taskd.cli.watch.sinks import JsonSink, LiveSink
from tests.cli import watch_messages as msg
from tests.conftest import free_ports

Script = Callable[[WebSocketRequest], Awaitable[None]]


class Recorder:
    """A sink that writes down what it saw and stops after ``snapshots`` snapshots."""

    def __init__(self, snapshots: int = 2) -> None:
        self.snapshots = snapshots
        self.seen: list[tuple[str, Any]] = []

    def received(self, text: str, message: dict[str, Any]) -> bool:
        self.seen.append(("message", message["type"]))
        return sum(1 for kind, what in self.seen if what == "snapshot") >= self.snapshots

    def status(self, model: WatchModel) -> None:
        link = model.link
        self.seen.append(("status", (link.state.value, link.attempt, link.reason)))

    def statuses(self, state: str) -> list[tuple[int, str | None]]:
        return [(w[1], w[2]) for kind, w in self.seen if kind == "status" and w[0] == state]


class FakeNode:
    """Plays ``scripts[i]`` to the i-th connection (the last one again after that)."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = scripts
        self.connections = 0
        self.port = 0

    async def handle(self, request: WebSocketRequest) -> None:
        script = self.scripts[min(self.connections, len(self.scripts) - 1)]
        self.connections += 1
        await script(request)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/events"


async def serving(nursery: trio.Nursery, node: FakeNode) -> FakeNode:
    server = await nursery.start(serve_websocket, node.handle, "127.0.0.1", 0, None)
    node.port = server.port
    return node


async def send(ws: WebSocketConnection, message: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(message))


def snapshot_then(after: Callable[[WebSocketConnection], Awaitable[None]], **kw: Any) -> Script:
    async def script(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await send(ws, msg.snapshot(**kw))
        await after(ws)

    return script


async def forever(ws: WebSocketConnection) -> None:
    await trio.sleep_forever()


async def bye(ws: WebSocketConnection) -> None:
    await send(ws, {"type": "bye", "reason": "the node is shutting down"})
    await ws.aclose(1001, "the node is shutting down")


def reject(status: int, body: dict[str, Any] | None) -> Script:
    async def script(request: WebSocketRequest) -> None:
        await request.reject(status, body=json.dumps(body).encode() if body else None)

    return script


@pytest.fixture
def model() -> Iterator[WatchModel]:
    yield WatchModel("http://127.0.0.1:8080")


def no_jitter() -> float:
    return 0.0  # the shortest delays: 0.2 s, 0.4 s, ...


async def test_after_a_bye_it_reconnects_and_shows_the_bye_reason(model: WatchModel) -> None:
    # Given a node that says bye to the first connection, and a snapshot to the next
    async with trio.open_nursery() as nursery:
        node = await serving(nursery, FakeNode(snapshot_then(bye), snapshot_then(forever)))
        recorder = Recorder(snapshots=2)
        # When followed until the second snapshot
        with trio.fail_after(10):
            await follow(node.url, model, recorder, jitter=no_jitter)
        nursery.cancel_scope.cancel()
    # Expect: connecting, snapshot, bye, disconnected (the bye's reason, attempt 1), snapshot
    assert recorder.seen == [
        ("status", ("connecting", 0, None)),
        ("message", "snapshot"),
        ("message", "bye"),
        ("status", ("disconnected", 1, "the node is shutting down")),
        ("status", ("connecting", 1, "the node is shutting down")),
        ("message", "snapshot"),
    ]
    assert model.link.state is LinkState.LIVE and model.link.attempt == 0


@pytest.mark.slow
async def test_a_silent_node_is_taken_for_dead_and_replaced(model: WatchModel) -> None:
    # Given a node that sends its snapshot (stats every 50 ms) and then nothing at all
    async with trio.open_nursery() as nursery:
        node = await serving(
            nursery, FakeNode(snapshot_then(forever, interval_ms=50), snapshot_then(forever))
        )
        recorder = Recorder(snapshots=2)
        # When followed
        with trio.fail_after(10):
            await follow(node.url, model, recorder, jitter=no_jitter)
        nursery.cancel_scope.cancel()
    # Expect the connection dropped after three intervals of silence, and a new one
    assert recorder.statuses("disconnected") == [(1, "no word from the node for 0.15 s")]
    assert node.connections == 2


async def test_a_503_is_retried_until_the_node_answers(model: WatchModel) -> None:
    # Given a node that is not ready for the first try
    unavailable = {"error": {"code": "unavailable", "message": "starting", "field": None}}
    async with trio.open_nursery() as nursery:
        node = await serving(nursery, FakeNode(reject(503, unavailable), snapshot_then(forever)))
        recorder = Recorder(snapshots=1)
        with trio.fail_after(10):
            await follow(node.url, model, recorder, jitter=no_jitter)
        nursery.cancel_scope.cancel()
    # Expect one failed try naming the status, then the snapshot
    assert recorder.statuses("disconnected") == [
        (1, "the node could not open the stream (HTTP 503): starting")
    ]
    assert recorder.seen[-1] == ("message", "snapshot")


@pytest.mark.parametrize(
    ("status", "body", "code", "words"),
    [
        (
            400,
            {"error": {"code": "invalid", "message": "state must be one of ...", "field": "state"}},
            Exit.USAGE,
            "state must be one of ... (field: state)",
        ),
        (
            401,
            {"error": {"code": "unauthorized", "message": "a token is needed", "field": None}},
            Exit.REFUSED,
            "(HTTP 401): a token is needed",
        ),
        (403, None, Exit.UNREACHABLE, "serves no event stream (HTTP 403)"),
        (404, None, Exit.UNREACHABLE, "serves no event stream (HTTP 404)"),
    ],
)
async def test_a_refused_upgrade_is_final_with_the_nodes_words(
    model: WatchModel, status: int, body: dict[str, Any] | None, code: int, words: str
) -> None:
    # Given a node that refuses the upgrade
    async with trio.open_nursery() as nursery:
        node = await serving(nursery, FakeNode(reject(status, body)))
        # When followed (with retries allowed)
        with trio.fail_after(10), pytest.raises(ClientError) as refused:
            await follow(node.url, model, Recorder(), jitter=no_jitter)
        nursery.cancel_scope.cancel()
    # Expect one try, and the error with its exit code
    assert node.connections == 1
    assert refused.value.code == code and words in refused.value.message


@pytest.mark.slow
async def test_no_node_there_is_retried_naming_the_address_and_what_to_do(
    model: WatchModel,
) -> None:
    # Given a port where nothing listens
    [port] = free_ports(1)
    recorder = Recorder()
    # When followed for 0.7 s (tries at 0, 0.2 and 0.6 s)
    with trio.move_on_after(0.7):
        await follow(f"ws://127.0.0.1:{port}/api/v1/events", model, recorder, jitter=no_jitter)
    # Expect growing attempts, each saying where and what to do
    failures = recorder.statuses("disconnected")
    assert [attempt for attempt, _ in failures][:3] == [1, 2, 3]
    reason = failures[0][1] or ""
    assert "cannot reach taskd at http://127.0.0.1:8080: nothing listens there" in reason
    assert "start a node" in reason and "--server" in reason


async def test_without_retry_the_first_failure_ends_it_with_exit_3(model: WatchModel) -> None:
    [port] = free_ports(1)
    with pytest.raises(ClientError) as failed:
        await follow(f"ws://127.0.0.1:{port}/api/v1/events", model, Recorder(), retry=False)
    assert failed.value.code == Exit.UNREACHABLE
    assert "nothing listens there" in failed.value.message


async def test_a_sink_that_cannot_write_ends_it_and_is_not_retried(model: WatchModel) -> None:
    # Given a JSON sink whose stdout reader left
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    async with trio.open_nursery() as nursery:
        node = await serving(nursery, FakeNode(snapshot_then(forever)))
        # When followed
        with trio.fail_after(10), pytest.raises(BrokenPipeError):
            await follow(node.url, model, JsonSink(Closed(), io.StringIO()))
        nursery.cancel_scope.cancel()
    # Expect the sink's own error, after one connection
    assert node.connections == 1


async def test_json_lines_are_the_messages_as_sent_and_troubles_go_to_stderr(
    model: WatchModel,
) -> None:
    # Given a node that sends a snapshot and a transition, then says bye; then a snapshot
    async def one_transition_then_bye(ws: WebSocketConnection) -> None:
        await send(ws, msg.transitions(msg.event("t-1")))
        await bye(ws)

    out, err = io.StringIO(), io.StringIO()
    sink = JsonSink(out, err)
    async with trio.open_nursery() as nursery:
        node = await serving(
            nursery, FakeNode(snapshot_then(one_transition_then_bye), snapshot_then(forever))
        )
        nursery.start_soon(follow, node.url, model, sink)
        with trio.fail_after(10):
            await _until(lambda: out.getvalue().count('"snapshot"') == 2)
        nursery.cancel_scope.cancel()

    # Expect one JSON object a line on stdout, and the disconnect on stderr
    types = [json.loads(line)["type"] for line in out.getvalue().splitlines()]
    assert types == ["snapshot", "transitions", "bye", "snapshot"]
    assert err.getvalue() == (
        "disconnected: the node is shutting down — reconnecting (attempt 1)\n"
    )


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110  # the condition is another task's output
        await trio.sleep(0.01)


class Screen:
    def __init__(self) -> None:
        self.updates: list[float] = []

    def update(self, renderable: RenderableType, *, refresh: bool = False) -> None:
        assert refresh
        self.updates.append(trio.current_time())


async def test_the_live_view_redraws_at_most_four_times_a_second(
    model: WatchModel, autojump_clock: trio.abc.Clock
) -> None:
    # Given a live sink drawing on a recording screen
    screen = Screen()
    sink = LiveSink(model, screen)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink.refresh)
        # When 2,000 messages arrive over two seconds
        start = trio.current_time()
        model.apply(msg.snapshot())
        for i in range(2000):
            message = msg.transitions(msg.event(f"t{i}"))
            model.apply(message)
            sink.received("", message)
            await trio.sleep(0.001)
        # and then nothing for a second
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    # Expect about 4 redraws a second while messages came, none while nothing changed
    during = [t for t in screen.updates if t < start + 2]
    assert 8 <= len(during) <= 9
    assert len(screen.updates) - len(during) <= 1
    assert all(
        b - a >= 0.25 - 1e-9 for a, b in zip(screen.updates, screen.updates[1:], strict=False)
    )
