"""The betterproto2 speed-up changes nothing but speed."""

from __future__ import annotations

import warnings
from pathlib import Path

import betterproto2

from taskd.api.taskd import v1 as pb
from taskd.node import speedups

PROTO = Path(__file__).parents[2] / "taskd" / "api" / "taskd" / "v1" / "tasks.proto"


def _messages() -> list[betterproto2.Message]:
    return [
        pb.Task(
            id="01J",
            queue="q",
            priority=7,
            payload=b"{}",
            labels={"a": "b"},
            attempt=2,
            state=pb.TaskState.RUNNING,
            dependency_results={"x": b"1"},
            lease=9,
        ),
        pb.Task(),
        pb.SubmitRequest(task=pb.TaskSpec(priority=0, max_retries=0, timeout_seconds=0.0)),
        pb.NodeMessage(assignment=pb.Assignment(items=[pb.WorkItem(id="a", lease=1)])),
    ]


def test_serialization_is_byte_identical_with_and_without_the_speedup() -> None:
    speedups.install()
    patched = [bytes(m) for m in _messages()]
    speedups.uninstall()
    try:
        unpatched = [bytes(m) for m in _messages()]
    finally:
        speedups.install()
    assert patched == unpatched
    assert [type(m).parse(b) for m, b in zip(_messages(), patched, strict=True)] == _messages()


def test_no_taskd_message_declares_a_deprecated_field() -> None:
    # The speed-up drops a warnings filter that only matters for deprecated fields.
    assert "deprecated" not in PROTO.read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for message in _messages():
            bytes(message)
