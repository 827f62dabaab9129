"""The node-wide memory bounds: sizes from flags and variables, defaults from the machine."""

from __future__ import annotations

import logging

import pytest

from taskd.node.app.memory import TASK_OVERHEAD, available_memory, default_bounds, parse_size
from taskd.node.config import ConfigError, load
from taskd.node.runner import SNAPSHOT_BYTES_PER_TASK, _memory_bounds


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1000", 1000),
        ("2G", 2 << 30),
        ("512M", 512 << 20),
        ("512m", 512 << 20),
        ("64K", 64 << 10),
        ("1.5G", 3 << 29),
        ("2GiB", 2 << 30),
        ("2GB", 2 << 30),
        ("1T", 1 << 40),
        (" 3 M ", 3 << 20),
    ],
)
def test_sizes_accept_binary_suffixes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "-1G", "2X", "1e9", "2 G B", "lots"])
def test_bad_sizes_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 2G, 512M"):
        parse_size(text)


def test_flags_and_variables_set_the_bounds() -> None:
    config = load(["--max-tasks", "5000", "--max-memory", "64M"], env={})
    assert (config.max_tasks, config.max_memory) == (5000, 64 << 20)
    config = load([], env={"TASKD_MAX_TASKS": "7", "TASKD_MAX_MEMORY": "1G"})
    assert (config.max_tasks, config.max_memory) == (7, 1 << 30)
    config = load(["--max-memory", "2M"], env={"TASKD_MAX_MEMORY": "1G"})
    assert config.max_memory == 2 << 20  # the flag wins


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--max-memory", "lots"], "--max-memory.*e.g. 2G"),
        (["--max-memory", "0"], "--max-memory must be at least 1 byte"),
        (["--max-tasks", "0"], "--max-tasks must be at least 1"),
    ],
)
def test_bad_bounds_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(argv, env={})


def test_defaults_derive_from_the_machine_memory() -> None:
    memory = available_memory()
    assert memory > 0
    config = load([], env={})
    assert config.max_tasks is None and config.max_memory is None
    bounds = _memory_bounds(config)
    assert bounds == default_bounds(memory)
    # Both bounds full together stay well inside the machine.
    assert bounds.max_bytes + bounds.max_tasks * TASK_OVERHEAD < memory * 0.7
    explicit = _memory_bounds(load(["--max-tasks", "9"], env={}))
    assert (explicit.max_tasks, explicit.max_bytes) == (9, bounds.max_bytes)


def test_small_machines_still_get_usable_defaults() -> None:
    tiny = default_bounds(64 << 20)
    assert tiny.max_tasks >= 1000 and tiny.max_bytes == 16 << 20


@pytest.mark.parametrize(
    ("store", "limit"), [("redis://h:6379/0", 512 << 20), ("postgres://u@h/db", 1 << 30)]
)
def test_a_shared_store_holds_no_more_than_its_snapshot_value_can(
    store: str, limit: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a node on a shared store asked for more than one snapshot value holds
    config = load(["--store", store, "--grpc", "127.0.0.1:50051", "--max-memory", "64G",
                   "--max-tasks", "100000000"], env={})  # fmt: skip
    # Expect the bounds lowered so that a full state's snapshot fits in 80 % of the value,
    # and the log to say so and why
    with caplog.at_level(logging.WARNING, logger="taskd.node"):
        bounds = _memory_bounds(config)
    assert bounds.max_bytes + bounds.max_tasks * SNAPSHOT_BYTES_PER_TASK <= limit * 0.8
    assert bounds.max_tasks > 1_000_000
    assert any("saves its state as one value" in r.getMessage() for r in caplog.records)
    # and bounds below it left alone, silently
    caplog.clear()
    flags = ["--store", store, "--grpc", "127.0.0.1:50051", "--max-memory", "10M"]
    small = _memory_bounds(load([*flags, "--max-tasks", "1000"], env={}))
    assert (small.max_tasks, small.max_bytes) == (1000, 10 << 20) and not caplog.records
    # while the embedded store keeps what it was given
    raft = _memory_bounds(load(["--max-memory", "64G", "--max-tasks", "100000000"], env={}))
    assert (raft.max_tasks, raft.max_bytes) == (100_000_000, 64 << 30)
