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

- Campaigns: a voter whose timeout passed asks its configuration's other voters for pre-votes
  (``start_election``) and campaigns (``campaign``) once a majority said yes; it wins on a
  majority of votes of its latest configuration (``tally``). A node whose own removal is not
  committed as far as it knows may still campaign (``may_campaign``): it may hold the only
  copy of the change, and the voters it would leave behind could otherwise never elect
  anyone; it does not count its own vote then, and steps down once its removal commits.

These are functions of the core's state, not methods, so the rules read in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskd.raft.confstate import Tally, tally
from taskd.raft.roles import Event, Role
from taskd.raft.types import CAMPAIGN_TRANSFER, Message, MessageKind

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


def on_vote(core: RaftCore, message: Message) -> None:
    pre = message.kind is MessageKind.PRE_VOTE
    answer = MessageKind.PRE_VOTE_RESPONSE if pre else MessageKind.VOTE_RESPONSE
    if grants_vote(core, message):
        if not pre:
            core.vote = message.src
            core.elapsed = 0
        core.send(answer, message.src, term=message.term)
    else:
        core.send(answer, message.src, reject=True)


def on_vote_response(core: RaftCore, message: Message) -> None:
    pre = message.kind is MessageKind.PRE_VOTE_RESPONSE
    if pre:
        granted_term = core.term + 1
        if core.role is not Role.PRE_CANDIDATE:
            return
    else:
        granted_term = core.term
        if core.role is not Role.CANDIDATE:
            return
    if not message.reject and message.term != granted_term:
        return
    core.votes[message.src] = not message.reject
    result = tally(core.conf.voters, core.votes)
    if result is Tally.WON:
        if pre:
            campaign(core, Event.WON_PRE_VOTE)
        else:
            core.win()
    elif result is Tally.LOST:
        core.become(Event.LOST_ELECTION)
        core.votes = {}


def may_campaign(core: RaftCore) -> bool:
    """A voter campaigns; so does a node whose removal is not committed yet (as far as it
    knows): it may hold the only copy of that change, and the voters it would leave
    behind could then never elect anyone. It counts votes in its latest configuration,
    without its own, and steps down once its removal commits."""
    if core.id in core.conf.voters:
        return True
    return core.id in core.membership.conf_at(core.log.committed).voters


def start_election(core: RaftCore) -> None:
    if not core.config.pre_vote:
        campaign(core, Event.ELECTION_TIMEOUT)
        return
    core.become(Event.PRE_VOTE_TIMEOUT)
    core.leader = None
    core.elapsed = 0
    core.timeout = core.random_timeout()
    core.votes = {core.id: True}
    if tally(core.conf.voters, core.votes) is Tally.WON:
        campaign(core, Event.WON_PRE_VOTE)
        return
    ask_pre_votes(core)


def ask_pre_votes(core: RaftCore) -> None:
    """Ask every voter that has not answered yet. A pre-candidate asks again on every tick:
    a voter whose lease had a tick to go ignored the first request, and asking costs nothing
    (a pre-vote changes no state), while waiting for the next timeout would add a whole
    election timeout to the failover."""
    for voter in core.conf.voters:
        if voter != core.id and voter not in core.votes:
            core.send(
                MessageKind.PRE_VOTE,
                voter,
                term=core.term + 1,
                index=core.log.last_index,
                log_term=core.log.last_term,
            )


def campaign(core: RaftCore, event: Event) -> None:
    core.become(event)
    core.term += 1
    core.vote = core.id
    core.leader = None
    core.elapsed = 0
    core.timeout = core.random_timeout()
    core.votes = {core.id: True}
    if tally(core.conf.voters, core.votes) is Tally.WON:
        core.win()
        return
    context = CAMPAIGN_TRANSFER if event is Event.TIMEOUT_NOW else 0
    for voter in core.conf.voters:
        if voter != core.id:
            core.send(
                MessageKind.VOTE,
                voter,
                index=core.log.last_index,
                log_term=core.log.last_term,
                context=context,
            )
