"""What ``taskd watch`` knows: the event stream's messages applied to one picture of the node.

Theory of operation: sans-I/O. ``WatchModel.apply(message)`` takes one decoded message of the
stream (docs/rest.md ``GET /api/v1/events``; taskd/web/messages.py builds them) and updates
the picture: the node, the queues and totals (``snapshot``, then every ``stats``), the rates,
the workers and the cluster (``snapshot``, ``workers``, ``cluster``), and the newest
transitions (a tail of at most ``tail`` events, newest first). A ``bye`` is remembered as the
reason the connection is about to end. A message of a type it does not know, or a field it
does not know, is ignored: a newer node may say more.

The model also keeps the connection's status (``Link``), which the shell reports with
``connecting``, ``lost`` and the first message of a connection; ``lost`` returns the delay
before the next try (``backoff``: 0.25 s doubling to 2 s, ±20%, randomness passed in). What
it keeps is bounded whatever the rate of messages: one picture, one tail. Nothing here reads
a clock, a socket or a random source.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from taskd.cli.parser import STATES  # the CLI's one list of task states

FIRST_DELAY = 0.25  # seconds before the first retry
MAX_DELAY = 2.0  # seconds between retries at most
JITTER = 0.2  # ±20% on each delay, so that many watchers do not reconnect in step
TOO_SLOW = 1013  # the node closed us for reading too slowly: retry at once, once
DEFAULT_TAIL = 20  # transitions kept for the tail
SILENT_INTERVALS = 3  # stats intervals without a message after which a connection is dead


class LinkState(Enum):
    CONNECTING = "connecting"  # the first try, or a retry now under way
    LIVE = "live"  # a snapshot arrived on this connection
    DISCONNECTED = "disconnected"  # the last connection ended or failed; a retry is due


@dataclass(slots=True)
class Link:
    """The connection's status as the view shows it."""

    address: str
    state: LinkState = LinkState.CONNECTING
    attempt: int = 0  # failed tries since the last live connection
    reason: str | None = None  # why the last connection ended (or could not start)


def backoff(attempt: int, jitter: float) -> float:
    """The delay before retry number ``attempt`` (1, 2, ...); ``jitter`` in [0, 1)."""
    base = min(MAX_DELAY, FIRST_DELAY * 2.0 ** max(0, attempt - 1))
    return round(base * (1 - JITTER + 2 * JITTER * jitter), 3)


def as_dict(value: object) -> dict[str, Any]:
    """``value`` if the message had an object there, else an empty one (a field we cannot
    read is a field we do not show)."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


class WatchModel:
    """The node as the event stream shows it, and the state of the connection to it."""

    def __init__(self, address: str, *, tail: int = DEFAULT_TAIL) -> None:
        self.link = Link(address)
        self.node: dict[str, Any] | None = None  # {"id", "role", "version"}
        self.queues: dict[str, dict[str, Any]] = {}  # by name, sorted
        self.queues_omitted = 0
        self.totals: dict[str, int] = dict.fromkeys(STATES, 0)
        self.rates: dict[str, float] | None = None  # from the latest stats
        self.workers: list[dict[str, Any]] = []
        self.cluster: dict[str, Any] | None = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=max(1, tail))  # newest first
        self.dropped = 0  # transitions the node sampled out since we first connected
        self.subscription: dict[str, list[str]] = {}
        self.interval_ms = 1000
        self.at: str | None = None  # the node's time of the newest message that had one
        self.snapshots = 0  # snapshots received (more than one: we reconnected)
        self.messages = 0
        self.bye: str | None = None  # the reason of a bye on the current connection

    # ---- the connection --------------------------------------------------------------

    @property
    def silence_limit(self) -> float:
        """Seconds without any message after which a live connection is taken for dead (a
        stopped node can hold TCP open)."""
        return SILENT_INTERVALS * self.interval_ms / 1000

    def connecting(self) -> None:
        """A try starts now."""
        self.link.state = LinkState.CONNECTING
        self.bye = None

    def lost(self, reason: str, *, code: int | None = None, jitter: float = 0.5) -> float:
        """The connection ended (or could not start) because of ``reason`` (a ``bye``
        received before it wins); return the seconds to wait before the next try."""
        link = self.link
        link.reason = self.bye or reason
        link.attempt += 1
        link.state = LinkState.DISCONNECTED
        delay = 0.0 if code == TOO_SLOW and link.attempt == 1 else backoff(link.attempt, jitter)
        self.bye = None
        return delay

    # ---- messages --------------------------------------------------------------------

    def apply(self, message: object) -> bool:
        """Apply one decoded message; True if it was one this model knows (the view changed)."""
        if not isinstance(message, dict):
            return False
        kind = message.get("type")
        if kind == "snapshot":
            self._snapshot(message)
        elif kind == "stats":
            self._stats(message)
        elif kind == "transitions":
            self._transitions(message)
        elif kind == "workers":
            self.workers = as_list(message.get("workers"))
        elif kind == "cluster":
            self._set_cluster(message.get("cluster"))
        elif kind == "bye":
            self.bye = str(message.get("reason") or "the node closed the stream")
        else:
            return False  # a newer node's message: not ours to understand
        self.messages += 1
        if isinstance(message.get("at"), str):
            self.at = message["at"]
        return True

    def _snapshot(self, message: dict[str, Any]) -> None:
        self.snapshots += 1
        link = self.link
        link.state, link.attempt, link.reason = LinkState.LIVE, 0, None
        node = message.get("node")
        self.node = dict(node) if isinstance(node, dict) else None
        interval = message.get("interval_ms")
        if isinstance(interval, int) and interval > 0:
            self.interval_ms = interval
        self._set_queues(message)
        self.rates = None  # rates come with the next stats
        self.workers = as_list(message.get("workers"))
        self._set_cluster(message.get("cluster"))
        self.subscription = {k: as_list(v) for k, v in as_dict(message.get("subscription")).items()}

    def _stats(self, message: dict[str, Any]) -> None:
        self._set_queues(message)
        rates = as_dict(message.get("rates"))
        self.rates = {k: float(v) for k, v in rates.items() if isinstance(v, (int, float))}

    def _transitions(self, message: dict[str, Any]) -> None:
        dropped = message.get("dropped")
        if isinstance(dropped, int):
            self.dropped += dropped
        events = [e for e in as_list(message.get("events")) if isinstance(e, dict)]
        self.recent.extendleft(events[-(self.recent.maxlen or 1) :])

    def _set_queues(self, message: dict[str, Any]) -> None:
        queues = [q for q in as_list(message.get("queues")) if isinstance(q, dict) and "name" in q]
        self.queues = {str(q["name"]): q for q in sorted(queues, key=lambda q: str(q["name"]))}
        omitted = message.get("queues_omitted")
        self.queues_omitted = omitted if isinstance(omitted, int) else 0
        by_state = as_dict(as_dict(message.get("totals")).get("by_state"))
        if not by_state:  # an older node without totals: add them up
            by_state = {}
            for queue in queues:
                for state, n in as_dict(queue.get("by_state")).items():
                    by_state[state] = by_state.get(state, 0) + n
        self.totals = {**dict.fromkeys(STATES, 0), **by_state}

    def _set_cluster(self, cluster: object) -> None:
        if not isinstance(cluster, dict):
            return
        self.cluster = cluster
        node = self.node
        if node is not None and cluster.get("id") == node.get("id") and cluster.get("role"):
            self.node = {**node, "role": cluster["role"]}
