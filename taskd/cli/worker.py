"""``taskd worker MODULE``: run the SDK ``Worker`` a Python module defines, as ``celery -A`` does.

Theory of operation: the current directory goes first on ``sys.path`` (so ``myapp.tasks`` is
found where the user stands), the module is imported, and the one ``Worker`` instance among its
globals is run (``MODULE:NAME`` picks one when it defines several). ``--server``,
``--concurrency`` and ``--queues`` override what the module configured (``Worker.configure``);
SIGINT/SIGTERM drain it (``Worker.run``). Everything that can go wrong before the worker runs
is one line on stderr and exit code 2 (usage): no Worker or several, a bad flag value, or a
module that fails to import — then the tail of its traceback (the user's frames, not
importlib's) comes first, and a one-line hint after it. Exit 0 after a drain, 1 when a node
refused the worker itself (a bad queue name, say: reconnecting cannot help).

This speaks gRPC through ``taskd.client`` and imports nothing of the node.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import traceback
from types import ModuleType

from taskd.client.errors import InvalidArgument, TaskdClientError
from taskd.client.targets import DEFAULT_TARGET, ENV
from taskd.client.worker import Worker

USAGE = 2
REFUSED = 1
TRACEBACK_LINES = 12  # of an import error: where it was raised, in the user's code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="taskd worker",
        description=(
            "Run the Worker defined in a Python module (imported from the current directory, "
            "like `celery -A`): its @worker.task handlers take the tasks of its queues from a "
            "node over gRPC. SIGINT/SIGTERM: take no new work, finish and report what runs, "
            "exit 0 (a second signal exits at once)."
        ),
        epilog=(
            "example: taskd worker myapp.tasks --server 10.0.0.1:50051,10.0.0.2:50051 "
            "--concurrency 2-16"
        ),
    )
    p.add_argument(
        "module",
        metavar="MODULE[:NAME]",
        help="dotted module name (myapp.tasks); :NAME picks one Worker when it defines several",
    )
    p.add_argument(
        "--server",
        metavar="ADDR,...",
        help=f"member gRPC addresses host:port (default ${ENV}, else {DEFAULT_TARGET}); "
        "the worker moves to another one when its node goes away",
    )
    p.add_argument(
        "--concurrency",
        metavar="N|MIN-MAX",
        help="handlers at once: N, or a range that grows with the backlog (default: the module's)",
    )
    p.add_argument(
        "--queues", metavar="A,B", help="queues to take work from (default: the module's)"
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        metavar="SECONDS",
        help="on SIGTERM, wait at most this long for running handlers (default: the module's)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="what the worker logs on stderr (default info)",
    )
    p.add_argument("--json", action="store_true", help="log JSON lines instead of text")
    return p


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else USAGE
    module_name, _, attribute = args.module.partition(":")
    module = _import(module_name)
    if module is None:
        return USAGE
    worker = _find(module, module_name, attribute)
    if worker is None:
        return USAGE
    try:
        worker.configure(
            servers=args.server,
            concurrency=args.concurrency,
            queues=args.queues.split(",") if args.queues is not None else None,
            drain_timeout=args.drain_timeout,
        )
        worker.check()
    except InvalidArgument as exc:
        print(f"taskd worker: {_flagged(exc)}", file=sys.stderr)
        return USAGE
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonLines() if args.json else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    logging.getLogger("taskd.worker").info(
        "worker %s: queues %s, concurrency %s, servers %s, handlers %s",
        worker.name,
        ",".join(worker.queues),
        worker.concurrency,
        ",".join(str(t) for t in worker.servers),
        ", ".join(repr(n) if n else "(unnamed)" for n in worker.handlers.names()),
    )
    try:
        worker.run()
    except TaskdClientError as exc:  # the node refused this worker: reconnecting cannot help
        print(f"taskd worker: the node refused this worker: {exc}", file=sys.stderr)
        return REFUSED
    except KeyboardInterrupt:  # SIGINT outside the worker's own handler (e.g. during start)
        return 130
    return 0


_FLAGS = {
    "servers": "--server",
    "concurrency": "--concurrency",
    "queues": "--queues",
    "drain_timeout": "--drain-timeout",
}


def _flagged(exc: InvalidArgument) -> str:
    """The error, naming the flag (or variable) its field came from."""
    if exc.field == "handlers":
        return f"the Worker has no handlers: {exc.message}"
    return f"{_FLAGS.get(exc.field, exc.field)}: {exc.message}"


def _import(name: str) -> ModuleType | None:
    """Import ``name`` from the current directory first; on failure say why and return None."""
    if not name or not all(part.isidentifier() for part in name.split(".")):
        print(
            f"taskd worker: {name!r} is not a module name; write it dotted, like myapp.tasks "
            "(not a file path)",
            file=sys.stderr,
        )
        return None
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except BaseException as exc:  # whatever the module's top level raised: report, not crash
        if isinstance(exc, KeyboardInterrupt):
            raise
        frames = _user_frames(exc)
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if missing and not frames:  # the module itself (or its package) was not found
            print(
                f"taskd worker: no module named {missing!r} (looked in {cwd} and sys.path)",
                file=sys.stderr,
            )
            print(
                "hint: run taskd worker from the directory that holds your package, or add "
                "its parent directory to PYTHONPATH",
                file=sys.stderr,
            )
            return None
        print(_tail(exc, frames), file=sys.stderr, end="")
        if missing and getattr(sys, "frozen", False):  # the one-file binary
            hint = (
                f"{name} imports {missing!r}, which the taskd binary does not carry: install "
                "the SDK where your application's packages are and run `python -m taskd "
                f"worker {name}` there"
            )
        elif missing:
            hint = (
                f"{name} imports {missing!r}, which this Python ({sys.executable}) does not "
                "have: install it there, or run taskd worker from the environment that has it"
            )
        else:
            hint = (
                f"importing {name} failed in your code (traceback above); fix it and run "
                f"again (python -c 'import {name}' shows the same error)"
            )
        print(f"hint: {hint}", file=sys.stderr)
        return None


def _user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of ``exc``'s traceback outside importlib and this module."""
    return [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in frame.filename and frame.filename != __file__
    ]


