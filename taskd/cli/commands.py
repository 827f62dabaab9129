"""The client half of the ``taskd`` command: ``taskd submit|get|list|...`` over the REST API.

Theory of operation: parse the subcommand (``taskd.cli.parser``), make one or two REST calls
(``taskd.cli.rest``, stdlib urllib: a client call loads none of the server's libraries) and
print the answer as JSON (``--json``) or for people (plain tables: ``taskd.cli.table``). It
checks only what it must to build a request (e.g. that ``--payload`` is JSON); the node
validates everything else and its errors are printed as ``error: <message> (field: x)``.

Never a traceback: every failure is one line on stderr and an exit code (``rest.Exit``): 0
success, 1 the node refused the request, 2 usage errors, 3 no taskd answered (down, timed out,
wrong port or scheme), 4 the node failed (5xx). The node is ``--server``, else
``$TASKD_SERVER``, else ``http://127.0.0.1:8080``. ``taskd watch`` follows the node's event
stream instead (``taskd.cli.watch.command``; the one command that loads trio and rich).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from taskd.cli import cluster, parser, queues, tasks
from taskd.cli.rest import DEFAULT_SERVER, ClientError, Exit, Rest, server_url

Command = Callable[[Rest, argparse.Namespace, bool], int]


def _watch(rest: Rest, args: argparse.Namespace, as_json: bool) -> int:
    from taskd.cli.watch.command import watch  # noqa: PLC0415  # only watch loads trio and rich

    return watch(rest, args, as_json)


COMMANDS: dict[str, Command] = {
    "submit": tasks.submit,
    "get": tasks.get,
    "list": tasks.list_tasks,
    "cancel": tasks.transition("cancel", "canceled"),
    "retry": tasks.transition("retry", "retried"),
    "queues": queues.queues,
    "pause": queues.queue_action("pause"),
    "resume": queues.queue_action("resume"),
    "workers": queues.workers,
    "cluster": cluster.cluster,
    "watch": _watch,
}
assert COMMANDS.keys() == parser.COMMANDS.keys(), "every command has its help line, and back"


def run_client(argv: list[str]) -> int:
    """Run one client subcommand (global flags may come before it); return the exit code."""
    found = parser.command_of(argv)
    if found is not None and found[1] not in COMMANDS:
        word = found[1]
        print(
            f"taskd: unknown command {word!r}{parser.suggest(word, sorted(COMMANDS))} "
            "(taskd --help lists them)",
            file=sys.stderr,
        )
        return Exit.USAGE
    try:
        args = parser.build().parse_args(argv)
    except SystemExit as exc:  # argparse reports usage errors (2) and --help (0) this way
        return exc.code if isinstance(exc.code, int) else Exit.USAGE
    try:
        server = server_url(
            getattr(args, "server", None) or os.environ.get("TASKD_SERVER") or DEFAULT_SERVER
        )
        return COMMANDS[args.command](Rest(server), args, getattr(args, "json", False))
    except ClientError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `taskd list | head`: the reader left; nothing to say
        return Exit.OK
    except Exception as exc:  # one line, never a traceback (a bug to report)
        print(
            f"error: unexpected {type(exc).__name__}: {exc} (a bug: please report it)",
            file=sys.stderr,
        )
        return Exit.NODE_FAILED
