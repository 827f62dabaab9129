"""The event stream's server → client messages (docs/monitor.md), as JSON-able dicts and bytes.

Theory of operation: pure functions from what the node knows to the protocol's shapes, and
``Message``: one message to send, encoded once however many subscribers send it. Only
``transitions`` messages change after they are built (a lagging subscriber's are merged,
``merge_transitions``), so they keep their events as data until encoded.

Times are RFC 3339 UTC with milliseconds. ``at`` of a transition is the leader time stamped
into the command that made it, so every member shows the same instant.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from taskd.queue.commands import State, StateChanged
from taskd.queue.task import Task

SAMPLE = 200  # transitions per message at most; the rest are counted in ``dropped``


@functools.lru_cache(maxsize=1024)
def _second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def rfc3339(seconds: float) -> str:
    """Epoch seconds → ``"2030-01-02T15:04:05.123Z"`` (years 1970-9999; fast for many
    instants within the same second, which is what a stream of transitions is)."""
    millis = round(min(max(seconds, 0.0), 253402300799.0) * 1000)
    whole, fraction = divmod(millis, 1000)
    return f"{_second(whole)}.{fraction:03d}Z"


@dataclass(slots=True)
class Message:
    """One message: its ``kind`` (the JSON ``type``) and body, encoded on first use."""

    kind: str
    body: dict[str, Any]
    _encoded: bytes | None = field(default=None, repr=False)

    def encoded(self) -> bytes:
        if self._encoded is None:
            obj = {"type": self.kind, **self.body}
            try:
                self._encoded = orjson.dumps(obj)
            except (TypeError, orjson.JSONEncodeError):
                # a name orjson refuses (a lone surrogate): the stdlib escapes it instead
                self._encoded = json.dumps(obj, ensure_ascii=True, default=str).encode()
        return self._encoded


@dataclass(slots=True)
class Transitions:
    """A ``transitions`` message still open to merging: the sampled changes and the number
    of matching changes left out."""

    events: list[dict[str, Any]]
    dropped: int
    _message: Message | None = field(default=None, repr=False)

    @property
    def matched(self) -> int:
        return len(self.events) + self.dropped

    def message(self) -> Message:
        if self._message is None:
            self._message = Message("transitions", {"events": self.events, "dropped": self.dropped})
        return self._message


def transition_json(event: StateChanged, at: float, task: Task | None) -> dict[str, Any]:
    """One transition. ``name``, ``attempt`` and ``priority`` are the task's when the message
    is built (within 100 ms of the change); null when the task is no longer held."""
    return {
        "id": event.task_id,
        "queue": event.queue,
        "name": (task.name or None) if task is not None else None,
        "from": event.previous.value if event.previous is not None else None,
        "to": event.current.value,
        "at": rfc3339(at),
        "attempt": task.attempt if task is not None else None,
        "priority": task.priority if task is not None else None,
    }


def merge_transitions(older: Transitions, newer: Transitions, rng: random.Random) -> Transitions:
    """One message standing for two a subscriber could not receive in time: at most
    ``SAMPLE`` changes, drawn from each in proportion to how many each matched, in order."""
    total = older.matched + newer.matched
    if len(older.events) + len(newer.events) <= SAMPLE:
        return Transitions(older.events + newer.events, older.dropped + newer.dropped)
    keep_older = min(len(older.events), round(SAMPLE * older.matched / total))
    keep_newer = min(len(newer.events), SAMPLE - keep_older)
    keep_older = min(len(older.events), SAMPLE - keep_newer)
    events = _subsample(older.events, keep_older, rng) + _subsample(newer.events, keep_newer, rng)
    return Transitions(events, total - len(events))


def _subsample(events: list[dict[str, Any]], k: int, rng: random.Random) -> list[dict[str, Any]]:
    if k >= len(events):
        return events
    return [events[i] for i in sorted(rng.sample(range(len(events)), k))]


def totals(queues: list[dict[str, Any]]) -> dict[str, Any]:
    by_state = dict.fromkeys((s.value for s in State), 0)
    for queue in queues:
        for state, n in queue["by_state"].items():
            by_state[state] = by_state.get(state, 0) + n
    return {"by_state": by_state}


def snapshot(
    *,
    at: float,
    node: dict[str, Any],
    queues: list[dict[str, Any]],
    queues_omitted: int,
    workers: list[dict[str, Any]],
    cluster: dict[str, Any],
    interval_ms: int,
    subscription: dict[str, list[str]],
) -> Message:
    return Message(
        "snapshot",
        {
            "at": rfc3339(at),
            "node": node,
            "queues": queues,
            "queues_omitted": queues_omitted,
            "workers": workers,
            "cluster": cluster,
            "totals": totals(queues),
            "interval_ms": interval_ms,
            "subscription": subscription,
        },
    )


def stats(
    *,
    at: float,
    queues: list[dict[str, Any]],
    queues_omitted: int,
    seconds: float,
    transitions: int,
    submitted: int,
    finished: int,
) -> Message:
    """Per-interval figures: exact counts of the ``seconds`` since the previous stats, and
    the same as rates per second."""
    span = seconds if seconds > 0 else 1.0
    return Message(
        "stats",
        {
            "at": rfc3339(at),
            "queues": queues,
            "queues_omitted": queues_omitted,
            "totals": totals(queues),
            "rates": {
                "submitted_per_s": round(submitted / span, 3),
                "finished_per_s": round(finished / span, 3),
                "transitions_per_s": round(transitions / span, 3),
            },
            "counts": {
                "seconds": round(seconds, 3),
                "transitions": transitions,
                "submitted": submitted,
                "finished": finished,
            },
        },
    )


def workers(workers: list[dict[str, Any]]) -> Message:
    return Message("workers", {"workers": workers})


def cluster(cluster: dict[str, Any]) -> Message:
    return Message("cluster", {"cluster": cluster})


def bye(reason: str) -> Message:
    return Message("bye", {"reason": reason})
