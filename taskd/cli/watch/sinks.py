"""Where ``taskd watch`` puts what arrives: the live view, JSON lines, or one view and stop.

Theory of operation: each sink is a ``taskd.cli.watch.shell.Sink``, told of every message
(after the model applied it) and of every change of the connection's status.

- ``LiveSink`` only marks the view dirty; its ``refresh`` task redraws a ``rich.live.Live``
  at most ``REFRESH_PER_SECOND`` times a second, from the trio thread (the model is never
  read by another thread: Live's own refresh thread is off), however fast messages come.
- ``JsonSink`` writes each message as the node sent it, one JSON object a line, on stdout;
  the connection's troubles go to stderr as lines, so a script's stdout stays JSON.
- ``OnceSink`` prints one rendering of the first snapshot and asks to stop.
"""

from __future__ import annotations

from typing import Any, Protocol, TextIO

import trio
from rich.console import Console, RenderableType

from taskd.cli.table import clean
from taskd.cli.watch.model import LinkState, WatchModel
from taskd.cli.watch.view import render

REFRESH_PER_SECOND = 4


class Screen(Protocol):
    """What ``LiveSink`` draws on: a ``rich.live.Live`` (or a test's recorder)."""

    def update(self, renderable: RenderableType, *, refresh: bool = False) -> None: ...


class LiveSink:
    def __init__(self, model: WatchModel, live: Screen) -> None:
        self.model = model
        self.live = live
        self.dirty = True

    def received(self, text: str, message: dict[str, Any]) -> bool:
        self.dirty = True
        return False

    def status(self, model: WatchModel) -> None:
        self.dirty = True

    def redraw(self) -> None:
        if self.dirty:
            self.dirty = False
            self.live.update(render(self.model), refresh=True)

    async def refresh(self) -> None:
        """Redraw when something changed, at most ``REFRESH_PER_SECOND`` times a second."""
        while True:
            self.redraw()
            await trio.sleep(1 / REFRESH_PER_SECOND)


class JsonSink:
    def __init__(self, out: TextIO, err: TextIO, *, once: bool = False) -> None:
        self.out = out
        self.err = err
        self.once = once

    def received(self, text: str, message: dict[str, Any]) -> bool:
        self.out.write(text.rstrip("\n") + "\n")
        self.out.flush()
        return self.once and message.get("type") == "snapshot"

    def status(self, model: WatchModel) -> None:
        link = model.link
        if link.state is LinkState.DISCONNECTED:
            self.err.write(
                f"disconnected: {clean(link.reason or 'the connection ended')} — "
                f"reconnecting (attempt {link.attempt})\n"
            )
            self.err.flush()


class OnceSink:
    def __init__(self, model: WatchModel, console: Console) -> None:
        self.model = model
        self.console = console

    def received(self, text: str, message: dict[str, Any]) -> bool:
        if message.get("type") != "snapshot":
            return False
        self.console.print(render(self.model))
        return True

    def status(self, model: WatchModel) -> None:
        return None  # with --once, the first failure ends the command (follow retry=False)
