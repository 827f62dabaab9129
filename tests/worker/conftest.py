"""``spawn_worker(source, *args)``: a started ``WorkerProcess`` (see ``procs``), SIGKILLed with
its process group at teardown if it still runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.worker.procs import WorkerProcess

SpawnWorker = Callable[..., WorkerProcess]


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[SpawnWorker]:
    made: list[WorkerProcess] = []

    def spawn(source: str, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(tmp_path / f"worker{len(made)}", source, *args, env=env)
        made.append(worker)
        return worker.start()

    try:
        yield spawn
    finally:
        for worker in made:
            worker.cleanup()
