"""The event stream's authentication hook, checked at the upgrade: the node's app built with an
``authorize`` that wants a token, served by the node's own HTTP server (hypercorn through
``serve_http``) on a loopback socket in this process, since a node process takes no hook.

No credentials: 401; credentials that do not do (a wrong ``?token=``, an ``Authorization``
header): 403; the right token: the stream, snapshot first. The hook sees the whole scope."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from taskd.node.api.http.app import HttpExtras, create_app
from taskd.node.api.http.server import hypercorn_config, serve_http
from taskd.node.api.transport import ConnectionTable, bind_listener
from taskd.node.app.machine import SchedulerMachine
from taskd.node.app.service import NodeService
from taskd.queue.task import SchedulerConfig
from taskd.store.memory import MemoryStore
from tests.http.conftest import CLUSTER, WORKERS

GOOD = "s3cret"


class TokenCheck:
    """An ``authorize`` hook: ``?token=`` must be GOOD. Records the scopes it saw."""

    def __init__(self) -> None:
        self.seen: list[Mapping[str, Any]] = []

    def __call__(self, scope: Mapping[str, Any]) -> str | None:
        self.seen.append(scope)
        tokens = parse_qs(scope["query_string"].decode()).get("token", [])
        return None if tokens == [GOOD] else "this stream needs a valid ?token="


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, TokenCheck]]:
    """The node's app with a ``TokenCheck`` hook on the node's HTTP server: (ws URL, hook)."""
    machine = SchedulerMachine(SchedulerConfig())
    store = MemoryStore(machine)
    store.start()
    service = NodeService(machine, store)
    service.stream.start()
    check = TokenCheck()
    app = create_app(
        service,
        extras=HttpExtras(
            cluster_status=lambda: CLUSTER,
            workers=lambda: WORKERS,
            ready=lambda: True,
            metrics=lambda: b"",
            authorize_events=check,
        ),
    )
    listener = bind_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(
                serve_http,
                app,
                hypercorn_config(60.0),
                listener,
                ConnectionTable("HTTP", 100, 60.0),
                on_exhausted=lambda: 0,
                shutdown_trigger=stop.wait,
            )
        )
        yield f"ws://127.0.0.1:{port}/api/v1/events", check
        app.state.events.close_all()
        stop.set()


async def refused(url: str, headers: list[tuple[str, str]] | None = None) -> ConnectionRejected:
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(url, extra_headers=headers):
            pass
    return rejected.value


async def test_no_token_is_401_and_a_wrong_one_403(served: tuple[str, TokenCheck]) -> None:
    # Given the node's app with a hook that wants ?token=GOOD
    url, check = served
    # When a client upgrades with no credentials, with a wrong token, with a header only
    bare = await refused(url + "?queue=q")
    wrong = await refused(url + "?queue=q&token=x")
    header = await refused(url, [("Authorization", "Bearer x")])
    # Expect 401 without credentials and 403 with ones that do not do, naming the reason
    assert bare.status_code == 401
    assert json.loads(bare.body)["error"] == {
        "code": "unauthorized",
        "message": "this stream needs a valid ?token=",
        "field": None,
    }
    assert wrong.status_code == 403
    assert json.loads(wrong.body)["error"]["code"] == "forbidden"
    assert header.status_code == 403
    # and the hook saw each upgrade's scope, headers included
    assert [s["type"] for s in check.seen] == ["websocket"] * 3
    assert (b"authorization", b"Bearer x") in check.seen[2]["headers"]


async def test_the_right_token_gets_the_stream(served: tuple[str, TokenCheck]) -> None:
    # Given the same app / When a client upgrades with the right token and a filter
    url, _ = served
    async with open_websocket_url(f"{url}?queue=q&token={GOOD}") as ws:
        first = json.loads(await ws.get_message())
    # Expect the stream: its snapshot, for the filter asked (the token is not part of it)
    assert first["type"] == "snapshot"
    assert first["subscription"] == {"queues": ["q"], "states": [], "ids": []}


async def test_a_bad_query_is_refused_before_the_hook_is_asked(
    served: tuple[str, TokenCheck],
) -> None:
    # Given the same app / When the query is bad (and the token right)
    url, check = served
    rejected = await refused(f"{url}?state=done&token={GOOD}")
    # Expect 400 naming the field, and the hook never asked
    assert rejected.status_code == 400
    assert json.loads(rejected.body)["error"]["field"] == "state"
    assert check.seen == []
