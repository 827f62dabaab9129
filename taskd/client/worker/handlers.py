"""The handlers a worker runs, by task name: ``@worker.task("name")`` and ``@worker.task()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskd.client.worker.job import WorkerTask

Handler = Callable[[WorkerTask], Any]
MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class Registered:
    name: str  # "" for the handler of tasks that carry no name
    fn: Handler
    is_async: bool


class Handlers:
    def __init__(self) -> None:
        self._by_name: dict[str, Registered] = {}

    def add(self, name: str, fn: Handler) -> None:
        if not isinstance(name, str) or len(name) > MAX_NAME or not name.isprintable():
            raise ValueError(
                f"task name must be a string of at most {MAX_NAME} printable characters, "
                f"not {name!r}"
            )
        if not callable(fn):
            raise TypeError(f"a task handler must be callable, not {fn!r}")
        if name in self._by_name:
            label = repr(name) if name else "for tasks without a name"
            raise ValueError(f"a handler {label} is already registered")
        self._by_name[name] = Registered(name, fn, inspect.iscoroutinefunction(fn))

    def find(self, name: str) -> Registered | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def missing(self, name: str) -> str:
        """The error of a task no handler takes."""
        known = ", ".join(repr(n) if n else "(unnamed)" for n in self.names()) or "none"
        label = f"named {name!r}" if name else "for tasks without a name"
        return f"this worker has no handler {label} (it has: {known})"

    def __len__(self) -> int:
        return len(self._by_name)
