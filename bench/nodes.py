"""Clusters for the cluster benchmarks: start N nodes on loopback, wait, find the leader, stop.

Theory of operation: a thin synchronous layer over ``chaos.cluster`` (the same process
management the chaos harness uses), without proxies — benchmarks measure the cluster, not a
proxy. Ports come from the chaos range (23000-23999); data dirs live under a temporary
directory removed by ``BenchCluster.close`` (the node logs are kept when the run failed).
Every call that waits has a deadline and raises ``RuntimeError`` naming the node logs.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from chaos.cluster import Cluster, layout
from chaos.ports import PortPool


class BenchCluster:
    def __init__(self, count: int, *, extra: tuple[str, ...] = (), keep_logs: bool = False):
        self.root = Path(tempfile.mkdtemp(prefix="taskd-bench-cluster-"))
        self.keep_logs = keep_logs
        lay = layout(count, PortPool(), self.root / "data", self.root, proxied=False)
        self.cluster = Cluster(lay, extra=extra)

    def __enter__(self) -> BenchCluster:
        self.cluster.start()
        self.wait_ready()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(failed=exc is not None)

    def close(self, *, failed: bool = False) -> None:
        """Stop the nodes and drop their data; the logs stay after a failure (or keep_logs)."""
        self.cluster.close()
        shutil.rmtree(self.root / "data", ignore_errors=True)
        if failed or self.keep_logs:
            print(f"node logs kept in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def members(self) -> list[str]:
        return self.cluster.members

    def url(self, member: str) -> str:
        return self.cluster.http_url(member)

    def status(self, member: str) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"{self.url(member)}/api/v1/cluster", timeout=1.0)
            body: Any = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return body if response.status_code == 200 and isinstance(body, dict) else None

    def leader(self) -> str | None:
        for member in self.members:
            body = self.status(member)
            if body is not None and body.get("role") == "leader":
                return member
        return None

    def ready(self, member: str) -> bool:
        try:
            return httpx.get(f"{self.url(member)}/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, seconds: float = 60.0) -> str:
        """Until some node leads and every node is ready; the leader."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and all(self.ready(m) for m in self.members):
                return leader
            time.sleep(0.1)
        raise RuntimeError(
            f"the cluster was not ready within {seconds:g} s; see the node logs in {self.root}"
        )
