"""The ``taskd`` command: run a node (no subcommand), or act as a client of one.

``taskd [flags]`` runs a node; ``taskd bench ...`` runs the benchmarks against a node;
``taskd submit|get|list|...`` talk to a node over REST (see ``taskd.cli.commands``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import trio

from taskd.errors import TaskdError, first_of
from taskd.node import config as node_config
from taskd.node.observe import logs

CLIENT_COMMANDS = frozenset(
    {
        "submit",
        "get",
        "list",
        "cancel",
        "retry",
        "queues",
        "pause",
        "resume",
        "workers",
        "cluster",
        "watch",
        "help",
    }
)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in CLIENT_COMMANDS:
        from taskd.cli.commands import run_client  # noqa: PLC0415  # a node never loads client code

        status: int = run_client(args)
        return status
    if args and args[0] == "bench":
        from taskd.bench.main import run_bench  # noqa: PLC0415  # only `taskd bench` needs it

        status = run_bench(args[1:])
        return status
    return run_node(args)


def run_node(args: list[str]) -> int:
    try:
        config = node_config.load(args)
    except node_config.ConfigError as exc:
        print(f"taskd: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_level, config.log_format)
    from taskd.node.runner import Node  # noqa: PLC0415  # clients never load the server stack

    try:
        trio.run(Node(config).run)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        fatal = first_of(exc, TaskdError)
        if fatal is None:
            raise
        print(f"taskd: {fatal}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
