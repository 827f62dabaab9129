"""Render ``docs/state-machine.md`` (a Mermaid state diagram) from ``TRANSITIONS``.

Run ``python -m taskd.queue.diagram > docs/state-machine.md`` after changing the table; a test
fails while the committed file differs from ``render()``.
"""

from __future__ import annotations

import sys
from collections import defaultdict

from taskd.queue.commands import State
from taskd.queue.transitions import TRANSITIONS, Trigger

_HEADER = """\
# Task state machine

Generated from `taskd/queue/transitions.py` by `python -m taskd.queue.diagram`; do not edit.
`[*]` on the left is a task's creation (`Submit`); on the right, its removal once the
retention period after its terminal state has passed.

```mermaid
stateDiagram-v2
"""


_CAUSE = {
    Trigger.SUBMIT: "`Submit` creates the task",
    Trigger.RUN_AT: "`Tick` at or after `run_at` (a delay, a backoff or a retry delay ended)",
    Trigger.DEPS_MET: "`Complete` of the task's last unfinished dependency",
    Trigger.LEASE: "`Lease` hands the task to a worker with a fresh fencing epoch",
    Trigger.HEARTBEAT: "`Heartbeat` with the current epoch extends the lease",
    Trigger.COMPLETE: "`Complete` with the current epoch",
    Trigger.FAIL: (
        "`Fail` with the current epoch (pending while retries remain, for the worker's "
        "`retry_delay` if it gave one, else the backoff)"
    ),
    Trigger.TIMEOUT: "`Tick` after the attempt's timeout (pending while retries remain)",
    Trigger.LEASE_EXPIRED: "`Tick` after the lease lapsed unrenewed (pending while retries remain)",
    Trigger.WORKER_LOST: "`ReleaseWorker` of the lease holder (pending while retries remain)",
    Trigger.CANCEL: "`Cancel`; a running task's lease is revoked",
    Trigger.DEP_ENDED: "a dependency ended failed or canceled (transitively)",
    Trigger.RETRY: "`Retry`: a fresh set of attempts",
    Trigger.DEP_RETRIED: "`Retry` of the dependency whose end canceled this task",
    Trigger.FORGET: "`Tick` once `finished_at + retention` has passed",
}


def _node(state: State | None) -> str:
    return "[*]" if state is None else state.value


def render() -> str:
    """The whole document, deterministic: edges in table order, labels joined per edge."""
    labels: dict[tuple[State | None, State | None], list[str]] = defaultdict(list)
    for (source, trigger), targets in TRANSITIONS.items():
        for target in sorted(targets, key=lambda s: "" if s is None else s.value):
            labels[(source, target)].append(trigger.value)
    lines = [_HEADER.rstrip("\n")]
    for (source, target), names in labels.items():
        lines.append(f"    {_node(source)} --> {_node(target)} : {', '.join(names)}")
    lines.append("```")
    lines.append("")
    lines.append("| trigger | caused by |")
    lines.append("|---|---|")
    for trigger in Trigger:
        lines.append(f"| {trigger.value} | {_CAUSE[trigger]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
