"""What happened in a run, in order, for a human reading a failure.

Theory of operation: each line is stored unformatted (time, who, format, arguments) in a
bounded deque, so logging every message delivery costs a tuple, not a string; the lines are
formatted only when printed: the tail on failure, or every line as it happens with
``verbose`` (``make sim VERBOSE=1``).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from typing import TextIO

Line = tuple[int, str, str, tuple[object, ...]]


def _format(line: Line) -> str:
    when, who, fmt, args = line
    text = fmt % args if args else fmt
    return f"{when / 1000:11.3f}ms {who:>8} {text}"


class Trace:
    def __init__(
        self,
        clock: Callable[[], int],
        *,
        keep: int = 400,
        verbose: bool = False,
        out: TextIO | None = None,
    ) -> None:
        self._clock = clock
        self._lines: deque[Line] = deque(maxlen=keep)
        self.verbose = verbose
        self._out = out if out is not None else sys.stdout

    def log(self, who: str, fmt: str, *args: object) -> None:
        line = (self._clock(), who, fmt, args)
        self._lines.append(line)
        if self.verbose:
            print(_format(line), file=self._out)

    def tail(self, count: int | None = None) -> list[str]:
        lines = list(self._lines)
        if count is not None:
            lines = lines[-count:]
        return [_format(line) for line in lines]
