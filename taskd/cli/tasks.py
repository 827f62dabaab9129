"""``taskd submit | get | list | cancel | retry``: one task at a time, or a page of them."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

from taskd.cli.output import line, print_json
from taskd.cli.rest import ClientError, Exit, Rest
from taskd.cli.table import Table

Command = Callable[[Rest, argparse.Namespace, bool], int]


def submit(rest: Rest, args: argparse.Namespace, as_json: bool) -> int:
    body: dict[str, Any] = {}
    for key in ("queue", "name", "idempotency_key", "max_retries"):
        value = getattr(args, key)
        if value is not None:
            body[key] = value
    if args.priority is not None:
        body["priority"] = int(args.priority) if args.priority.isdigit() else args.priority
    # Durations go as given ("5m"); the node parses them (one parser for REST, gRPC and here).
    if args.timeout is not None:
        body["timeout"] = _number_or_text(args.timeout)
    if args.delay is not None:
        body["delay"] = _number_or_text(args.delay)
    if args.payload is not None:
        body["payload"] = _payload(args.payload)
    if args.depends_on:
        body["depends_on"] = args.depends_on
    if args.label:
        body["labels"] = dict(_label(text) for text in args.label)
    task = rest.call("POST", "/api/v1/tasks", body)
    if as_json:
        print_json(task)
        return Exit.OK
    print(task["id"])
    if task.get("duplicate"):
        print("(an earlier task with this idempotency key)", file=sys.stderr)
    return Exit.OK


def _number_or_text(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _payload(text: str) -> Any:
    if text == "-":
        data = sys.stdin.buffer.read()
        where = "stdin"
    elif text.startswith("@"):
        try:
            with open(text[1:], "rb") as file:
                data = file.read()
        except OSError as exc:
            raise ClientError(f"cannot read --payload file: {exc}", Exit.USAGE) from None
        where = text[1:]
    else:
        data, where = text.encode(), "--payload"
    try:
        return json.loads(data, parse_constant=_no_constant)
    except ValueError as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ClientError(
            f"the payload in {where} is not valid JSON ({reason}); quote a string as '\"text\"'",
            Exit.USAGE,
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ClientError(f"--label wants KEY=VALUE, got {text!r}", Exit.USAGE)
    return key, value


def task_path(task_id: str, action: str = "") -> str:
    path = f"/api/v1/tasks/{urllib.parse.quote(task_id, safe='')}"
    return f"{path}/{action}" if action else path


def get(rest: Rest, args: argparse.Namespace, as_json: bool) -> int:
    task = rest.call("GET", task_path(args.id))
    if as_json:
        print_json(task)
        return Exit.OK
    table = Table(box=False)
    for key, value in task.items():
        if value is None or value == [] or value == {} or key == "attempts":
            continue
        shown = (
            value
            if isinstance(value, str)
            else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        )
        table.add_row(key, shown)
    table.show()
    attempts = task.get("attempts") or []
    if attempts:
        history = Table(("attempt", "outcome", "started", "finished", "worker", "error / stderr"))
        for a in attempts:
            error = (a.get("error") or a.get("log") or "").strip().splitlines()
            history.add_row(
                str(a["attempt"]),
                a["outcome"],
                a["started_at"] or "",
                a["finished_at"] or "",
                a.get("worker") or "",
                error[-1] if error else "",  # the last line: an exception's message
            )
        history.show()
    return Exit.OK


# The filters a "more:" hint repeats, as (attribute, flag, default): a next page must list
# the same tasks as this one did.
_LIST_FILTERS = (("queue", "--queue", None), ("state", "--state", None), ("limit", "--limit", 50))


def list_tasks(rest: Rest, args: argparse.Namespace, as_json: bool) -> int:
    if args.limit is not None and args.limit < 1:
        raise ClientError("--limit must be at least 1", Exit.USAGE)
    query = {
        k: v
        for k, v in (
            ("queue", args.queue),
            ("state", args.state),
            ("limit", args.limit),
            ("after", args.after),
        )
        if v is not None
    }
    page = rest.call("GET", "/api/v1/tasks?" + urllib.parse.urlencode(query))
    if as_json:
        print_json(page)
        return Exit.OK
    table = Table(("id", "queue", "name", "state", "prio", "try", "created"))
    for task in page["tasks"]:
        table.add_row(
            task["id"],
            task["queue"],
            task["name"] or "",
            task["state"],
            str(task["priority"]),
            str(task["attempt"]),
            task["created_at"] or "",
        )
    table.show()
    if page.get("next"):
        line(more_hint(args, page["next"]), dim=True)
    return Exit.OK


def more_hint(args: argparse.Namespace, cursor: str) -> str:
    """The command that lists the next page: this one's filters, from ``cursor`` on."""
    words = ["taskd", "list"]
    for attribute, flag, default in _LIST_FILTERS:
        value = getattr(args, attribute)
        if value is not None and value != default:
            words += [flag, str(value)]
    server = getattr(args, "server", None)
    if server:
        words += ["--server", server]
    words += ["--after", cursor]
    return "more: " + shlex.join(words)


def transition(action: str, verb: str) -> Command:
    def run(rest: Rest, args: argparse.Namespace, as_json: bool) -> int:
        task = rest.call("POST", task_path(args.id, action))
        if as_json:
            print_json(task)
        else:
            line(f"{task['id']} {verb}: now {task['state']}")
        return Exit.OK

    return run
