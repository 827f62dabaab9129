"""Fixtures of the real-process cluster tests: ``cluster_of(size, *extra_args)`` builds a
``Cluster`` under ``tmp_path`` (not started), and SIGKILLs everything it started at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster

ClusterOf = Callable[..., Cluster]


@pytest.fixture
def cluster_of(tmp_path: Path) -> Iterator[ClusterOf]:
    made: list[Cluster] = []

    def make(
        size: int = 3, *extra_args: str, spare: int = 1, env: dict[str, str] | None = None
    ) -> Cluster:
        cluster = Cluster(
            tmp_path / f"c{len(made)}", size, extra_args=extra_args, spare=spare, env=env
        )
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.cleanup()
