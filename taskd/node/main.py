"""The ``taskd`` command: run a node (no subcommand), or act as a client of one.

``taskd [flags]`` runs a node; ``taskd bench ...`` runs the benchmarks against a node;
``taskd worker MODULE`` runs an SDK worker; ``taskd submit|get|list|...`` talk to a node over
REST (``taskd.cli``); ``taskd help [COMMAND]`` and ``taskd --help`` explain all of it.

Start-up time matters here (a client call should take well under 0.2 s): this module imports
nothing at load time beyond the stdlib; each path imports only what it needs, so a client
command never loads trio, grpclib, hypercorn or the node's config.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from taskd.cli import parser as cli_parser

OTHER_COMMANDS = {
    "bench": "run the benchmarks against a running node (taskd bench --help)",
    "worker": "run the SDK Worker a Python module defines: taskd worker myapp.tasks",
    "help": "taskd help [COMMAND]: this help, or a command's",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    found = cli_parser.command_of(args)
    if found is None:
        if any(a in ("-h", "--help") for a in args):
            try:
                print_help()
            except BrokenPipeError:  # `taskd --help | head`
                pass
            return 0
        if "--version" in args:  # what the node parser would print, without loading trio
            from taskd import __version__  # noqa: PLC0415  # only --version needs it

            print(f"taskd {__version__}")
            return 0
        first = args[0].split("=", 1)[0] if args else ""
        if first not in cli_parser.GLOBAL_FLAGS_WITH_VALUE | cli_parser.GLOBAL_SWITCHES:
            return run_node(args)
        found = (len(args), "")  # client flags and no command: the client says what is missing
    index, word = found
    rest = args[index + 1 :]
    if word == "help":
        return _help(rest)
    if word == "bench":
        from taskd.bench.main import run_bench  # noqa: PLC0415  # only `taskd bench` needs it

        status: int = run_bench(rest)
        return status
    if word == "worker":
        from taskd.cli.worker import main as run_worker  # noqa: PLC0415  # loads the SDK

        # global flags before the command (taskd --server ADDR worker MODULE) are its own too
        status = run_worker([*args[:index], *rest])
        return status
    from taskd.cli.commands import run_client  # noqa: PLC0415  # a node never loads client code

    status = run_client(args)
    return status


def _help(words: list[str]) -> int:
    if not words:
        print_help()
        return 0
    name = words[0]
    if name in cli_parser.COMMANDS or name in ("bench", "worker"):
        return main([name, "--help"])
    known = sorted([*cli_parser.COMMANDS, *OTHER_COMMANDS])
    print(
        f"taskd: unknown command {name!r}{cli_parser.suggest(name, known)} "
        "(taskd --help lists them)",
        file=sys.stderr,
    )
    return 2


def print_help() -> None:
    from taskd.node import config as node_config  # noqa: PLC0415  # only help needs node flags

    node_parser = node_config.build_parser()
    width = max(len(name) for name in [*cli_parser.COMMANDS, *OTHER_COMMANDS]) + 2
    lines = [
        "usage: taskd [NODE FLAGS]            run a node",
        "       taskd COMMAND [ARGS] [--server URL] [--json]",
        "",
        "commands (global flags --server URL and --json go before or after the command):",
    ]
    for name, text in [*cli_parser.COMMANDS.items(), *OTHER_COMMANDS.items()]:
        lines.append(f"  {name.ljust(width)}{text}")
    lines += [
        "",
        "client exit codes: 0 ok, 1 the node refused the request, 2 usage error,",
        "  3 no taskd answered (down, timed out, wrong port or scheme), 4 the node failed (5xx)",
        "",
    ]
    print("\n".join(lines))
    node_parser.print_help()
    print("\nenvironment (a flag on the command line wins):")
    variables = [("TASKD_SERVER", "client commands: the node's HTTP address (--server)")]
    variables += node_config.environment()
    variables += [
        (
            "TASKD_LAUNCHER_DEBUG",
            "1: the one-file binary says on stderr where it runs from and why "
            "($XDG_CACHE_HOME/taskd, else ~/.cache/taskd; else a per-run copy in $TMPDIR)",
        )
    ]
    width = max(len(name) for name, _ in variables) + 2
    for name, text in variables:
        print(f"  {name.ljust(width)}{text}")
    print("\nset for --exec commands: TASKD_TASK_ID, TASKD_ATTEMPT (1 on the first), TASKD_QUEUE")


def run_node(args: list[str]) -> int:
    import trio  # noqa: PLC0415  # clients never load the event loop

    from taskd.errors import TaskdError, first_of  # noqa: PLC0415  # idem
    from taskd.node import config as node_config  # noqa: PLC0415  # idem
    from taskd.node.observe import logs  # noqa: PLC0415  # idem

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
