"""HTTP workers of the chaos load: lease, then complete or fail each attempt, over REST.

Theory of operation: an ``HttpWorker`` loops until stopped: it leases up to a few tasks of the
worker queue from a member (``POST /api/v1/queues/{q}/lease``), records each leased attempt,
and reports each one, mostly to the same member: ``complete`` with a result unique to that
attempt (worker, lease, nonce: so the checker can tell which call a stored result came from),
or (sometimes) ``fail`` (retryable). When stopped it reports what it holds and leases nothing
more; a report cut short by the end of the run is recorded as indeterminate. No SDK: the
protocol of design.md §3 and nothing else.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import trio

from chaos.history import INFO, OK, History, Lease, Outcome, Report
from chaos.load import JSON_HEADERS, LoadConfig, describe, http_error_outcome, http_outcome


class HttpWorker:
    def __init__(
        self,
        name: str,
        cfg: LoadConfig,
        urls: dict[str, str],
        history: History,
        client: httpx.AsyncClient,
        stopping: Callable[[], bool],
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.urls = urls
        self.history = history
        self.client = client
        self.stopping = stopping
        self.rng = random.Random(f"{cfg.seed}-{name}")
        self._nonce = itertools.count(1)

    async def run(self) -> None:
        member = self.rng.choice(list(self.urls))
        while not self.stopping():
            items = await self.lease(member)
            if items is None:  # that member did not serve us: try another
                member = self.rng.choice(list(self.urls))
                await trio.sleep(0.1)
                continue
            for item in items:
                await trio.sleep(self.rng.uniform(0.0, 0.03))
                target = member if self.rng.random() < 0.8 else self.rng.choice(list(self.urls))
                await self.report(target, item)

    async def lease(self, member: str) -> list[dict[str, Any]] | None:
        body = {"worker": self.name, "max": 4, "wait": 0.5}
        try:
            response = await self.client.post(
                f"{self.urls[member]}/api/v1/queues/{self.cfg.queue}/lease",
                content=orjson.dumps(body),
                headers=JSON_HEADERS,
                timeout=self.cfg.timeout + 1.0,
            )
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        received = time.time()
        items: list[dict[str, Any]] = response.json().get("tasks", [])
        for item in items:
            payload = item.get("payload")
            op = payload.get("op") if isinstance(payload, dict) else None
            self.history.leases.append(
                Lease(
                    worker=self.name,
                    node=member,
                    task_id=item["id"],
                    attempt=int(item.get("attempt") or 0),
                    lease=int(item["lease"]),
                    received=received,
                    op=op,
                    dependency_results=dict(item.get("dependency_results") or {}),
                )
            )
        return items

    async def report(self, member: str, item: dict[str, Any]) -> None:
        task_id, lease = item["id"], int(item["lease"])
        result: Any = None
        if self.rng.random() < self.cfg.fail_rate:
            kind = "fail"
            body: dict[str, Any] = {"lease": lease, "error": "chaos: a deliberate failure"}
        else:
            kind = "complete"
            result = {"w": self.name, "lease": lease, "n": next(self._nonce)}
            body = {"lease": lease, "result": result}
        invoked = time.time()
        error = ""
        outcome: Outcome = INFO
        try:
            response = await self.client.post(
                f"{self.urls[member]}/api/v1/tasks/{task_id}/{kind}",
                content=orjson.dumps(body),
                headers=JSON_HEADERS,
                timeout=self.cfg.timeout,
            )
            outcome = http_outcome(response.status_code)
            if outcome != OK:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            outcome, error = http_error_outcome(exc), describe(exc)
        except trio.Cancelled:  # the run ended with this call in flight: it may still land
            error = "cancelled: the run ended"
            raise
        finally:
            self._recorded(kind, member, task_id, lease, invoked, outcome, result, error)

    def _recorded(
        self,
        kind: str,
        member: str,
        task_id: str,
        lease: int,
        invoked: float,
        outcome: Outcome,
        result: Any,
        error: str,
    ) -> None:
        self.history.reports.append(
            Report(
                kind="complete" if kind == "complete" else "fail",
                worker=self.name,
                node=member,
                task_id=task_id,
                lease=lease,
                invoked=invoked,
                completed=time.time(),
                outcome=outcome,
                result=result,
                error=error,
            )
        )
