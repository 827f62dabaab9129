"""Log-entry codec, snapshot format and the generated state diagram."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from taskd.queue import codec, diagram
from taskd.queue.commands import (
    Cancel,
    Command,
    Complete,
    Fail,
    Heartbeat,
    Lease,
    PauseQueue,
    ReleaseWorker,
    RenewLeases,
    ResumeQueue,
    Retry,
    SetConfig,
    SetLimits,
    Submit,
    TaskSpec,
    Tick,
)
from taskd.queue.scheduler import Scheduler
from taskd.queue.snapshot import SnapshotError
from taskd.queue.task import SchedulerConfig
from taskd.queue.transitions import TRANSITIONS
from tests.queue.sched_helpers import Harness

ROOT = Path(__file__).resolve().parents[2]

EVERY_COMMAND: list[Command] = [
    Submit(
        (
            TaskSpec(
                queue="q",
                name="n",
                priority=7,
                payload=b"\x00\xff",
                timeout=2.5,
                max_retries=4,
                run_at=12.0,
                depends_on=("a", "r"),
                idempotency_key="k",
                labels=(("x", "1"), ("y", "2")),
                ref="me",
            ),
            TaskSpec(),
        ),
        ("id1", "id2"),
    ),
    Cancel("id1"),
    Retry("id1"),
    PauseQueue("q"),
    ResumeQueue("q"),
    Lease("q", "w", 10, 30.0),
    Heartbeat("id1", 3, 15.0),
    Complete("id1", 3, b"\x01result"),
    Complete("id1", 3, b"ok", "warning: cache cold"),
    Fail("id1", 3, "boom", False),
    Fail("id1", 3, "Retry: busy", True, 30.0),
    Tick(),
    ReleaseWorker("w"),
    RenewLeases(30.0),
    SetLimits(1000, 2_000_000, 8 << 30),
    SetConfig(SchedulerConfig(retention=60.0, max_tasks=9)),
]


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: type(c).__name__)
def test_every_command_round_trips(command: Command) -> None:
    data = codec.encode(command, 1234.5, 2**64 - 1)
    assert codec.decode(data) == (command, 1234.5, 2**64 - 1)


def test_entries_are_compact_arrays_with_the_version_first() -> None:
    row = msgpack.unpackb(codec.encode(Complete("id", 1, b"r"), 1.0, 2))
    assert row == [codec.FORMAT_VERSION, 7, 1.0, 2, "id", 1, b"r"]


def test_unknown_version_is_a_clear_error() -> None:
    data = msgpack.packb([99, 7, 1.0, 2, "id", 1, b"r"])
    with pytest.raises(codec.CodecError, match="unsupported command format version 99"):
        codec.decode(data)


@pytest.mark.parametrize(
    "data", [b"", b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([1, 77, 1.0, 2])]
)
def test_garbage_is_a_codec_error(data: bytes) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode(data)


def test_decoded_submit_applies_like_the_original() -> None:
    a, b = Scheduler(), Scheduler()
    cmd = Submit((TaskSpec(ref="x"), TaskSpec(depends_on=("x",))), ("A", "B"))
    a.apply(cmd, 1.0, 5)
    b.apply(*codec.decode(codec.encode(cmd, 1.0, 5)))
    assert a.snapshot() == b.snapshot()


def test_snapshot_restores_state_and_indexes() -> None:
    h = Harness(now=0.0)
    parent = h.submit(idempotency_key="k", priority=3)
    child = h.submit(depends_on=(parent,), labels=(("a", "b"),))
    h.submit(run_at=99.0)
    h.ok(PauseQueue("paused"))
    leased = h.lease_one()
    restored = Scheduler.restore(h.s.snapshot(), SchedulerConfig())
    assert restored.snapshot() == h.s.snapshot()
    assert restored.get(child) == h.s.get(child)
    assert restored.queue_names() == h.s.queue_names()
    assert restored.queue_stats("default") == h.s.queue_stats("default")
    assert restored.running_for("w1") == h.s.running_for("w1")
    assert restored.next_deadline() == h.s.next_deadline()
    out = restored.apply(Complete(parent, leased.epoch, b"x"), 1.0, 0)
    assert out.ok and restored.get(child).state.value == "queued"  # type: ignore[union-attr]


def test_snapshot_version_is_checked() -> None:
    with pytest.raises(SnapshotError, match="unsupported snapshot version 42"):
        Scheduler.restore(msgpack.packb([42, 0, 0, [], []]), SchedulerConfig())
    with pytest.raises(SnapshotError):
        Scheduler.restore(b"\xc1", SchedulerConfig())


def test_committed_state_diagram_is_current() -> None:
    committed = (ROOT / "docs" / "state-machine.md").read_text()
    assert committed == diagram.render(), (
        "run: python -m taskd.queue.diagram > docs/state-machine.md"
    )


def test_diagram_shows_every_transition() -> None:
    text = diagram.render()
    for (_, trigger), _targets in TRANSITIONS.items():
        assert trigger.value in text


# ---- restamp: the leader's time replaces a follower's, the rest untouched ---------------------


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: type(c).__name__)
def test_restamp_replaces_only_the_time(command: Command) -> None:
    # Given a command encoded with a follower's time
    data = codec.encode(command, 1_000.25, 99)
    # When the leader re-stamps it
    stamped = codec.restamp(data, 2_000.5)
    # Expect the same command and entropy, with the leader's time
    assert codec.decode(stamped) == (command, 2_000.5, 99)


@pytest.mark.parametrize("now", [0, 7, -3, 300, 70_000, 2**40, 1.5])
def test_restamp_accepts_any_number_where_the_time_was(now: float) -> None:
    # Given an entry whose time was packed as an integer of any width (or a float)
    data = msgpack.packb([codec.FORMAT_VERSION, 9, now, 5], use_bin_type=True)
    # When it is re-stamped, Expect a float64 time and the rest unchanged
    stamped = codec.restamp(data, 12.0)
    assert codec.decode(stamped) == (Tick(), 12.0, 5)
    assert msgpack.unpackb(stamped)[2] == 12.0


def test_restamp_keeps_a_long_array_header() -> None:
    # Given a command with more than 15 fields after the header (array16)
    row = [codec.FORMAT_VERSION, 9, 1.0, 5, *range(20)]
    data = msgpack.packb(row)
    assert data[0] == 0xDC
    # Expect only the time replaced
    assert msgpack.unpackb(codec.restamp(data, 3.0)) == [*row[:2], 3.0, *row[3:]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (msgpack.packb({"a": 1}), "versioned array"),
        (msgpack.packb([1, 9, 1.0]), "too short"),
        (msgpack.packb([2, 9, 1.0, 0]), "unsupported command format version 2"),
        (msgpack.packb([1, 9, "now", 0]), "unexpected value"),
        (msgpack.packb([1, 9, 1.0, 0])[:5], "unexpected value"),
    ],
)
def test_restamp_refuses_what_is_not_an_entry(data: bytes, message: str) -> None:
    with pytest.raises(codec.CodecError, match=message):
        codec.restamp(data, 1.0)
