"""Fan-out of task state changes to watchers (gRPC Watch, the monitor's WebSocket).

Publishing never blocks the scheduler: each subscriber has a bounded buffer, and a subscriber
that falls behind by more than its buffer is dropped with ``overflowed`` set, so one slow
client can never hold memory or the event loop hostage.
"""

from __future__ import annotations

from collections.abc import Iterable

import trio

from taskd.queue.commands import StateChanged


class Subscription:
    def __init__(self, hub: EventHub, queue: str | None, ids: frozenset[str], size: int) -> None:
        self._hub = hub
        self.queue = queue
        self.ids = ids
        self.overflowed = False
        self.send, self.receive = trio.open_memory_channel[StateChanged](size)

    def wants(self, event: StateChanged) -> bool:
        if self.queue and event.queue != self.queue:
            return False
        return not self.ids or event.task_id in self.ids

    def close(self) -> None:
        self._hub.subscribers.discard(self)
        self.send.close()


class EventHub:
    def __init__(self) -> None:
        self.subscribers: set[Subscription] = set()

    def subscribe(
        self, queue: str | None = None, ids: Iterable[str] = (), size: int = 10_000
    ) -> Subscription:
        sub = Subscription(self, queue, frozenset(ids), size)
        self.subscribers.add(sub)
        return sub

    def publish(self, events: Iterable[StateChanged]) -> None:
        if not self.subscribers:
            return
        for event in events:
            for sub in list(self.subscribers):
                if not sub.wants(event):
                    continue
                try:
                    sub.send.send_nowait(event)
                except trio.WouldBlock:
                    sub.overflowed = True
                    sub.close()
