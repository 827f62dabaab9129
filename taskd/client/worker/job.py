"""The task as a handler sees it: one leased attempt."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class WorkerTask:
    """One attempt of a task, handed to a handler.

    ``payload`` is the bytes that were submitted; ``json()`` decodes them. ``attempt`` is 1 for
    the first run. ``dependency_results`` maps each dependency's id to its result bytes.
    """

    id: str
    queue: str
    name: str
    payload: bytes
    attempt: int
    timeout: float  # seconds this attempt may run
    lease: int  # the lease's fencing epoch
    dependency_results: Mapping[str, bytes] = field(default_factory=dict)

    def json(self) -> Any:
        """The payload decoded as JSON (``None`` when empty); ``ValueError`` if it is not."""
        if not self.payload:
            return None
        return json.loads(self.payload)

    def text(self) -> str:
        return self.payload.decode("utf-8")
