"""Watching the cluster from outside: cluster-status polls, readiness, the final reads.

Theory of operation: ``Observer.run`` asks every node for ``GET /api/v1/cluster`` every
``interval`` seconds (all at once, each with a short timeout, so a frozen node delays no one)
and records each answer as a ``ClusterView``; the latest fresh views say who leads now, which
is how the nemesis aims at "the leader". After healing, ``read_tasks`` pages through
``GET /api/v1/tasks`` of each chaos queue, from the local replica (``?stale=true``) or
linearizably (the default), into a ``FinalRead``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import trio

from chaos.history import ClusterView, FinalRead, History, TaskView

POLL_TIMEOUT = 0.8
READ_TIMEOUT = 10.0
FRESH = 2.0  # seconds a view counts as the node's current opinion
PAGE = 1000


class Observer:
    def __init__(
        self,
        urls: dict[str, str],
        history: History,
        client: httpx.AsyncClient,
        interval: float = 0.25,
    ) -> None:
        self.urls = urls  # member -> HTTP base URL
        self.history = history
        self.client = client
        self.interval = interval
        self.latest: dict[str, ClusterView] = {}

    async def poll(self, member: str) -> ClusterView | None:
        try:
            response = await self.client.get(
                f"{self.urls[member]}/api/v1/cluster", timeout=POLL_TIMEOUT
            )
            body: Any = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        if response.status_code != 200 or not isinstance(body, dict):
            return None
        view = ClusterView(
            node=member,
            at=time.time(),
            role=str(body.get("role", "")),
            term=int(body.get("term") or 0),
            leader=body.get("leader") or None,
            commit_index=int(body.get("commit_index") or 0),
        )
        self.history.views.append(view)
        self.latest[member] = view
        return view

    async def poll_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for member in self.urls:
                nursery.start_soon(self.poll, member)

    async def run(self) -> None:
        while True:
            await self.poll_all()
            await trio.sleep(self.interval)

    def leader(self) -> str | None:
        """The member that most recently said it leads, in the highest term seen fresh."""
        now = time.time()
        fresh = [v for v in self.latest.values() if now - v.at < FRESH]
        leaders = [v for v in fresh if v.role == "leader"]
        if leaders:
            return max(leaders, key=lambda v: (v.term, v.at)).node
        named = [v for v in fresh if v.leader in self.urls]
        return max(named, key=lambda v: (v.term, v.at)).leader if named else None

    async def wait_for_leader(self) -> str:
        """Poll until some node leads (callers bound the wait with a cancel scope)."""
        while True:
            await self.poll_all()
            if (leader := self.leader()) is not None:
                return leader
            await trio.sleep(self.interval)


async def ready(client: httpx.AsyncClient, url: str) -> bool:
    try:
        response = await client.get(f"{url}/readyz", timeout=POLL_TIMEOUT)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def task_view(raw: dict[str, Any]) -> TaskView:
    payload = raw.get("payload")
    op = payload.get("op") if isinstance(payload, dict) else None
    return TaskView(
        id=str(raw["id"]),
        queue=str(raw.get("queue", "")),
        state=str(raw.get("state", "")),
        attempt=int(raw.get("attempt") or 0),
        max_retries=int(raw.get("max_retries") or 0),
        op=op if isinstance(op, str) else None,
        depends_on=tuple(raw.get("depends_on") or ()),
        result=raw.get("result"),
        idempotency_key=raw.get("idempotency_key"),
    )


async def read_tasks(
    client: httpx.AsyncClient, member: str, url: str, queues: list[str], *, stale: bool
) -> FinalRead:
    """Every task of ``queues`` on one node; a failed read says why in ``error``."""
    tasks: dict[str, TaskView] = {}
    at = time.time()
    try:
        for queue in queues:
            after: str | None = None
            while True:
                params = {"queue": queue, "limit": str(PAGE)}
                if stale:
                    params["stale"] = "true"
                if after:
                    params["after"] = after
                response = await client.get(
                    f"{url}/api/v1/tasks", params=params, timeout=READ_TIMEOUT
                )
                if response.status_code == 400 and stale and "stale" in response.text:
                    # a node without stale reads (before issue 7): its reads are local anyway
                    return await read_tasks(client, member, url, queues, stale=False)
                if response.status_code != 200:
                    why = response.text[:300]
                    return FinalRead(member, at, stale, {}, f"HTTP {response.status_code}: {why}")
                body = response.json()
                for raw in body.get("tasks", []):
                    view = task_view(raw)
                    tasks[view.id] = view
                after = body.get("next")
                if not after:
                    break
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return FinalRead(member, at, stale, {}, f"{type(exc).__name__}: {exc}")
    return FinalRead(member, at, stale, tasks)
