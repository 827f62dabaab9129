"""A real ``NodeService`` over ``MemoryStore``, its REST app, and a caller bound to both."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from taskd.errors import ClusterError
from taskd.node.api.http.app import HttpExtras, create_app
from taskd.node.app.machine import SchedulerMachine
from taskd.node.app.service import NodeService
from taskd.queue.task import SchedulerConfig
from taskd.store.memory import MemoryStore
from tests.http.asgi import Reply, call

CLUSTER = {
    "id": "n1",
    "role": "leader",
    "term": 3,
    "leader": "127.0.0.1:50051",
    "commit_index": 42,
    "members": [
        {"address": "127.0.0.1:50051", "role": "leader", "match_index": 42, "reachable": True}
    ],
}
WORKERS = [
    {"worker": "local@n1", "kind": "local", "queues": ["default"], "capacity": 4, "running": []}
]


@dataclass
class Api:
    """The app under test with its service; ``await api.post(path, body)`` etc."""

    service: NodeService
    app: Any
    ready: list[bool] = field(default_factory=lambda: [True])

    async def get(self, path: str, **kw: Any) -> Reply:
        return await call(self.app, "GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        if body is None and "raw" not in kw and "chunks" not in kw:
            return await call(self.app, "POST", path, **kw)
        return await call(self.app, "POST", path, body, **kw)

    async def submit(self, **spec: Any) -> dict[str, Any]:
        reply = await self.post("/api/v1/tasks", spec)
        assert reply.status == 201, reply.body
        task: dict[str, Any] = reply.json
        return task


def make_api(
    config: SchedulerConfig = SchedulerConfig(),  # noqa: B008  # frozen dataclass
    *,
    max_payload: int = 1 << 20,
    max_body: int = (2 << 20) + (64 << 10),
    clock: Callable[[], float] | None = None,
) -> Api:
    machine = SchedulerMachine(config)
    store = MemoryStore(machine)
    store.start()
    service = NodeService(machine, store, clock=clock) if clock else NodeService(machine, store)
    ready = [True]
    app = create_app(
        service,
        extras=HttpExtras(
            cluster_status=lambda: CLUSTER,
            workers=lambda: WORKERS,
            ready=lambda: ready[0],
            metrics=lambda: b"# HELP taskd_up 1\ntaskd_up 1\n",
            max_payload=max_payload,
            max_body=max_body,
            http_lease_ttl=30.0,
        ),
    )
    return Api(service, app, ready)


@pytest.fixture
def api() -> Api:
    return make_api()


class FailingStore:
    """A store that refuses every write the way a follower or a broken disk does."""

    def __init__(self, error: ClusterError) -> None:
        self.error = error

    async def propose(self, data: bytes) -> object:
        raise self.error

    async def read_barrier(self) -> None:  # a linearizable read needs the store too
        raise self.error
