"""``taskd cluster [add ADDR | remove ADDR | transfer [ADDR]]``: the members and the leader.

``taskd cluster add ADDR`` returns once ADDR is a learner, then follows it, printing a line
whenever its progress changes, until the leader promotes it to voter (``--wait`` seconds).
"""

from __future__ import annotations

import argparse
import time
import urllib.parse
from typing import Any

from taskd.cli.output import line as say
from taskd.cli.output import print_json
from taskd.cli.rest import ClientError, Exit, Rest
from taskd.cli.table import Table

PROMOTION_POLL = 0.2  # seconds between looks at a new member's progress


def cluster(rest: Rest, args: argparse.Namespace, as_json: bool) -> int:
    if args.action in ("add", "remove") and not args.address:
        raise ClientError(
            f"taskd cluster {args.action} needs the member's address host[:port]", Exit.USAGE
        )
    if args.action is None and args.address:
        raise ClientError(
            "say what to do with it: taskd cluster add|remove|transfer ADDRESS", Exit.USAGE
        )
    if args.action == "add":
        return _cluster_add(rest, args, as_json)
    if args.action == "remove":
        path = f"/api/v1/cluster/members/{urllib.parse.quote(args.address, safe='')}"
        status = rest.call("DELETE", path)
        if not as_json:
            say(f"removed {args.address}")
    elif args.action == "transfer":
        body = {"address": args.address} if args.address else {}
        status = rest.call("POST", "/api/v1/cluster/transfer", body)
        if not as_json:
            say(f"leadership transferred: {status['leader'] or 'unknown'} leads")
    else:
        status = rest.call("GET", "/api/v1/cluster")
    if as_json:
        print_json(status)
        return Exit.OK
    _print_cluster(status)
    return Exit.OK


def _cluster_add(rest: Rest, args: argparse.Namespace, as_json: bool) -> int:
    """Add a learner, then follow it until it votes, printing each change of its progress."""
    status = rest.call("POST", "/api/v1/cluster/members", {"address": args.address})
    member = _find_member(status, args.address)
    address = member["address"] if member else args.address
    if not as_json:
        say(f"added {address} as a learner")
    deadline = time.monotonic() + args.wait
    last_line = ""
    while args.wait > 0:
        member = _find_member(status, address)
        if member is not None and member["role"] != "learner":
            if not as_json:
                say(f"{address} caught up and is a voter ({member['role']})")
            break
        line = _progress(status, member, address)
        if line != last_line and not as_json:
            say(line)
            last_line = line
        if time.monotonic() >= deadline:
            raise ClientError(
                f"{address} is still a learner after {args.wait:g}s: is it running with --join "
                "and reachable from the leader? it is promoted by itself once caught up",
            )
        time.sleep(PROMOTION_POLL)
        status = rest.call("GET", "/api/v1/cluster")
    if as_json:
        print_json(status)
        return Exit.OK
    _print_cluster(status)
    return Exit.OK


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


def _print_cluster(status: dict[str, Any]) -> None:
    say(
        f"node {status['id']}: {status['role']}, term {status['term']}, "
        f"leader {status['leader'] or 'unknown'}, commit index {status['commit_index']}"
    )
    table = Table(("member", "role", "match index", "reachable"))
    for m in status["members"]:
        table.add_row(
            m["address"], m["role"], str(m["match_index"]), "yes" if m["reachable"] else "no"
        )
    table.show()
