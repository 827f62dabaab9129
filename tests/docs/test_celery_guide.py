"""docs/migrating-from-celery.md: the taskd side of every comparison runs as shown.

Given a real node and the guide's ``tasks.py`` worker running in its own process, when the
guide's ``>>>`` sessions run in page order as one doctest session (ELLIPSIS on, the client from
``$TASKD_SERVER``), expect every output to be the one the page shows. Every python block of the
page is either that worker, a ``>>>`` session, or Celery code tagged ``not-run``.
"""

from __future__ import annotations

import doctest
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import NodeFactory
from tests.docs import mdblocks

pytestmark = pytest.mark.slow

PAGE = mdblocks.DOCS / "migrating-from-celery.md"


def sessions() -> list[mdblocks.Block]:
    return [b for b in mdblocks.blocks(PAGE) if b.lang == "python" and ">>>" in b.text]


def test_every_python_block_is_the_worker_a_session_or_celery() -> None:
    # Given the page's python blocks / Expect each to be one of the three kinds
    for block in mdblocks.blocks(PAGE):
        if block.lang != "python":
            continue
        is_worker = block.tag is not None and block.tag.args == ("tasks.py",)
        is_celery = block.tag is not None and block.tag.kind == "not-run"
        assert is_worker or ">>>" in block.text or is_celery, block.where
        assert not (is_celery and ">>>" in block.text), block.where
    assert len(sessions()) >= 8


def test_the_taskd_examples_run_as_shown(
    node_factory: NodeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a node, and the guide's worker running against it
    node = node_factory()
    [worker_block] = mdblocks.tagged(PAGE, "file")
    (tmp_path / "tasks.py").write_text(worker_block.text)
    monkeypatch.setenv("TASKD_SERVER", node.grpc_address)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    worker = subprocess.Popen(
        [sys.executable, "tasks.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # When every >>> session of the page runs, in order, sharing one namespace
        parser = doctest.DocTestParser()
        runner = doctest.DocTestRunner(
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
        )
        globs: dict[str, object] = {}
        report: list[str] = []
        for block in sessions():
            test = parser.get_doctest(block.text, globs, block.where, str(PAGE), block.line)
            runner.run(test, out=report.append, clear_globs=False)
            globs.update(test.globs)  # a DocTest runs on a copy: carry the session on

        # Expect no example to fail
        assert runner.failures == 0, "".join(report)
        assert runner.tries >= 30
        assert worker.poll() is None, worker.communicate()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.communicate(timeout=10)
