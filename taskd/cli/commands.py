"""The client half of the ``taskd`` command: ``taskd submit|get|list|...`` over the REST API.

Theory of operation: parse the subcommand (argparse), make one or two REST calls with the
stdlib's ``urllib.request`` (no dependency beyond the node's own), and print the answer as
JSON (``--json``) or for people (rich tables). It checks only what it must to build a request
(e.g. that ``--payload`` is JSON); the node validates everything else and its errors are
printed as ``error: <message> (field: x)``.

Exit codes: 0 success, 1 the node refused the request or could not be reached, 2 usage
errors. The node is ``--server``, else ``$TASKD_SERVER``, else ``http://127.0.0.1:8080``.
``taskd watch`` (the live terminal view) is not implemented yet.

``taskd cluster`` shows the members; ``taskd cluster add ADDR`` adds one (the call returns once
it is a learner; the command then follows it, printing a line whenever its progress changes,
until the leader promotes it to voter), ``taskd cluster remove ADDR`` removes one, and
``taskd cluster transfer [ADDR]`` hands leadership to ADDR (or to the most caught-up voter).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson
from rich.console import Console
from rich.table import Column, Table

DEFAULT_SERVER = "http://127.0.0.1:8080"
TIMEOUT = 30.0
PROMOTION_POLL = 0.2  # seconds between looks at a new member's progress
STATES = ("pending", "blocked", "queued", "running", "succeeded", "failed", "canceled")


class ClientError(Exception):
    """A failure to report on stderr with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Rest:
    """A tiny blocking REST client for one node."""

    def __init__(self, server: str) -> None:
        self.server = server.rstrip("/")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        # Every call, body or not: the node refuses a POST without it (no cross-site writes).
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return _decode(response.read())
        except urllib.error.HTTPError as exc:
            raise ClientError(_server_error(exc)) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ConnectionRefusedError):
                raise ClientError(
                    f"cannot reach taskd at {self.server}: is a node running? "
                    "start one with `taskd`"
                ) from None
            raise ClientError(f"cannot reach taskd at {self.server}: {reason}") from None
        except (TimeoutError, ConnectionError) as exc:
            raise ClientError(f"cannot reach taskd at {self.server}: {exc}") from None


def _decode(data: bytes) -> Any:
    try:
        return orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return data.decode(errors="replace")


def _server_error(exc: urllib.error.HTTPError) -> str:
    body = _decode(exc.read())
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        message = str(error.get("message") or error.get("code") or exc.reason)
        field = error.get("field")
        return f"{message} (field: {field})" if field else message
    return f"HTTP {exc.code} {exc.reason}"


