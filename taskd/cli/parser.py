"""The client's command line: one argparse parser for every subcommand, global flags anywhere.

Theory of operation: ``--server`` and ``--json`` are defined once (``_GLOBAL``) and attached to
the top parser and to every subcommand, so ``taskd --server URL list``, ``taskd list --server
URL`` and ``taskd --json get ID`` parse alike (``SUPPRESS`` keeps a subcommand's unset copy
from hiding the top one's). ``COMMANDS`` is the one list of client subcommands with their
one-line help; ``taskd.node.main`` dispatches on it and ``taskd --help`` prints it.
``suggest`` names the nearest command for a typo (difflib).
"""

from __future__ import annotations

import argparse
import difflib

from taskd.cli.rest import DEFAULT_SERVER

STATES = ("pending", "blocked", "queued", "running", "succeeded", "failed", "canceled")

COMMANDS: dict[str, str] = {
    "submit": "submit a task and print its id",
    "get": "show one task, with its attempts",
    "list": "list tasks, newest first",
    "cancel": "cancel a task that has not finished",
    "retry": "re-queue a failed or canceled task",
    "queues": "show every queue's depth by state and its consumers",
    "pause": "stop handing out a known queue's tasks",
    "resume": "hand out a paused queue's tasks again",
    "workers": "show connected workers",
    "cluster": "show the members and leader; add or remove a member; transfer leadership",
    "watch": "live terminal view of the node: queues, workers, cluster, transitions",
}

GLOBAL_FLAGS_WITH_VALUE = frozenset({"--server"})
GLOBAL_SWITCHES = frozenset({"--json"})


def _global_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"the node's HTTP address (default $TASKD_SERVER or {DEFAULT_SERVER})",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON instead of tables",
    )
    return common


def build() -> argparse.ArgumentParser:
    common = _global_flags()
    parser = argparse.ArgumentParser(
        prog="taskd",
        description="taskd client: talk to a running taskd node over REST (taskd --help: all).",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str) -> argparse.ArgumentParser:
        text = COMMANDS[name]
        return sub.add_parser(name, help=text, description=text, parents=[common])

    p = command("submit")
    p.add_argument("--queue", help='queue name (default "default")')
    p.add_argument("--name", help="handler name inside an SDK worker")
    p.add_argument("--priority", help="0-9 or low, normal, high, critical (default normal)")
    p.add_argument("--payload", help="JSON value, @FILE to read it from a file, - for stdin")
    p.add_argument(
        "--timeout", help='seconds, or a duration like "500ms", "5m", "2h" (default 1800)'
    )
    p.add_argument("--max-retries", type=int, help="retries after the first attempt (default 3)")
    p.add_argument(
        "--delay", help='seconds before the task may run, or a duration like "30s", "5m", "1d"'
    )
    p.add_argument(
        "--depends-on",
        action="append",
        metavar="ID",
        default=[],
        help="a task that must succeed first (repeatable)",
    )
    p.add_argument("--idempotency-key", help="a repeat with this key returns the first task")
    p.add_argument(
        "--label", action="append", metavar="K=V", default=[], help="a label (repeatable)"
    )

    command("get").add_argument("id")
    p = command("list")
    p.add_argument("--queue")
    p.add_argument("--state", choices=STATES)
    p.add_argument("--limit", type=int, default=50, help="tasks per page (default 50)")
    p.add_argument("--after", metavar="CURSOR", help="continue from a previous page")
    command("cancel").add_argument("id")
    command("retry").add_argument("id")
    command("queues")
    command("pause").add_argument("queue")
    command("resume").add_argument("queue")
    command("workers")
    p = command("cluster")
    p.add_argument(
        "action",
        nargs="?",
        choices=("add", "remove", "transfer"),
        help="add ADDR (as a learner, promoted once caught up), remove ADDR, transfer [ADDR]",
    )
    p.add_argument("address", nargs="?", help="the member's gRPC address host[:port]")
    p.add_argument(
        "--wait",
        type=float,
        default=300.0,
        help="add: seconds to follow the new member until it votes (default 300; 0: don't)",
    )
    p = command("watch")
    p.description = (
        "A live view of the node's event stream (ws://HOST:PORT/api/v1/events): the node, "
        "totals and rates, every queue, the workers, the cluster and the newest transitions. "
        "It reconnects by itself when the node goes away or restarts; Ctrl-C ends it (exit "
        "0). With --json, each message is printed as one JSON line instead; with --once, one "
        "view of the first snapshot is printed and the command exits (no retry: exit 3 if no "
        "node answers). When stdout is not a terminal, watch behaves as with --once, unless "
        "--json is given. A filter the node refuses (e.g. --state done) exits 2 naming it."
    )
    p.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="Q",
        help="show only this queue's transitions (repeatable; stats cover every queue)",
    )
    p.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="S",
        help=f"show only transitions to this state (repeatable): {', '.join(STATES)}",
    )
    p.add_argument(
        "--id",
        action="append",
        default=[],
        metavar="TASK_ID",
        help="show only this task's transitions (repeatable)",
    )
    p.add_argument(
        "--tail", type=int, default=20, metavar="N", help="transitions to show (default 20)"
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="print one view of the first snapshot and exit (the default when not a terminal)",
    )
    return parser


def command_of(argv: list[str]) -> tuple[int, str] | None:
    """The first word of ``argv`` that is not a global client flag or its value, with its
    index; None if there is none (or a flag that is not a global client one comes first, which
    makes the command line a node's)."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in GLOBAL_FLAGS_WITH_VALUE:
            i += 2
        elif word in GLOBAL_SWITCHES or word.split("=", 1)[0] in GLOBAL_FLAGS_WITH_VALUE:
            i += 1
        elif word.startswith("-"):
            return None
        else:
            return i, word
    return None


def suggest(word: str, known: list[str]) -> str:
    """``" (did you mean 'list'?)"`` for a near miss, else ``""``."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
