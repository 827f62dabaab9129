"""Real node processes on one shared database, as the tests in this directory drive them:
two nodes given the same ``--store`` URL, which of them leads, and waiting for a condition
(never for a fixed time)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.conftest import NodeFactory, NodeProcess
from tests.node.rest import get, post

LEASE = 1.0  # --store-lease: seconds


def role(node: NodeProcess) -> str | None:
    """``leader`` or ``follower`` as the node's /api/v1/cluster says; None if it does not say."""
    try:
        code, body = get(f"{node.http_url}/api/v1/cluster")
    except OSError:
        return None
    return str(body["role"]) if code == 200 else None


def ready(node: NodeProcess) -> bool:
    """Whether the node's /readyz answers 200."""
    try:
        return get(f"{node.http_url}/readyz", timeout=2)[0] == 200
    except OSError:
        return False


def wait_for(condition: Callable[[], Any], deadline: float, what: str) -> float:
    """Seconds until ``condition()`` held; fails naming ``what`` after ``deadline``."""
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        if condition():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {deadline} s")


def two_nodes(
    node_factory: NodeFactory,
    url: str,
    *extra_args: str,
    env: dict[str, str] | None = None,
) -> tuple[NodeProcess, NodeProcess]:
    """Two nodes on ``url`` with a ``LEASE`` lease, (leader, follower) once one leads."""
    flags = ("--store", url, "--store-lease", str(LEASE), *extra_args)
    first = node_factory(*flags, env=env)
    second = node_factory(*flags, env=env)
    wait_for(lambda: {role(first), role(second)} == {"leader", "follower"}, 10, "one leader")
    return (first, second) if role(first) == "leader" else (second, first)


def submit(node: NodeProcess, queue: str) -> str:
    """Submit one task to ``queue``; its id (fails unless acknowledged with 201)."""
    code, body = post(f"{node.http_url}/api/v1/tasks", {"queue": queue})
    assert code == 201, body
    return str(body["id"])
