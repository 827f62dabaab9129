"""The scheduler as a store sees it: opaque log entries in, outcomes out.

Stores know nothing about tasks; the scheduler knows nothing about logs. This adapter decodes
each committed entry into (command, time, entropy), applies it to the scheduler, and tells the
node's listeners what changed. It is the only place where committed commands reach the
scheduler, on the leader and on replay after a restart alike, so every replica applies exactly
the same sequence.
"""

from __future__ import annotations

from collections.abc import Callable

from taskd.queue import codec
from taskd.queue.commands import Command, Outcome
from taskd.queue.scheduler import Scheduler
from taskd.queue.task import SchedulerConfig

Listener = Callable[[Command, Outcome], None]


class SchedulerMachine:
    """Implements ``taskd.store.statemachine.StateMachine`` over a ``Scheduler``."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.scheduler = Scheduler(config)
        self.listeners: list[Listener] = []
        self.applied = 0  # commands applied since start (replay included)
        self.latest_time = 0.0  # the newest leader time stamped into an applied command
        self.now = 0.0  # the leader time of the command being (or last) applied: for listeners

    def apply(self, index: int, data: bytes) -> object:
        if not data:  # a store's own entries (a Raft term's no-op) carry no command
            return None
        command, now, entropy = codec.decode(data)
        if now > self.latest_time:
            self.latest_time = now
        self.now = now
        outcome = self.scheduler.apply(command, now, entropy)
        self.applied += 1
        for listener in self.listeners:
            listener(command, outcome)
        return outcome

    def now_of(self) -> float:
        """The leader time of the command being applied (for listeners)."""
        return self.now

    def snapshot(self) -> bytes:
        return self.scheduler.snapshot()

    def restore(self, data: bytes) -> None:
        self.scheduler = Scheduler.restore(data, self.config)
