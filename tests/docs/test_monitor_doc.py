"""docs/monitor.md shows the event stream as a real node sends it.

Given a node, a subscriber and one submitted task, each example tagged ``<!-- test: example
KIND -->`` must have the shape of the real message of that kind: the same keys at every level
(the first item stands for a list), and the same JSON types. The documented refusal of a bad
``state`` is the node's, word for word, and every message type the stream's code sends is
documented.
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.conftest import NodeFactory
from tests.docs import mdblocks

pytestmark = pytest.mark.slow

PAGE = mdblocks.DOCS / "monitor.md"


def shape(value: Any) -> Any:
    """Keys and types, recursively; a list stands for its first item."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if value is None or isinstance(value, bool):
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def same_shape(doc: Any, real: Any, where: str = "") -> list[str]:
    """Where the documented shape differs from the real one (null matches anything: a value
    the example leaves unmeasured, and an empty list matches any list)."""
    if doc == "NoneType" or real == "NoneType":
        return []
    if isinstance(doc, dict) and isinstance(real, dict):
        problems = [f"{where}.{k}: not sent" for k in doc.keys() - real.keys()]
        problems += [f"{where}.{k}: sent, not documented" for k in real.keys() - doc.keys()]
        for key in doc.keys() & real.keys():
            problems += same_shape(doc[key], real[key], f"{where}.{key}")
        return problems
    if isinstance(doc, list) and isinstance(real, list):
        return same_shape(doc[0], real[0], f"{where}[0]") if doc and real else []
    return [] if doc == real else [f"{where}: {doc} documented, {real} sent"]


def submit(http_url: str) -> None:
    body = json.dumps({"queue": "emails", "priority": "high"}).encode()
    request = urllib.request.Request(
        f"{http_url}/api/v1/tasks", body, {"content-type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=5).close()


async def real_messages(ws_url: str, http_url: str) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    async with open_websocket_url(ws_url) as ws:
        seen["snapshot"] = json.loads(await ws.get_message())
        await trio.to_thread.run_sync(submit, http_url)
        with trio.fail_after(10):
            while not {"transitions", "stats"} <= seen.keys():
                message = json.loads(await ws.get_message())
                seen.setdefault(message["type"], message)
    return seen


async def test_the_documented_messages_are_the_ones_a_node_sends(
    node_factory: NodeFactory,
) -> None:
    # Given a node, a subscriber and a submitted task
    node = node_factory()
    ws_url = node.http_url.replace("http://", "ws://") + "/api/v1/events"
    real = await real_messages(ws_url, node.http_url)
    # When each documented example is compared with the real message of its kind
    examples = mdblocks.tagged(PAGE, "example")
    problems = {
        block.tag.args[0]: same_shape(shape(json.loads(block.text)), shape(real[block.tag.args[0]]))
        for block in examples
        if block.tag is not None
    }
    # Expect the three examples, each shaped as sent
    assert set(problems) == {"snapshot", "stats", "transitions"}
    assert problems == {"snapshot": [], "stats": [], "transitions": []}


async def test_the_documented_refusal_is_the_nodes(node_factory: NodeFactory) -> None:
    # Given a node / When a stream is asked for with a state that does not exist
    node = node_factory()
    ws_url = node.http_url.replace("http://", "ws://") + "/api/v1/events?state=done"
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(ws_url):
            pass
    # Expect the error the page shows, word for word
    error = json.loads(rejected.value.body)
    documented = [
        json.loads(b.text)
        for b in mdblocks.blocks(PAGE)
        if b.lang == "json" and b.text.lstrip().startswith('{"error"')
    ]
    assert documented == [error]


def test_every_message_type_is_documented() -> None:
    # Given every kind of message the stream's code builds
    source = (mdblocks.ROOT / "taskd" / "web" / "messages.py").read_text(encoding="utf-8")
    kinds = set(re.findall(r'Message\(\s*"(\w+)"', source))
    text = PAGE.read_text(encoding="utf-8")
    # Expect each one's own paragraph
    assert kinds >= {"snapshot", "stats", "transitions", "workers", "cluster", "bye"}
    assert [kind for kind in sorted(kinds) if f"**`{kind}`**" not in text] == []
