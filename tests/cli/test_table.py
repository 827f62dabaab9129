"""taskd.cli.table: the plain tables the CLI prints for people."""

from __future__ import annotations

import io

import pytest

from taskd.cli.table import BOLD, RESET, Table, clean, width


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_boxed_table_has_a_heavy_header_and_a_light_body() -> None:
    # Given a table with a header and two rows of different widths
    table = Table(("id", "state"))
    table.add_row("a1", "queued")
    table.add_row("b22", "ok")

    # When it is rendered for a pipe
    out = io.StringIO()
    table.show(out)

    # Expect rich's default look, every column as wide as its widest cell, no styles
    assert out.getvalue().splitlines() == [
        "┏━━━━━┳━━━━━━━━┓",
        "┃ id  ┃ state  ┃",
        "┡━━━━━╇━━━━━━━━┩",
        "│ a1  │ queued │",
        "│ b22 │ ok     │",
        "└─────┴────────┘",
    ]


def test_an_empty_table_still_shows_its_header() -> None:
    # Given a table without rows
    # Expect the header box closed right under it
    assert Table(("worker", "kind")).lines() == [
        "┏━━━━━━━━┳━━━━━━┓",
        "┃ worker ┃ kind ┃",
        "┡━━━━━━━━╇━━━━━━┩",
        "└────────┴──────┘",
    ]


def test_a_table_without_box_aligns_keys_and_values() -> None:
    # Given a key/value table, as `taskd get` prints
    table = Table(box=False)
    table.add_row("id", "01ABC")
    table.add_row("max_retries", "3")

    # Expect aligned columns, two spaces apart, no trailing blanks
    assert table.lines() == ["id           01ABC", "max_retries  3"]


def test_wide_characters_take_two_columns_and_marks_none() -> None:
    # Given cells with CJK characters and a combining accent
    assert width("任务") == 4
    assert width("e\u0301") == 1
    table = Table(("name", "x"))
    table.add_row("任务", "1")
    table.add_row("abcde", "2")

    # Expect the box lines to stay aligned in terminal columns
    lines = table.lines()
    assert lines[3] == "│ 任务  │ 1 │"
    assert lines[4] == "│ abcde │ 2 │"


def test_control_characters_are_shown_escaped() -> None:
    # Given a cell that would move the cursor and recolour the terminal
    table = Table(("name",))
    table.add_row("evil\x1b[2J\nname")

    # Expect it escaped, on one line
    assert clean("a\tb") == "a\\x09b"
    assert table.lines()[3] == "│ evil\\x1b[2J\\x0aname │"


def test_headers_are_bold_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a table and a terminal
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    table = Table(("id",))
    table.add_row("x")
    terminal = Terminal()

    # When it is shown there
    table.show(terminal)

    # Expect a bold header whose padding still lines up
    assert terminal.getvalue().splitlines()[1] == f"┃ {BOLD}id{RESET} ┃"

    # And nothing styled with NO_COLOR set
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Terminal()
    table.show(plain)
    assert plain.getvalue().splitlines()[1] == "┃ id ┃"