def _tail(exc: BaseException, frames: list[traceback.FrameSummary]) -> str:
    """The end of ``exc``'s traceback, in the user's frames only."""
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(exc)
    text = "".join(lines).splitlines(keepends=True)
    if len(text) > TRACEBACK_LINES:
        head = ["Traceback (most recent call last, last lines):\n", "  ...\n"]
        text = [*head, *text[-(TRACEBACK_LINES - 2) :]]
    return "".join(text)


def _find(module: ModuleType, name: str, attribute: str) -> Worker | None:
    """The one Worker ``module`` defines (or ``attribute`` names); None after saying why."""
    if attribute:
        value = getattr(module, attribute, None)
        if isinstance(value, Worker):
            return value
        what = "is not defined" if value is None else f"is a {type(value).__name__}"
        print(f"taskd worker: {name}:{attribute} {what}, not a Worker", file=sys.stderr)
        return None
    found: dict[int, list[str]] = {}
    workers: dict[int, Worker] = {}
    for key, value in vars(module).items():
        if isinstance(value, Worker):
            found.setdefault(id(value), []).append(key)
            workers[id(value)] = value
    if len(workers) == 1:
        return next(iter(workers.values()))
    if not workers:
        print(
            f"taskd worker: {name} defines no Worker; add one at its top level, e.g. "
            '`worker = Worker(queues=["default"])`, and decorate handlers with @worker.task()',
            file=sys.stderr,
        )
        return None
    names = sorted(keys[0] for keys in found.values())
    print(
        f"taskd worker: {name} defines {len(workers)} Workers ({', '.join(names)}); "
        f"pick one: taskd worker {name}:{names[0]}",
        file=sys.stderr,
    )
    return None
