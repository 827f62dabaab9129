"""The vote rules: when a voter grants a (pre-)vote, and when it ignores campaigns.

Theory of operation (Raft §5.2, §5.4.1; dissertation §4.2.3 and §9.6):

- A vote goes to a candidate whose log is at least as up to date as the voter's (a later last
  term, or the same last term and at least as long), at most once per term: the voter has
  not voted in this term, or voted for this candidate, and knows no leader of this term.
- A pre-vote asks "would you vote for me in term T+1?" without anyone taking T+1: it is
  granted on the same log rule to any candidate asking for a term above the voter's own, and
  changes nothing on the voter (no vote recorded, no timer reset). Only a candidate that a
  majority would elect bumps its term, so a node that was cut off and rejoins (its timeouts
  fired in isolation) cannot force the cluster into a new term.
- The lease of check-quorum: a voter that heard from a leader within the last election timeout
  (or a leader, which steps down by itself once it did not hear a majority for that long)
  ignores campaigns for a higher term, so a
  member that cannot hear the leader cannot depose it; a campaign the leader asked for
  (``TIMEOUT_NOW``, marked ``CAMPAIGN_TRANSFER``) is the exception.

These are functions of the core's state, not methods, so the rules read in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskd.raft.types import Message, MessageKind

if TYPE_CHECKING:
    from taskd.raft.core import RaftCore


def up_to_date(core: RaftCore, message: Message) -> bool:
    """Whether the candidate's last position (``index``, ``log_term``) is at least as up to
    date as this log's."""
    log = core.log
    return message.log_term > log.last_term or (
        message.log_term == log.last_term and message.index >= log.last_index
    )


def grants_vote(core: RaftCore, message: Message) -> bool:
    """Whether ``core`` grants the (pre-)vote ``message`` asks for (its term is already at
    least the voter's: older terms were answered before)."""
    can_vote = (
        core.vote == message.src
        or (core.vote is None and core.leader is None)
        or (message.kind is MessageKind.PRE_VOTE and message.term > core.term)
    )
    return can_vote and up_to_date(core, message)


def in_lease(core: RaftCore) -> bool:
    """Whether ``core`` is a leader or heard from one within the last election timeout, with
    check-quorum on: then it ignores campaigns for a higher term (a leader that lost its
    majority steps down by itself)."""
    if not core.config.check_quorum or core.leader is None:
        return False
    return core.leader == core.id or core.elapsed < core.config.election_ticks
