"""How much the scheduler may hold: byte sizes from flags, and defaults from the machine's memory.

Theory of operation: the scheduler (``taskd/queue``) enforces two node-wide bounds but never
looks at the machine; this module, on the node side, turns ``--max-memory 2G`` into bytes and,
when a flag is not given, derives the bound from the memory this process may use: the physical
memory (``os.sysconf``), or the cgroup v2/v1 limit when a container sets a smaller one.

The defaults leave room for everything that is not the scheduler's data (the Python heap, the
Raft log's buffers, sockets): ``max_memory`` is a quarter of the memory (payloads, results,
errors, labels), and ``max_tasks`` is what 40 % of it holds at ``TASK_OVERHEAD`` bytes of fixed
cost per task (objects and indexes: 0.75-0.85 KB measured at 1M tasks, fresh or restored;
rounded up), so both full together stay
near two thirds of the machine and the node answers 429 well before the kernel's OOM killer.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MemoryBounds", "available_memory", "default_bounds", "parse_size"]

TASK_OVERHEAD = 1024  # bytes of fixed cost per held task (W4: 0.85-0.96 KB of RSS per task with
# a 100-byte payload, fresh or restored; was 1.3 KB before the shared empties of task.py)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


@dataclass(frozen=True, slots=True)
class MemoryBounds:
    max_tasks: int
    max_bytes: int
    memory: int  # what the defaults were derived from (bytes)


def parse_size(text: str) -> int:
    """``"2G"`` → 2147483648. Suffixes K, M, G, T (powers of 1024), optionally with B or iB."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(
            f"expected bytes with an optional K, M, G or T suffix (e.g. 2G, 512M), got {text!r}"
        )
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


def available_memory() -> int:
    """Bytes of memory this process may use: physical memory, or a smaller cgroup limit."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < memory:  # "max" (v2) or a huge v1 value: none
            memory = int(text)
    return memory


def default_bounds(memory: int) -> MemoryBounds:
    return MemoryBounds(
        max_tasks=max(1000, memory * 2 // 5 // TASK_OVERHEAD),
        max_bytes=max(1 << 20, memory // 4),
        memory=memory,
    )
