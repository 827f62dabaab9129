"""The id index behind ``Scheduler.list``: every held task id, sorted, for newest-first pages.

Theory of operation: ids are ULIDs, so sorted order is creation order and a page "newest
first" walks the sorted list backwards from the cursor. Leader-made ids almost always arrive
in increasing order, so adding is an append; an out-of-order id is inserted by bisection.
Removal is lazy (the caller says which ids are still held) and the list is compacted once
removed ids dominate. The index serves queries only; no scheduling decision reads it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Container


class IdIndex:
    __slots__ = ("ids", "removed")

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.removed = 0

    def add(self, task_id: str) -> None:
        ids = self.ids
        if not ids or task_id > ids[-1]:
            ids.append(task_id)
        else:
            bisect.insort(ids, task_id)

    def remove(self, held: Container[str]) -> None:
        """Note one removal; compact once more than half the entries are gone."""
        self.removed += 1
        if self.removed > 1024 and self.removed * 2 > len(self.ids):
            seen: set[str] = set()
            kept = []
            for task_id in self.ids:
                if task_id in held and task_id not in seen:
                    seen.add(task_id)
                    kept.append(task_id)
            self.ids = kept
            self.removed = 0

    def page(
        self, after: str | None, limit: int, match: Callable[[str], bool]
    ) -> tuple[list[str], str | None]:
        """Up to ``limit`` matching ids older than ``after``, newest first, and the cursor."""
        ids = self.ids
        i = (bisect.bisect_left(ids, after) if after is not None else len(ids)) - 1
        out: list[str] = []
        last = None
        while i >= 0:
            task_id = ids[i]
            i -= 1
            if task_id == last or not match(task_id):
                continue
            if len(out) == limit:
                return out, out[-1]  # another match exists beyond this page
            out.append(task_id)
            last = task_id
        return out, None