# ---- argument parsing ----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        help=f"the node's HTTP URL (default $TASKD_SERVER or {DEFAULT_SERVER})",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON instead of tables",
    )
    parser = argparse.ArgumentParser(
        prog="taskd",
        description="taskd client: talk to a running taskd node over REST.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common])

    p = command("submit", "submit a task and print its id")
    p.add_argument("--queue", help='queue name (default "default")')
    p.add_argument("--name", help="handler name inside an SDK worker")
    p.add_argument("--priority", help="0-9 or low, normal, high, critical (default normal)")
    p.add_argument("--payload", help="JSON value, @FILE to read it from a file, - for stdin")
    p.add_argument("--timeout", help='seconds, or a duration like "5m" (default 1800)')
    p.add_argument("--max-retries", type=int, help="retries after the first attempt (default 3)")
    p.add_argument("--delay", type=float, help="seconds before the task may run")
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

    command("get", "show one task").add_argument("id")
    p = command("list", "list tasks, newest first")
    p.add_argument("--queue")
    p.add_argument("--state", choices=STATES)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--after", metavar="CURSOR", help="continue from a previous page")
    command("cancel", "cancel a task that has not finished").add_argument("id")
    command("retry", "re-queue a failed or canceled task").add_argument("id")
    command("queues", "show every queue's depth by state")
    command("pause", "stop handing out a queue's tasks").add_argument("queue")
    command("resume", "hand out a paused queue's tasks again").add_argument("queue")
    command("workers", "show connected workers")
    p = command(
        "cluster",
        "show the cluster's members and leader; add or remove a member; transfer leadership",
    )
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
    command("watch", "live terminal view (not available yet)")
    sub.add_parser("help", help="show this help")
    return parser


def run_client(argv: list[str]) -> int:
    """Run one client subcommand (``argv`` starts with it); return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports usage errors (2) and --help (0) this way
        return exc.code if isinstance(exc.code, int) else 2
    if args.command == "help":
        parser.print_help()
        return 0
    server = getattr(args, "server", None) or os.environ.get("TASKD_SERVER") or DEFAULT_SERVER
    if "://" not in server:
        server = f"http://{server}"
    as_json = getattr(args, "json", False)
    out = Console(soft_wrap=True)
    if not out.is_terminal:  # piped: never truncate columns to a guessed 80-column width
        out = Console(soft_wrap=True, width=1000)
    try:
        return _COMMANDS[args.command](Rest(server), args, as_json, out)
    except ClientError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.code


# ---- commands ------------------------------------------------------------------------------


Command = Callable[[Rest, argparse.Namespace, bool, Console], int]


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def _submit(rest: Rest, args: argparse.Namespace, as_json: bool, out: Console) -> int:
    body: dict[str, Any] = {}
    for key in ("queue", "name", "idempotency_key", "max_retries", "delay"):
        value = getattr(args, key)
        if value is not None:
            body[key] = value
    if args.priority is not None:
        body["priority"] = int(args.priority) if args.priority.isdigit() else args.priority
    if args.timeout is not None:
        body["timeout"] = _number_or_text(args.timeout)
    if args.payload is not None:
        body["payload"] = _payload(args.payload)
    if args.depends_on:
        body["depends_on"] = args.depends_on
    if args.label:
        body["labels"] = dict(_label(text) for text in args.label)
    task = rest.call("POST", "/api/v1/tasks", body)
    if as_json:
        _print_json(task)
        return 0
    print(task["id"])
    if task.get("duplicate"):
        print("(an earlier task with this idempotency key)", file=sys.stderr)
    return 0


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
            raise ClientError(f"cannot read --payload file: {exc}", 2) from None
        where = text[1:]
    else:
        data, where = text.encode(), "--payload"
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ClientError(
            f"the payload in {where} is not valid JSON ({exc.msg}); quote a string as '\"text\"'",
            2,
        ) from None


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ClientError(f"--label wants KEY=VALUE, got {text!r}", 2)
    return key, value


def _task_path(task_id: str, action: str = "") -> str:
    path = f"/api/v1/tasks/{urllib.parse.quote(task_id, safe='')}"
    return f"{path}/{action}" if action else path


def _get(rest: Rest, args: argparse.Namespace, as_json: bool, out: Console) -> int:
    task = rest.call("GET", _task_path(args.id))
    if as_json:
        _print_json(task)
        return 0
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in task.items():
        if value is None or value == [] or value == {}:
            continue
        shown = value if isinstance(value, str) else orjson.dumps(value).decode()
        table.add_row(key, shown)
    out.print(table)
    return 0


def _list(rest: Rest, args: argparse.Namespace, as_json: bool, out: Console) -> int:
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
        _print_json(page)
        return 0
    table = Table("queue", "name", "state", "prio", "try", "created")
    # ids are copied from here: never truncate or wrap them
    table.columns.insert(0, Column("id", no_wrap=True, min_width=26))
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
    out.print(table)
    if page.get("next"):
        out.print(f"more: taskd list --after {page['next']}", style="dim", highlight=False)
    return 0


def _transition(action: str, verb: str) -> Command:
    def run(rest: Rest, args: argparse.Namespace, as_json: bool, out: Console) -> int:
        task = rest.call("POST", _task_path(args.id, action))
        if as_json:
            _print_json(task)
        else:
            out.print(f"{task['id']} {verb}: now {task['state']}", highlight=False)
        return 0

    return run


def _queues(rest: Rest, args: argparse.Namespace, as_json: bool, out: Console) -> int:
    queues = rest.call("GET", "/api/v1/queues")
    if as_json:
        _print_json(queues)
        return 0
    table = Table("queue", "paused", *STATES, "in/s", "done/s")
    for q in queues["queues"]:
        rates = q.get("rates", {})
        table.add_row(
            q["name"],
            "yes" if q["paused"] else "",
            *(str(q["by_state"].get(s, 0)) for s in STATES),
            f"{rates.get('submitted_per_second', 0):g}",
            f"{rates.get('finished_per_second', 0):g}",
        )
    out.print(table)
    return 0


def _queue_action(action: str) -> Command:
    def run(rest: Rest, args: argparse.Namespace, as_json: bool, out: Console) -> int:
        path = f"/api/v1/queues/{urllib.parse.quote(args.queue, safe='')}/{action}"
        stats = rest.call("POST", path)
        if as_json:
            _print_json(stats)
        else:
            state = "paused" if stats["paused"] else "running"
            out.print(f"queue {stats['name']} is {state}", highlight=False)
        return 0

    return run


def _workers(rest: Rest, args: argparse.Namespace, as_json: bool, out: Console) -> int:
    workers = rest.call("GET", "/api/v1/workers")
    if as_json:
        _print_json(workers)
        return 0
    table = Table("worker", "kind", "queues", "capacity", "running")
    for w in workers["workers"]:
        table.add_row(
            w["worker"],
            w["kind"],
            ", ".join(w["queues"]),
            str(w["capacity"]),
            str(len(w["running"])),
        )
    out.print(table)
    return 0


def _cluster(rest: Rest, args: argparse.Namespace, as_json: bool, out: Console) -> int:
    if args.action in ("add", "remove") and not args.address:
        raise ClientError(f"taskd cluster {args.action} needs the member's address host[:port]", 2)
    if args.action is None and args.address:
        raise ClientError("say what to do with it: taskd cluster add|remove|transfer ADDRESS", 2)
    if args.action == "add":
        return _cluster_add(rest, args, as_json, out)
    if args.action == "remove":
        path = f"/api/v1/cluster/members/{urllib.parse.quote(args.address, safe='')}"
        status = rest.call("DELETE", path)
        if not as_json:
            out.print(f"removed {args.address}", highlight=False)
    elif args.action == "transfer":
        body = {"address": args.address} if args.address else {}
        status = rest.call("POST", "/api/v1/cluster/transfer", body)
        if not as_json:
            out.print(
                f"leadership transferred: {status['leader'] or 'unknown'} leads", highlight=False
            )
    else:
        status = rest.call("GET", "/api/v1/cluster")
    if as_json:
        _print_json(status)
        return 0
    _print_cluster(status, out)
    return 0


def _cluster_add(rest: Rest, args: argparse.Namespace, as_json: bool, out: Console) -> int:
    """Add a learner, then follow it until it votes, printing each change of its progress."""
    status = rest.call("POST", "/api/v1/cluster/members", {"address": args.address})
    member = _find_member(status, args.address)
    address = member["address"] if member else args.address
    if not as_json:
        out.print(f"added {address} as a learner", highlight=False)
    deadline = time.monotonic() + args.wait
    last_line = ""
    while args.wait > 0:
        member = _find_member(status, address)
        if member is not None and member["role"] != "learner":
            if not as_json:
                out.print(f"{address} caught up and is a voter ({member['role']})", highlight=False)
            break
        line = _progress(status, member, address)
        if line != last_line and not as_json:
            out.print(line, highlight=False)
            last_line = line
        if time.monotonic() >= deadline:
            raise ClientError(
                f"{address} is still a learner after {args.wait:g}s: is it running with --join "
                "and reachable from the leader? it is promoted by itself once caught up",
            )
        time.sleep(PROMOTION_POLL)
        status = rest.call("GET", "/api/v1/cluster")
    if as_json:
        _print_json(status)
        return 0
    _print_cluster(status, out)
    return 0


def _find_member(status: dict[str, Any], address: str) -> dict[str, Any] | None:
    """The member ``address`` names, written as the node writes members (host:port)."""
    wanted = address.strip().lower()
    if not wanted.rpartition("]")[2].count(":") and (wanted.startswith("[") or ":" not in wanted):
        wanted += ":50051"  # no port given (IPv6 hosts come in brackets)
    for member in status.get("members", []):
        if member["address"] == wanted:
            found: dict[str, Any] = member
            return found
    return None


def _progress(status: dict[str, Any], member: dict[str, Any] | None, address: str) -> str:
    if member is None:
        return f"{address}: waiting for the change to reach this node"
    if status["role"] != "leader":
        return f"{address}: learner, catching up (this node follows; the leader knows how far)"
    last = status["commit_index"]
    return f"{address}: learner, catching up: match index {member['match_index']} of {last}"


def _print_cluster(status: dict[str, Any], out: Console) -> None:
    out.print(
        f"node {status['id']}: {status['role']}, term {status['term']}, "
        f"leader {status['leader'] or 'unknown'}, commit index {status['commit_index']}",
        highlight=False,
    )
    table = Table("member", "role", "match index", "reachable")
    for m in status["members"]:
        table.add_row(
            m["address"], m["role"], str(m["match_index"]), "yes" if m["reachable"] else "no"
        )
    out.print(table)


def _watch(rest: Rest, args: argparse.Namespace, as_json: bool, out: Console) -> int:
    raise ClientError("taskd watch arrives in a later version; use `taskd list` meanwhile", 2)


_COMMANDS: dict[str, Command] = {
    "submit": _submit,
    "get": _get,
    "list": _list,
    "cancel": _transition("cancel", "canceled"),
    "retry": _transition("retry", "retried"),
    "queues": _queues,
    "pause": _queue_action("pause"),
    "resume": _queue_action("resume"),
    "workers": _workers,
    "cluster": _cluster,
    "watch": _watch,
}
