"""``taskd queues | pause | resume | workers``: what each queue holds and who serves it."""

from __future__ import annotations

import argparse
import urllib.parse
from collections.abc import Callable

from taskd.cli.output import line, print_json
from taskd.cli.parser import STATES
from taskd.cli.rest import Exit, Rest
from taskd.cli.table import Table

Command = Callable[[Rest, argparse.Namespace, bool], int]


def queues(rest: Rest, args: argparse.Namespace, as_json: bool) -> int:
    answer = rest.call("GET", "/api/v1/queues")
    if as_json:
        print_json(answer)
        return Exit.OK
    with_consumers = any("consumers" in q for q in answer["queues"])
    heads = ("consumers",) if with_consumers else ()
    table = Table(("queue", "paused", *heads, *STATES, "in/s", "done/s"))
    for q in answer["queues"]:
        rates = q.get("rates", {})
        extra = (str(q.get("consumers", 0)),) if with_consumers else ()
        table.add_row(
            q["name"],
            "yes" if q["paused"] else "",
            *extra,
            *(str(q["by_state"].get(s, 0)) for s in STATES),
            f"{rates.get('submitted_per_second', 0):g}",
            f"{rates.get('finished_per_second', 0):g}",
        )
    table.show()
    return Exit.OK


def queue_action(action: str) -> Command:
    def run(rest: Rest, args: argparse.Namespace, as_json: bool) -> int:
        path = f"/api/v1/queues/{urllib.parse.quote(args.queue, safe='')}/{action}"
        stats = rest.call("POST", path)
        if as_json:
            print_json(stats)
        else:
            state = "paused" if stats["paused"] else "running"
            line(f"queue {stats['name']} is {state}")
        return Exit.OK

    return run


def workers(rest: Rest, args: argparse.Namespace, as_json: bool) -> int:
    answer = rest.call("GET", "/api/v1/workers")
    if as_json:
        print_json(answer)
        return Exit.OK
    table = Table(("worker", "kind", "queues", "capacity", "running"))
    for w in answer["workers"]:
        table.add_row(
            w["worker"],
            w["kind"],
            ", ".join(w["queues"]),
            str(w["capacity"]),
            str(len(w["running"])),
        )
    table.show()
    return Exit.OK
