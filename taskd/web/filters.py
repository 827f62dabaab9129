"""Which task transitions a subscriber of the event stream wants: by queue, state or task id.

Theory of operation: a ``TransitionFilter`` is three sets; an empty set does not filter, and a
transition must pass every non-empty one (queue AND state AND id; within a set, any value).
``state`` matches the state a task moved *to*. Filters come from the upgrade's query string
(``from_query``: ``queue=``, ``state=``, ``id=``, each repeatable, plus ``token=`` for the
authentication hook) or from a client's ``subscribe`` message (``from_subscribe``); both check
everything before returning and raise ``CallerError`` naming the first bad field. Names and
ids are checked by the rules the API applies everywhere, passed in by the caller
(``check_queue``, ``check_id``), so this module does not depend on the node.

Filters are frozen and hashable: subscribers with equal filters share one sampled
``transitions`` message per cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from taskd.errors import CallerError
from taskd.queue.commands import State, StateChanged

MAX_VALUES = 100  # values per filter field: a subscription is a view, not a task list
QUERY_FIELDS = ("queue", "state", "id", "token")
SUBSCRIBE_FIELDS = {"type", "queues", "states", "ids"}
_STATES = {state.value: state for state in State}
_STATE_NAMES = ", ".join(_STATES)

Check = Callable[[object, str], str]


@dataclass(frozen=True, slots=True)
class TransitionFilter:
    queues: frozenset[str] = frozenset()
    states: frozenset[State] = frozenset()
    ids: frozenset[str] = frozenset()

    @property
    def everything(self) -> bool:
        return not (self.queues or self.states or self.ids)

    def wants(self, event: StateChanged) -> bool:
        if self.queues and event.queue not in self.queues:
            return False
        if self.states and event.current not in self.states:
            return False
        return not self.ids or event.task_id in self.ids

    def to_json(self) -> dict[str, list[str]]:
        return {
            "queues": sorted(self.queues),
            "states": sorted(s.value for s in self.states),
            "ids": sorted(self.ids),
        }


def _invalid(message: str, field: str) -> CallerError:
    return CallerError("invalid", message, field)


def _state(value: object, field: str) -> State:
    found = _STATES.get(value) if isinstance(value, str) else None
    if found is None:
        raise _invalid(f"{field} must be one of {_STATE_NAMES}", field)
    return found


def _build(
    queues: Iterable[tuple[object, str]],
    states: Iterable[tuple[object, str]],
    ids: Iterable[tuple[object, str]],
    check_queue: Check,
    check_id: Check,
) -> TransitionFilter:
    return TransitionFilter(
        queues=frozenset(check_queue(value, field) for value, field in queues),
        states=frozenset(_state(value, field) for value, field in states),
        ids=frozenset(check_id(value, field) for value, field in ids),
    )


def from_query(
    pairs: Iterable[tuple[str, str]], *, check_queue: Check, check_id: Check
) -> tuple[TransitionFilter, str | None]:
    """The filter and the token (None: none given) of an upgrade's query parameters."""
    found: dict[str, list[str]] = {name: [] for name in QUERY_FIELDS}
    for key, value in pairs:
        if key not in found:
            shown = key if len(key) <= 40 else key[:40] + "..."
            raise _invalid(
                f"unknown query parameter {shown!r}; use queue, state, id (each repeatable) "
                "or token",
                key[:64],
            )
        found[key].append(value)
    for key in ("queue", "state", "id"):
        if len(found[key]) > MAX_VALUES:
            raise _invalid(f"give at most {MAX_VALUES} values of {key}", key)
    if len(found["token"]) > 1:
        raise _invalid("give token at most once", "token")
    token = found["token"][0] if found["token"] else None
    return (
        _build(
            ((v, "queue") for v in found["queue"]),
            ((v, "state") for v in found["state"]),
            ((v, "id") for v in found["id"]),
            check_queue,
            check_id,
        ),
        token,
    )


def from_subscribe(obj: dict[str, Any], *, check_queue: Check, check_id: Check) -> TransitionFilter:
    """The filter a ``{"type": "subscribe", "queues": [..], "states": [..], "ids": [..]}``
    message asks for (an absent list: no filter on that field)."""
    for key in obj:
        if key not in SUBSCRIBE_FIELDS:
            raise _invalid(
                f"unknown field {key[:40]!r} in subscribe; use queues, states, ids", key[:64]
            )
    lists: dict[str, list[tuple[object, str]]] = {}
    for key in ("queues", "states", "ids"):
        values = obj.get(key, [])
        if not isinstance(values, list):
            raise _invalid(f"{key} must be a list of strings", key)
        if len(values) > MAX_VALUES:
            raise _invalid(f"{key} holds at most {MAX_VALUES} values", key)
        lists[key] = [(value, f"{key}[{i}]") for i, value in enumerate(values)]
    return _build(lists["queues"], lists["states"], lists["ids"], check_queue, check_id)
