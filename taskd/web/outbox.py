"""One subscriber's outgoing messages: bounded whatever the client does, and the slow-client rule.

Theory of operation: an ``Outbox`` holds at most one unsent message of each kind (snapshot,
stats, transitions, workers, cluster), in the order they first arrived, so a subscriber can
never make the node buffer more than five messages, however far it falls behind:

- a newer ``stats``, ``workers`` or ``cluster`` replaces the unsent one (they are pictures,
  and the newest is the truth);
- a newer ``transitions`` is merged with the unsent one (``merge_transitions``: at most 200
  changes sampled from both, the rest counted in ``dropped``);
- a ``snapshot`` supersedes everything unsent (it is the whole picture);
- ``close`` replaces everything with a ``bye`` and refuses whatever comes after.

The connection's writer ``take``s the next message, sends it, and reports ``sent``. A send
that has not completed within ``slow_after`` seconds (``too_slow``) means the client does not
read: its TCP buffers are full. The connection then closes it with 1013 (see the endpoint).
Time is passed in; nothing here blocks or reads a clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from taskd.web.messages import Message, Transitions, bye, merge_transitions

GOING_AWAY = 1001  # the node is shutting down
UNSUPPORTED = 1003  # the client sent something that is not a JSON text message
POLICY = 1008  # the client sent a message the protocol does not allow
TRY_AGAIN_LATER = 1013  # the client is too slow; it may reconnect


class Outbox:
    def __init__(
        self,
        slow_after: float,
        rng: random.Random,
        notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.slow_after = slow_after
        self._rng = rng
        self._notify = notify  # called when a message becomes available
        self._pending: dict[str, Message | Transitions] = {}
        self._sending_since: float | None = None
        self.close_code: int | None = None  # set by ``close``: send the bye, then close so
        self.sent_count = 0
        self.merged = 0  # transitions messages merged into an unsent one (the client lagged)
        self.replaced = 0  # stats/workers/cluster messages replaced before they were sent

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    def offer(self, message: Message | Transitions) -> None:
        if self.closing:
            return
        pending = self._pending
        kind = "transitions" if isinstance(message, Transitions) else message.kind
        if kind == "snapshot":
            pending.clear()
        unsent = pending.get(kind)
        if unsent is None:
            pending[kind] = message
        elif isinstance(unsent, Transitions) and isinstance(message, Transitions):
            pending[kind] = merge_transitions(unsent, message, self._rng)
            self.merged += 1
        else:
            pending[kind] = message
            self.replaced += 1
        self._notify()

    def close(self, code: int, reason: str) -> None:
        """Send nothing more but a ``bye`` with ``reason``, then close with ``code``."""
        if self.closing:
            return
        self._pending.clear()
        self._pending["bye"] = bye(reason)
        self.close_code = code
        self._notify()

    def take(self, now: float) -> Message | None:
        """The next message to send (None: nothing pending); the send starts ``now``."""
        if not self._pending:
            return None
        kind = next(iter(self._pending))
        message = self._pending.pop(kind)
        self._sending_since = now
        return message.message() if isinstance(message, Transitions) else message

    def sent(self) -> None:
        self._sending_since = None
        self.sent_count += 1

    def too_slow(self, now: float) -> bool:
        """A send has been waiting for the client to read for ``slow_after`` seconds."""
        since = self._sending_since
        return since is not None and now - since >= self.slow_after
