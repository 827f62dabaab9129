"""Every command line the docs show is one the tools accept.

Given every shell block of the README and docs/*.md (and the ``ExecStart=`` lines of the
systemd units they show), each ``taskd ...`` command line is parsed by the parser that
``taskd`` itself uses for it: a node's flags (``taskd.node.config``), a client subcommand
(``taskd.cli.parser``), ``taskd bench``; ``make X`` names a target of the Makefile (its
``ARGS=`` are node flags). Every subcommand shown has its help: ``taskd help X`` exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from taskd.bench.main import parser as bench_parser
from taskd.cli import parser as cli_parser
from taskd.node import config as node_config
from tests.docs import mdblocks

PROGRAMS = {"taskd", "./taskd", ".venv/bin/taskd", "dist/taskd", "/usr/local/bin/taskd"}
SHELL_LANGS = {"sh", "bash", "console", "shell", ""}
WORKER_CLI = "taskd.cli.worker"
_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")


@dataclass(frozen=True)
class Shown:
    where: str
    program: str
    argv: list[str]

    def __str__(self) -> str:
        return f"{self.where}: {self.program} {shlex.join(self.argv)}"


def _logical_lines(text: str) -> Iterator[str]:
    """Lines with their ``\\`` continuations joined and a leading ``$ `` prompt dropped."""
    buffer = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        line = buffer + line
        buffer = ""
        yield line.strip().removeprefix("$ ")
    if buffer:
        yield buffer.strip()


def _commands(line: str) -> Iterator[list[str]]:
    """The simple commands of a line: split at ; && || |, comments and env assignments off."""
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:  # not shell (a prose line in a text block)
        return
    command: list[str] = []
    for word in [*words, ";"]:
        if word and set(word) <= set(";&|"):
            while command and _ASSIGNMENT.match(command[0]):
                command.pop(0)
            if command:
                yield command
            command = []
        else:
            command.append(word)


def shown() -> list[Shown]:
    found = []
    for page in mdblocks.pages():
        for block in mdblocks.blocks(page):
            lines: list[str] = []
            if block.lang in SHELL_LANGS:
                lines = list(_logical_lines(block.text))
            elif block.lang == "ini":  # a systemd unit: its ExecStart
                lines = [
                    line.split("=", 1)[1]
                    for line in _logical_lines(block.text)
                    if line.startswith("ExecStart=")
                ]
            for line in lines:
                for words in _commands(line):
                    if words[0] in PROGRAMS or words[0] == "make":
                        argv = [w for w in words[1:] if w != "..."]
                        found.append(Shown(block.where, words[0], argv))
        for line, code in mdblocks.inline_code(page):
            # `taskd get ID` in prose; not synopses with [optional] or a|b parts
            if code.split(" ", 1)[0] in PROGRAMS and " " in code and not set(code) & set("[]|<>"):
                for words in _commands(code):
                    where = f"{page.relative_to(mdblocks.ROOT)}:{line}"
                    found.append(Shown(where, words[0], [w for w in words[1:] if w != "..."]))
    return found


def _strict(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser, and its subcommands' parsers, without abbreviations: a doc must spell each
    flag out (``--stat`` for ``--state`` works today, and breaks when a ``--stats`` arrives)."""
    parser.allow_abbrev = False
    for action in parser._actions:  # argparse keeps subparsers only there
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _strict(sub)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """None when ``argv`` parses (or asks for help), else argparse's complaint."""
    parser = _strict(parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return err.getvalue().strip().splitlines()[-1]
    return None


def _make_targets() -> set[str]:
    text = (mdblocks.ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", text, re.MULTILINE))


def subcommand(argv: list[str]) -> str | None:
    found = cli_parser.command_of(argv)
    return found[1] if found else None


def test_the_docs_show_commands_at_all() -> None:
    # Given the pages / Expect the commands this test is about (a broken scan finds none)
    words = {subcommand(s.argv) for s in shown() if s.program != "make"}
    assert {None, "submit", "get", "list", "cluster", "worker", "bench", "help"} <= words


def test_every_command_line_shown_parses() -> None:
    # Given every command line the docs show
    problems = []
    targets = _make_targets()
    for item in shown():
        # When it is parsed the way taskd (or make) would
        if item.program == "make":
            if not item.argv or item.argv[0] not in targets:
                problems.append(f"{item}: not a target of the Makefile")
            for word in item.argv:
                if word.startswith("ARGS="):
                    error = _parse(node_config.build_parser(), shlex.split(word[5:]))
                    if error:
                        problems.append(f"{item}: {error}")
            continue
        word = subcommand(item.argv)
        if word is None:
            error = _parse(node_config.build_parser(), item.argv)
        elif word in cli_parser.COMMANDS:
            error = _parse(cli_parser.build(), item.argv)
        elif word == "bench":
            index = item.argv.index("bench")
            error = _parse(bench_parser(), item.argv[index + 1 :])
        elif word in ("worker", "help"):
            error = None  # checked below through `taskd help`
        else:
            error = f"unknown command {word!r}"
        # Expect no complaint
        if error:
            problems.append(f"{item}: {error}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_subcommand_shown_has_its_help() -> None:
    # Given the subcommands the docs use
    words = sorted({w for s in shown() if s.program != "make" if (w := subcommand(s.argv))})
    missing = []
    for word in words:
        if word == "worker" and importlib.util.find_spec(WORKER_CLI) is None:
            continue  # lands with the worker's branch; test_worker_help_is_there says so
        if word == "help":
            continue
        # When `taskd help WORD` runs / Expect exit 0 and a usage line
        done = subprocess.run(
            [sys.executable, "-m", "taskd", "help", word],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0 or "usage" not in done.stdout.lower():
            missing.append(f"taskd help {word}: exit {done.returncode} {done.stderr.strip()}")
    assert not missing, "\n".join(missing)


@pytest.mark.slow
def test_worker_help_is_there() -> None:
    if importlib.util.find_spec(WORKER_CLI) is None:
        pytest.xfail(f"`taskd worker` is not in this tree yet ({WORKER_CLI} is missing)")
    done = subprocess.run(
        [sys.executable, "-m", "taskd", "help", "worker"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
