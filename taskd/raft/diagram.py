"""Render ``docs/raft-roles.md`` (a Mermaid state diagram) from the core's ``TRANSITIONS``.

Run ``python -m taskd.raft.diagram > docs/raft-roles.md`` after changing the table; a test
fails while the committed file differs from ``render()``.
"""

from __future__ import annotations

import sys
from collections import defaultdict

from taskd.raft.roles import TRANSITIONS, Event, Role

_HEADER = """\
# Raft roles

Generated from `taskd/raft/roles.py` by `python -m taskd.raft.diagram`; do not edit.
Every node starts as a follower. A learner, a node waiting to join and a removed node stay
followers: they never time out into a campaign.

```mermaid
stateDiagram-v2
    [*] --> follower
"""

_CAUSE = {
    Event.PRE_VOTE_TIMEOUT: "election timeout with pre-vote on: asks for pre-votes for term+1",
    Event.WON_PRE_VOTE: "a majority would vote for it: takes term+1 and asks for votes",
    Event.ELECTION_TIMEOUT: "election timeout with pre-vote off: takes term+1 at once",
    Event.TIMEOUT_NOW: "the leader hands leadership over (`TIMEOUT_NOW`): campaigns at once",
    Event.WON_ELECTION: "votes from a majority of the voters",
    Event.LOST_ELECTION: "refusals from a majority of the voters",
    Event.HIGHER_TERM: "any message of a higher term (bar a campaign it ignores)",
    Event.LEADER_SEEN: "an append, heartbeat or snapshot from the leader of its term",
    Event.QUORUM_LOST: "check-quorum: no answer from a majority within an election timeout",
    Event.REMOVED: "its removal committed (a leader), or it left the voters",
    Event.DISK_FAULT: "its disk refused entries it had already sent (`discard_unpersisted`)",
}


def render() -> str:
    """The whole document, deterministic: edges in table order, labels joined per edge."""
    labels: dict[tuple[Role, Role], list[str]] = defaultdict(list)
    for (source, event), target in TRANSITIONS.items():
        labels[(source, target)].append(event.name.lower())
    lines = [_HEADER.rstrip("\n")]
    for (source, target), names in labels.items():
        lines.append(f"    {_state(source)} --> {_state(target)} : {', '.join(names)}")
    lines.append("```")
    lines.append("")
    lines.append("| event | caused by |")
    lines.append("|---|---|")
    for event in Event:
        lines.append(f"| {event.name.lower()} | {_CAUSE[event]} |")
    return "\n".join(lines) + "\n"


def _state(role: Role) -> str:
    return role.value.replace("-", "_")


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
